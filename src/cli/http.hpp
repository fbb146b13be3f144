// The HTTP side of `attendancectl replay --url`: the URL's checks and a keep-alive
// client, which is cpp-httplib's (libcpp-httplib; attendance-proxy serves with Boost.Beast,
// docs/proxy.md). http:// only: the proxy speaks plain HTTP (put TLS in front of it).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace httplib {
class Client;
}

namespace attendancectl {

struct Url {
    std::string host;
    int port = 80;
    std::string path;  // with the query, if any
};

// Throws UsageError for anything but http://HOST[:PORT][/PATH].
Url parse_url(const std::string& text);

struct HttpResponse {
    int status = 0;
    std::string reason;
    std::string body;
};

class HttpClient {
  public:
    HttpClient(Url url, int timeout_seconds);
    ~HttpClient();
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    // POSTs body to the URL's path on a kept-alive connection (a new one when the
    // server closed it). Throws InputError when the server cannot be reached or does
    // not answer in time.
    HttpResponse post(const std::string& body,
                      const std::vector<std::pair<std::string, std::string>>& headers);

  private:
    Url url_;
    int timeout_;
    std::unique_ptr<httplib::Client> client_;
};

}  // namespace attendancectl
