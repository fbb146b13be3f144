// A fixed-size pool of libpq connections. Connections are opened lazily, checked
// before each use (a connection the server closed, e.g. by a restart, is replaced),
// and reopened with exponential backoff while the server is unreachable, so the proxy
// recovers from a PostgreSQL restart without being restarted itself.
#pragma once

#include "proxy/log.hpp"
#include "proxy/metrics.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

namespace attendance::proxy {

struct PoolOptions {
    std::string conninfo;  // empty: PG* environment variables
    int size = 8;
    int connect_timeout_s = 5;
    int statement_timeout_ms = 0;  // 0: leave the server's setting
};

// One server connection and what was set up on it.
struct Connection {
    PGconn* pg = nullptr;
    bool prepared = false;  // the ingest statement is prepared on this connection
    bool doomed = false;    // the server announced it is closing it (FATAL while idle)
    Log* log = nullptr;     // where server notices go
    Connection() = default;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection() {
        if (pg != nullptr) PQfinish(pg);
    }
};

class Pool {
  public:
    // A connection lent to one request; returned to the pool when destroyed.
    class Lease {
      public:
        Lease(Lease&& other) noexcept;
        Lease& operator=(Lease&&) = delete;
        ~Lease();
        Connection& conn() { return *conn_; }
        // The connection is broken (or in an unknown state): close it, don't reuse it.
        void discard() { discard_ = true; }

      private:
        friend class Pool;
        Lease(Pool* pool, std::unique_ptr<Connection> conn) : pool_(pool), conn_(std::move(conn)) {}
        Pool* pool_;
        std::unique_ptr<Connection> conn_;
        bool discard_ = false;
    };

    struct Failure {
        bool timed_out = false;  // every connection was busy for the whole wait
        std::string message;
    };

    Pool(PoolOptions options, Metrics& metrics, Log& log);
    ~Pool();
    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    // Waits up to `wait` for a connection; opens one when a slot is free. A `quiet` wait
    // (the proxy's own housekeeping) is not counted as a pool timeout when it ends.
    std::variant<Lease, Failure> acquire(std::chrono::milliseconds wait, bool quiet = false);
    PoolStats stats() const;
    // Closes the idle connections (at shutdown, after the last request).
    void close_idle();

  private:
    void release(std::unique_ptr<Connection> conn, bool discard);
    std::unique_ptr<Connection> open(std::string& error);
    void note_failure(const std::string& error);
    void note_success();

    const PoolOptions options_;
    Metrics& metrics_;
    Log& log_;

    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::vector<std::unique_ptr<Connection>> idle_;
    int open_ = 0;    // idle + lent + being opened
    int in_use_ = 0;  // lent + being opened

    // Reconnect backoff: no new connection is attempted before next_attempt_.
    std::chrono::steady_clock::time_point next_attempt_{};
    std::chrono::milliseconds backoff_{0};
    std::string last_error_;
    bool failing_ = false;
};

// First backoff step and its cap. LiveKit retries 1, 2, 4 and 8 s after a failure, so
// the cap stays well below its retry interval.
inline constexpr std::chrono::milliseconds kBackoffInitial{100};
inline constexpr std::chrono::milliseconds kBackoffMax{2000};

}  // namespace attendance::proxy
