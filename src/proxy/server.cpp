#include "proxy/server.hpp"

#include "proxy/beast.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

namespace attendance::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Request line and header fields together; larger answers 431.
constexpr std::uint32_t kHeaderLimit = 16 * 1024;
// After an answer that closes the connection, what the client still sends is read and
// dropped (up to this much, for up to kLingerTime) so that the answer is not lost to a
// reset; then the connection is closed.
constexpr std::size_t kLingerBytes = 1024 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(2);
// File descriptors kept for everything but client connections (PostgreSQL, logs).
constexpr int kReservedFds = 64;

class Session;

}  // namespace

struct Server::Impl {
    Impl(const Config& c, App& a, Metrics& m, Log& l)
        : config(c),
          app(a),
          metrics(m),
          log(l),
          ioc(std::max(1, c.threads)),
          acceptor(ioc),
          signals(ioc, SIGTERM, SIGINT),
          db(static_cast<std::size_t>(std::max(1, c.pool_size))),
          max_connections(c.max_connections) {}

    const Config& config;
    App& app;
    Metrics& metrics;
    Log& log;
    asio::io_context ioc;
    tcp::acceptor acceptor;
    asio::signal_set signals;
    asio::thread_pool db;  // the only threads that wait for PostgreSQL
    int max_connections;
    std::atomic<bool> stopping{false};

    std::mutex mu;
    std::unordered_map<Session*, std::weak_ptr<Session>> sessions;

    void accept();
    void stop(int sig);
};

