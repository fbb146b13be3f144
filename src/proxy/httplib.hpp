// cpp-httplib as Debian ships it (libcpp-httplib-dev): a declarations-only header plus
// libcpp-httplib.so. The library was built with TLS, zlib and brotli support, and those
// switches change the layout of httplib::Request, so they must be set here exactly as
// in cpp-httplib.pc before the header is seen. Treated as a system header so that its
// code never trips our -Werror warnings.
#pragma once
#pragma GCC system_header

#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif

#include <httplib.h>
