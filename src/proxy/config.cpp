#include "proxy/config.hpp"

#include <charconv>
#include <limits>
#include <sstream>

namespace attendance::proxy {

namespace {

// Parses a whole decimal integer in [lo, hi]; returns an error message or "".
template <typename T>
std::string parse_int(const std::string& text, T lo, T hi, T& out) {
    T value{};
    const char* first = text.data();
    const char* last = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(first, last, value);
    if (text.empty() || ec != std::errc() || ptr != last) return "'" + text + "' is not an integer";
    if (value < lo || value > hi) {
        return "'" + text + "' is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) +
               "]";
    }
    out = value;
    return "";
}

std::string int_setter(const std::string& v, int lo, int hi, int& field) {
    return parse_int<int>(v, lo, hi, field);
}

struct Option {
    const char* flag;  // without the leading "--"
    const char* env;
    const char* metavar;
    const char* help;
    std::function<std::string(Config&, const std::string&)> set;
    std::function<std::string(const Config&)> show;
};

constexpr int kIntMax = std::numeric_limits<int>::max();

const std::vector<Option>& options() {
    static const std::vector<Option> table = {
        {"listen", "ATTENDANCE_PROXY_LISTEN", "ADDR", "address to listen on (0.0.0.0 for all IPv4)",
         [](Config& c, const std::string& v) {
             if (v.empty()) return std::string("the listen address must not be empty");
             c.listen = v;
             return std::string();
         },
         [](const Config& c) { return c.listen; }},
        {"port", "ATTENDANCE_PROXY_PORT", "N", "TCP port to listen on",
         [](Config& c, const std::string& v) { return int_setter(v, 1, 65535, c.port); },
         [](const Config& c) { return std::to_string(c.port); }},
        {"path", "ATTENDANCE_PROXY_PATH", "PATH", "webhook path (the URL LiveKit posts to)",
         [](Config& c, const std::string& v) {
             if (v.empty() || v[0] != '/')
                 return std::string("the webhook path must start with '/'");
             if (v == "/healthz" || v == "/metrics") return "the webhook path must not be " + v;
             c.path = v;
             return std::string();
         },
         [](const Config& c) { return c.path; }},
        {"conninfo", "ATTENDANCE_PROXY_CONNINFO", "STR",
         "libpq connection string or URI; empty means libpq's PG* environment variables",
         [](Config& c, const std::string& v) {
             c.conninfo = v;
             return std::string();
         },
         [](const Config& c) { return c.conninfo.empty() ? std::string("\"\"") : c.conninfo; }},
        {"threads", "ATTENDANCE_PROXY_THREADS", "N",
         "HTTP I/O threads (event-driven: an open connection holds none; the database calls"
         " run on --pool-size threads of their own)",
         [](Config& c, const std::string& v) { return int_setter(v, 1, 1024, c.threads); },
         [](const Config& c) { return std::to_string(c.threads); }},
        {"pool-size", "ATTENDANCE_PROXY_POOL_SIZE", "N", "maximum PostgreSQL connections",
         [](Config& c, const std::string& v) { return int_setter(v, 1, 1024, c.pool_size); },
         [](const Config& c) { return std::to_string(c.pool_size); }},
        {"max-body-bytes", "ATTENDANCE_PROXY_MAX_BODY_BYTES", "N",
         "largest webhook body accepted; larger ones answer 413",
         [](Config& c, const std::string& v) {
             return parse_int<std::size_t>(v, 1, std::size_t(1) << 30, c.max_body_bytes);
         },
         [](const Config& c) { return std::to_string(c.max_body_bytes); }},
        {"pool-timeout-ms", "ATTENDANCE_PROXY_POOL_TIMEOUT_MS", "MS",
         "how long a request waits for a free connection before answering 503",
         [](Config& c, const std::string& v) {
             return int_setter(v, 0, kIntMax, c.pool_timeout_ms);
         },
         [](const Config& c) { return std::to_string(c.pool_timeout_ms); }},
        {"connect-timeout", "ATTENDANCE_PROXY_CONNECT_TIMEOUT", "S",
         "libpq connect_timeout (a connect_timeout in the conninfo wins)",
         [](Config& c, const std::string& v) {
             return int_setter(v, 1, 3600, c.connect_timeout_s);
         },
         [](const Config& c) { return std::to_string(c.connect_timeout_s); }},
        {"statement-timeout-ms", "ATTENDANCE_PROXY_STATEMENT_TIMEOUT_MS", "MS",
         "statement_timeout set on each connection (0: leave the server's)",
         [](Config& c, const std::string& v) {
             return int_setter(v, 0, kIntMax, c.statement_timeout_ms);
         },
         [](const Config& c) { return std::to_string(c.statement_timeout_ms); }},
        {"read-timeout", "ATTENDANCE_PROXY_READ_TIMEOUT", "S",
         "total time allowed to receive one request, headers and body together (408, then"
         " close)",
         [](Config& c, const std::string& v) { return int_setter(v, 1, 3600, c.read_timeout_s); },
         [](const Config& c) { return std::to_string(c.read_timeout_s); }},
        {"max-connections", "ATTENDANCE_PROXY_MAX_CONNECTIONS", "N",
         "open client connections at most; past it a new connection is closed at once",
         [](Config& c, const std::string& v) {
             return int_setter(v, 1, 1000000, c.max_connections);
         },
         [](const Config& c) { return std::to_string(c.max_connections); }},
        {"write-timeout", "ATTENDANCE_PROXY_WRITE_TIMEOUT", "S", "HTTP write timeout",
         [](Config& c, const std::string& v) { return int_setter(v, 1, 3600, c.write_timeout_s); },
         [](const Config& c) { return std::to_string(c.write_timeout_s); }},
        {"keepalive-timeout", "ATTENDANCE_PROXY_KEEPALIVE_TIMEOUT", "S",
         "idle time before a keep-alive connection is closed (also bounds shutdown)",
         [](Config& c, const std::string& v) {
             return int_setter(v, 1, 3600, c.keepalive_timeout_s);
         },
         [](const Config& c) { return std::to_string(c.keepalive_timeout_s); }},
        {"retry-after", "ATTENDANCE_PROXY_RETRY_AFTER", "S", "Retry-After value sent with 503",
         [](Config& c, const std::string& v) { return int_setter(v, 0, 86400, c.retry_after_s); },
         [](const Config& c) { return std::to_string(c.retry_after_s); }},
        {"log-format", "ATTENDANCE_PROXY_LOG_FORMAT", "text|json", "access and server log format",
         [](Config& c, const std::string& v) {
             if (v == "text") {
                 c.log_format = LogFormat::Text;
             } else if (v == "json") {
                 c.log_format = LogFormat::Json;
             } else {
                 return "'" + v + "' is not a log format (text or json)";
             }
             return std::string();
         },
         [](const Config& c) { return std::string(to_string(c.log_format)); }},
    };
    return table;
}

const Option* find_option(const std::string& flag) {
    for (const auto& o : options()) {
        if (flag == o.flag) return &o;
    }
    return nullptr;
}

}  // namespace

const char* to_string(LogFormat f) { return f == LogFormat::Json ? "json" : "text"; }

ParseResult parse_config(const std::vector<std::string>& args, const EnvLookup& env) {
    ParseResult result;
    Config config;

    for (const auto& o : options()) {
        const char* value = env ? env(o.env) : nullptr;
        if (value == nullptr) continue;
        std::string err = o.set(config, value);
        if (!err.empty()) {
            result.error = std::string(o.env) + ": " + err;
            return result;
        }
    }

    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (arg == "--help" || arg == "-h") {
            result.help = true;
            return result;
        }
        if (arg == "--version") {
            result.version = true;
            return result;
        }
        if (arg.rfind("--", 0) != 0) {
            result.error = "unexpected argument '" + arg + "'";
            return result;
        }
        std::string name = arg.substr(2);
        std::optional<std::string> value;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name.resize(eq);
        }
        const Option* o = find_option(name);
        if (o == nullptr) {
            result.error = "unknown flag '--" + name + "'";
            return result;
        }
        if (!value) {
            if (i + 1 >= args.size()) {
                result.error = "flag '--" + name + "' needs a value";
                return result;
            }
            value = args[++i];
        }
        std::string err = o->set(config, *value);
        if (!err.empty()) {
            result.error = "--" + name + ": " + err;
            return result;
        }
    }
    result.config = std::move(config);
    return result;
}

std::string usage() {
    const Config defaults;
    std::ostringstream out;
    out << "Usage: attendance-proxy [FLAGS]\n"
           "\n"
           "Receives LiveKit webhooks over HTTP and records each one in PostgreSQL by calling\n"
           "attendance_ingest_webhook(body, authorization). Answers 2xx only after the commit.\n"
           "Also serves GET /healthz and GET /metrics (Prometheus text format).\n"
           "\n"
           "Flags (each also read from the environment variable shown; a flag wins):\n";
    for (const auto& o : options()) {
        std::string left = std::string("  --") + o.flag + " " + o.metavar;
        out << left;
        if (left.size() < 32) out << std::string(32 - left.size(), ' ');
        out << o.help << "\n"
            << std::string(32, ' ') << "env " << o.env << ", default " << o.show(defaults) << "\n";
    }
    out << "  --help                        this text\n"
           "  --version                     print the version\n"
           "\n"
           "Standard libpq variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSFILE, PGSERVICE,\n"
           "PGOPTIONS, ...) apply to whatever the connection string leaves out.\n"
           "Stops gracefully on SIGTERM or SIGINT: no new connections, in-flight requests "
           "finish.\n";
    return out.str();
}

}  // namespace attendance::proxy
