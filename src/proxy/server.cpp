#include "proxy/server.hpp"

#include "proxy/beast.hpp"

#include <sys/resource.h>

#include "proxy/text.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <list>
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

// The idle connections, oldest first: the ones closed to admit a newcomer at a limit.
using IdleList = std::list<std::weak_ptr<Session>>;

// The connections of one source (sources.hpp).
struct SourceState {
    int connections = 0;
    IdleList idle;
};

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
          housekeeping(ioc),
          db(static_cast<std::size_t>(std::max(1, c.pool_size))),
          max_connections(c.max_connections) {}

    const Config& config;
    App& app;
    Metrics& metrics;
    Log& log;
    asio::io_context ioc;
    tcp::acceptor acceptor;
    asio::signal_set signals;
    asio::steady_timer housekeeping;
    asio::thread_pool db;  // the only threads that wait for PostgreSQL
    int max_connections;
    std::atomic<bool> stopping{false};

    // Guards the fields below and every Session's idle-list membership.
    std::mutex mu;
    std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
    int open = 0;  // admitted connections not yet destroyed
    IdleList idle;
    std::unordered_map<std::string, SourceState> sources;

    void accept();
    // Decides on a newcomer from `source` (under `mu`): admitted or not, and the idle
    // connection to close for it, if one must be.
    bool admit(const std::string& source, bool trusted, std::shared_ptr<Session>& victim);
    void tick(unsigned n);
    void stop(int sig);
};

namespace {

enum class State { Idle, Reading, Busy, Writing, Closing };

class Session : public std::enable_shared_from_this<Session> {
  public:
    Session(tcp::socket socket, Server::Impl& s, std::string remote, std::string source,
            bool trusted)
        : s_(s),
          stream_(std::move(socket)),
          buffer_(s.config.max_body_bytes + 2 * kHeaderLimit),
          remote_(std::move(remote)),
          source_(std::move(source)),
          trusted_(trusted),
          accepted_(Clock::now()) {}

    ~Session() {
        {
            std::lock_guard lock(s_.mu);
            s_.sessions.erase(this);
            leave_idle_locked();
            --s_.open;
            auto it = s_.sources.find(source_);
            if (it != s_.sources.end() && --it->second.connections <= 0) s_.sources.erase(it);
        }
        s_.metrics.connection_add(-1);
    }

    // Runs under s_.mu, in the accept that admitted the session: idle from the start,
    // in the order of the accepts.
    void register_locked() {
        s_.sessions.emplace(this, weak_from_this());
        enter_idle_locked();
    }

    void start() {
        s_.metrics.connection_add(1);
        beast::error_code ec;
        stream_.socket().set_option(tcp::no_delay(true), ec);
        // The first request's deadline runs from the accept: a connection that sends
        // nothing is closed after --read-timeout.
        asio::dispatch(stream_.get_executor(),
                       [self = shared_from_this()] { self->wait_request(true); });
    }

    // At shutdown: a connection not in the middle of an answer is closed now; the
    // others close after their answer. Runs on the session's strand, like everything
    // else it does.
    void post_stop() {
        asio::post(stream_.get_executor(), [self = shared_from_this()] { self->on_stop(); });
    }

    // Chosen (and taken off the idle lists) to make room for a newcomer: closed, unless
    // a request began meanwhile.
    void post_evict() {
        asio::post(stream_.get_executor(), [self = shared_from_this()] {
            if (self->state_ != State::Idle || !self->stream_.socket().is_open()) return;
            self->s_.metrics.connection_evicted();
            self->close();
        });
    }

    const std::string& source() const { return source_; }

    // The idle lists' entries (under s_.mu).
    bool in_idle = false;
    IdleList::iterator idle_it;
    IdleList::iterator source_idle_it;

  private:
    void on_stop() {
        if (state_ == State::Idle || state_ == State::Reading || state_ == State::Closing) close();
    }

    void enter_idle() {
        std::lock_guard lock(s_.mu);
        enter_idle_locked();
    }

    void enter_idle_locked() {
        if (in_idle) return;
        auto src = s_.sources.find(source_);
        if (src == s_.sources.end()) return;
        idle_it = s_.idle.insert(s_.idle.end(), weak_from_this());
        source_idle_it = src->second.idle.insert(src->second.idle.end(), weak_from_this());
        in_idle = true;
    }

    void leave_idle() {
        std::lock_guard lock(s_.mu);
        leave_idle_locked();
    }

    void leave_idle_locked() {
        if (!in_idle) return;
        s_.idle.erase(idle_it);
        auto src = s_.sources.find(source_);
        if (src != s_.sources.end()) src->second.idle.erase(source_idle_it);
        in_idle = false;
    }

    void begin_request(bool first) {
        req_ = HttpRequest{};
        req_.remote = remote_;
        req_.source = source_;
        req_.trusted = trusted_;
        req_.start = first ? accepted_ : Clock::now();
        req_.wall = std::chrono::system_clock::now();
        parser_.emplace();
        parser_->header_limit(kHeaderLimit);
        parser_->body_limit(s_.config.max_body_bytes);
        state_ = State::Reading;
        if (!first) stream_.expires_after(std::chrono::seconds(s_.config.read_timeout_s));
    }

