// The HTTP/1.1 server of the proxy, on Boost.Beast and Asio (docs/proxy.md, "Hostile
// clients"). Event-driven: a few I/O threads move bytes for every connection, and a
// connection holds no thread while it is idle or sending slowly; only a request that
// was received completely is handed to one of the database threads.
//
// Limits, each closing the connection it applies to:
//   - one total deadline (--read-timeout) for a request's headers and body together;
//   - an idle keep-alive timeout (--keepalive-timeout) between requests;
//   - a cap on open connections (--max-connections) and one per source
//     (--max-connections-per-source; --trusted-sources are exempt): at a limit the
//     oldest idle connection (no request begun; at the per-source limit, the source's
//     own) is closed to admit the newcomer, and only when none is idle is the newcomer
//     closed at once; a request in progress is never cut off;
//   - strict RFC 9112 framing: a bad or conflicting Content-Length, Content-Length
//     with Transfer-Encoding, or any transfer coding but "chunked" answer 400; so do a
//     missing (HTTP/1.1), repeated or invalid Host and a malformed request target
//     (section 3.2; an absolute-form target is served like its path).
// Pipelined requests are answered in order, one at a time. Every second a housekeeping
// timer sums up the rejections (handler.hpp) and, every few seconds, has the key names
// read again (keys.hpp).
#pragma once

#include "proxy/config.hpp"
#include "proxy/handler.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"

#include <memory>
#include <string>

namespace attendance::proxy {

class Server {
  public:
    Server(const Config& config, App& app, Metrics& metrics, Log& log);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds and listens; false (and `error` set) when it cannot.
    bool listen(std::string& error);
    // Serves until SIGTERM or SIGINT, then stops accepting, closes idle connections,
    // lets the requests in flight finish, and returns.
    void run();

    struct Impl;  // the implementation's state (server.cpp)

  private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace attendance::proxy
