#include "proxy/pool.hpp"

#include "proxy/text.hpp"

#include <algorithm>

namespace attendance::proxy {

namespace {

std::string trimmed(const char* s) {
    std::string out = one_line(s != nullptr ? s : "");
    return out.empty() ? std::string("unknown libpq error") : out;
}

// Server messages outside a query: NOTICEs, and the FATAL a backend sends before it
// closes an idle connection (server shutdown, pg_terminate_backend). libpq's default
// would print them raw on stderr; here they go to the log, and a FATAL dooms the
// connection so that no request is sent on it.
void on_notice(void* arg, const PGresult* res) {
    auto* conn = static_cast<Connection*>(arg);
    const char* severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const std::string sev = severity != nullptr ? severity : "NOTICE";
    if (sev == "FATAL" || sev == "PANIC") conn->doomed = true;
    if (conn->log == nullptr) return;
    const std::string text =
        "PostgreSQL " + sev + ": " + trimmed(PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    if (sev == "NOTICE" || sev == "INFO" || sev == "LOG" || sev == "DEBUG") {
        conn->log->info(text);
    } else {
        conn->log->warn(text);
    }
}

// Usable: connected, idle, and the server has not closed it meanwhile. PQconsumeInput
// does not block (libpq's socket is non-blocking); it reads what the server sent
// (EOF turns the status to CONNECTION_BAD), and PQisBusy parses it.
bool healthy(Connection& c) {
    if (c.pg == nullptr || c.doomed || PQstatus(c.pg) != CONNECTION_OK) return false;
    if (PQconsumeInput(c.pg) == 0) return false;
    (void)PQisBusy(c.pg);  // parses what was read: a FATAL reaches on_notice and dooms it
    return !c.doomed && PQstatus(c.pg) == CONNECTION_OK &&
           PQtransactionStatus(c.pg) == PQTRANS_IDLE;
}

}  // namespace

Pool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), conn_(std::move(other.conn_)), discard_(other.discard_) {
    other.pool_ = nullptr;
}

Pool::Lease::~Lease() {
    if (pool_ != nullptr && conn_) pool_->release(std::move(conn_), discard_);
}

Pool::Pool(PoolOptions options, Metrics& metrics, Log& log)
    : options_(std::move(options)), metrics_(metrics), log_(log) {}

Pool::~Pool() { close_idle(); }

std::variant<Pool::Lease, Pool::Failure> Pool::acquire(std::chrono::milliseconds wait, bool quiet) {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    std::unique_ptr<Connection> conn;
    {
        std::unique_lock lock(mu_);
        for (;;) {
            if (!idle_.empty()) {
                conn = std::move(idle_.back());
                idle_.pop_back();
                break;
            }
            if (open_ < options_.size) {
                ++open_;  // a free slot: the connection is opened below, outside the lock
                break;
            }
            if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
                open_ >= options_.size) {
                if (!quiet) metrics_.pool_timeout();
                return Failure{true, "no database connection became free within " +
                                         std::to_string(wait.count()) + " ms (pool size " +
                                         std::to_string(options_.size) + ")"};
            }
        }
        ++in_use_;
    }

    if (conn && !healthy(*conn)) conn.reset();  // the server closed it: open a new one
    if (!conn) {
        std::string error;
        conn = open(error);
        if (!conn) {
            {
                std::lock_guard lock(mu_);
                --open_;
                --in_use_;
            }
            cv_.notify_one();
            return Failure{false, error};
        }
    }
    return Lease(this, std::move(conn));
}

void Pool::release(std::unique_ptr<Connection> conn, bool discard) {
    if (discard) conn.reset();  // PQfinish outside the lock
    {
        std::lock_guard lock(mu_);
        --in_use_;
        if (discard) {
            --open_;
        } else {
            idle_.push_back(std::move(conn));
        }
    }
    cv_.notify_one();
}

std::unique_ptr<Connection> Pool::open(std::string& error) {
    {
        std::lock_guard lock(mu_);
        const auto now = std::chrono::steady_clock::now();
        if (now < next_attempt_) {
            const auto ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(next_attempt_ - now).count();
            error = "database unavailable (next connection attempt in " + std::to_string(ms) +
                    " ms): " + last_error_;
            return nullptr;
        }
    }

    // Keywords before "dbname" are defaults the connection string may override;
    // client_encoding comes after it because the body is passed as UTF-8.
    const std::string timeout = std::to_string(options_.connect_timeout_s);
    std::vector<const char*> keys = {"connect_timeout", "fallback_application_name"};
    std::vector<const char*> values = {timeout.c_str(), "attendance-proxy"};
    if (!options_.conninfo.empty()) {
        keys.push_back("dbname");
        values.push_back(options_.conninfo.c_str());
    }
    keys.push_back("client_encoding");
    values.push_back("UTF8");
    keys.push_back(nullptr);
    values.push_back(nullptr);

    auto conn = std::make_unique<Connection>();
    conn->log = &log_;
    conn->pg = PQconnectdbParams(keys.data(), values.data(), 1);
    if (conn->pg != nullptr) PQsetNoticeReceiver(conn->pg, on_notice, conn.get());
    if (conn->pg == nullptr || PQstatus(conn->pg) != CONNECTION_OK) {
        error = "could not connect to PostgreSQL: " +
                trimmed(conn->pg ? PQerrorMessage(conn->pg) : nullptr);
        metrics_.connect_failed();
        note_failure(error);
        return nullptr;
    }
    if (options_.statement_timeout_ms > 0) {
        const std::string sql =
            "SET statement_timeout = " + std::to_string(options_.statement_timeout_ms);
        PGresult* res = PQexec(conn->pg, sql.c_str());
        const bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok) error = "could not set statement_timeout: " + trimmed(PQerrorMessage(conn->pg));
        PQclear(res);
        if (!ok) {
            metrics_.connect_failed();
            note_failure(error);
            return nullptr;
        }
    }
    metrics_.connection_opened();
    note_success();
    return conn;
}

void Pool::note_failure(const std::string& error) {
    bool first = false;
    {
        std::lock_guard lock(mu_);
        backoff_ = backoff_.count() == 0 ? kBackoffInitial : std::min(backoff_ * 2, kBackoffMax);
        next_attempt_ = std::chrono::steady_clock::now() + backoff_;
        last_error_ = error;
        first = !failing_;
        failing_ = true;
    }
    if (first) {
        log_.warn(error + " (retrying with backoff up to " + std::to_string(kBackoffMax.count()) +
                  " ms)");
    }
}

void Pool::note_success() {
    bool recovered = false;
    {
        std::lock_guard lock(mu_);
        recovered = failing_;
        failing_ = false;
        backoff_ = std::chrono::milliseconds(0);
        next_attempt_ = {};
    }
    if (recovered) log_.info("connected to PostgreSQL again");
}

PoolStats Pool::stats() const {
    std::lock_guard lock(mu_);
    return PoolStats{options_.size, open_, in_use_};
}

void Pool::close_idle() {
    std::vector<std::unique_ptr<Connection>> closing;
    {
        std::lock_guard lock(mu_);
        closing.swap(idle_);
        open_ -= static_cast<int>(closing.size());
    }
    closing.clear();
}

}  // namespace attendance::proxy
