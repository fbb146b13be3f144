// bench/loadgen: HTTP load generator for the attendance proxy benchmark.
//
// Open loop (--rate R): request i is scheduled at t0 + i/R, whatever happened to the
// earlier ones, and spread over --connections keep-alive connections (request i goes
// to connection i mod C). Latency is measured from the scheduled send time to the end
// of the response, so a stalled server is charged for the requests that queue behind
// it (no coordinated omission, like wrk2).
// Closed loop (--rate 0): every connection sends its next request as soon as the
// previous answer arrived; reports the maximum throughput.
//
// Requests are POSTs of pre-signed LiveKit webhooks read from a file of lines
// "authorization<TAB>body" (bench/gen_workload.py --tsv), taken in order.
// Prints one JSON object on stdout. Only for 127.0.0.1-style benchmarking.
//
// --idle N --slow M hold N connections that send nothing and M that send a request one
// byte every --drip-interval seconds for the whole run, reopened whenever the server
// closes them: the valid requests' latencies are then those under attack.
//
//   loadgen --port 8080 --path /webhook --file hooks.tsv --rate 1000 --duration 10 --connections 16
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string path = "/webhook";
    std::string file;
    double rate = 1000;  // requests per second; 0 = closed loop
    double duration = 10;
    int connections = 16;
    size_t start = 0;            // first line of the file to send
    std::string trace;           // optional file: "offset_ms latency_ms status" per request
    int idle = 0;                // connections held open that send nothing
    int slow = 0;                // connections that send a request one byte at a time
    double drip_interval = 1.0;  // seconds between two bytes of a slow connection
};

// Hostile clients held for the whole run: idle connections and slow-drip ones. A
// connection the server closes (timeouts) is opened again at once, as an attacker would.
class Attack {
  public:
    Attack(const Options& o) : o_(o) {
        drip_ = "POST " + o.path + " HTTP/1.1\r\nHost: " + o.host +
                "\r\nX-Pad: " + std::string(8000, 'a') + "\r\n";
        for (int i = 0; i < o.idle; ++i) idle_.push_back(open());
        for (int i = 0; i < o.slow; ++i) {
            slow_.push_back(open());
            pos_.push_back(0);
        }
    }
    void run(const std::atomic<bool>& stop) {
        auto next_drip = Clock::now();
        auto next_check = Clock::now();
        while (!stop.load()) {
            const auto now = Clock::now();
            if (now >= next_drip) {
                for (size_t i = 0; i < slow_.size(); ++i) {
                    if (slow_[i] < 0 || send(slow_[i], drip_.data() + pos_[i] % drip_.size(), 1,
                                             MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
                        reopen(slow_[i]);
                        pos_[i] = 0;
                    } else {
                        ++pos_[i];
                    }
                }
                next_drip = now + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(o_.drip_interval));
            }
            if (now >= next_check) {
                char c;
                for (int& fd : idle_) {
                    ssize_t n = fd < 0 ? 0 : recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) reopen(fd);
                }
                next_check = now + std::chrono::milliseconds(500);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    ~Attack() {
        for (int fd : idle_)
            if (fd >= 0) close(fd);
        for (int fd : slow_)
            if (fd >= 0) close(fd);
    }
    long reconnects() const { return reconnects_; }

  private:
    int open();
    void reopen(int& fd) {
        if (fd >= 0) close(fd);
        fd = open();
        ++reconnects_;
    }
    const Options& o_;
    std::string drip_;
    std::vector<int> idle_, slow_;
    std::vector<size_t> pos_;
    long reconnects_ = 0;
};

struct Result {
    std::vector<double> latency_ms;  // per request, scheduled (open) or sent (closed) to answered
    std::vector<std::pair<double, int>> at;  // (offset of the scheduled/sent time from t0, status)
    long ok = 0, non2xx = 0, errors = 0, resent = 0;
};

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "loadgen: %s\n", msg.c_str());
    std::exit(2);
}

int connect_to(const Options& o) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // An answer that does not come within 10 s is counted as an error (a stalled server
    // must not hang the run).
    // The same bound for connect() and sends (Linux applies SO_SNDTIMEO to connect).
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(o.port));
    if (inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr) != 1) die("bad host " + o.host);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int Attack::open() { return connect_to(o_); }

bool send_all(int fd, const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return false;
        off += size_t(n);
    }
    return true;
}

// Reads one HTTP/1.1 response, its body framed by Content-Length or chunked; returns
// the status code, or -1 on a broken or unreadable connection (got_any: some bytes of
// it had arrived). buf keeps bytes of a following response.
bool fill(int fd, std::string& buf) {
    char tmp[16384];
    ssize_t n = recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, size_t(n));
    return true;
}

