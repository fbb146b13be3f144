// Access log (one line per answered request, stdout) and server messages (stderr), as
// text (key=value) or JSON lines. The formatting functions are pure and unit-tested.
#pragma once

#include "proxy/config.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace attendance::proxy {

struct AccessRecord {
    std::chrono::system_clock::time_point time;
    std::string remote;
    std::string method;
    std::string path;
    int status = 0;
    std::string result;    // recorded | duplicate | ignored, or "" when none
    std::string event;     // LiveKit event name, from the function's answer
    std::string event_id;  // EV_..., the webhook id, from the function's answer
    std::string sqlstate;  // of a database error, or ""
    std::string error;     // error message sent to the client, or ""
    double duration_ms = 0;
};

std::string format_access(const AccessRecord& r, LogFormat format);
std::string format_message(std::chrono::system_clock::time_point time, std::string_view level,
                           std::string_view message, LogFormat format);

// Writes whole lines under a lock, flushed, so lines from many threads never mix.
class Log {
  public:
    explicit Log(LogFormat format) : format_(format) {}
    void access(const AccessRecord& r);
    void info(std::string_view message) { message_line("info", message); }
    void warn(std::string_view message) { message_line("warning", message); }
    void error(std::string_view message) { message_line("error", message); }

  private:
    void message_line(std::string_view level, std::string_view message);
    LogFormat format_;
    std::mutex mu_;
};

// Rejected requests (answers 400-499) are logged at a bounded rate: the first
// `lines` of each interval one by one, the rest only counted, and then summed up in one
// line when the interval ends (docs/proxy.md, "Logs"). Thread-safe.
class RejectLog {
  public:
    explicit RejectLog(std::uint64_t lines) : lines_(lines) {}
    // One rejection; true when it is to be logged one by one. `what` says why, e.g.
    // "401 missing_token", "401 28000", "429 over budget".
    bool note(const std::string& source, const std::string& what);
    // The summary of the interval ending now ("" when every rejection of it was logged
    // one by one), and a new interval begins.
    std::string flush(double interval_s);
    std::uint64_t suppressed_total() const;

    // The sources and reasons named in a summary at most (the most frequent ones).
    static constexpr std::size_t kTop = 5;
    // Distinct sources counted per interval at most; the others are summed as "others".
    static constexpr std::size_t kMaxSources = 10000;

  private:
    const std::uint64_t lines_;
    mutable std::mutex mu_;
    std::uint64_t total_ = 0;       // this interval
    std::uint64_t suppressed_ = 0;  // this interval
    std::uint64_t suppressed_total_ = 0;
    std::map<std::string, std::uint64_t> reasons_;
    std::unordered_map<std::string, std::uint64_t> sources_;
};

}  // namespace attendance::proxy
