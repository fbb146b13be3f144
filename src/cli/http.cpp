#include "cli/http.hpp"

#include "cli/cli.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>

namespace attendancectl {

namespace {

bool same_name(const std::string& a, const std::string& b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

}  // namespace

Url parse_url(const std::string& text) {
    const std::string scheme = "http://";
    if (text.compare(0, scheme.size(), scheme) != 0) {
        throw UsageError("--url must start with http:// (https is not supported), not \"" + text +
                         "\"");
    }
    std::string rest = text.substr(scheme.size());
    Url url;
    std::size_t slash = rest.find('/');
    std::string authority = slash == std::string::npos ? rest : rest.substr(0, slash);
    url.path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (authority.empty() || authority.find('@') != std::string::npos ||
        authority.find('[') != std::string::npos) {
        throw UsageError("--url needs a host name or IPv4 address: \"" + text + "\"");
    }
    std::size_t colon = authority.rfind(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) {
        url.port =
            static_cast<int>(parse_int(authority.substr(colon + 1), "the URL's port", 1, 65535));
    }
    if (url.host.empty()) throw UsageError("--url has no host: \"" + text + "\"");
    for (char c : url.path) {
        if (c == ' ' || c == '\r' || c == '\n') throw UsageError("--url has a space or line break");
    }
    return url;
}

HttpClient::HttpClient(Url url, int timeout_seconds)
    : url_(std::move(url)),
      timeout_(timeout_seconds),
      client_(std::make_unique<httplib::Client>(url_.host, url_.port)) {
    client_->set_keep_alive(true);
    client_->set_tcp_nodelay(true);
    client_->set_connection_timeout(timeout_, 0);
    client_->set_read_timeout(timeout_, 0);
    client_->set_write_timeout(timeout_, 0);
    client_->set_address_family(AF_INET);
}

HttpClient::~HttpClient() = default;

HttpResponse HttpClient::post(const std::string& body,
                              const std::vector<std::pair<std::string, std::string>>& headers) {
    httplib::Headers sent = {{"User-Agent", "attendancectl"}};
    std::string content_type = "application/octet-stream";
    for (const auto& [name, value] : headers) {
        if (same_name(name, "Content-Type"))
            content_type = value;
        else
            sent.emplace(name, value);
    }
    httplib::Result res = client_->Post(url_.path, sent, body, content_type);
    if (!res) {
        const std::string where = "http://" + url_.host + ":" + std::to_string(url_.port);
        switch (res.error()) {
            case httplib::Error::Connection:
                throw InputError("cannot connect to " + where +
                                 ": connection refused or unreachable");
            case httplib::Error::ConnectionTimeout:
                throw InputError("cannot connect to " + where + ": no connection within " +
                                 std::to_string(timeout_) + " s");
            case httplib::Error::Read:
                throw InputError(where + " did not answer within " + std::to_string(timeout_) +
                                 " s, or closed the connection without answering");
            default:
                throw InputError("HTTP request to " + where +
                                 " failed: " + httplib::to_string(res.error()));
        }
    }
    return {res->status, res->reason, res->body};
}

}  // namespace attendancectl
