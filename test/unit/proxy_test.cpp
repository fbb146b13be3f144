// Unit tests of the proxy's pure pieces: status mapping, UTF-8 validation, request
// targets and Host values, configuration parsing, metrics rendering, log formatting,
// sources and the budget of rejections. They need no server and no network. Built from
// src/proxy/{config,status,text,metrics,log,sources}.cpp.
#include "proxy/config.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
#include "proxy/sources.hpp"
#include "proxy/status.hpp"
#include "proxy/text.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace ap = attendance::proxy;

namespace {

// Parses with exactly `env` as the ATTENDANCE_PROXY_* environment (CLI11 reads the
// process environment), and leaves the environment as it was.
ap::ParseResult parse(std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    auto r = ap::parse_config(args);
    for (const auto& [k, v] : env) unsetenv(k.c_str());
    return r;
}

}  // namespace

// ---- status mapping -------------------------------------------------------------------

TEST(ProxyStatus, MapsEachSqlstateSoLiveKitRetriesOnlyWhatIsWorthRetrying) {
    const std::map<std::string, int> expected = {
        {"28000", 401}, {"22P02", 400}, {"22023", 400}, {"22P05", 400}, {"22004", 400},
        {"22021", 400}, {"22003", 400}, {"54000", 413}, {"08000", 503}, {"08001", 503},
        {"08006", 503}, {"57P01", 503}, {"57P02", 503}, {"57P03", 503}, {"53000", 503},
        {"53100", 503}, {"53300", 503}, {"25006", 503}, {"40001", 503}, {"40P01", 503},
        {"57014", 503}, {"55P03", 503}, {"", 503},      {"42883", 500}, {"42501", 500},
        {"XX000", 500}, {"23505", 500}, {"P0001", 500},
    };
    for (const auto& [sqlstate, status] : expected) {
        EXPECT_EQ(ap::http_status_for_sqlstate(sqlstate), status) << "sqlstate " << sqlstate;
    }
}

TEST(ProxyStatus, ConnectionErrorsAreTheOnesThatReplaceTheConnection) {
    for (const char* s : {"", "08000", "08003", "08006", "57P01", "57P02", "57P03"}) {
        EXPECT_TRUE(ap::is_connection_error(s)) << s;
    }
    for (const char* s : {"28000", "22P02", "53300", "40001", "57014", "25006", "XX000", "0800"}) {
        EXPECT_FALSE(ap::is_connection_error(s)) << s;
    }
}

TEST(ProxyStatus, ReadOnlyAndConnectionErrorsReplaceTheConnection) {
    // 25006: the server is a standby now; a new connection with
    // target_session_attrs=read-write finds the primary.
    for (const char* s : {"", "08000", "08006", "57P01", "57P03", "25006"}) {
        EXPECT_TRUE(ap::must_reconnect(s)) << s;
    }
    for (const char* s : {"28000", "22P02", "53300", "40001", "57014", "55P03", "XX000"}) {
        EXPECT_FALSE(ap::must_reconnect(s)) << s;
    }
}

TEST(ProxyStatus, ErrorBodyIsJsonWithSqlstateOrNull) {
    auto with = nlohmann::json::parse(ap::error_body("webhook rejected: bad \"sig\"\n", "28000"));
    EXPECT_EQ(with["error"], "webhook rejected: bad \"sig\"\n");
    EXPECT_EQ(with["sqlstate"], "28000");
    auto without = nlohmann::json::parse(ap::error_body("not found", ""));
    EXPECT_TRUE(without["sqlstate"].is_null());
}

// ---- UTF-8 ----------------------------------------------------------------------------

TEST(ProxyUtf8, AcceptsWellFormedText) {
    EXPECT_FALSE(ap::first_invalid_utf8(""));
    EXPECT_FALSE(ap::first_invalid_utf8("{\"name\":\"plain ascii\"}"));
    EXPECT_FALSE(ap::first_invalid_utf8(
        "\xd8\xa3\xd8\xad\xd9\x85\xd8\xaf \xd9\x85\xd8\xad\xd9\x85\xd8\xaf"));
    EXPECT_FALSE(
        ap::first_invalid_utf8("\xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbd"));
}