    // Before a request: idle (the connection may be closed to admit a newcomer at a
    // limit) until its first byte. Between requests the keep-alive timeout runs; before
    // a connection's first request, --read-timeout from the accept.
    void wait_request(bool first = false) {
        if (s_.stopping.load()) return close();
        if (buffer_.size() > 0) {  // a pipelined request is already here
            begin_request(first);
            return read_header();
        }
        state_ = State::Idle;
        enter_idle();
        stream_.expires_after(
            std::chrono::seconds(first ? s_.config.read_timeout_s : s_.config.keepalive_timeout_s));
        stream_.async_read_some(buffer_.prepare(4096), [self = shared_from_this(), first](
                                                           beast::error_code ec, std::size_t n) {
            self->leave_idle();
            if (ec) {
                // Idle timeout, the client closed, or closed to admit a newcomer. A first
                // request that never began is not counted as timed out (as before).
                return self->close();
            }
            self->buffer_.commit(n);
            self->begin_request(first);
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
        // RFC 9112 section 6: Beast refuses conflicting and non-decimal lengths and a
        // Content-Length after Transfer-Encoding; these catch the remaining cases.
        const auto te = h.count(http::field::transfer_encoding);
        if (te > 0 && h.count(http::field::content_length) > 0)
            return refuse(400, "Content-Length together with Transfer-Encoding", true);
        if (te > 1 || (te == 1 && !beast::iequals(h[http::field::transfer_encoding], "chunked")))
            return refuse(400, "unsupported Transfer-Encoding (only chunked is accepted)", true);
        if (h.version() != 11 && h.version() != 10) return refuse(400, "unsupported HTTP version");
        // RFC 9112 section 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0), of valid
        // syntax, whatever the form of the target; an absolute-form target names the
        // host itself (3.2.2) and is served like its path.
        const auto hosts = h.count(http::field::host);
        if (hosts > 1) return refuse(400, "more than one Host header field");
        if (hosts == 0 && h.version() == 11) return refuse(400, "no Host header field");
        const auto host = h[http::field::host];
        if (hosts == 1 && !valid_host(std::string_view(host.data(), host.size())))
            return refuse(400, "invalid Host header field");
        const auto target = h.target();
        auto path = request_path(std::string_view(target.data(), target.size()));
        if (!path) return refuse(400, "malformed request target");
        req_.path = std::move(*path);
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

    // A request refused before it was read completely: answer, then close. `framing`:
    // counted as bad framing (RFC 9112 section 6).
    void refuse(int status, const std::string& why, bool framing = false) {
        if (framing) s_.metrics.bad_framing();
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
    std::string source_;
    bool trusted_ = false;
    Clock::time_point accepted_;
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
        beast::error_code peer_ec;
        const auto peer = socket.remote_endpoint(peer_ec);
        std::string remote = "-";
        std::string source = "-";
        bool trusted = false;
        if (!peer_ec) {
            remote = peer.address().to_string();
            if (const auto address = parse_address(remote)) {
                source = source_of(*address);
                trusted = contains(config.trusted, *address);
            }
        }
        std::shared_ptr<Session> victim;
        std::shared_ptr<Session> session;
        {
            std::lock_guard lock(mu);
            if (admit(source, trusted, victim)) {
                session = std::make_shared<Session>(std::move(socket), *this, std::move(remote),
                                                    source, trusted);
                session->register_locked();
            }
        }
        if (victim) victim->post_evict();
        if (session) {
            session->start();
        } else {
            beast::error_code ignored;
            socket.close(ignored);
        }
        accept();
    });
}

bool Server::Impl::admit(const std::string& source, bool trusted,
                         std::shared_ptr<Session>& victim) {
    auto& src = sources[source];
    // The oldest idle connection of a list that is still there; it leaves the lists.
    auto oldest = [this](IdleList& list) -> std::shared_ptr<Session> {
        while (!list.empty()) {
            auto s = list.front().lock();
            if (!s) {  // being destroyed: its destructor, waiting for `mu`, unlinks it
                list.pop_front();
                continue;
            }
            idle.erase(s->idle_it);
            auto it = sources.find(s->source());
            if (it != sources.end()) it->second.idle.erase(s->source_idle_it);
            s->in_idle = false;
            return s;
        }
        return nullptr;
    };
    const bool source_full = !trusted && config.max_connections_per_source > 0 &&
                             src.connections >= config.max_connections_per_source;
    if (source_full) {
        // The source makes room among its own connections, never among the others'.
        victim = oldest(src.idle);
        if (!victim) {
            metrics.source_connection_refused();
            if (src.connections == 0) sources.erase(source);
            return false;
        }
    } else if (open >= max_connections) {
        victim = oldest(idle);
        if (!victim) {
            metrics.connection_refused();
            if (src.connections == 0) sources.erase(source);
            return false;
        }
    }
    ++src.connections;
    ++open;
    return true;
}

void Server::Impl::tick(unsigned n) {
    app.housekeeping();
    // The key names and settings: now (at start) and every KeyWatch::kInterval.
    if (n % KeyWatch::kInterval.count() == 0) asio::post(db, [this] { app.refresh_keys(); });
    housekeeping.expires_after(std::chrono::seconds(1));
    housekeeping.async_wait([this, n](beast::error_code ec) {
        if (!ec && !stopping.load()) tick(n + 1);
    });
}

void Server::Impl::stop(int sig) {
    stopping.store(true);
    log.info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
             ": no new connections, finishing in-flight requests");
    beast::error_code ec;
    acceptor.close(ec);
    housekeeping.cancel();
    std::vector<std::shared_ptr<Session>> alive;
    {
        std::lock_guard lock(mu);
        for (auto& [ptr, weak] : sessions) {
            if (auto s = weak.lock()) alive.push_back(std::move(s));
        }
    }
    for (auto& s : alive) s->post_stop();
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
    s.tick(0);
    std::vector<std::thread> threads;
    for (int i = 1; i < s.config.threads; ++i) threads.emplace_back([&s] { s.ioc.run(); });
    s.ioc.run();  // returns when the acceptor, every connection and every answer are done
    for (auto& t : threads) t.join();
    s.db.join();
    s.app.housekeeping(true);  // the last summary of rejections
}

}  // namespace attendance::proxy
