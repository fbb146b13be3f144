// Unit tests of the proxy's pure pieces: status mapping, UTF-8 validation, the tiny
// field scanner, configuration parsing, metrics rendering and log formatting. They
// need no server and no network. Built from src/proxy/{config,status,text,metrics,log}.cpp.
#include "proxy/config.hpp"
#include "proxy/log.hpp"
#include "proxy/metrics.hpp"
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
    for (const char* s :
         {"--listen", "--port", "--path", "--conninfo", "--threads", "--pool-size",
          "--max-body-bytes", "--pool-timeout-ms", "--connect-timeout", "--statement-timeout-ms",
          "--read-timeout", "--max-connections", "--write-timeout", "--keepalive-timeout",
          "--retry-after", "--log-format", "ATTENDANCE_PROXY_CONNINFO", "/webhooks/livekit"}) {
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