TEST(ProxyUtf8, RejectsMalformedSequencesAtTheirOffset) {
    const std::vector<std::pair<std::string, std::size_t>> bad = {
        {"\xff", 0},
        {"ab\xfe", 2},
        {"a\x80", 1},             // lone continuation byte
        {"\xc0\xaf", 0},          // overlong '/'
        {"\xc1\xbf", 0},          // overlong
        {"\xe0\x80\xaf", 0},      // overlong, 3 bytes
        {"\xf0\x80\x80\xaf", 0},  // overlong, 4 bytes
        {"x\xed\xa0\x80", 1},     // UTF-16 surrogate
        {"\xf4\x90\x80\x80", 0},  // above U+10FFFF
        {"\xf5\x80\x80\x80", 0},  // invalid lead byte
        {"ok \xe2\x82", 3},       // truncated at the end
        {"\xe2\x82 x", 0},        // truncated in the middle
    };
    for (const auto& [text, offset] : bad) {
        auto got = ap::first_invalid_utf8(text);
        ASSERT_TRUE(got.has_value()) << "accepted " << testing::PrintToString(text);
        EXPECT_EQ(*got, offset) << testing::PrintToString(text);
    }
}

// ---- JSON text helpers ----------------------------------------------------------------

TEST(ProxyText, JsonEscapeAlwaysGivesValidJson) {
    const std::string nasty =
        std::string("q\"b\\n\nt\tc\x01 \xd8\xa3 bad\xff end") + std::string(1, '\0');
    const std::string doc = "\"" + ap::json_escape(nasty) + "\"";
    auto parsed = nlohmann::json::parse(doc);
    EXPECT_EQ(parsed.get<std::string>(),
              std::string("q\"b\\n\nt\tc\x01 \xd8\xa3 bad\xef\xbf\xbd end") + std::string(1, '\0'));
}

TEST(ProxyText, OneLineCollapsesLibpqMessages) {
    EXPECT_EQ(ap::one_line("server closed the connection unexpectedly\n\tThis probably means\n"),
              "server closed the connection unexpectedly This probably means");
    EXPECT_EQ(ap::one_line("  a  b "), "a b");
    EXPECT_EQ(ap::one_line(""), "");
}

TEST(ProxyText, Iso8601) {
    const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1763130300123));
    EXPECT_EQ(ap::iso8601_utc(t), "2025-11-14T14:25:00.123Z");
    // a finer clock is rounded down to the millisecond, before 1970 too
    using std::chrono::microseconds;
    EXPECT_EQ(
        ap::iso8601_utc(std::chrono::system_clock::time_point(microseconds(1763130300123999))),
        "2025-11-14T14:25:00.123Z");
    EXPECT_EQ(ap::iso8601_utc(std::chrono::system_clock::time_point(microseconds(-1))),
              "1969-12-31T23:59:59.999Z");
}

// ---- request targets and Host (RFC 9112 section 3.2) -----------------------------------

TEST(ProxyHttp, RequestTargetForms) {
    using P = std::optional<std::string>;
    EXPECT_EQ(ap::request_path("/webhooks/livekit"), P("/webhooks/livekit"));
    EXPECT_EQ(ap::request_path("/webhooks/livekit?x=1&y"), P("/webhooks/livekit"));
    EXPECT_EQ(ap::request_path("/"), P("/"));
    EXPECT_EQ(ap::request_path("*"), P("*"));
    // absolute-form: served like its path, whatever the scheme's case
    EXPECT_EQ(ap::request_path("http://proxy.internal:8080/webhooks/livekit"),
              P("/webhooks/livekit"));
    EXPECT_EQ(ap::request_path("HTTPS://10.0.0.5/webhooks/livekit?a=b"), P("/webhooks/livekit"));
    EXPECT_EQ(ap::request_path("http://[::1]:8080/webhooks/livekit"), P("/webhooks/livekit"));
    EXPECT_EQ(ap::request_path("http://host"), P("/"));
    EXPECT_EQ(ap::request_path("http://host?q"), P("/"));
    // neither: malformed
    for (const char* bad :
         {"", "webhooks/livekit", "ftp://host/webhooks/livekit", "http:///x", "http://user@host/x",
          "http://ho st/x", "http://host:80a/x", "proxy.internal:443"}) {
        EXPECT_FALSE(ap::request_path(bad)) << bad;
    }
}

