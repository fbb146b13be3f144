#include "cli/http.hpp"

#include "cli/cli.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace attendancectl {

namespace {

// A connection that the server closed between two requests (keep-alive timeout).
struct StaleConnection : std::runtime_error {
    using std::runtime_error::runtime_error;
};

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

std::string trim(const std::string& s) {
    std::size_t a = s.find_first_not_of(" \t");
    std::size_t b = s.find_last_not_of(" \t\r");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
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
    : url_(std::move(url)), timeout_(timeout_seconds) {}

HttpClient::~HttpClient() { close_socket(); }

void HttpClient::close_socket() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buffer_.clear();
}

void HttpClient::connect_socket() {
    const std::string where = "http://" + url_.host + ":" + std::to_string(url_.port);
    addrinfo hints;
    std::memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    int rc = getaddrinfo(url_.host.c_str(), std::to_string(url_.port).c_str(), &hints, &found);
    if (rc != 0) throw InputError("cannot resolve " + url_.host + ": " + gai_strerror(rc));
    std::string error = "no address";
    for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            error = std::strerror(errno);
            continue;
        }
        timeval tv{};
        tv.tv_sec = timeout_;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            fd_ = fd;
            break;
        }
        error = std::strerror(errno);
        ::close(fd);
    }
    freeaddrinfo(found);
    if (fd_ < 0) throw InputError("cannot connect to " + where + ": " + error);
}

void HttpClient::send_all(const std::string& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (sent == 0 && (errno == EPIPE || errno == ECONNRESET)) {
                throw StaleConnection("connection closed");
            }
            throw InputError(std::string("cannot send the request: ") + std::strerror(errno));
        }
        sent += static_cast<std::size_t>(n);
    }
}

HttpResponse HttpClient::read_response() {
    bool got_any = !buffer_.empty();
    // Reads more bytes into buffer_; false at end of stream.
    auto fill = [&]() {
        char chunk[16384];
        for (;;) {
            ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                if (errno == ECONNRESET && !got_any) throw StaleConnection("connection reset");
                throw InputError(errno == EAGAIN || errno == EWOULDBLOCK
                                     ? "no answer within " + std::to_string(timeout_) + " s"
                                     : std::string("cannot read the answer: ") +
                                           std::strerror(errno));
            }
            if (n > 0) got_any = true;
            buffer_.append(chunk, static_cast<std::size_t>(n));
            return n > 0;
        }
    };

    std::size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
        if (buffer_.size() > 65536) throw InputError("the answer's headers are too large");
        if (!fill()) {
            if (!got_any) throw StaleConnection("connection closed");
            throw InputError("the connection closed in the middle of the answer");
        }
    }
    const std::string head = buffer_.substr(0, end);
    buffer_.erase(0, end + 4);

    HttpResponse res;
    std::size_t line_end = head.find("\r\n");
    const std::string status_line = head.substr(0, line_end);
    if (status_line.compare(0, 5, "HTTP/") != 0 || status_line.size() < 12) {
        throw InputError("not an HTTP answer: \"" + status_line.substr(0, 80) + "\"");
    }
    std::size_t sp = status_line.find(' ');
    const std::string code = status_line.substr(sp + 1, 3);
    auto [ptr, ec] = std::from_chars(code.data(), code.data() + code.size(), res.status);
    if (ec != std::errc() || ptr != code.data() + code.size()) {
        throw InputError("not an HTTP status line: \"" + status_line.substr(0, 80) + "\"");
    }
    res.reason = status_line.size() > sp + 5 ? status_line.substr(sp + 5) : "";

    long long length = -1;
    bool chunked = false;
    bool close_after = status_line.compare(0, 8, "HTTP/1.0") == 0;
    std::size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
        std::size_t next = head.find("\r\n", pos);
        if (next == std::string::npos) next = head.size();
        const std::string line = head.substr(pos, next - pos);
        pos = next + 2;
        std::size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        const std::string name = lower(trim(line.substr(0, colon)));
        const std::string value = trim(line.substr(colon + 1));
        if (name == "content-length") {
            length = std::atoll(value.c_str());
        } else if (name == "transfer-encoding") {
            chunked = lower(value).find("chunked") != std::string::npos;
        } else if (name == "connection") {
            const std::string v = lower(value);
            if (v.find("close") != std::string::npos) close_after = true;
            if (v.find("keep-alive") != std::string::npos) close_after = false;
        }
    }

    if (chunked) {
        for (;;) {
            std::size_t eol;
            while ((eol = buffer_.find("\r\n")) == std::string::npos) {
                if (!fill()) throw InputError("the connection closed in a chunked answer");
            }
            const std::size_t size = std::strtoul(buffer_.substr(0, eol).c_str(), nullptr, 16);
            buffer_.erase(0, eol + 2);
            while (buffer_.size() < size + 2) {
                if (!fill()) throw InputError("the connection closed in a chunked answer");
            }
            res.body.append(buffer_, 0, size);
            buffer_.erase(0, size + 2);
            if (size == 0) break;  // (trailers are not used by the proxy)
        }
    } else if (length >= 0) {
        while (buffer_.size() < static_cast<std::size_t>(length)) {
            if (!fill()) throw InputError("the connection closed before the whole answer came");
        }
        res.body = buffer_.substr(0, static_cast<std::size_t>(length));
        buffer_.erase(0, static_cast<std::size_t>(length));
    } else {
        while (fill()) {
        }
        res.body = std::move(buffer_);
        close_after = true;
    }
    if (close_after) close_socket();
    return res;
}

HttpResponse HttpClient::post(const std::string& body,
                              const std::vector<std::pair<std::string, std::string>>& headers) {
    std::string request =
        "POST " + url_.path + " HTTP/1.1\r\nHost: " + url_.host +
        (url_.port != 80 ? ":" + std::to_string(url_.port) : "") +
        "\r\nUser-Agent: attendancectl\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
    request += "\r\n" + body;
    // A kept-alive connection may have been closed by the server meanwhile: then the
    // request is sent once more on a new connection.
    for (int attempt = 0;; ++attempt) {
        const bool reused = fd_ >= 0;
        if (!reused) connect_socket();
        try {
            send_all(request);
            return read_response();
        } catch (const StaleConnection& e) {
            close_socket();
            if (!reused || attempt > 0) {
                throw InputError("http://" + url_.host + ":" + std::to_string(url_.port) +
                                 " closed the connection without answering");
            }
        } catch (...) {
            close_socket();
            throw;
        }
    }
}

}  // namespace attendancectl
