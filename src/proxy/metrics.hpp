// Prometheus metrics of the proxy, rendered in the text exposition format (0.0.4).
// Thread-safe; render() is pure with respect to its inputs, so it is unit-tested.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>

namespace attendance::proxy {

struct PoolStats {
    int size = 0;    // configured maximum
    int open = 0;    // connections currently open (idle + in use)
    int in_use = 0;  // connections lent to a request right now
};

class Metrics {
  public:
    // Upper bounds (seconds) of the webhook latency histogram buckets; +Inf is implied.
    static constexpr std::array<double, 13> kBuckets = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0};

    // One answered request. handler: webhook, healthz, metrics or other; result: the
    // ingest result (recorded, duplicate, ignored) or "" when there is none.
    void request_done(std::string_view handler, int status, std::string_view result,
                      double seconds);

    // One failed database call; sqlstate "" when libpq reported it (connection lost).
    void db_error(std::string_view sqlstate);
    void connect_failed() { connect_failures_.fetch_add(1, std::memory_order_relaxed); }
    void connection_opened() { connections_opened_.fetch_add(1, std::memory_order_relaxed); }
    void pool_timeout() { pool_timeouts_.fetch_add(1, std::memory_order_relaxed); }

    void in_flight_add(int delta) { in_flight_.fetch_add(delta, std::memory_order_relaxed); }

    // Client connections: open now, refused at --max-connections, and closed because a
    // request was not received within --read-timeout or was framed wrongly.
    void connection_add(int delta) {
        open_connections_.fetch_add(delta, std::memory_order_relaxed);
    }
    std::int64_t open_connections() const {
        return open_connections_.load(std::memory_order_relaxed);
    }
    void connection_refused() { connections_refused_.fetch_add(1, std::memory_order_relaxed); }
    void request_timed_out() { request_timeouts_.fetch_add(1, std::memory_order_relaxed); }
    void bad_framing() { bad_framing_.fetch_add(1, std::memory_order_relaxed); }
    // An idle connection closed to admit a newcomer (at --max-connections, or at its
    // source's --max-connections-per-source); a newcomer closed at once because its
    // source held --max-connections-per-source connections, none of them idle.
    void connection_evicted() { connections_evicted_.fetch_add(1, std::memory_order_relaxed); }
    void source_connection_refused() {
        source_connections_refused_.fetch_add(1, std::memory_order_relaxed);
    }

    // A webhook rejected by the proxy before any database call; `reason` is the label
    // (core::rejection_name).
    void rejected(std::string_view reason);
    // A webhook answered 429 because its source spent its budget of rejections.
    void rate_limited() { rate_limited_.fetch_add(1, std::memory_order_relaxed); }
    // Rejected requests not written to the access log one by one.
    void rejection_not_logged() { rejections_not_logged_.fetch_add(1, std::memory_order_relaxed); }
    // Active API key names the proxy knows; -1 while it knows none (docs/proxy.md).
    void set_key_names(std::int64_t n) { key_names_.store(n, std::memory_order_relaxed); }
    // Readings of the key names and settings that the database answered.
    void key_names_read() { key_name_reads_.fetch_add(1, std::memory_order_relaxed); }

    void set_start_time(double unix_seconds) { start_time_ = unix_seconds; }

    std::string render(const PoolStats& pool) const;

  private:
    mutable std::mutex mu_;
    std::map<std::tuple<std::string, int, std::string>, std::uint64_t> requests_;
    std::map<std::string, std::uint64_t> db_errors_;
    std::map<std::string, std::uint64_t> rejected_;
    std::array<std::uint64_t, kBuckets.size() + 1> buckets_{};  // last one: +Inf
    double latency_sum_ = 0;
    std::uint64_t latency_count_ = 0;

    std::atomic<std::uint64_t> connect_failures_{0};
    std::atomic<std::uint64_t> connections_opened_{0};
    std::atomic<std::uint64_t> pool_timeouts_{0};
    std::atomic<std::int64_t> in_flight_{0};
    std::atomic<std::int64_t> open_connections_{0};
    std::atomic<std::uint64_t> connections_refused_{0};
    std::atomic<std::uint64_t> request_timeouts_{0};
    std::atomic<std::uint64_t> bad_framing_{0};
    std::atomic<std::uint64_t> connections_evicted_{0};
    std::atomic<std::uint64_t> source_connections_refused_{0};
    std::atomic<std::uint64_t> rate_limited_{0};
    std::atomic<std::uint64_t> rejections_not_logged_{0};
    std::atomic<std::int64_t> key_names_{-1};
    std::atomic<std::uint64_t> key_name_reads_{0};
    double start_time_ = 0;
};

// RAII: counts a request as in flight for the lifetime of the guard.
class InFlight {
  public:
    explicit InFlight(Metrics& m) : m_(m) { m_.in_flight_add(1); }
    ~InFlight() { m_.in_flight_add(-1); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

  private:
    Metrics& m_;
};

}  // namespace attendance::proxy
