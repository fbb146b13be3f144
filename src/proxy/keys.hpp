// What the proxy knows of the extension's verification, to reject before any database
// call what it can judge without a secret (docs/proxy.md, "Rejected before the
// database"): the active API key names (attendance_webhook_key_names(), never the
// secrets) and the settings that change what verification accepts, as they are in the
// proxy's own database sessions (attendance.development_mode, attendance.replay_mode,
// attendance.token_leeway). Read every few seconds, and again when a token names a key
// the proxy does not know. Until a first reading, nothing is judged here.
#pragma once

#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>

namespace attendance::proxy {

struct Verification {
    bool development_mode = false;
    bool replay_mode = false;
    std::int64_t leeway_s = 0;
    // nullopt: the names cannot be read (an extension older than 0.4.1, or no EXECUTE
    // privilege), and a token's key is left to the extension.
    std::optional<std::unordered_set<std::string>> key_names;
    std::chrono::steady_clock::time_point read_at;
};

class KeyWatch {
  public:
    // How often the names and settings are read again.
    static constexpr std::chrono::seconds kInterval{5};
    // An unknown key name is looked up again when the names are older than this; so a
    // token naming a key added this long ago is never refused for the proxy's old list.
    static constexpr std::chrono::milliseconds kUnknownRecheck{1000};

    KeyWatch(Pool& pool, Metrics& metrics, Log& log) : pool_(pool), metrics_(metrics), log_(log) {}

    // The latest reading; nullptr before the first one.
    std::shared_ptr<const Verification> current() const;
    // Reads again, unless a reading began less than `min_age` ago; one reading at a
    // time (a second caller waits for it). Blocks on the database: database threads only.
    void refresh(std::chrono::milliseconds min_age);

  private:
    Pool& pool_;
    Metrics& metrics_;
    Log& log_;
    mutable std::mutex mu_;  // current_
    std::shared_ptr<const Verification> current_;
    std::mutex refresh_mu_;  // one reading at a time; the fields below
    std::chrono::steady_clock::time_point last_attempt_{};
    bool failing_ = false;
    std::string said_;  // the last state logged, so that each change is logged once
};

}  // namespace attendance::proxy