int read_response(int fd, std::string& buf, bool& keep_alive, bool& got_any) {
    got_any = !buf.empty();
    size_t header_end;
    while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (!fill(fd, buf)) return -1;
        got_any = true;
    }
    int status = 0;
    if (std::sscanf(buf.c_str(), "HTTP/1.%*d %d", &status) != 1) return -1;
    size_t length = 0;
    keep_alive = true;
    std::string headers = buf.substr(0, header_end);
    for (char& c : headers) c = char(std::tolower(static_cast<unsigned char>(c)));
    size_t p = headers.find("\r\ncontent-length:");
    if (p != std::string::npos) length = std::strtoul(headers.c_str() + p + 17, nullptr, 10);
    if (headers.find("\r\nconnection: close") != std::string::npos) keep_alive = false;
    const bool chunked = headers.find("\r\ntransfer-encoding: chunked") != std::string::npos;
    if (!chunked) {
        size_t total = header_end + 4 + length;
        while (buf.size() < total) {
            if (!fill(fd, buf)) return -1;
        }
        buf.erase(0, total);
        return status;
    }
    // chunk-size [; ext] CRLF data CRLF ... 0 CRLF [trailers] CRLF
    size_t pos = header_end + 4;
    for (;;) {
        size_t eol;
        while ((eol = buf.find("\r\n", pos)) == std::string::npos) {
            if (!fill(fd, buf)) return -1;
        }
        const size_t size = std::strtoul(buf.c_str() + pos, nullptr, 16);
        pos = eol + 2;
        if (size == 0) {
            size_t end;
            while ((end = buf.find("\r\n", pos)) != pos) {  // trailers, up to an empty line
                if (end != std::string::npos) {
                    pos = end + 2;
                    continue;
                }
                if (!fill(fd, buf)) return -1;
            }
            buf.erase(0, pos + 2);
            return status;
        }
        while (buf.size() < pos + size + 2) {
            if (!fill(fd, buf)) return -1;
        }
        pos += size + 2;
    }
}

std::string build_request(const Options& o, const std::string& line) {
    size_t tab = line.find('\t');
    if (tab == std::string::npos) die("a line of the file has no TAB");
    std::string auth = line.substr(0, tab), body = line.substr(tab + 1);
    std::string req =
        "POST " + o.path + " HTTP/1.1\r\nHost: " + o.host + ":" + std::to_string(o.port) +
        "\r\nContent-Type: application/webhook+json\r\nAuthorization: " + auth +
        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: keep-alive\r\n\r\n";
    return req + body;
}