TEST(ProxyHttp, HostValues) {
    for (const char* good :
         {"", "example.com", "example.com:8080", "127.0.0.1", "127.0.0.1:", "[::1]", "[::1]:8080",
          "[2001:db8::7]:443", "xn--bcher-kva.example", "a%20b", "under_score.example"}) {
        EXPECT_TRUE(ap::valid_host(good)) << good;
    }
    for (const char* bad :
         {"exa mple.com", "example.com:80:80", "example.com:http", "[::1", "[]", "[::1]x",
          "user@example.com", "a%2", "a%zz", "example.com/x", "example.com:123456", "\"q\""}) {
        EXPECT_FALSE(ap::valid_host(bad)) << bad;
    }
}

// ---- sources and the budget of rejections ---------------------------------------------

TEST(ProxySources, AddressesAndTheirSources) {
    auto v4 = ap::parse_address("192.0.2.7");
    ASSERT_TRUE(v4);
    EXPECT_TRUE(ap::is_ipv4(*v4));
    EXPECT_EQ(ap::source_of(*v4), "192.0.2.7");
    // An IPv4-mapped IPv6 address is that IPv4 address.
    auto mapped = ap::parse_address("::ffff:192.0.2.7");
    ASSERT_TRUE(mapped);
    EXPECT_EQ(ap::source_of(*mapped), "192.0.2.7");
    // IPv6: the /64, so that one host cannot take a new source per address.
    auto a = ap::parse_address("2001:db8:1:2:aaaa::1");
    auto b = ap::parse_address("2001:db8:1:2:bbbb::2");
    auto c = ap::parse_address("2001:db8:1:3::1");
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(ap::source_of(*a), "2001:db8:1:2::/64");
    EXPECT_EQ(ap::source_of(*a), ap::source_of(*b));
    EXPECT_NE(ap::source_of(*a), ap::source_of(*c));
    EXPECT_FALSE(ap::parse_address("300.1.1.1"));
    EXPECT_FALSE(ap::parse_address("localhost"));
    EXPECT_FALSE(ap::parse_address(""));
}

TEST(ProxySources, TrustedBlocks) {
    std::string error;
    auto blocks = ap::parse_cidrs(" 127.0.0.1, 10.0.0.0/8 ,::1,fd00::/8,192.0.2.0/31", error);
    ASSERT_TRUE(blocks) << error;
    EXPECT_EQ(blocks->size(), 5u);
    auto in = [&](const char* a) { return ap::contains(*blocks, *ap::parse_address(a)); };
    EXPECT_TRUE(in("127.0.0.1"));
    EXPECT_FALSE(in("127.0.0.2"));
    EXPECT_TRUE(in("10.255.0.1"));
    EXPECT_FALSE(in("11.0.0.1"));
    EXPECT_TRUE(in("::1"));
    EXPECT_TRUE(in("fd12:3456::1"));
    EXPECT_FALSE(in("fe80::1"));
    EXPECT_TRUE(in("192.0.2.1"));
    EXPECT_FALSE(in("192.0.2.2"));
    EXPECT_TRUE(in("::ffff:10.1.2.3"));  // an IPv4 client on an IPv6 socket
    auto everything = ap::parse_cidrs("0.0.0.0/0", error);
    ASSERT_TRUE(everything);
    EXPECT_TRUE(ap::contains(*everything, *ap::parse_address("203.0.113.9")));
    EXPECT_FALSE(ap::contains(*everything, *ap::parse_address("2001:db8::1")));
    EXPECT_TRUE(ap::parse_cidrs("", error)->empty());
    for (const char* bad :
         {"10.0.0.0/33", "::1/129", "10.0.0.0/", "10.0.0.0/x", "host", "10.0.0", "1.2.3.4,,"}) {
        EXPECT_FALSE(ap::parse_cidrs(bad, error)) << bad;
    }
    EXPECT_NE(error.find("CIDR"), std::string::npos);
}

