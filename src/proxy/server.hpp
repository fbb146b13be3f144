// The HTTP/1.1 server of the proxy, on Boost.Beast and Asio (docs/proxy.md, "Hostile
// clients"). Event-driven: a few I/O threads move bytes for every connection, and a
// connection holds no thread while it is idle or sending slowly; only a request that
// was received completely is handed to one of the database threads.
//
// Limits, each closing the connection it applies to:
//   - one total deadline (--read-timeout) for a request's headers and body together;
//   - an idle keep-alive timeout (--keepalive-timeout) between requests;
//   - a cap on open connections (--max-connections): at the cap a new connection is
//     accepted and closed at once, so that the ones already open keep being served;
//   - strict RFC 9112 framing: a bad or conflicting Content-Length, Content-Length
//     with Transfer-Encoding, or any transfer coding but "chunked" answer 400.
// Pipelined requests are answered in order, one at a time.
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