double pct(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    size_t i = size_t(p / 100.0 * double(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value for " + a);
            return argv[++i];
        };
        if (a == "--host")
            o.host = next();
        else if (a == "--port")
            o.port = std::atoi(next().c_str());
        else if (a == "--path")
            o.path = next();
        else if (a == "--file")
            o.file = next();
        else if (a == "--rate")
            o.rate = std::atof(next().c_str());
        else if (a == "--duration")
            o.duration = std::atof(next().c_str());
        else if (a == "--connections")
            o.connections = std::atoi(next().c_str());
        else if (a == "--start")
            o.start = size_t(std::atol(next().c_str()));
        else if (a == "--trace")
            o.trace = next();
        else if (a == "--idle")
            o.idle = std::atoi(next().c_str());
        else if (a == "--slow")
            o.slow = std::atoi(next().c_str());
        else if (a == "--drip-interval")
            o.drip_interval = std::atof(next().c_str());
        else
            die("unknown option " + a);
    }
    if (o.file.empty() || o.connections < 1 || o.duration <= 0)
        die("need --file, --connections >= 1, --duration > 0");

    std::vector<std::string> lines;
    {
        std::ifstream in(o.file);
        if (!in) die("cannot read " + o.file);
        std::string line;
        size_t n = 0;
        size_t want = o.rate > 0 ? size_t(o.rate * o.duration) + 1 : SIZE_MAX;
        while (std::getline(in, line)) {
            if (n++ < o.start) continue;
            lines.push_back(line);
            if (lines.size() >= want) break;
        }
    }
    if (lines.empty()) die("no requests in " + o.file);
    std::vector<std::string> requests;
    requests.reserve(lines.size());
    for (const auto& l : lines) requests.push_back(build_request(o, l));
    lines.clear();

    const bool open_loop = o.rate > 0;
    const size_t total =
        open_loop ? std::min(requests.size(), size_t(o.rate * o.duration)) : requests.size();
    std::atomic<size_t> next_closed{0};
    std::vector<Result> results(size_t(o.connections));
    std::vector<std::thread> threads;
    std::atomic<bool> exhausted{false};

    // Connections are opened one after the other before the clock starts: the measurement
    // is the steady state of kept-alive connections, not a burst of handshakes.
    std::vector<int> fds;
    for (int c = 0; c < o.connections; ++c) {
        fds.push_back(connect_to(o));
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::unique_ptr<Attack> attack;
    std::thread attacker;
    std::atomic<bool> done{false};
    if (o.idle > 0 || o.slow > 0) attack = std::make_unique<Attack>(o);
    const auto t0 = Clock::now() + std::chrono::milliseconds(200);
    const auto t_end =
        t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
    if (attack) attacker = std::thread([&] { attack->run(done); });
    for (int c = 0; c < o.connections; ++c) {
        threads.emplace_back([&, c] {
            Result& r = results[size_t(c)];
            int fd = fds[size_t(c)];
            std::string buf;
            bool reused = false;  // fd carried an earlier request
            auto one = [&](size_t i, Clock::time_point from) {
                // A request is sent again only when a kept-alive connection turns out to
                // be closed before any byte of the answer came (the server closed it while
                // idle); an answer that cannot be read is an error, never a resend.
                for (int attempt = 0; attempt < 2; ++attempt) {
                    if (fd < 0) {
                        fd = connect_to(o);
                        reused = false;
                    }
                    if (fd < 0) break;
                    bool keep = true, got_any = false;
                    const bool sent = send_all(fd, requests[i]);
                    if (sent) {
                        int status = read_response(fd, buf, keep, got_any);
                        if (status > 0) {
                            auto done = Clock::now();
                            r.latency_ms.push_back(
                                std::chrono::duration<double, std::milli>(done - from).count());
                            r.at.emplace_back(
                                std::chrono::duration<double, std::milli>(from - t0).count(),
                                status);
                            (status >= 200 && status < 300 ? r.ok : r.non2xx)++;
                            if (!keep) {
                                close(fd);
                                fd = -1;
                                buf.clear();
                            }
                            reused = fd >= 0;
                            return;
                        }
                    }
                    close(fd);
                    fd = -1;
                    buf.clear();
                    if (!reused || got_any) break;
                    r.resent++;
                }
                r.errors++;
            };
            if (open_loop) {
                for (size_t i = size_t(c); i < total; i += size_t(o.connections)) {
                    auto when = t0 + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(double(i) / o.rate));
                    std::this_thread::sleep_until(when);
                    // A server that stalls does not hold the run: 10 s past its end, the
                    // requests not sent yet are counted as errors.
                    if (Clock::now() > t_end + std::chrono::seconds(10)) {
                        r.errors++;
                        continue;
                    }
                    one(i, when);
                }
            } else {
                std::this_thread::sleep_until(t0);
                while (Clock::now() < t_end) {
                    size_t i = next_closed.fetch_add(1);
                    if (i >= total) {
                        exhausted = true;
                        break;
                    }
                    one(i, Clock::now());
                }
            }
            if (fd >= 0) close(fd);
        });
    }
    for (auto& t : threads) t.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    long attack_reconnects = 0;
    if (attack) {
        done = true;
        attacker.join();
        attack_reconnects = attack->reconnects();
    }

    if (!o.trace.empty()) {
        FILE* f = std::fopen(o.trace.c_str(), "w");
        if (f) {
            for (auto& r : results)
                for (size_t i = 0; i < r.latency_ms.size(); ++i)
                    std::fprintf(f, "%.3f %.3f %d\n", r.at[i].first, r.latency_ms[i],
                                 r.at[i].second);
            std::fclose(f);
        }
    }
    std::vector<double> all;
    long ok = 0, non2xx = 0, errors = 0, resent = 0;
    for (auto& r : results) {
        resent += r.resent;
        all.insert(all.end(), r.latency_ms.begin(), r.latency_ms.end());
        ok += r.ok;
        non2xx += r.non2xx;
        errors += r.errors;
    }
    std::sort(all.begin(), all.end());
    const double mean = all.empty() ? 0 : [&] {
        double s = 0;
        for (double v : all) s += v;
        return s / double(all.size());
    }();
    std::printf(
        "{\"mode\":\"%s\",\"offered_rate\":%.1f,\"connections\":%d,\"duration_s\":%.3f,"
        "\"requests\":%zu,"
        "\"ok\":%ld,\"non2xx\":%ld,\"errors\":%ld,\"achieved_rate\":%.1f,\"mean_ms\":%.3f,\"p50_"
        "ms\":%.3f,"
        "\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f,\"exhausted\":%s,"
        "\"resent\":%ld,\"idle\":%d,\"slow\":%d,\"attack_reconnects\":%ld}\n",
        open_loop ? "open" : "closed", o.rate, o.connections, elapsed, all.size() + size_t(errors),
        ok, non2xx, errors, double(ok + non2xx) / elapsed, mean, pct(all, 50), pct(all, 90),
        pct(all, 99), pct(all, 99.9), all.empty() ? 0.0 : all.back(),
        exhausted.load() ? "true" : "false", resent, o.idle, o.slow, attack_reconnects);
    return 0;
}