TEST(ProxySources, TheBudgetOfRejections) {
    using namespace std::chrono_literals;
    ap::RejectBudget budget(2, 5);  // 5 at once, then 2 per second
    const auto t0 = ap::RejectBudget::Clock::time_point{} + 100s;
    for (int i = 0; i < 5; ++i) {
        EXPECT_FALSE(budget.over("a", t0)) << i;
        budget.charge("a", t0);
    }
    EXPECT_TRUE(budget.over("a", t0));
    EXPECT_FALSE(budget.over("b", t0));  // per source
    EXPECT_EQ(budget.retry_after_s("a", t0), 1);
    EXPECT_TRUE(budget.over("a", t0 + 400ms));
    EXPECT_FALSE(budget.over("a", t0 + 500ms));  // one more after half a second
    budget.charge("a", t0 + 500ms);
    EXPECT_TRUE(budget.over("a", t0 + 500ms));
    // Whole again after burst / rate; then it is forgotten by a sweep.
    budget.sweep(t0 + 2s);
    EXPECT_EQ(budget.tracked(), 1u);
    budget.sweep(t0 + 3s);
    EXPECT_EQ(budget.tracked(), 0u);
    EXPECT_FALSE(budget.over("a", t0 + 3s));
    // A slow rate gives a longer Retry-After.
    ap::RejectBudget slow(0.25, 1);
    slow.charge("x", t0);
    EXPECT_EQ(slow.retry_after_s("x", t0), 4);
    // Rate 0: no budget at all.
    ap::RejectBudget off(0, 1);
    for (int i = 0; i < 10; ++i) off.charge("x", t0);
    EXPECT_FALSE(off.over("x", t0));
    EXPECT_EQ(off.tracked(), 0u);
}

// ---- configuration --------------------------------------------------------------------

TEST(ProxyConfig, Defaults) {
    auto r = parse({});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->listen, "127.0.0.1");
    EXPECT_EQ(r.config->port, 8080);
    EXPECT_EQ(r.config->path, "/webhooks/livekit");
    EXPECT_EQ(r.config->conninfo, "");
    EXPECT_EQ(r.config->max_body_bytes, 1024u * 1024u);
    EXPECT_EQ(r.config->log_format, ap::LogFormat::Text);
}

TEST(ProxyConfig, FlagsWinOverEnvironmentWhichWinsOverDefaults) {
    auto r =
        parse({"--port", "9000", "--log-format=json", "--conninfo", "dbname=x options='-c a=b'"},
              {{"ATTENDANCE_PROXY_PORT", "7000"},
               {"ATTENDANCE_PROXY_POOL_SIZE", "3"},
               {"ATTENDANCE_PROXY_MAX_BODY_BYTES", "4096"},
               {"ATTENDANCE_PROXY_PATH", "/hooks/lk"}});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->port, 9000);
    EXPECT_EQ(r.config->pool_size, 3);
    EXPECT_EQ(r.config->max_body_bytes, 4096u);
    EXPECT_EQ(r.config->path, "/hooks/lk");
    EXPECT_EQ(r.config->conninfo, "dbname=x options='-c a=b'");
    EXPECT_EQ(r.config->log_format, ap::LogFormat::Json);
}

TEST(ProxyConfig, EmptyConninfoMeansLibpqEnvironment) {
    auto r = parse({"--conninfo", ""}, {{"ATTENDANCE_PROXY_CONNINFO", "dbname=ignored"}});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->conninfo, "");
}

TEST(ProxyConfig, RejectsBadInput) {
    EXPECT_NE(parse({"--port", "0"}).error, "");
    EXPECT_NE(parse({"--port", "70000"}).error, "");
    EXPECT_NE(parse({"--port", "80x"}).error, "");
    EXPECT_NE(parse({"--threads", "-1"}).error, "");
    EXPECT_NE(parse({"--max-connections", "0"}).error, "");
    EXPECT_NE(parse({"--port"}).error, "");
    EXPECT_NE(parse({"--nope", "1"}).error, "");
    EXPECT_NE(parse({"stray"}).error, "");
    EXPECT_NE(parse({"--path", "no-slash"}).error, "");
    EXPECT_NE(parse({"--path", "/metrics"}).error, "");
    EXPECT_NE(parse({"--log-format", "xml"}).error, "");
    EXPECT_NE(parse({}, {{"ATTENDANCE_PROXY_PORT", "http"}}).error, "");
    EXPECT_FALSE(parse({"--port", "0"}).config);
}