namespace {

enum class State { Idle, Reading, Busy, Writing, Closing };

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket socket, Server::Impl& s)
        : s_(s), stream_(std::move(socket)), buffer_(s.config.max_body_bytes + 2 * kHeaderLimit) {}

    ~Session() {
        {
            std::lock_guard lock(s_.mu);
            s_.sessions.erase(this);
        }
        s_.metrics.connection_add(-1);
    }

    void start() {
        s_.metrics.connection_add(1);
        {
            std::lock_guard lock(s_.mu);
            s_.sessions.emplace(this, weak_from_this());
        }
        beast::error_code ec;
        const auto peer = stream_.socket().remote_endpoint(ec);
        remote_ = ec ? "-" : peer.address().to_string();
        stream_.socket().set_option(tcp::no_delay(true), ec);
        // The first request's deadline runs from the accept: a connection that sends
        // nothing is closed after --read-timeout.
        asio::dispatch(stream_.get_executor(), [self = shared_from_this()] {
            self->begin_request();
            self->read_header();
        });
    }

    // At shutdown: a connection not in the middle of an answer is closed now; the
    // others close after their answer. Runs on the session's strand, like everything
    // else it does.
    void post_stop() {
        asio::post(stream_.get_executor(), [self = shared_from_this()] { self->on_stop(); });
    }

  private:
    void on_stop() {
        if (state_ == State::Idle || state_ == State::Reading || state_ == State::Closing) close();
    }

    void begin_request() {
        req_ = HttpRequest{};
        req_.remote = remote_;
        req_.start = Clock::now();
        req_.wall = std::chrono::system_clock::now();
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(s_.config.max_body_bytes);
        state_ = State::Reading;
        stream_.expires_after(std::chrono::seconds(s_.config.read_timeout_s));
    }

    // Between requests: the keep-alive timeout until the first byte of the next one.
    void wait_request() {
        if (s_.stopping.load()) return close();
        if (buffer_.size() > 0) {  // a pipelined request is already here
            begin_request();
            return read_header();
        }
        state_ = State::Idle;
        stream_.expires_after(std::chrono::seconds(s_.config.keepalive_timeout_s));
        stream_.async_read_some(buffer_.prepare(4096),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    if (ec)
                                        return self->close();  // idle timeout, or the client closed
                                    self->buffer_.commit(n);
                                    self->begin_request();
                                    self->read_header();
                                });
    }

    void read_header() {
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = shared_from_this()](beast::error_code ec, std::size_t) {
                                    self->on_header(ec);
                                });
    }

    void on_header(beast::error_code ec) {
        if (ec) return on_read_error(ec);
        const auto& h = parser_->get();
        req_.method = std::string(h.method_string());
        const auto target = h.target();
        req_.path = std::string(target.substr(0, target.find('?')));
        // RFC 9112 section 6: Beast refuses conflicting and non-decimal lengths and a
        // Content-Length after Transfer-Encoding; these catch the remaining cases.
        const auto te = h.count(http::field::transfer_encoding);
        if (te > 0 && h.count(http::field::content_length) > 0)
            return refuse(400, "Content-Length together with Transfer-Encoding");
        if (te > 1 || (te == 1 && !beast::iequals(h[http::field::transfer_encoding], "chunked")))
            return refuse(400, "unsupported Transfer-Encoding (only chunked is accepted)");
        if (h.version() != 11 && h.version() != 10) return refuse(400, "unsupported HTTP version");
        if (beast::iequals(h[http::field::expect], "100-continue") && !parser_->is_done()) {
            static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
            return asio::async_write(
                stream_, asio::buffer(kContinue.data(), kContinue.size()),
                [self = shared_from_this()](beast::error_code ec2, std::size_t) {
                    if (ec2) return self->close();
                    self->read_body();
                });
        }
        read_body();
    }

    void read_body() {
        http::async_read(
            stream_, buffer_, *parser_,
            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
    }

    void on_read_error(beast::error_code ec) {
        if (ec == beast::error::timeout) {
            // The stream closed the socket already: nothing can be answered.
            if (buffer_.size() > 0 || parser_->got_some()) {
                s_.metrics.request_timed_out();
                s_.log.info("closed a connection from " + remote_ +
                            ": request not received within " +
                            std::to_string(s_.config.read_timeout_s) + " s");
            }
            return close();
        }
        if (ec == http::error::body_limit || ec == http::error::buffer_overflow)
            return refuse(413, "body larger than the proxy's limit of " +
                                   std::to_string(s_.config.max_body_bytes) + " bytes");
        if (ec == http::error::header_limit) return refuse(431, "request header fields too large");
        if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
            ec != http::error::end_of_stream && ec != http::error::partial_message) {
            s_.metrics.bad_framing();
            return refuse(400, "malformed request: " + ec.message());
        }
        close();  // the client closed or reset the connection, or we are stopping
    }

    void on_body(beast::error_code ec) {
        if (ec) return on_read_error(ec);
        auto msg = parser_->release();
        keep_alive_ = msg.keep_alive();
        if (auto it = msg.find(http::field::authorization); it != msg.end())
            req_.authorization = std::string(it->value());
        req_.body = std::move(msg.body());
        stream_.expires_never();  // the database has timeouts of its own
        if (auto reply = s_.app.route(req_)) return send(std::move(*reply));
        state_ = State::Busy;
        // The work guard keeps the I/O loop (and so shutdown) waiting for this answer.
        asio::post(s_.db, [self = shared_from_this(),
                           guard = asio::make_work_guard(stream_.get_executor()),
                           queued = Clock::now()]() mutable {
            HttpReply reply = self->s_.app.handle_db(self->req_, queued);
            asio::post(self->stream_.get_executor(), [self, reply = std::move(reply)]() mutable {
                self->send(std::move(reply));
            });
        });
    }

    // A request refused before it was read completely: answer, then close.
    void refuse(int status, const std::string& why) {
        if (status == 400 && why.rfind("malformed", 0) != 0) s_.metrics.bad_framing();
        keep_alive_ = false;
        send(s_.app.error(status, why));
    }

    void send(HttpReply reply) {
        if (s_.stopping.load() || !keep_alive_) reply.close = true;
        s_.app.log_request(req_, reply);
        res_ = std::make_shared<http::response<http::string_body>>(
            static_cast<http::status>(reply.status), 11);
        res_->set(http::field::content_type, reply.content_type);
        for (const auto& [name, value] : reply.headers) res_->set(name, value);
        res_->body() = std::move(reply.body);
        res_->keep_alive(!reply.close);
        res_->prepare_payload();
        // HEAD: GET's header fields, Content-Length included, and no body (RFC 9110 9.3.2).
        if (req_.method == "HEAD") res_->body().clear();
        state_ = State::Writing;
        stream_.expires_after(std::chrono::seconds(s_.config.write_timeout_s));
        http::async_write(
            stream_, *res_,
            [self = shared_from_this(), close = reply.close](beast::error_code ec, std::size_t) {
                self->res_.reset();
                if (ec) return self->close();
                if (close) return self->linger();
                self->wait_request();
            });
    }

    // Half-close, then read and drop what the client still sends, so that it reads our
    // answer instead of a reset.
    void linger() {
        state_ = State::Closing;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
        if (ec) return close();
        stream_.expires_after(kLingerTime);
        drain();
    }

    void drain() {
        stream_.async_read_some(asio::buffer(drain_),
                                [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                                    self->drained_ += n;
                                    if (ec || self->drained_ > kLingerBytes) return self->close();
                                    self->drain();
                                });
    }

    void close() {
        if (!stream_.socket().is_open()) return;
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.close();
    }

    Server::Impl& s_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    HttpRequest req_;
    std::shared_ptr<http::response<http::string_body>> res_;
    std::string remote_;
    State state_ = State::Reading;
    bool keep_alive_ = false;
    std::array<char, 4096> drain_{};
    std::size_t drained_ = 0;
};

}  // namespace

