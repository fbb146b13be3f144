// What the proxy knows of the extension's verification, to reject before any database
// call what it can judge without a secret (docs/proxy.md, "Rejected before the
// database"): the active API key names (attendance_webhook_key_names(), never the
// secrets) and the settings that change what verification accepts, as they are in the
// proxy's own database sessions (attendance.development_mode, attendance.replay_mode,
// attendance.token_leeway). Read every few seconds, and again when a token names a key
// the proxy does not know (so a key added is accepted by its first webhook). Until a first
// reading, nothing is judged here.
#pragma once

#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"
#include "proxy/sources.hpp"

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
    std::chrono::steady_clock::time_point read_at;  // when the reading began
};

class KeyWatch {
  public:
    using Clock = std::chrono::steady_clock;

    // How often the names and settings are read again.
    static constexpr std::chrono::seconds kInterval{5};
    // Readings for tokens naming an unknown key: up to kDemandBurst at once, then
    // kDemandRate a second. While unknown names come faster (a flood of made-up keys),
    // they are judged with a list at most 1 / kDemandRate s old.
    static constexpr double kDemandRate = 10;
    static constexpr double kDemandBurst = 5;

    KeyWatch(Pool& pool, Metrics& metrics, Log& log)
        : pool_(pool), metrics_(metrics), log_(log), demand_(kDemandRate, kDemandBurst) {}

    // The latest reading; nullptr before the first one.
    std::shared_ptr<const Verification> current() const;
    // Whether a request that arrived at `arrived` and names an unknown key must wait for
    // a new reading (refresh_for) before it is refused: the latest reading began before
    // it arrived, and readings on demand are not spent.
    bool must_recheck(Clock::time_point arrived);
    // The periodic reading (every kInterval). Blocks on the database: database threads.
    void refresh();
    // A reading that began at `arrived` or later, unless readings on demand are spent;
    // one reading at a time (the others wait for it, and need none of their own if it
    // began after they arrived). Database threads only.
    void refresh_for(Clock::time_point arrived);

  private:
    void read();  // under refresh_mu_

    Pool& pool_;
    Metrics& metrics_;
    Log& log_;
    mutable std::mutex mu_;  // current_
    std::shared_ptr<const Verification> current_;
    std::mutex refresh_mu_;  // one reading at a time; the fields below
    RejectBudget demand_;    // readings on demand, as a bucket (key "")
    bool failing_ = false;
    std::string said_;  // the last state logged, so that each change is logged once
};

}  // namespace attendance::proxy
