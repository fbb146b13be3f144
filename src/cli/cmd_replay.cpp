// replay: posts a JSON-lines webhook file to the proxy over HTTP, or straight into
// attendance_ingest_webhook() over SQL, and sums up what happened to each request.
#include "cli/cli.hpp"
#include "cli/http.hpp"
#include "cli/replay.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>

namespace attendancectl {

namespace {

struct Sent {
    Outcome outcome = Outcome::Rejected;
    std::string code;     // rejected: SQLSTATE, or "HTTP 401 (28000)"
    std::string message;  // rejected: why
};

class Sender {
  public:
    virtual ~Sender() = default;
    virtual Sent send(const WebhookRequest& r, const std::optional<std::string>& authorization) = 0;
};

class SqlSender : public Sender {
  public:
    explicit SqlSender(Db& db) : db_(db) {
        db_.prepare("attendancectl_ingest", "SELECT attendance_ingest_webhook($1, $2)::text", 2);
    }
    Sent send(const WebhookRequest& r, const std::optional<std::string>& authorization) override {
        try {
            Result res = db_.exec_prepared("attendancectl_ingest", {r.body, authorization});
            const std::string answer = res.get(0, 0);
            if (auto o = outcome_of(answer)) return {*o, "", ""};
            return {Outcome::Rejected, "answer", "unexpected answer: " + answer.substr(0, 200)};
        } catch (const DbError& e) {
            if (e.sqlstate.empty()) throw;  // the connection is gone: stop here
            return {Outcome::Rejected, e.sqlstate, e.what()};
        }
    }

  private:
    Db& db_;
};

class HttpSender : public Sender {
  public:
    HttpSender(const Url& url, int timeout) : client_(url, timeout) {}
    Sent send(const WebhookRequest& r, const std::optional<std::string>& authorization) override {
        std::vector<std::pair<std::string, std::string>> headers = {
            {"Content-Type", r.content_type}};
        if (authorization) headers.emplace_back("Authorization", *authorization);
        HttpResponse res = client_.post(r.body, headers);
        if (res.status >= 200 && res.status < 300) {
            if (auto o = outcome_of(res.body)) return {*o, "", ""};
            return {Outcome::Recorded, "", ""};  // 2xx: stored, whatever the body says
        }
        std::string code = "HTTP " + std::to_string(res.status);
        std::string message = res.reason;
        try {
            const nlohmann::json j = nlohmann::json::parse(res.body);
            if (j.is_object()) {
                if (j.contains("sqlstate") && j["sqlstate"].is_string()) {
                    code += " (" + j["sqlstate"].get<std::string>() + ")";
                }
                if (j.contains("error") && j["error"].is_string())
                    message = j["error"].get<std::string>();
            }
        } catch (const nlohmann::json::exception&) {
            if (!res.body.empty()) message = res.body.substr(0, 200);
        }
        while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
            message.pop_back();
        }
        return {Outcome::Rejected, code, message};
    }

  private:
    HttpClient client_;
};

const char* outcome_name(Outcome o) {
    switch (o) {
        case Outcome::Recorded:
            return "recorded";
        case Outcome::Duplicate:
            return "duplicate";
        case Outcome::Ignored:
            return "ignored";
        case Outcome::Rejected:
            return "rejected";
    }
    return "?";
}

class Progress {
  public:
    Progress(bool enabled, std::size_t total) : enabled_(enabled), total_(total) {}
    void update(std::size_t done, const Tally& t, bool force = false) {
        if (!enabled_) return;
        auto now = std::chrono::steady_clock::now();
        if (!force && done != total_ && now - last_ < std::chrono::milliseconds(50)) return;
        last_ = now;
        const int width = 30;
        const int filled = total_ ? static_cast<int>(width * done / total_) : width;
        std::fprintf(
            stderr,
            "\r\x1b[K[%s%s] %zu/%zu  recorded %zu  duplicate %zu  ignored %zu  rejected %zu",
            std::string(static_cast<std::size_t>(filled), '#').c_str(),
            std::string(static_cast<std::size_t>(width - filled), '.').c_str(), done, total_,
            t.count(Outcome::Recorded), t.count(Outcome::Duplicate), t.count(Outcome::Ignored),
            t.count(Outcome::Rejected));
        std::fflush(stderr);
    }
    void clear() {
        if (enabled_) std::fputs("\r\x1b[K", stderr);
    }

