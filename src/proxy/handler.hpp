// What the proxy answers, independent of the HTTP library: routes, the webhook handler,
// /healthz, /metrics, error bodies, and the access log / request metrics written once
// per answered request. The server (server.hpp) reads requests and writes replies.
#pragma once

#include "proxy/config.hpp"
#include "proxy/keys.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"
#include "proxy/sources.hpp"

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace attendance::proxy {

using Clock = std::chrono::steady_clock;

// One request, read completely.
struct HttpRequest {
    std::string method;
    std::string path;  // the target without its query string
    std::optional<std::string> authorization;
    std::string body;
    std::string remote;
    std::string source;       // what the per-source limits count (sources.hpp)
    bool trusted = false;     // --trusted-sources: exempt from them
    Clock::time_point start;  // first byte of the request (or its accept)
    std::chrono::system_clock::time_point wall;
    // When the request was received completely (the webhook path's tests begin).
    Clock::time_point received;
    // The token names a key the proxy did not know, and its list was read before the
    // request came: the database thread reads the names again before judging (keys.hpp).
    bool recheck_key = false;
};

// One answer, and what the access log and the metrics say about it.
struct HttpReply {
    int status = 200;
    std::string content_type = "application/json";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers;
    bool close = false;  // close the connection after this answer
    // for the log and the metrics
    std::string result;
    std::string event;
    std::string event_id;
    std::string sqlstate;
    std::string error;
    std::string rejection;  // why the proxy rejected it itself (core::rejection_name)
    bool verified = false;  // a 4xx of the database about a webhook whose token it verified
};

class App {
  public:
    // Rejected requests logged one by one per interval of housekeeping(), at most.
    static constexpr std::uint64_t kRejectLines = 10;
    static constexpr std::chrono::seconds kRejectLogInterval{10};
    // How long a /healthz or /readyz answer is reused (single flight: one database call
    // answers every request that came meanwhile).
    static constexpr std::chrono::milliseconds kProbeReuse{1000};

    App(const Config& config, Pool& pool, Metrics& metrics, Log& log)
        : config_(config),
          pool_(pool),
          metrics_(metrics),
          log_(log),
          keys_(pool, metrics, log),
          budget_(config.reject_rate, config.reject_burst),
          rejections_(kRejectLines) {}

    // Answers what needs no database at once (404, 405, /metrics, 429, bodies and tokens
    // refused before the database); nullopt means the request needs the database: call
    // handle_db() on a database thread.
    std::optional<HttpReply> route(HttpRequest& req);
    // The webhook, /healthz or /readyz. Blocks on the database; `queued` is when the
    // request was handed over, so that the pool timeout counts the wait for a database
    // thread too.
    HttpReply handle_db(const HttpRequest& req, Clock::time_point queued);

    // An error answer of the server itself (framing, limits, timeouts).
    HttpReply error(int status, std::string_view message) const;
    // Once per answered request.
    void log_request(const HttpRequest& req, const HttpReply& reply);

    // Every second, on an I/O thread: the summary of the rejections not logged one by one
    // (each kRejectLogInterval), forgetting the sources whose budget is whole again. With
    // `final`, the summary now (at shutdown).
    void housekeeping(bool final = false);
    // Reads the key names and settings (keys.hpp); on a database thread.
    void refresh_keys() { keys_.refresh(); }

  private:
    struct ProbeCache {
        std::mutex mu;  // held while the database is asked: one call at a time
        std::optional<HttpReply> reply;
        Clock::time_point at;
        std::uint64_t webhook_failures = 0;   // when it was asked
        std::uint64_t webhook_successes = 0;  // when it was asked
    };

    HttpReply webhook(const HttpRequest& req, Clock::time_point queued);
    HttpReply probe(ProbeCache& cache, bool write, Clock::time_point queued);
    // The token tests the proxy can make without a secret (core::precheck_token); nullopt
    // when the request goes on to the database. `may_defer`: an unknown key name with a
    // list read before the request came sets req.recheck_key instead of refusing
    // (KeyWatch::must_recheck).
    std::optional<HttpReply> precheck(HttpRequest& req, bool may_defer);
    HttpReply fail(int status, std::string_view message, std::string_view sqlstate) const;
    HttpReply unavailable(std::string_view message = {}) const;

    const Config& config_;
    Pool& pool_;
    Metrics& metrics_;
    Log& log_;
    KeyWatch keys_;
    RejectBudget budget_;
    RejectLog rejections_;
    ProbeCache health_;
    ProbeCache ready_;
    // Webhooks whose database call failed (5xx) or succeeded: a cached probe answer that
    // they contradict is not reused.
    std::atomic<std::uint64_t> webhook_failures_{0};
    std::atomic<std::uint64_t> webhook_successes_{0};
    Clock::time_point last_reject_summary_ = Clock::now();
};

}  // namespace attendance::proxy
