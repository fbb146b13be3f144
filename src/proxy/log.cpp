#include "proxy/log.hpp"

#include "proxy/text.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

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

bool RejectLog::note(const std::string& source, const std::string& what) {
    std::lock_guard lock(mu_);
    ++total_;
    ++reasons_[what];
    if (sources_.size() < kMaxSources || sources_.count(source) > 0) {
        ++sources_[source];
    } else {
        ++sources_["others"];
    }
    if (total_ <= lines_) return true;
    ++suppressed_;
    ++suppressed_total_;
    return false;
}

std::string RejectLog::flush(double interval_s) {
    std::lock_guard lock(mu_);
    std::string out;
    if (suppressed_ > 0) {
        // The most frequent first; ties in name order, so that the line is stable.
        auto top = [](auto begin, auto end) {
            std::vector<std::pair<std::string, std::uint64_t>> v(begin, end);
            std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
                return a.second != b.second ? a.second > b.second : a.first < b.first;
            });
            std::string s;
            for (std::size_t i = 0; i < v.size() && i < kTop; ++i)
                s += (i ? ", " : "") + v[i].first + " " + std::to_string(v[i].second);
            if (v.size() > kTop) s += ", ...";
            return s;
        };
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.0f", interval_s);
        out = "rejected " + std::to_string(total_) + " requests in the last " + secs + " s (" +
              std::to_string(suppressed_) +
              " not logged one by one): " + top(reasons_.begin(), reasons_.end()) + "; from " +
              top(sources_.begin(), sources_.end());
    }
    total_ = 0;
    suppressed_ = 0;
    reasons_.clear();
    sources_.clear();
    return out;
}

std::uint64_t RejectLog::suppressed_total() const {
    std::lock_guard lock(mu_);
    return suppressed_total_;
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
