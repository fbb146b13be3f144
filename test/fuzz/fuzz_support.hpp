// Shared helpers for the libFuzzer targets in test/fuzz (not part of the extension).
// A property violation prints what broke and calls abort(): libFuzzer reports the
// "deadly signal" and writes the input that caused it (crash-<sha1>).
#pragma once

#include "core/errors.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>
#include <typeinfo>

namespace attendance::fuzz {

[[noreturn]] inline void violated(const char* where, const std::string& what) {
    std::fprintf(stderr, "\n*** PROPERTY VIOLATED in %s: %s\n", where, what.c_str());
    std::fflush(stderr);
    std::abort();
}

#define FUZZ_CHECK(cond, what)                                                                \
    do {                                                                                      \
        if (!(cond))                                                                          \
            ::attendance::fuzz::violated(__func__,                                            \
                                         std::string("check `" #cond "` failed: ") + (what)); \
    } while (0)

// For catch (...) blocks: names the exception that escaped (anything but core::Error).
[[noreturn]] inline void unexpected_exception(const char* where) {
    std::string what = "unknown exception type";
    try {
        throw;
    } catch (const std::exception& e) {
        what = std::string(typeid(e).name()) + ": " + e.what();
    } catch (...) {
    }
    violated(where, "an exception other than core::Error escaped: " + what);
}

inline bool sqlstate_is(const core::Error& e, const char* code) {
    return e.sqlstate() != nullptr && std::strcmp(e.sqlstate(), code) == 0;
}

// Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF) and no NUL:
// what a PostgreSQL UTF8 database accepts in text.
inline bool storable_text(std::string_view s) {
    size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == 0) return false;
        if (c < 0x80) {
            ++i;
            continue;
        }
        int len;
        unsigned min;
        unsigned cp;
        if ((c & 0xE0) == 0xC0) {
            len = 2, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, min = 0x10000, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + size_t(len) > n) return false;
        for (int k = 1; k < len; ++k) {
            unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += size_t(len);
    }
    return true;
}

inline std::string printable(std::string_view s, size_t max = 120) {
    std::string out = "\"";
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += char(c);
        } else if (c < 0x20 || c >= 0x7F) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += char(c);
        }
    }
    if (s.size() > max) out += "...";
    return out + "\"";
}

}  // namespace attendance::fuzz
