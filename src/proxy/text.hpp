// Small text helpers of the proxy. The proxy never parses a webhook's JSON (the
// extension does; the fields the access log needs come back as typed columns). Pure:
// testable without a server.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace attendance::proxy {

// Offset of the first byte that makes `s` invalid UTF-8 (overlong forms, surrogates
// and code points above U+10FFFF are invalid), or nullopt when `s` is valid.
std::optional<std::size_t> first_invalid_utf8(std::string_view s);

// `s` as the inside of a JSON string literal (no quotes added). Invalid UTF-8 bytes
// become U+FFFD, so the output is always valid JSON.
std::string json_escape(std::string_view s);

// libpq messages span lines ("...\n\tHINT"): every run of blanks becomes one space,
// and the ends are trimmed, so a message fits one log line.
std::string one_line(std::string_view s);

// A Host field value as RFC 9112 3.2 and RFC 3986 allow it: uri-host [":" port], where
// uri-host is an IP-literal in brackets, an IPv4 address or a reg-name; empty is valid.
bool valid_host(std::string_view value);

// The path of a request target without its query: origin-form ("/p?q" -> "/p"),
// absolute-form ("http://host:8080/p?q" -> "/p", "http://host" -> "/"), or "*".
// nullopt when the target is none of these (authority-form, another scheme, userinfo,
// an invalid authority): a malformed request.
std::optional<std::string> request_path(std::string_view target);

// 2025-11-14T14:30:00.123Z: core::format_timestamp_ms of the time rounded down to the ms.
std::string iso8601_utc(std::chrono::system_clock::time_point t);

}  // namespace attendance::proxy
