// CLI11 (Debian's libcli11-dev, header-only), treated as a system header so that its code
// never trips our -Werror warnings.
#pragma once
#pragma GCC system_header

#include <CLI/CLI.hpp>
