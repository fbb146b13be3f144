// calculate, reconcile, explain: run the extension's functions and show what they did.
#include "cli/cli.hpp"

#include <nlohmann/json.hpp>

namespace attendancectl {

namespace {

constexpr const char* kCalculateOne = "SELECT * FROM attendance_calculate($1::bigint)";

constexpr const char* kCalculateOneText =
    "SELECT coalesce(m.user_id::text, m.user_key), coalesce(m.participant_name, ''), m.role, "
    "coalesce(" ATTENDANCECTL_TS("m.first_join_time") ", '-'), "
    "coalesce(" ATTENDANCECTL_TS("m.last_leave_time") ", '-'), m.total_duration_minutes, "
    "coalesce(to_char(m.attendance_percentage, 'FM990.00'), ''), coalesce(m.attendance_status, ''), "
    "coalesce(m.status_rule, '') FROM attendance_calculate($1::bigint) m";

constexpr const char* kSessionHeader =
    "SELECT s.room_name, " ATTENDANCECTL_TS("s.starts_at") ", " ATTENDANCECTL_TS("s.ends_at") ", "
    "s.policy_name, s.needs_calculation, now() < s.ends_at "
    "FROM attendance_session_schedule s WHERE s.session_id = $1::bigint";

std::string json_text(const nlohmann::json& v) {
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

int calculate_session(Context& ctx, int64_t session) {
    const std::vector<Param> p = {std::to_string(session)};
    if (ctx.json) {
        print_json_rows(ctx, kCalculateOne, p);
        return kOk;
    }
    Result r = ctx.db().exec(kCalculateOneText, p);
    Result h = ctx.db().exec(kSessionHeader, p);
    const Style& st = ctx.out;
    std::string out = st.bold("Session " + std::to_string(session));
    if (h.rows() == 1) {
        out += " (" + sanitize(h.get(0, 0)) + ", " + h.get(0, 1) + " - " + h.get(0, 2) +
               ", policy " + sanitize(h.get(0, 3)) + ")";
        if (h.get(0, 5) == "t")
            out += " " + st.paint("provisional: the session has not ended", Color::Cyan);
    }
    out += "\n";
    Table t{{"User", "Name", "Role", "First Join", "Last Leave", "Minutes", "Percentage", "Status",
             "Rule"},
            {Align::Left, Align::Left, Align::Left, Align::Left, Align::Left, Align::Right,
             Align::Right},
            {}};
    for (int i = 0; i < r.rows(); ++i) {
        t.rows.push_back({r.get(i, 0), r.get(i, 1), r.get(i, 2), r.get(i, 3), r.get(i, 4),
                          r.get(i, 5), r.get(i, 6), Cell(r.get(i, 7), color_for(r.get(i, 7))),
                          r.get(i, 8)});
    }
    print(out + render_table(t, st));
    return kOk;
}

int calculate_due(Context& ctx) {
    Result r = ctx.db().exec("SELECT processed, failed FROM attendance_calculate()");
    const std::string processed = r.get(0, 0);
    const std::string failed = r.get(0, 1);
    const bool any_failed = failed != "0";
    if (ctx.json) {
        print_json_value("{\"processed\": " + processed + ", \"failed\": " + failed + "}");
        return any_failed ? kFailures : kOk;
    }
    const Style& st = ctx.out;
    std::string out = "processed " + processed + ", failed " +
                      st.paint(failed, any_failed ? Color::Red : Color::None) + "\n";
    if (any_failed) {
        Result f = ctx.db().exec(
            "SELECT session_id, failed_attempts, coalesce(last_error, '') "
            "FROM attendance_sessions_due WHERE failed_attempts > 0 ORDER BY session_id");
        Table t{{"Session", "Attempts", "Last Error"}, {Align::Right, Align::Right}, {}};
        for (int i = 0; i < f.rows(); ++i) {
            t.rows.push_back({f.get(i, 0), f.get(i, 1), Cell(f.get(i, 2), Color::Red)});
        }
        out += render_table(t, st);
    }
    print(out);
    return any_failed ? kFailures : kOk;
}

int run_calculate(Context& ctx, const Args& args) {
    if (args.positional.size() > 1) throw UsageError("calculate takes at most one SESSION");
    if (args.positional.size() == 1) return calculate_session(ctx, session_arg(args.positional[0]));
    return calculate_due(ctx);
}

int run_reconcile(Context& ctx, const Args& args) {
    if (!args.positional.empty()) throw UsageError("reconcile takes no arguments");
    Result r = ctx.db().exec("SELECT attendance_reconcile()::text");
    if (ctx.json) {
        print_json_value(r.get(0, 0));
        return kOk;
    }
    const nlohmann::json j = nlohmann::json::parse(r.get(0, 0));
    std::vector<std::pair<std::string, Cell>> pairs;
    if (j.is_object()) {
        for (const auto& [k, v] : j.items()) pairs.push_back({k, Cell(json_text(v))});
    }
    print(ctx.out.bold("Reconciliation") + "\n" + render_pairs(pairs, ctx.out));
    return kOk;
}

// The human summary above the full trace.
std::string explain_summary(const nlohmann::json& j, const Style& st) {
    auto get = [&](const nlohmann::json& o, const char* k) {
        return o.is_object() && o.contains(k) ? json_text(o.at(k)) : std::string("-");
    };
    std::string status = get(j, "status");
    std::string out =
        st.bold("User " + get(j, "user_key") + " in session " + get(j, "session_id")) + ": " +
        st.paint(status, color_for(status)) + " (" + get(j, "percentage") + " %, rule " +
        get(j, "rule") + ")";
    if (j.value("provisional", false)) out += " " + st.paint("provisional", Color::Cyan);
    out += "\n";
    std::vector<std::pair<std::string, Cell>> pairs;
    const nlohmann::json w = j.value("window", nlohmann::json::object());
    pairs.push_back({"window", Cell(get(w, "start") + " - " + get(w, "end") + " (" +
                                    get(w, "window_seconds") + " s)")});
    pairs.push_back({"counted until",
                     Cell(get(w, "effective_end") + " (" + get(w, "effective_end_source") + ")")});
    const nlohmann::json pol = j.value("policy", nlohmann::json::object());
    pairs.push_back({"policy", Cell(get(pol, "name") + " (" + get(pol, "numbers_source") +
                                    " numbers, role " + get(j, "role") + ")")});
    pairs.push_back(
        {"presence", Cell(get(j, "presence_seconds") + " s of " + get(w, "window_seconds") +
                          " s = " + get(j, "percentage") + " %")});
    pairs.push_back({"first presence", Cell(get(j, "first_presence"))});
    out += render_pairs(pairs, st);

    Table t{{"Participant SID", "Join", "Leave", "Counted", "Inside Window (ms)", "Note"},
            {Align::Left, Align::Left, Align::Left, Align::Left, Align::Right},
            {}};
    for (const auto& c : j.value("connections", nlohmann::json::array())) {
        std::string note = get(c, "end_source");
        if (c.value("aborted", false)) note = "aborted";
        if (c.contains("ignored_reason") && !c["ignored_reason"].is_null()) {
            note = get(c, "ignored_reason");
        }
        t.rows.push_back({get(c, "sid"), get(c, "join"), get(c, "leave"),
                          c.value("counted", false) ? "yes" : "no", get(c, "clipped_ms"), note});
    }
    out += "\n" + render_table(t, st, false);

    Table rules{{"Rule", "Test", "Holds", "Hit"}, {}, {}};
    for (const auto& r : j.value("rules", nlohmann::json::array())) {
        const bool hit = r.value("hit", false);
        rules.rows.push_back(
            {Cell(get(r, "rule"), hit ? Color::Bold : Color::None), get(r, "test"),
             r.value("holds", false) ? "yes" : "no",
             Cell(hit ? "<- " + status : "", hit ? color_for(status) : Color::None)});
    }
    out += "\n" + render_table(rules, st, false);
    return out;
}

int run_explain(Context& ctx, const Args& args) {
    if (args.positional.size() != 2) throw UsageError("explain needs SESSION and USER");
    const std::string session = std::to_string(session_arg(args.positional[0]));
    const std::string& user = args.positional[1];
    // A numeric USER is a user id (bigint overload); anything else is a user key.
    Result r = is_integer(user)
                   ? ctx.db().exec("SELECT attendance_explain($1::bigint, $2::bigint)::text",
                                   {session, user})
                   : ctx.db().exec("SELECT attendance_explain($1::bigint, $2::text)::text",
                                   {session, user});
    const std::string trace = r.get(0, 0);
    if (ctx.json) {
        print_json_value(trace);
        return kOk;
    }
    const nlohmann::json j = nlohmann::json::parse(trace);
    print(explain_summary(j, ctx.out) + "\n" + ctx.out.bold("Trace") + "\n" +
          sanitize(j.dump(2), true) + "\n");
    return kOk;
}

}  // namespace

Command calculate_command() {
    return {"calculate",
            "[SESSION] [--json]",
            "calculate one session now, or every due session",
            "With SESSION: SELECT * FROM attendance_calculate(SESSION) - calculates the session\n"
            "now (provisionally if it has not ended; again if it was calculated) and prints its\n"
            "attendance rows.\n"
            "Without: SELECT * FROM attendance_calculate() - calculates every due session, as\n"
            "the scheduler does, and prints processed/failed. Exit status 1 when failed > 0.",
            {},
            true,
            &run_calculate};
}

Command reconcile_command() {
    return {"reconcile",
            "[--json]",
            "close connections whose leave never came (attendance_reconcile())",
            "Runs attendance_reconcile(): connections still open after their room finished or\n"
            "their session ended get a synthetic, labelled leave, and the affected sessions are\n"
            "recalculated. Prints the function's report.",
            {},
            true,
            &run_reconcile};
}

Command explain_command() {
    return {"explain",
            "SESSION USER [--json]",
            "why a person got their status: connections, clipping, union, rules",
            "Prints attendance_explain(SESSION, USER): every connection and how it was counted,\n"
            "the union inside the session window, the percentage, and each status rule with its\n"
            "exact integer test. A numeric USER is a user id; anything else is a user key (the\n"
            "participant identity when no user id could be derived). --json prints the trace only.",
            {},
            true,
            &run_explain};
}

}  // namespace attendancectl
