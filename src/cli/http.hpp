// A minimal HTTP/1.1 client for replaying webhooks: http:// only, IPv4 (or a name that
// resolves to IPv4, such as localhost), POST with Content-Length, keep-alive, and a
// response read by Content-Length, chunked encoding or connection close.
#pragma once

#include <string>
#include <utility>
#include <vector>

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

    // POSTs body to the URL's path. Throws InputError when the server cannot be reached
    // or answers something that is not HTTP.
    HttpResponse post(const std::string& body,
                      const std::vector<std::pair<std::string, std::string>>& headers);

  private:
    void connect_socket();
    void close_socket();
    void send_all(const std::string& data);
    // Reads one response; `fresh`: false when a reused connection may have been closed.
    HttpResponse read_response();

    Url url_;
    int timeout_;
    int fd_ = -1;
    std::string buffer_;  // bytes read past the previous response
};

}  // namespace attendancectl