void Server::Impl::accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
        if (stopping.load() || !acceptor.is_open()) return;
        if (ec) {
            // Out of file descriptors and the like: wait a moment instead of spinning.
            log.warn("accept failed: " + ec.message());
            auto timer = std::make_shared<asio::steady_timer>(ioc, std::chrono::milliseconds(50));
            timer->async_wait([this, timer](beast::error_code) { accept(); });
            return;
        }
        if (metrics.open_connections() >= max_connections) {
            metrics.connection_refused();
            beast::error_code ignored;
            socket.close(ignored);
        } else {
            std::make_shared<Session>(std::move(socket), *this)->start();
        }
        accept();
    });
}

void Server::Impl::stop(int sig) {
    stopping.store(true);
    log.info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
             ": no new connections, finishing in-flight requests");
    beast::error_code ec;
    acceptor.close(ec);
    std::vector<std::shared_ptr<Session>> open;
    {
        std::lock_guard lock(mu);
        for (auto& [ptr, weak] : sessions) {
            if (auto s = weak.lock()) open.push_back(std::move(s));
        }
    }
    for (auto& s : open) s->post_stop();
}

Server::Server(const Config& config, App& app, Metrics& metrics, Log& log)
    : impl_(std::make_unique<Impl>(config, app, metrics, log)) {}

Server::~Server() = default;

bool Server::listen(std::string& error) {
    auto& s = *impl_;
    // Every open connection is a file descriptor: take the hard limit, and keep the cap
    // below it so that an accept never fails for want of one.
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        if (lim.rlim_cur < lim.rlim_max) {
            lim.rlim_cur = lim.rlim_max;
            setrlimit(RLIMIT_NOFILE, &lim);
            getrlimit(RLIMIT_NOFILE, &lim);
        }
        const auto usable =
            static_cast<long long>(lim.rlim_cur) - kReservedFds - s.config.pool_size;
        if (usable < s.max_connections) {
            s.max_connections = static_cast<int>(std::max(1LL, usable));
            s.log.warn("--max-connections lowered to " + std::to_string(s.max_connections) +
                       " by the open file limit of " + std::to_string(lim.rlim_cur));
        }
    }
    beast::error_code ec;
    auto address = asio::ip::make_address(s.config.listen, ec);
    tcp::endpoint endpoint;
    if (!ec) {
        endpoint = tcp::endpoint(address, static_cast<unsigned short>(s.config.port));
    } else {
        tcp::resolver resolver(s.ioc);
        auto found = resolver.resolve(s.config.listen, std::to_string(s.config.port), ec);
        if (ec || found.empty()) {
            error = "cannot resolve " + s.config.listen + ": " + ec.message();
            return false;
        }
        endpoint = found.begin()->endpoint();
    }
    s.acceptor.open(endpoint.protocol(), ec);
    // SO_REUSEADDR allows a quick restart; SO_REUSEPORT is not set, so a second proxy
    // cannot share the port silently.
    if (!ec) s.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) s.acceptor.bind(endpoint, ec);
    if (!ec) s.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        error = "cannot listen on " + s.config.listen + ":" + std::to_string(s.config.port) + ": " +
                ec.message();
        return false;
    }
    return true;
}

void Server::run() {
    auto& s = *impl_;
    s.signals.async_wait([&s](beast::error_code ec, int sig) {
        if (!ec) s.stop(sig);
    });
    s.accept();
    std::vector<std::thread> threads;
    for (int i = 1; i < s.config.threads; ++i) threads.emplace_back([&s] { s.ioc.run(); });
    s.ioc.run();  // returns when the acceptor, every connection and every answer are done
    for (auto& t : threads) t.join();
    s.db.join();
}

}  // namespace attendance::proxy
