// attendance-proxy: LiveKit webhooks over HTTP into attendance_ingest_webhook().
// It parses HTTP: the body and the Authorization header go to PostgreSQL as received,
// and the extension verifies, parses and records them (docs/proxy.md). Before that the
// proxy refuses what needs no secret to be judged (a missing, malformed or expired token,
// an unknown key name, a body hash mismatch) with the core's own rules.
#include "proxy/config.hpp"
#include "proxy/handler.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"
#include "proxy/server.hpp"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using namespace attendance::proxy;

int run(const Config& config) {
    signal(SIGPIPE, SIG_IGN);

    Log log(config.log_format);
    Metrics metrics;
    metrics.set_start_time(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    Pool pool(PoolOptions{config.conninfo, config.pool_size, config.connect_timeout_s,
                          config.statement_timeout_ms},
              metrics, log);
    App app(config, pool, metrics, log);
    Server server(config, app, metrics, log);
    std::string error;
    if (!server.listen(error)) {
        log.error(error);
        return 1;
    }
    log.info("attendance-proxy " + std::string(kProxyVersion) + " listening on " + config.listen +
             ":" + std::to_string(config.port) + ", webhook path " + config.path + ", " +
             std::to_string(config.threads) + " I/O threads, pool of " +
             std::to_string(config.pool_size) + ", at most " +
             std::to_string(config.max_connections) + " connections, max body " +
             std::to_string(config.max_body_bytes) + " bytes");
    // Returns after SIGTERM or SIGINT, once every request in flight was answered.
    server.run();
    // The server's signal handler goes with it: a second SIGTERM (a supervisor
    // repeating itself) must not kill the process while it closes the pool.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    pool.close_idle();
    log.info("stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    ParseResult parsed = parse_config(args);
    if (parsed.help) {
        std::fputs(usage().c_str(), stdout);
        return 0;
    }
    if (parsed.version) {
        std::printf("attendance-proxy %s\n", kProxyVersion);
        return 0;
    }
    if (!parsed.config) {
        std::fprintf(stderr, "attendance-proxy: %s\nTry 'attendance-proxy --help'.\n",
                     parsed.error.c_str());
        return 2;
    }
    return run(*parsed.config);
}
