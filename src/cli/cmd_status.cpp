// status: the scheduler as attendance_worker_status() reports it, the job status and
// the next session due.
#include "cli/cli.hpp"

#include <nlohmann/json.hpp>

namespace attendancectl {

namespace {

std::string text_of(const nlohmann::json& v) {
    if (v.is_null()) return "-";
    if (v.is_string()) return v.get<std::string>();
    return v.dump();
}

std::string field(const nlohmann::json& j, const char* key) {
    return j.contains(key) ? text_of(j.at(key)) : "-";
}

Table jobs_table(Context& ctx) {
    Result r = ctx.db().exec(
        "SELECT job, coalesce(last_status, 'never run'), "
        "coalesce(" ATTENDANCECTL_TS("last_started") ", '-'), "
        "coalesce(last_processed::text, ''), coalesce(last_failed::text, ''), "
        "failures_last_day, coalesce(last_message, '') FROM attendance_job_status ORDER BY job");
    Table t{
        {"Job", "Last Status", "Last Started", "Processed", "Failed", "Failures 24h", "Message"},
        {Align::Left, Align::Left, Align::Left, Align::Right, Align::Right, Align::Right},
        {}};
    for (int i = 0; i < r.rows(); ++i) {
        std::string failures = r.get(i, 5);
        t.rows.push_back(
            {r.get(i, 0), Cell(r.get(i, 1), color_for(r.get(i, 1))), r.get(i, 2), r.get(i, 3),
             Cell(r.get(i, 4),
                  r.get(i, 4) != "0" && !r.get(i, 4).empty() ? Color::Red : Color::None),
             Cell(failures, failures != "0" ? Color::Red : Color::None), r.get(i, 6)});
    }
    return t;
}

Cell due_cell(Context& ctx) {
    Result r = ctx.db().exec("SELECT d.session_id, d.room_name, " ATTENDANCECTL_TS(
        "d.due_at") ", "
                    "d.due_at <= now(), date_trunc('second', now() - d.due_at)::text, "
                    "date_trunc('second', d.due_at - now())::text, count(*) OVER (), "
                    "d.failed_attempts "
                    "FROM attendance_sessions_due d ORDER BY d.due_at, d.session_id LIMIT 1");
    if (r.rows() == 0) return Cell("none");
    std::string text = r.get(0, 6) + "; next: session " + r.get(0, 0) + " (" + r.get(0, 1) +
                       ") due " + r.get(0, 2);
    Color c = Color::None;
    if (r.get(0, 3) == "t") {
        text += ", overdue by " + r.get(0, 4);
        c = Color::Yellow;
    } else {
        text += " (in " + r.get(0, 5) + ")";
    }
    if (r.get(0, 7) != "0") {
        text += ", " + r.get(0, 7) + " failed attempts";
        c = Color::Red;
    }
    return Cell(text, c);
}

// "2026-11-24T00:26:52.533583+00:00" -> "2026-11-24 00:26:52"
std::string short_time(std::string iso) {
    if (iso.size() >= 19 && iso[10] == 'T') {
        iso.resize(19);
        iso[10] = ' ';
    }
    return iso;
}

Table runs_table(const nlohmann::json& runs) {
    Table t{{"Run", "Job", "Status", "Started", "Finished", "Processed", "Failed", "Message"},
            {Align::Right, Align::Left, Align::Left, Align::Left, Align::Left, Align::Right,
             Align::Right},
            {}};
    if (!runs.is_array()) return t;
    for (const auto& run : runs) {
        std::string status = field(run, "status");
        t.rows.push_back({field(run, "id"), field(run, "job"), Cell(status, color_for(status)),
                          short_time(field(run, "started_at")),
                          short_time(field(run, "finished_at")), field(run, "processed"),
                          field(run, "failed"), field(run, "message")});
    }
    return t;
}

int run_status(Context& ctx, const Args& args) {
    if (!args.positional.empty()) throw UsageError("status takes no arguments");
    if (ctx.json) {
        Result r = ctx.db().exec("SELECT attendance_worker_status()::text");
        print_json_value(r.get(0, 0));
        return kOk;
    }
    print(render_system_status(ctx, true));
    return kOk;
}

}  // namespace

std::string render_system_status(Context& ctx, bool runs) {
    const Style& st = ctx.out;
    Result r = ctx.db().exec("SELECT attendance_worker_status()::text, current_database()");
    const nlohmann::json w = nlohmann::json::parse(r.get(0, 0));
    const std::string here = r.get(0, 1);
    std::vector<std::pair<std::string, Cell>> pairs;

    const bool preloaded = w.value("preloaded", false);
    const bool running = w.value("running", false);
    if (!preloaded) {
        pairs.push_back({"scheduler", Cell("not running: attendance is not in "
                                           "shared_preload_libraries",
                                           Color::Red)});
    } else if (running) {
        pairs.push_back(
            {"scheduler",
             Cell("running (launcher pid " + field(w, "launcher_pid") + ")", Color::Green)});
    } else {
        pairs.push_back({"scheduler", Cell("not running", Color::Red)});
    }
    const std::string db = field(w, "database");
    if (db != here) {
        pairs.push_back({"database", Cell(db + " (not this database, " + here +
                                              ": sessions here are calculated only on demand)",
                                          Color::Yellow)});
    } else {
        pairs.push_back({"database", Cell(db)});
    }
    if (preloaded) {
        pairs.push_back({"run in progress", Cell(w.contains("run_in_progress_pid") &&
                                                         !w["run_in_progress_pid"].is_null()
                                                     ? "pid " + field(w, "run_in_progress_pid")
                                                     : "no")});
        pairs.push_back({"next due", Cell(field(w, "next_due"))});
        pairs.push_back({"next reconcile", Cell(field(w, "next_reconcile"))});
        std::string last = field(w, "last_run_finished");
        Color c = Color::None;
        if (w.contains("last_run_ok") && w["last_run_ok"].is_boolean()) {
            const bool ok = w["last_run_ok"].get<bool>();
            last += ok ? " ok" : " failed";
            c = ok ? Color::None : Color::Red;
            std::string msg = field(w, "last_run_message");
            if (msg != "-" && !msg.empty()) last += ": " + msg;
        }
        pairs.push_back({"last run", Cell(last, c)});
        pairs.push_back({"runs since start", Cell(field(w, "runs_since_start"))});
    }
    pairs.push_back({"calculation delay", Cell(field(w, "calculation_delay_seconds") + " s")});
    pairs.push_back({"reconcile interval", Cell(field(w, "reconcile_interval_seconds") + " s")});
    pairs.push_back({"sessions due", due_cell(ctx)});

    std::string out = st.bold("Scheduler") + "\n" + render_pairs(pairs, st);
    out += "\n" + st.bold("Jobs") + "\n" + render_table(jobs_table(ctx), st, false);
    if (runs) {
        out += "\n" + st.bold("Latest runs") + "\n" +
               render_table(runs_table(w.contains("last_runs") ? w["last_runs"] : nlohmann::json()),
                            st, true);
    }
    return out;
}

Command status_command() {
    return {"status",
            "[--json]",
            "the background scheduler, its jobs and the next session due",
            "Shows attendance_worker_status() (is the scheduler running, which database it\n"
            "serves, when it wakes next, how its last run went), attendance_job_status and the\n"
            "next session in attendance_sessions_due. --json prints attendance_worker_status()\n"
            "as it is.",
            {},
            true,
            &run_status};
}

}  // namespace attendancectl