TEST(ProxyConfig, ErrorsNameTheFlagOrTheVariableThatWasWrong) {
    EXPECT_EQ(
        parse({}, {{"ATTENDANCE_PROXY_PORT", "http"}}).error.rfind("ATTENDANCE_PROXY_PORT:", 0),
        0u);
    EXPECT_EQ(parse({"--port=http"}).error.rfind("--port:", 0), 0u);
    EXPECT_EQ(parse({"--log-format", "xml"}).error.rfind("--log-format:", 0), 0u);
    auto r = parse({"--max-connections", "50"}, {{"ATTENDANCE_PROXY_LOG_FORMAT", "json"}});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->log_format, ap::LogFormat::Json);
    EXPECT_EQ(r.config->max_connections, 50);
}

TEST(ProxyConfig, PerSourceLimitsAndTrustedSources) {
    auto d = parse({});
    ASSERT_TRUE(d.config) << d.error;
    EXPECT_EQ(d.config->max_connections_per_source, 1000);
    EXPECT_DOUBLE_EQ(d.config->reject_rate, 10.0);
    EXPECT_EQ(d.config->reject_burst, 100);
    EXPECT_TRUE(d.config->trusted.empty());
    auto r = parse({"--trusted-sources", "127.0.0.1, 10.0.0.0/8", "--max-connections-per-source",
                    "0", "--reject-rate=0"},
                   {{"ATTENDANCE_PROXY_REJECT_BURST", "7"}});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->trusted.size(), 2u);
    EXPECT_EQ(r.config->max_connections_per_source, 0);
    EXPECT_DOUBLE_EQ(r.config->reject_rate, 0.0);
    EXPECT_DOUBLE_EQ(parse({"--reject-rate", "0.25"}).config->reject_rate, 0.25);
    EXPECT_NE(parse({"--reject-rate", "-1"}).error, "");
    EXPECT_EQ(r.config->reject_burst, 7);
    auto bad = parse({"--trusted-sources", "10.0.0.0/40"});
    EXPECT_FALSE(bad.config);
    EXPECT_EQ(bad.error.rfind("--trusted-sources:", 0), 0u) << bad.error;
    EXPECT_EQ(parse({}, {{"ATTENDANCE_PROXY_TRUSTED_SOURCES", "nope"}})
                  .error.rfind("ATTENDANCE_PROXY_TRUSTED_SOURCES:", 0),
              0u);
    EXPECT_NE(parse({"--reject-burst", "0"}).error, "");
    EXPECT_NE(parse({"--path", "/readyz"}).error, "");
}

TEST(ProxyConfig, AFlagGivenTwiceTakesItsLastValue) {
    auto r = parse({"--keepalive-timeout", "2", "--read-timeout=5", "--keepalive-timeout", "60"});
    ASSERT_TRUE(r.config) << r.error;
    EXPECT_EQ(r.config->keepalive_timeout_s, 60);
    EXPECT_EQ(r.config->read_timeout_s, 5);
}

TEST(ProxyConfig, HelpListsEveryFlagAndVariable) {
    EXPECT_TRUE(parse({"--help"}).help);
    EXPECT_TRUE(parse({"--version"}).version);
    const std::string text = ap::usage();
    for (const char* s : {"--listen",
                          "--port",
                          "--path",
                          "--conninfo",
                          "--threads",
                          "--pool-size",
                          "--max-body-bytes",
                          "--pool-timeout-ms",
                          "--connect-timeout",
                          "--statement-timeout-ms",
                          "--read-timeout",
                          "--max-connections",
                          "--write-timeout",
                          "--keepalive-timeout",
                          "--retry-after",
                          "--log-format",
                          "--max-connections-per-source",
                          "--trusted-sources",
                          "--reject-rate",
                          "--reject-burst",
                          "ATTENDANCE_PROXY_CONNINFO",
                          "/webhooks/livekit"}) {
        EXPECT_NE(text.find(s), std::string::npos) << s;
    }
}

// ---- metrics --------------------------------------------------------------------------

