#include "proxy/text.hpp"

#include "core/timefmt.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace attendance::proxy {

namespace {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 when the
// bytes there are not one (RFC 3629 table: no overlongs, no surrogates, <= U+10FFFF).
std::size_t sequence_length(std::string_view s, std::size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) return 1;
    std::size_t len = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c == 0xE0) {
        len = 3;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        len = 3;
    } else if (c == 0xED) {
        len = 3;
        hi = 0x9F;
    } else if (c == 0xF0) {
        len = 4;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        len = 4;
    } else if (c == 0xF4) {
        len = 4;
        hi = 0x8F;
    } else {
        return 0;
    }
    if (i + len > s.size()) return 0;
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if (c1 < lo || c1 > hi) return 0;
    for (std::size_t k = 2; k < len; ++k) {
        const auto ck = static_cast<unsigned char>(s[i + k]);
        if (ck < 0x80 || ck > 0xBF) return 0;
    }
    return len;
}

}  // namespace

std::optional<std::size_t> first_invalid_utf8(std::string_view s) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t len = sequence_length(s, i);
        if (len == 0) return i;
        i += len;
    }
    return std::nullopt;
}

std::string json_escape(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x80) {
            const std::size_t len = sequence_length(s, i);
            if (len == 0) {
                out += "\\ufffd";
                ++i;
            } else {
                out.append(s.substr(i, len));
                i += len;
            }
            continue;
        }
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
        ++i;
    }
    return out;
}

std::string one_line(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    bool blank = false;
    for (char c : s) {
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            blank = !out.empty();
            continue;
        }
        if (blank) out.push_back(' ');
        blank = false;
        out.push_back(c);
    }
    return out;
}

namespace {

bool unreserved_or_sub_delim(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

bool hex_digit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool digits(std::string_view s, std::size_t max) {
    return s.size() <= max &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// RFC 3986 reg-name / IPv4address: unreserved, sub-delims and %XX only.
bool reg_name(std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%') {
            if (i + 2 >= s.size() || !hex_digit(s[i + 1]) || !hex_digit(s[i + 2])) return false;
            i += 2;
        } else if (!unreserved_or_sub_delim(s[i])) {
            return false;
        }
    }
    return true;
}

}  // namespace

bool valid_host(std::string_view v) {
    if (v.empty()) return true;  // RFC 9112 3.2: an empty Host for a target without authority
    std::string_view port;
    if (v.front() == '[') {  // IP-literal: IPv6 or IPvFuture
        const auto close = v.find(']');
        if (close == std::string_view::npos || close == 1) return false;
        const auto inside = v.substr(1, close - 1);
        if (!std::all_of(inside.begin(), inside.end(),
                         [](char c) { return c == ':' || unreserved_or_sub_delim(c); }))
            return false;
        const auto rest = v.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') return false;
        port = rest.empty() ? rest : rest.substr(1);
    } else {
        const auto colon = v.find(':');
        if (!reg_name(v.substr(0, colon))) return false;
        if (colon != std::string_view::npos) port = v.substr(colon + 1);
    }
    return digits(port, 5);
}

std::optional<std::string> request_path(std::string_view target) {
    if (!target.empty() && target.front() == '/')  // origin-form
        return std::string(target.substr(0, target.find('?')));
    if (target == "*") return std::string(target);  // asterisk-form (OPTIONS)
    // absolute-form (RFC 9112 3.2.2): http or https, an authority without userinfo
    const auto sep = target.find("://");
    if (sep == std::string_view::npos) return std::nullopt;
    std::string scheme(target.substr(0, sep));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (scheme != "http" && scheme != "https") return std::nullopt;
    const auto rest = target.substr(sep + 3);
    const auto end = rest.find_first_of("/?");
    const auto authority = rest.substr(0, end);
    if (authority.empty() || authority.find('@') != std::string_view::npos ||
        !valid_host(authority))
        return std::nullopt;
    if (end == std::string_view::npos || rest[end] == '?') return std::string("/");
    const auto path = rest.substr(end);
    return std::string(path.substr(0, path.find('?')));
}

std::string iso8601_utc(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    return core::format_timestamp_ms(floor<milliseconds>(t.time_since_epoch()).count());
}

}  // namespace attendance::proxy
