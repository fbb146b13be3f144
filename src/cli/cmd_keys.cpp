// keys (add, list, retire) and sign: the webhook signing keys.
#include "cli/cli.hpp"
#include "cli/terminal.hpp"

#include <string>

namespace attendancectl {

namespace {

constexpr const char* kDefaultUrl = "http://127.0.0.1:8080/webhooks/livekit";

constexpr const char* kListKeys =
    "SELECT api_key, active, created_at, retired_at, secret_sha256, note "
    "FROM attendance_list_webhook_keys()";

int keys_add(Context& ctx, const Args& args) {
    if (args.positional.size() != 3) throw UsageError("keys add needs API_KEY and SECRET (or -)");
    const std::string& key = args.positional[1];
    std::string secret = args.positional[2];
    if (secret == "-") secret = read_secret("Secret for " + key + ": ");
    if (secret.empty()) throw UsageError("the secret is empty");
    ctx.db().exec("SELECT attendance_add_webhook_key($1, $2, $3)",
                  {key, secret, args.value("note")});
    Result r = ctx.db().exec(
        "SELECT secret_sha256 FROM attendance_list_webhook_keys() WHERE api_key = $1", {key});
    print("key " + sanitize(key) + " added (secret sha256 " + (r.rows() ? r.get(0, 0) : "?") +
          "...)\n");
    return kOk;
}

int keys_list(Context& ctx, const Args& args) {
    if (args.positional.size() != 1) throw UsageError("keys list takes no arguments");
    if (ctx.json) {
        print_json_rows(ctx, kListKeys, {});
        return kOk;
    }
    Result r = ctx.db().exec(
        "SELECT api_key, CASE WHEN active THEN 'active' ELSE 'retired' END, "
        ATTENDANCECTL_TS("created_at") ", coalesce(" ATTENDANCECTL_TS("retired_at") ", ''), "
        "secret_sha256, coalesce(note, '') FROM attendance_list_webhook_keys()");
    Table t{{"API Key", "State", "Created", "Retired", "Secret SHA-256", "Note"}, {}, {}};
    for (int i = 0; i < r.rows(); ++i) {
        t.rows.push_back({r.get(i, 0), Cell(r.get(i, 1), color_for(r.get(i, 1))), r.get(i, 2),
                          r.get(i, 3), r.get(i, 4) + "...", r.get(i, 5)});
    }
    print(render_table(t, ctx.out));
    return kOk;
}

int keys_retire(Context& ctx, const Args& args) {
    if (args.positional.size() != 2) throw UsageError("keys retire needs API_KEY");
    const std::string& key = args.positional[1];
    Result r = ctx.db().exec(
        "SELECT attendance_retire_webhook_key($1, coalesce($2::timestamptz, "
        "now())), " ATTENDANCECTL_TS("coalesce($2::timestamptz, now())"),
        {key, args.value("at")});
    if (r.is_null(0, 0)) {
        std::fprintf(stderr, "attendancectl: no key %s\n", sanitize(key).c_str());
        return kFailures;
    }
    print("key " + sanitize(key) + " retired at " + r.get(0, 1) + "\n");
    return kOk;
}

int run_keys(Context& ctx, const Args& args) {
    if (args.positional.empty()) throw UsageError("keys needs a subcommand: add, list or retire");
    const std::string& sub = args.positional[0];
    if (ctx.json && sub != "list") throw UsageError("--json is supported by keys list only");
    if (sub == "add") return keys_add(ctx, args);
    if (sub == "list") return keys_list(ctx, args);
    if (sub == "retire") return keys_retire(ctx, args);
    throw UsageError("unknown keys subcommand \"" + sub + "\" (add, list or retire)");
}

// Single-quotes a word for a POSIX shell.
std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'') {
            out += "'\\''";
        } else {
            out += c;
        }
    }
    return out + "'";
}

int run_sign(Context& ctx, const Args& args) {
    if (args.positional.size() != 1) throw UsageError("sign needs BODY_FILE (or - for stdin)");
    auto key = args.value("key");
    if (!key) throw UsageError("sign needs --key API_KEY");
    std::string ttl = "600";
    if (auto v = args.value("ttl")) ttl = std::to_string(parse_int(*v, "--ttl", 1, 31536000));
    const std::string& file = args.positional[0];
    const std::string body = read_file(file);
    if (body.find('\0') != std::string::npos) throw InputError(file + " contains a NUL byte");
    Result r =
        ctx.db().exec("SELECT attendance_sign_webhook($1, $2, $3::integer), " ATTENDANCECTL_TS(
                          "now() + make_interval(secs => $3::integer)"),
                      {body, *key, ttl});
    const std::string token = r.get(0, 0);
    if (args.has("token-only")) {
        print(token + "\n");
        return kOk;
    }
    const std::string url = args.value("url").value_or(kDefaultUrl);
    const std::string data = file == "-" ? shell_quote(body) : "@" + shell_quote(file);
    std::fprintf(stderr, "# token valid for %s s (until %s)\n", ttl.c_str(), r.get(0, 1).c_str());
    // -w '\n': the proxy's JSON answer ends without a newline; the prompt starts on its own line
    print("curl -sS -w '\\n' -X POST " + shell_quote(url) + " \\\n" +
          "  -H 'Content-Type: application/webhook+json' \\\n" + "  -H " +
          shell_quote("Authorization: " + token) + " \\\n" + "  --data-binary " + data + "\n");
    return kOk;
}

}  // namespace

Command keys_command() {
    return {
        "keys",
        "add API_KEY SECRET|- [--note TEXT] | list [--json] | retire API_KEY [--at TIME]",
        "LiveKit API keys that sign webhooks: add, list, retire",
        "  keys add API_KEY SECRET   store (or replace) a key; SECRET - reads the secret from\n"
        "                            stdin (without echo on a terminal) so that it stays out of\n"
        "                            the shell history: attendancectl keys add APIxyz -\n"
        "  keys list                 the keys with a SHA-256 prefix of each secret (the secret\n"
        "                            itself is never shown)\n"
        "  keys retire API_KEY       stop accepting the key (now, or --at TIME); exit status 1\n"
        "                            when there is no such key\n"
        "Needs the owner's rights (the functions are not granted to PUBLIC).",
        {{"note", 0, ArgKind::Required, "TEXT", "keys add: a note stored with the key"},
         {"at", 0, ArgKind::Required, "TIME", "keys retire: when (a timestamptz; default now)"}},
        true,
        &run_keys};
}

Command sign_command() {
    return {"sign",
            "BODY_FILE --key API_KEY [--url URL] [--ttl SECONDS] [--token-only]",
            "print a ready-to-run curl command with a signed webhook (manual webhook test)",
            "Signs the exact bytes of BODY_FILE (- for stdin) with attendance_sign_webhook(body,\n"
            "API_KEY) and prints a curl command that posts it with Content-Type\n"
            "application/webhook+json and the Authorization token, like the \"Manual Webhook\n"
            "Test\" of the application the extension replaces. The token is valid for --ttl\n"
            "seconds (default 600); its expiry is printed on stderr so that stdout can be piped\n"
            "to sh.",
            {{"key", 'k', ArgKind::Required, "API_KEY", "the key to sign with (required)"},
             {"url", 0, ArgKind::Required, "URL",
              "where curl posts (default http://127.0.0.1:8080/webhooks/livekit)"},
             {"ttl", 0, ArgKind::Required, "SECONDS", "token lifetime (default 600)"},
             {"token-only", 0, ArgKind::None, "", "print only the token"}},
            false,
            &run_sign};
}

}  // namespace attendancectl
