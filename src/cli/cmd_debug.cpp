// debug: the `attendance:debug` screen of the application the extension replaces
// (docs/attendancectl.md). Recent webhooks, attendance not yet calculated, and the
// scheduler; --watch redraws it in place until Ctrl-C.
#include "cli/cli.hpp"
#include "cli/terminal.hpp"

#include <cstdio>
#include <limits>
#include <optional>

namespace attendancectl {

namespace {

constexpr const char* kRecentEvents =
    "SELECT " ATTENDANCECTL_TS("e.event_timestamp") ", e.event_type, e.result, "
    "coalesce(e.session_id::text, e.room_name, ''), coalesce(e.user_id::text, e.user_key, ''), "
    "coalesce(e.participant_sid, ''), " ATTENDANCECTL_DURATION("e.connection_duration") ", "
    "e.session_id IS NULL "
    "FROM attendance_recent_events e WHERE ($1::bigint IS NULL OR e.session_id = $1) "
    "ORDER BY e.id DESC LIMIT $2";

constexpr const char* kUncalculated =
    "SELECT m.session_id, coalesce(m.user_id::text, m.user_key), "
    "coalesce(" ATTENDANCECTL_TS("m.first_join_time") ", '-'), "
    "CASE WHEN m.last_leave_time IS NOT NULL THEN " ATTENDANCECTL_TS("m.last_leave_time")
    "     WHEN m.first_join_time IS NOT NULL THEN 'In meeting' ELSE '-' END, "
    "jsonb_array_length(m.join_leave_cycles), m.total_duration_minutes || ' min' "
    "FROM meeting_attendances m WHERE NOT m.is_calculated "
    "AND ($1::bigint IS NULL OR m.session_id = $1) "
    "ORDER BY m.session_id, m.user_id NULLS LAST, m.user_key";

std::string render_debug(Context& ctx, std::optional<int64_t> session, int64_t events) {
    const Style& st = ctx.out;
    const Param s = session ? Param(std::to_string(*session)) : std::nullopt;
    Db& db = ctx.db();

    Result head = db.exec(
        "SELECT current_database(), " ATTENDANCECTL_TS("now()") ", current_setting('TimeZone')");
    std::string out = st.bold("attendance debug") + "  database " + head.get(0, 0) + "  " +
                      head.get(0, 1) + " " + head.get(0, 2) +
                      (session ? "  session " + std::to_string(*session) : "") + "\n\n";

    Result ev = db.exec(kRecentEvents, {s, std::to_string(events)});
    Table t{{"Time", "Event", "Result", "Session", "User", "Participant SID", "Duration"}, {}, {}};
    for (int i = 0; i < ev.rows(); ++i) {
        t.rows.push_back({ev.get(i, 0), Cell(ev.get(i, 1), color_for(ev.get(i, 1))),
                          Cell(ev.get(i, 2), color_for(ev.get(i, 2))),
                          Cell(ev.get(i, 3), ev.get(i, 7) == "t" ? Color::Yellow : Color::None),
                          ev.get(i, 4), ev.get(i, 5), ev.get(i, 6)});
    }
    out += st.bold("Recent webhook activity") + " (newest first, up to " + std::to_string(events) +
           ")\n" + render_table(t, st) + "\n";

    Result un = db.exec(kUncalculated, {s});
    Table u{{"Session", "User", "First Join", "Last Leave", "Cycles", "Duration"},
            {Align::Right, Align::Left, Align::Left, Align::Left, Align::Right, Align::Right},
            {}};
    for (int i = 0; i < un.rows(); ++i) {
        const std::string leave = un.get(i, 3);
        u.rows.push_back({un.get(i, 0), un.get(i, 1), un.get(i, 2),
                          Cell(leave, leave == "In meeting" ? Color::Green : Color::None),
                          un.get(i, 4), un.get(i, 5)});
    }
    out += st.bold("Uncalculated attendance") + "\n" + render_table(u, st) + "\n";
    out += render_system_status(ctx, false);
    return out;
}

int run_debug(Context& ctx, const Args& args) {
    if (args.positional.size() > 1) throw UsageError("debug takes at most one SESSION");
    std::optional<int64_t> session;
    if (!args.positional.empty()) session = session_arg(args.positional[0]);
    int64_t events = 20;
    if (auto v = args.value("events")) events = parse_int(*v, "--events", 1, 1000);
    if (!args.has("watch")) {
        print(render_debug(ctx, session, events));
        return kOk;
    }
    double every = 2;
    if (auto v = args.value("watch")) every = parse_seconds(*v, "--watch");

    catch_interrupts();
    const bool in_place = ctx.stdout_tty;
    char every_text[32];
    std::snprintf(every_text, sizeof every_text, "%g", every);
    do {
        std::string frame;
        try {
            frame = render_debug(ctx, session, events);
        } catch (const DbError& e) {
            // Keep watching through a restart or a lost connection.
            frame = ctx.out.paint(std::string("error: ") + e.what(), Color::Red) + "\n";
            ctx.disconnect();
        } catch (const ConnectError& e) {
            frame = ctx.out.paint(std::string("cannot connect: ") + e.what(), Color::Red) + "\n";
            ctx.disconnect();
        }
        const std::string banner =
            ctx.out.dim(std::string("Every ") + every_text + "s, Ctrl-C to stop") + "\n";
        if (in_place) {
            print("\x1b[H\x1b[2J" + banner + frame);  // home + clear screen, then redraw
        } else {
            print(banner + frame + "\n");
        }
    } while (sleep_unless_interrupted(every));
    if (in_place) print("\n");
    return kOk;
}

}  // namespace

Command debug_command() {
    return {"debug",
            "[SESSION] [--events N] [--watch [SECONDS]]",
            "recent webhooks, uncalculated attendance and the scheduler (like attendance:debug)",
            "The debugging screen: the latest webhooks from attendance_recent_events (time,\n"
            "event, result, session, user, participant sid, connection duration), attendance\n"
            "not calculated yet from meeting_attendances (\"In meeting\" while a connection is\n"
            "open), then the scheduler (attendance_worker_status, attendance_job_status, the next\n"
            "session in attendance_sessions_due). SESSION limits the first two sections to one\n"
            "session. An unmatched event (unknown room) shows its room name in yellow.\n"
            "\n"
            "--watch redraws the screen in place every SECONDS (default 2) until Ctrl-C, which\n"
            "exits with status 0. The number right after --watch is taken as SECONDS; write the\n"
            "session first (debug 456 --watch) or use --watch=SECONDS.",
            {{"events", 'n', ArgKind::Required, "N", "how many recent webhooks (default 20)"},
             {"watch", 'w', ArgKind::Number, "SECONDS",
              "redraw every SECONDS (default 2) until Ctrl-C"}},
            false,
            &run_debug};
}

}  // namespace attendancectl
