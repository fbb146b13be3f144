// Access log (one line per answered request, stdout) and server messages (stderr), as
// text (key=value) or JSON lines. The formatting functions are pure and unit-tested.
#pragma once

#include "proxy/config.hpp"

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

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

}  // namespace attendance::proxy
