#include "proxy/config.hpp"

#include "proxy/cli11.hpp"

#include <algorithm>
#include <memory>

namespace attendance::proxy {

namespace {

constexpr int kIntMax = 2147483647;

// Every flag, bound to its field of `c`, with its environment variable and its range.
// CLI11 gives the precedence flag > environment variable > default, "--flag value" and
// "--flag=value", and the --help text.
std::unique_ptr<CLI::App> make_app(Config& c, std::string& log_format) {
    auto app = std::make_unique<CLI::App>(
        "Receives LiveKit webhooks over HTTP and records each one in PostgreSQL by calling\n"
        "attendance_ingest_webhook(body, authorization). Answers 2xx only after the commit.\n"
        "Also serves GET /healthz and GET /metrics (Prometheus text format).\n"
        "Each flag is also read from the environment variable shown; a flag wins.\n"
        "Standard libpq variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSFILE, PGSERVICE,\n"
        "PGOPTIONS, ...) apply to whatever the connection string leaves out.\n"
        "Stops gracefully on SIGTERM or SIGINT: no new connections, in-flight requests finish.",
        "attendance-proxy");
    app->get_formatter()->column_width(34);
    // A flag given twice takes its last value, as in most command-line programs.
    app->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    app->set_version_flag("--version", "attendance-proxy " + std::string(kProxyVersion));
    auto opt = [&](const char* flag, auto& field, const char* env, const char* help) {
        return app->add_option(flag, field, help)->envname(env)->capture_default_str();
    };
    auto int_opt = [&](const char* flag, int& field, const char* env, const char* help, int lo,
                       int hi) { return opt(flag, field, env, help)->check(CLI::Range(lo, hi)); };

    opt("--listen", c.listen, "ATTENDANCE_PROXY_LISTEN",
        "address to listen on (0.0.0.0 for all IPv4)")
        ->check(CLI::Validator(
            [](std::string& v) {
                return v.empty() ? std::string("the listen address must not be empty") : "";
            },
            "ADDR"));
    int_opt("--port", c.port, "ATTENDANCE_PROXY_PORT", "TCP port to listen on", 1, 65535);
    opt("--path", c.path, "ATTENDANCE_PROXY_PATH", "webhook path (the URL LiveKit posts to)")
        ->check(CLI::Validator(
            [](std::string& v) {
                if (v.empty() || v[0] != '/')
                    return std::string("the webhook path must start with '/'");
                if (v == "/healthz" || v == "/readyz" || v == "/metrics")
                    return "the webhook path must not be " + v;
                return std::string();
            },
            "PATH"));
    opt("--conninfo", c.conninfo, "ATTENDANCE_PROXY_CONNINFO",
        "libpq connection string or URI; empty means libpq's PG* environment variables");
    int_opt("--threads", c.threads, "ATTENDANCE_PROXY_THREADS",
            "HTTP I/O threads (event-driven: an open connection holds none; the database calls "
            "run on --pool-size threads of their own)",
            1, 1024);
    int_opt("--pool-size", c.pool_size, "ATTENDANCE_PROXY_POOL_SIZE",
            "maximum PostgreSQL connections (and database threads)", 1, 1024);
    opt("--max-body-bytes", c.max_body_bytes, "ATTENDANCE_PROXY_MAX_BODY_BYTES",
        "largest webhook body accepted; larger ones answer 413")
        ->check(CLI::Range(std::size_t(1), std::size_t(1) << 30));
    int_opt("--pool-timeout-ms", c.pool_timeout_ms, "ATTENDANCE_PROXY_POOL_TIMEOUT_MS",
            "how long a request waits for a free connection before answering 503", 0, kIntMax);
    int_opt("--connect-timeout", c.connect_timeout_s, "ATTENDANCE_PROXY_CONNECT_TIMEOUT",
            "libpq connect_timeout in seconds (a connect_timeout in the conninfo wins)", 1, 3600);
    int_opt("--statement-timeout-ms", c.statement_timeout_ms,
            "ATTENDANCE_PROXY_STATEMENT_TIMEOUT_MS",
            "statement_timeout set on each connection (0: leave the server's)", 0, kIntMax);
    int_opt("--read-timeout", c.read_timeout_s, "ATTENDANCE_PROXY_READ_TIMEOUT",
            "seconds allowed to receive one request, headers and body together; then the "
            "connection is closed",
            1, 3600);
    int_opt("--max-connections", c.max_connections, "ATTENDANCE_PROXY_MAX_CONNECTIONS",
            "open client connections at most; past it a new connection is closed at once", 1,
            1000000);
    int_opt("--max-connections-per-source", c.max_connections_per_source,
            "ATTENDANCE_PROXY_MAX_CONNECTIONS_PER_SOURCE",
            "open connections of one source (an IPv4 address, an IPv6 /64) at most; past it the "
            "source's oldest idle connection is closed, or the newcomer; 0: no limit",
            0, 1000000);
    opt("--trusted-sources", c.trusted_sources, "ATTENDANCE_PROXY_TRUSTED_SOURCES",
        "comma-separated addresses or CIDR blocks exempt from the per-source limits (e.g. a "
        "reverse proxy in front of this one)")
        ->check(CLI::Validator(
            [](std::string& v) {
                std::string error;
                return parse_cidrs(v, error) ? std::string() : error;
            },
            "LIST"));
    opt("--reject-rate", c.reject_rate, "ATTENDANCE_PROXY_REJECT_RATE",
        "rejected requests per second a source may cause (after --reject-burst; 0.5 is one "
        "per 2 s); past it its webhooks answer 429; 0: no limit")
        ->check(CLI::Range(0.0, 1000000.0));
    int_opt("--reject-burst", c.reject_burst, "ATTENDANCE_PROXY_REJECT_BURST",
            "rejected requests a source may cause at once before --reject-rate applies", 1,
            1000000);
    int_opt("--write-timeout", c.write_timeout_s, "ATTENDANCE_PROXY_WRITE_TIMEOUT",
            "seconds allowed to send one answer", 1, 3600);
    int_opt("--keepalive-timeout", c.keepalive_timeout_s, "ATTENDANCE_PROXY_KEEPALIVE_TIMEOUT",
            "seconds an idle keep-alive connection stays open between requests", 1, 3600);
    int_opt("--retry-after", c.retry_after_s, "ATTENDANCE_PROXY_RETRY_AFTER",
            "Retry-After value (seconds) sent with 503", 0, 86400);
    log_format = to_string(c.log_format);
    opt("--log-format", log_format, "ATTENDANCE_PROXY_LOG_FORMAT", "access and server log format")
        ->check(CLI::IsMember({"text", "json"}));
    return app;
}

}  // namespace

const char* to_string(LogFormat f) { return f == LogFormat::Json ? "json" : "text"; }

ParseResult parse_config(const std::vector<std::string>& args) {
    ParseResult result;
    Config config;
    std::string log_format;
    auto app = make_app(config, log_format);
    // CLI11 takes the arguments in reverse order, without argv[0].
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app->parse(reversed);
    } catch (const CLI::CallForHelp&) {
        result.help = true;
        return result;
    } catch (const CLI::CallForVersion&) {
        result.version = true;
        return result;
    } catch (const CLI::ParseError& e) {
        result.error = e.what();
        // CLI11 names the flag also when the bad value came from its environment variable.
        for (const CLI::Option* o : app->get_options()) {
            const std::string flag = o->get_name();
            if (o->get_envname().empty() || result.error.rfind(flag + ":", 0) != 0) continue;
            const bool given = std::any_of(args.begin(), args.end(), [&](const std::string& a) {
                return a == flag || a.rfind(flag + "=", 0) == 0;
            });
            if (!given) result.error = o->get_envname() + result.error.substr(flag.size());
        }
        return result;
    }
    config.log_format = log_format == "json" ? LogFormat::Json : LogFormat::Text;
    std::string cidr_error;
    config.trusted = *parse_cidrs(config.trusted_sources, cidr_error);  // checked above
    result.config = std::move(config);
    return result;
}

std::string usage() {
    Config defaults;
    std::string log_format;
    return make_app(defaults, log_format)->help();
}

}  // namespace attendance::proxy
