// attendance-proxy: LiveKit webhooks over HTTP into attendance_ingest_webhook().
// It parses HTTP only: the body and the Authorization header go to PostgreSQL as
// received, and the extension verifies, parses and records them (docs/proxy.md).
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "proxy/config.hpp"
#include "proxy/handler.hpp"
#include "proxy/httplib.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

// Debian's compiled cpp-httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG is
// fixed when the library is built): a burst of new connections from LiveKit would overflow
// it and wait a second for SYN retries. Linux accepts a second listen() on the listening
// socket and takes the new backlog, so find that socket by its port and widen it.
static bool widen_listen_backlog(int port) {
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return false;
    bool done = false;
    while (dirent* entry = readdir(dir)) {
        int fd = std::atoi(entry->d_name);
        if (fd <= 2) continue;
        int accepting = 0;
        socklen_t len = sizeof accepting;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) != 0 || !accepting)
            continue;
        sockaddr_storage addr{};
        socklen_t alen = sizeof addr;
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
        int bound =
            addr.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port)
            : addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                         : -1;
        if (bound == port && ::listen(fd, SOMAXCONN) == 0) done = true;
    }
    closedir(dir);
    return done;
}

namespace {

constexpr const char* kVersion = "0.2.0";

using namespace attendance::proxy;

int run(const Config& config) {
    // Signals are taken by one thread with sigwait; every other thread (httplib's
    // workers included, created later) inherits this mask and never sees them.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    Log log(config.log_format);
    Metrics metrics;
    metrics.set_start_time(
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
    Pool pool(PoolOptions{config.conninfo, config.pool_size, config.connect_timeout_s,
                          config.statement_timeout_ms},
              metrics, log);
    App app(config, pool, metrics, log);

    httplib::Server server;
    app.install(server);
    if (!server.bind_to_port(config.listen, config.port)) {
        log.error("cannot listen on " + config.listen + ":" + std::to_string(config.port));
        return 1;
    }
    if (!widen_listen_backlog(config.port))
        log.info("could not widen the listen backlog; bursts of new connections may be retried");

    std::atomic<bool> listening_done{false};
    std::atomic<bool> stop_requested{false};
    std::thread signal_thread([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        if (listening_done.load()) return;  // woken by main after listen() failed
        stop_requested.store(true);
        log.info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                 ": no new connections, finishing in-flight requests");
        // stop() only acts once listen_after_bind() has started running.
        while (!listening_done.load()) {
            server.stop();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });

    log.info("attendance-proxy " + std::string(kVersion) + " listening on " + config.listen + ":" +
             std::to_string(config.port) + ", webhook path " + config.path + ", " +
             std::to_string(config.threads) + " threads, pool of " +
             std::to_string(config.pool_size) + ", max body " +
             std::to_string(config.max_body_bytes) + " bytes");
    // Returns once stopped and every worker thread finished its connection.
    server.listen_after_bind();
    listening_done.store(true);
    if (!stop_requested.load()) {
        pthread_kill(signal_thread.native_handle(), SIGTERM);  // wake the waiting thread
    }
    signal_thread.join();
    pool.close_idle();
    if (!stop_requested.load()) {
        log.error("the HTTP server stopped unexpectedly");
        return 1;
    }
    log.info("stopped");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    ParseResult parsed = parse_config(args, [](const char* name) { return std::getenv(name); });
    if (parsed.help) {
        std::fputs(usage().c_str(), stdout);
        return 0;
    }
    if (parsed.version) {
        std::printf("attendance-proxy %s\n", kVersion);
        return 0;
    }
    if (!parsed.config) {
        std::fprintf(stderr, "attendance-proxy: %s\nTry 'attendance-proxy --help'.\n",
                     parsed.error.c_str());
        return 2;
    }
    return run(*parsed.config);
}