  private:
    bool enabled_;
    std::size_t total_;
    std::chrono::steady_clock::time_point last_{};
};

std::string summary_json(const Tally& t, const std::string& file, const std::string& via,
                         double seconds) {
    nlohmann::ordered_json j;
    j["file"] = file;
    j["via"] = via;
    j["requests"] = t.requests;
    j["recorded"] = t.count(Outcome::Recorded);
    j["duplicate"] = t.count(Outcome::Duplicate);
    j["ignored"] = t.count(Outcome::Ignored);
    j["rejected"] = t.count(Outcome::Rejected);
    nlohmann::ordered_json by = nlohmann::ordered_json::array();
    for (const auto& [key, n] : t.rejections) {
        by.push_back({{"code", key.first}, {"message", key.second}, {"count", n}});
    }
    j["rejected_by_reason"] = by;
    j["seconds"] = seconds;
    return j.dump(2) + "\n";
}

std::string summary_text(const Tally& t, const std::string& file, const std::string& via,
                         double seconds, const Style& st) {
    char took[32];
    std::snprintf(took, sizeof took, "%.2f", seconds);
    const std::size_t rejected = t.count(Outcome::Rejected);
    std::string out = "replayed " + sanitize(file) + " " + via + " in " + took + " s\n";
    out += st.bold(std::to_string(t.requests) + " requests:") + " " +
           st.paint(std::to_string(t.count(Outcome::Recorded)) + " recorded",
                    t.count(Outcome::Recorded) ? Color::Green : Color::None) +
           ", " + std::to_string(t.count(Outcome::Duplicate)) + " duplicate, " +
           std::to_string(t.count(Outcome::Ignored)) + " ignored, " +
           st.paint(std::to_string(rejected) + " rejected", rejected ? Color::Red : Color::None);
    if (rejected) {
        std::map<std::string, std::size_t> by_code;
        for (const auto& [key, n] : t.rejections) by_code[key.first] += n;
        std::string codes;
        for (const auto& [code, n] : by_code) {
            codes += (codes.empty() ? "" : ", ") + code + ": " + std::to_string(n);
        }
        out += " (" + codes + ")";
    }
    out += "\n";
    if (rejected) {
        // Most frequent reasons first; every single one is on stderr (and in --json).
        std::vector<std::pair<std::size_t, std::pair<std::string, std::string>>> reasons;
        for (const auto& [key, n] : t.rejections) reasons.push_back({n, key});
        std::stable_sort(reasons.begin(), reasons.end(),
                         [](const auto& a, const auto& b) { return a.first > b.first; });
        constexpr std::size_t kShown = 10;
        Table tab{{"Code", "Count", "Reason"}, {Align::Left, Align::Right}, {}};
        std::size_t others = 0, other_requests = 0;
        for (std::size_t i = 0; i < reasons.size(); ++i) {
            if (i < kShown) {
                const auto& [n, key] = reasons[i];
                tab.rows.push_back({Cell(key.first, Color::Red), std::to_string(n), key.second});
            } else {
                ++others;
                other_requests += reasons[i].first;
            }
        }
        out += "rejected by reason:\n" + render_table(tab, st, false);
        if (others) {
            out += "(" + std::to_string(others) + " more reasons for " +
                   std::to_string(other_requests) + " requests: see the lines above or --json)\n";
        }
    }
    return out;
}

int run_replay(Context& ctx, const Args& args) {
    if (args.positional.size() != 1) throw UsageError("replay needs exactly one FILE");
    const std::string& file = args.positional[0];
    auto url_text = args.value("url");
    if (url_text && args.has("sql")) throw UsageError("give either --url or --sql, not both");
    if (url_text && args.has("replay-mode")) {
        throw UsageError("--replay-mode applies to --sql only (the proxy's connection decides)");
    }
    std::optional<Url> url;
    if (url_text) url = parse_url(*url_text);
    int timeout = 30;
    if (auto v = args.value("timeout"))
        timeout = static_cast<int>(parse_int(*v, "--timeout", 1, 3600));
    const auto resign = args.value("resign");
    const bool quiet = args.has("quiet");
    const bool verbose = args.has("verbose");

    const std::vector<WebhookRequest> requests = load_webhooks(file);

    std::unique_ptr<Sender> sender;
    std::string via;
    if (url) {
        sender = std::make_unique<HttpSender>(*url, timeout);
        via = "over HTTP to " + *url_text;
    } else {
        Db& db = ctx.db();
        if (args.has("replay-mode")) db.exec("SET attendance.replay_mode = on");
        sender = std::make_unique<SqlSender>(db);
        via = args.has("replay-mode") ? "over SQL (replay mode)" : "over SQL";
    }
    if (resign) via += ", re-signed with " + *resign;

    Tally tally;
    Progress progress(ctx.stderr_tty && !quiet, requests.size());
    const auto started = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const WebhookRequest& r = requests[i];
        std::optional<std::string> authorization = r.authorization;
        if (resign) {
            Result s = ctx.db().exec("SELECT attendance_sign_webhook($1, $2)", {r.body, *resign});
            authorization = s.get(0, 0);
        }
        const Sent sent = sender->send(r, authorization);
        ++tally.requests;
        ++tally.counts[sent.outcome];
        const std::string where =
            "line " + std::to_string(r.line) + (r.label.empty() ? "" : " (" + r.label + ")");
        if (sent.outcome == Outcome::Rejected) {
            ++tally.rejections[{sent.code, sent.message}];
            if (!quiet) {
                progress.clear();
                std::fprintf(stderr, "%s: %s %s: %s\n", where.c_str(),
                             ctx.err.paint("rejected", Color::Red).c_str(), sent.code.c_str(),
                             sanitize(sent.message).c_str());
            }
        } else if (verbose) {
            progress.clear();
            std::fprintf(stderr, "%s: %s\n", where.c_str(), outcome_name(sent.outcome));
        }
        progress.update(i + 1, tally, i + 1 == requests.size());
    }
    progress.clear();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    print(ctx.json ? summary_json(tally, file, via, seconds)
                   : summary_text(tally, file, via, seconds, ctx.out));
    const bool rejected = tally.count(Outcome::Rejected) > 0;
    return rejected && !args.has("allow-rejects") ? kFailures : kOk;
}

}  // namespace

