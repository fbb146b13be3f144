#include "proxy/log.hpp"

#include "proxy/text.hpp"

#include <cstdio>

namespace attendance::proxy {

namespace {

// A text-format value: bare when it is a plain word, else a quoted JSON-style string.
std::string text_value(std::string_view v) {
    if (v.empty()) return "-";
    for (char c : v) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7f || c == '"' || c == '\\' || c == '=')
            return "\"" + json_escape(v) + "\"";
    }
    return std::string(v);
}

std::string json_string_or_null(std::string_view v) {
    return v.empty() ? std::string("null") : "\"" + json_escape(v) + "\"";
}

std::string fixed3(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return buf;
}

}  // namespace

std::string format_access(const AccessRecord& r, LogFormat format) {
    std::string out;
    if (format == LogFormat::Json) {
        out = "{\"time\":\"" + iso8601_utc(r.time) +
              "\",\"remote\":" + json_string_or_null(r.remote) +
              ",\"method\":" + json_string_or_null(r.method) +
              ",\"path\":" + json_string_or_null(r.path) +
              ",\"status\":" + std::to_string(r.status) +
              ",\"result\":" + json_string_or_null(r.result) +
              ",\"event\":" + json_string_or_null(r.event) +
              ",\"event_id\":" + json_string_or_null(r.event_id) +
              ",\"sqlstate\":" + json_string_or_null(r.sqlstate) +
              ",\"error\":" + json_string_or_null(r.error) +
              ",\"duration_ms\":" + fixed3(r.duration_ms) + "}";
    } else {
        out = iso8601_utc(r.time) + " " + text_value(r.remote) + " " + text_value(r.method) + " " +
              text_value(r.path) + " status=" + std::to_string(r.status) +
              " result=" + text_value(r.result) + " event=" + text_value(r.event) +
              " event_id=" + text_value(r.event_id) + " sqlstate=" + text_value(r.sqlstate) +
              " duration_ms=" + fixed3(r.duration_ms);
        if (!r.error.empty()) out += " error=" + text_value(r.error);
    }
    return out;
}

std::string format_message(std::chrono::system_clock::time_point time, std::string_view level,
                           std::string_view message, LogFormat format) {
    if (format == LogFormat::Json) {
        return "{\"time\":\"" + iso8601_utc(time) + "\",\"level\":\"" + json_escape(level) +
               "\",\"message\":\"" + json_escape(message) + "\"}";
    }
    std::string line = iso8601_utc(time) + " " + std::string(level) + ": ";
    for (char c : message)
        line.push_back(c == '\n' || c == '\r' ? ' ' : c);  // one line per message
    return line;
}

void Log::access(const AccessRecord& r) {
    std::string line = format_access(r, format_) + "\n";
    std::lock_guard lock(mu_);
    std::fwrite(line.data(), 1, line.size(), stdout);
    std::fflush(stdout);
}

void Log::message_line(std::string_view level, std::string_view message) {
    std::string line =
        format_message(std::chrono::system_clock::now(), level, message, format_) + "\n";
    std::lock_guard lock(mu_);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

}  // namespace attendance::proxy
