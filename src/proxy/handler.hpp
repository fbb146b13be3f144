// The HTTP side: routes, the webhook handler, /healthz, /metrics, error bodies, and
// the access log / request metrics written once per answered request.
#pragma once

#include "proxy/config.hpp"
#include "proxy/httplib.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/pool.hpp"

#include <string_view>

namespace attendance::proxy {

class App {
  public:
    App(const Config& config, Pool& pool, Metrics& metrics, Log& log)
        : config_(config), pool_(pool), metrics_(metrics), log_(log) {}

    // Registers every route and hook, and applies the HTTP settings of the config.
    void install(httplib::Server& server);

  private:
    void webhook(const httplib::Request& req, httplib::Response& res,
                 const httplib::ContentReader& reader);
    void healthz(httplib::Response& res);
    void metrics(httplib::Response& res);
    void fail(httplib::Response& res, int status, std::string_view message,
              std::string_view sqlstate);
    void log_request(const httplib::Request& req, const httplib::Response& res);

    const Config& config_;
    Pool& pool_;
    Metrics& metrics_;
    Log& log_;
};

}  // namespace attendance::proxy