Command replay_command() {
    return {"replay",
            "FILE [--sql [--replay-mode] | --url URL] [--resign API_KEY] [--allow-rejects]",
            "send a JSON-lines webhook file again, over SQL or HTTP, and sum up the results",
            "FILE holds one request per line, {\"authorization\": \"<jwt>\" or null, \"body\":\n"
            "\"<exact body bytes>\", \"content_type\": ...} (the format of\n"
            "test/fixtures/livekit/*.jsonl); - reads stdin. The whole file is checked before\n"
            "anything is sent. Each request goes, in order, either\n"
            "  --sql (default)  to SELECT attendance_ingest_webhook(body, authorization), or\n"
            "  --url URL        as an HTTP POST to the proxy, e.g.\n"
            "                   http://127.0.0.1:8080/webhooks/livekit (http:// and IPv4 only).\n"
            "Archived webhooks carry expired tokens: --replay-mode (SQL, superuser) runs SET\n"
            "attendance.replay_mode = on first (expiry not checked; signature and body hash\n"
            "still are); --resign API_KEY signs each body afresh with attendance_sign_webhook().\n"
            "\n"
            "Prints a progress bar on a terminal (stderr), each rejection as it happens, and a\n"
            "summary: recorded, duplicate, ignored, and rejected by reason (SQLSTATE, or HTTP\n"
            "status and SQLSTATE). Exit status 0 when nothing was rejected (or with\n"
            "--allow-rejects), 1 when something was.",
            {{"sql", 0, ArgKind::None, "", "call attendance_ingest_webhook() directly (default)"},
             {"url", 'u', ArgKind::Required, "URL", "post to the proxy at URL instead"},
             {"replay-mode", 0, ArgKind::None, "",
              "SQL only: SET attendance.replay_mode = on (accept expired tokens)"},
             {"resign", 0, ArgKind::Required, "API_KEY", "replace each token by a fresh one"},
             {"allow-rejects", 0, ArgKind::None, "", "exit 0 even when requests were rejected"},
             {"timeout", 0, ArgKind::Required, "SECONDS", "HTTP: per-request timeout (default 30)"},
             {"quiet", 'q', ArgKind::None, "", "no progress bar, no rejection lines"},
             {"verbose", 'v', ArgKind::None, "", "a line per request on stderr"}},
            true,
            &run_replay};
}

}  // namespace attendancectl