TEST(ProxyMetrics, RendersCountersHistogramAndGauges) {
    ap::Metrics m;
    m.request_done("webhook", 200, "recorded", 0.003);
    m.request_done("webhook", 200, "recorded", 0.02);
    m.request_done("webhook", 200, "duplicate", 20.0);
    m.request_done("webhook", 401, "", 0.001);
    m.request_done("healthz", 200, "", 0.0001);
    m.db_error("28000");
    m.db_error("");
    m.connect_failed();
    m.in_flight_add(2);
    const std::string text = m.render(ap::PoolStats{8, 3, 1});
    auto has = [&](const std::string& s) { return text.find(s + "\n") != std::string::npos; };
    EXPECT_TRUE(has(
        R"(attendance_proxy_requests_total{handler="webhook",status="200",result="recorded"} 2)"));
    EXPECT_TRUE(has(
        R"(attendance_proxy_requests_total{handler="webhook",status="200",result="duplicate"} 1)"));
    EXPECT_TRUE(
        has(R"(attendance_proxy_requests_total{handler="webhook",status="401",result=""} 1)"));
    EXPECT_TRUE(
        has(R"(attendance_proxy_requests_total{handler="healthz",status="200",result=""} 1)"));
    EXPECT_TRUE(has(R"(attendance_proxy_webhook_duration_seconds_bucket{le="0.001"} 1)"));
    EXPECT_TRUE(has(R"(attendance_proxy_webhook_duration_seconds_bucket{le="0.005"} 2)"));
    EXPECT_TRUE(has(R"(attendance_proxy_webhook_duration_seconds_bucket{le="0.025"} 3)"));
    EXPECT_TRUE(has(R"(attendance_proxy_webhook_duration_seconds_bucket{le="10"} 3)"));
    EXPECT_TRUE(has(R"(attendance_proxy_webhook_duration_seconds_bucket{le="+Inf"} 4)"));
    EXPECT_TRUE(has("attendance_proxy_webhook_duration_seconds_count 4"));
    EXPECT_TRUE(has(R"(attendance_proxy_db_errors_total{sqlstate="28000"} 1)"));
    EXPECT_TRUE(has(R"(attendance_proxy_db_errors_total{sqlstate="none"} 1)"));
    EXPECT_TRUE(has("attendance_proxy_db_connect_failures_total 1"));
    EXPECT_TRUE(has("attendance_proxy_pool_size 8"));
    EXPECT_TRUE(has("attendance_proxy_pool_connections 3"));
    EXPECT_TRUE(has("attendance_proxy_pool_in_use 1"));
    EXPECT_TRUE(has("attendance_proxy_in_flight_requests 2"));
    EXPECT_TRUE(has("# TYPE attendance_proxy_webhook_duration_seconds histogram"));
}

TEST(ProxyMetrics, RejectionsAndConnectionLimits) {
    ap::Metrics m;
    const std::string before = m.render({});
    EXPECT_NE(before.find("\nattendance_proxy_key_names -1\n"), std::string::npos);
    m.rejected("missing_token");
    m.rejected("missing_token");
    m.rejected("body_hash");
    m.rate_limited();
    m.rejection_not_logged();
    m.connection_evicted();
    m.source_connection_refused();
    m.connection_refused();
    m.set_key_names(2);
    m.key_names_read();
    const std::string text = m.render({});
    auto has = [&](const std::string& s) { return text.find(s + "\n") != std::string::npos; };
    EXPECT_TRUE(has(R"(attendance_proxy_rejected_total{reason="missing_token"} 2)"));
    EXPECT_TRUE(has(R"(attendance_proxy_rejected_total{reason="body_hash"} 1)"));
    EXPECT_TRUE(has("attendance_proxy_rate_limited_total 1"));
    EXPECT_TRUE(has("attendance_proxy_rejections_not_logged_total 1"));
    EXPECT_TRUE(has("attendance_proxy_connections_evicted_total 1"));
    EXPECT_TRUE(has("attendance_proxy_source_connections_refused_total 1"));
    EXPECT_TRUE(has("attendance_proxy_connections_refused_total 1"));
    EXPECT_TRUE(has("attendance_proxy_key_names 2"));
    EXPECT_TRUE(has("attendance_proxy_key_name_reads_total 1"));
}

