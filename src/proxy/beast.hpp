// Boost.Beast and Asio (Debian's libboost-dev, header-only), treated as system headers
// so that their code never trips our -Werror warnings.
#pragma once
#pragma GCC system_header

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