TEST(ProxyMetrics, EscapesLabelValues) {
    ap::Metrics m;
    m.request_done("other", 404, "a\"b\\c\nd", 0);
    EXPECT_NE(m.render({}).find(R"(result="a\"b\\c\nd")"), std::string::npos);
}

// ---- access log -----------------------------------------------------------------------

TEST(ProxyLog, JsonAccessLineHasEveryField) {
    ap::AccessRecord r;
    r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1763130300123));
    r.remote = "127.0.0.1";
    r.method = "POST";
    r.path = "/webhooks/livekit";
    r.status = 200;
    r.result = "recorded";
    r.event = "participant_joined";
    r.event_id = "EV_jBraYDw5kFk2";
    r.duration_ms = 2.5;
    auto j = nlohmann::json::parse(ap::format_access(r, ap::LogFormat::Json));
    EXPECT_EQ(j["time"], "2025-11-14T14:25:00.123Z");
    EXPECT_EQ(j["method"], "POST");
    EXPECT_EQ(j["path"], "/webhooks/livekit");
    EXPECT_EQ(j["status"], 200);
    EXPECT_EQ(j["result"], "recorded");
    EXPECT_EQ(j["event"], "participant_joined");
    EXPECT_EQ(j["event_id"], "EV_jBraYDw5kFk2");
    EXPECT_TRUE(j["sqlstate"].is_null());
    EXPECT_DOUBLE_EQ(j["duration_ms"].get<double>(), 2.5);
}

TEST(ProxyLog, TextAccessLineIsOneGreppableLine) {
    ap::AccessRecord r;
    r.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(0));
    r.method = "POST";
    r.path = "/webhooks/livekit";
    r.status = 401;
    r.sqlstate = "28000";
    r.error = "webhook rejected:\nbad signature";
    const std::string line = ap::format_access(r, ap::LogFormat::Text);
    EXPECT_EQ(
        line,
        "1970-01-01T00:00:00.000Z - POST /webhooks/livekit status=401 result=- event=- event_id=- "
        "sqlstate=28000 duration_ms=0.000 error=\"webhook rejected:\\nbad signature\"");
    EXPECT_EQ(line.find('\n'), std::string::npos);
}

TEST(ProxyLog, MessagesInBothFormats) {
    const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(0));
    EXPECT_EQ(ap::format_message(t, "info", "a\nb", ap::LogFormat::Text),
              "1970-01-01T00:00:00.000Z info: a b");
    auto j =
        nlohmann::json::parse(ap::format_message(t, "warning", "x \"y\"", ap::LogFormat::Json));
    EXPECT_EQ(j["level"], "warning");
    EXPECT_EQ(j["message"], "x \"y\"");
}

TEST(ProxyLog, RejectionsAreLoggedAtABoundedRate) {
    ap::RejectLog log(3);
    int logged = 0;
    for (int i = 0; i < 1000; ++i) logged += log.note("192.0.2.1", "401 missing_token") ? 1 : 0;
    for (int i = 0; i < 20; ++i) logged += log.note("192.0.2.2", "429 -") ? 1 : 0;
    logged += log.note("2001:db8::/64", "404 not found") ? 1 : 0;
    EXPECT_EQ(logged, 3);
    EXPECT_EQ(log.suppressed_total(), 1018u);
    const std::string line = log.flush(10);
    EXPECT_EQ(line,
              "rejected 1021 requests in the last 10 s (1018 not logged one by one): "
              "401 missing_token 1000, 429 - 20, 404 not found 1; from 192.0.2.1 1000, "
              "192.0.2.2 20, 2001:db8::/64 1");
    // A new interval: the first ones are logged again, and nothing to sum up.
    EXPECT_TRUE(log.note("192.0.2.1", "401 body_hash"));
    EXPECT_EQ(log.flush(10), "");
    EXPECT_EQ(log.flush(10), "");
}

TEST(ProxyLog, ASummaryNamesAFewSourcesAndCountsTheRest) {
    ap::RejectLog log(0);
    for (int i = 0; i < 12; ++i)
        for (int k = 0; k <= i; ++k) log.note("198.51.100." + std::to_string(i), "401 x");
    const std::string line = log.flush(10);
    EXPECT_NE(line.find("from 198.51.100.11 12, 198.51.100.10 11, 198.51.100.9 10, "
                        "198.51.100.8 9, 198.51.100.7 8, ..."),
              std::string::npos)
        << line;
}
