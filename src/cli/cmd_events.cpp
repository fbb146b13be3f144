// events and sessions: the webhook log and the session schedule.
#include "cli/cli.hpp"

#include <string>

namespace attendancectl {

namespace {

// The latest N webhooks (optionally of one session / event type), oldest first, with the
// columns of attendance_recent_events. The log is read by itself first, then the claims
// decide (docs/architecture.md, "The log's readers"): for a session, the candidates are the
// events of its rooms as the fold has seen them (computed before the log is read), those its
// room pattern names, and every event the fold has not read yet (a breakout room the fold
// has not seen is among them).
constexpr const char* kEvents =
    "WITH r AS MATERIALIZED (SELECT l.room_name FROM _attendance_room_links($1) l), "
    "f AS MATERIALIZED (SELECT safe_id FROM attendance_fold_state), "
    "e AS MATERIALIZED (SELECT e.id, e.received_at, e.event_timestamp, e.event_type, "
    "e.result, e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, "
    "e.joined_at, e.reason, e.event_id, e.session_id FROM meeting_attendance_events e "
    "WHERE ($3::text IS NULL OR e.event_type = $3) "
    "AND ($1::bigint IS NULL OR e.session_id = $1 OR e.room_name IN (SELECT room_name FROM r) "
    "     OR e.id > (SELECT safe_id FROM f)) "
    "ORDER BY e.id DESC LIMIT CASE WHEN $1::bigint IS NULL THEN $2::bigint END) "
    "SELECT q.* FROM (SELECT e.id, e.received_at, e.event_timestamp, e.event_type, e.result, "
    "_attendance_event_claimed_by(e.room_name, e.event_timestamp, e.joined_at, e.session_id, "
    "e.event_type, e.participant_sid) AS session_id, "
    "e.room_name, e.user_id, e.user_key, e.participant_name, e.participant_sid, "
    "e.joined_at, CASE WHEN e.event_type = 'participant_left' AND e.joined_at IS NOT NULL "
    "THEN e.event_timestamp - e.joined_at END AS connection_duration, e.reason, e.event_id "
    "FROM e "
    "WHERE ($1::bigint IS NULL OR "
    "       $1 = ANY (_attendance_event_sessions(e.room_name, e.event_timestamp, e.joined_at, "
    "e.session_id, e.event_type, e.participant_sid))) "
    "ORDER BY e.id DESC LIMIT $2) q ORDER BY q.id";

constexpr const char* kEventsText =
    "SELECT v.id, " ATTENDANCECTL_TS("v.event_timestamp") ", v.event_type, v.result, "
    "coalesce(v.session_id::text, v.room_name, ''), coalesce(v.user_id::text, v.user_key, ''), "
    "coalesce(v.participant_name, ''), coalesce(v.participant_sid, ''), "
    ATTENDANCECTL_DURATION("v.connection_duration") ", coalesce(v.reason, ''), "
    "v.session_id IS NULL FROM (";

// The schedule with each session's calculation state, as the view attendance_sessions_due
// (the one home of the due rule, docs/sql.md) says: a session it does not list is
// calculated; one it lists is due once its due_at has come (what the scheduler takes),
// else provisional, a session waiting for the retry after a failure too.
constexpr const char* kSessions =
    "SELECT q.* FROM (SELECT s.session_id, s.room_name, s.starts_at, s.ends_at, s.policy_name, "
    "CASE WHEN d.session_id IS NULL THEN 'calculated' "
    "WHEN d.due_at <= now() THEN 'due' ELSE 'provisional' END AS status, "
    "d.due_at, s.calculated_at, s.recalculation_cause, "
    "s.failed_attempts, s.last_error, s.room_finished_at, "
    "(SELECT count(*) FROM attendance_roster r WHERE r.session_id = s.session_id) AS roster, "
    "(SELECT count(*) FROM meeting_attendances m WHERE m.session_id = s.session_id) AS people "
    "FROM attendance_session_schedule s LEFT JOIN attendance_sessions_due d "
    "ON d.session_id = s.session_id "
    "WHERE ($1::bigint IS NULL OR s.session_id = $1) "
    "ORDER BY s.starts_at DESC, s.session_id DESC) q "
    "WHERE ($3::text IS NULL OR q.status = $3) LIMIT $2";

constexpr const char* kSessionsText =
    "SELECT v.session_id, v.room_name, " ATTENDANCECTL_TS("v.starts_at") ", "
    ATTENDANCECTL_TS("v.ends_at") ", v.policy_name, v.status, "
    "coalesce(" ATTENDANCECTL_TS("v.due_at") ", '-'), "
    "coalesce(" ATTENDANCECTL_TS("v.calculated_at") ", '-'), v.roster, v.people, "
    "concat_ws('; ', CASE WHEN v.status = 'provisional' AND now() < v.starts_at THEN 'upcoming' "
    "WHEN v.status = 'provisional' AND now() < v.ends_at THEN 'in progress' END, "
    "CASE WHEN v.status <> 'calculated' AND v.calculated_at IS NOT NULL "
    "THEN 'recalculation: ' || coalesce(v.recalculation_cause, 'pending') END, "
    "CASE WHEN v.failed_attempts > 0 THEN v.failed_attempts || ' failed: ' || "
    "coalesce(v.last_error, '') END) FROM (";

int run_events(Context& ctx, const Args& args) {
    if (!args.positional.empty()) throw UsageError("events takes no arguments (see --session)");
    Param session, type;
    if (auto v = args.value("session")) session = std::to_string(session_arg(*v));
    if (auto v = args.value("type")) type = *v;
    std::string last = "50";
    if (auto v = args.value("last")) last = std::to_string(parse_int(*v, "--last", 1, 1000000));
    const std::vector<Param> p = {session, last, type};
    if (ctx.json) {
        print_json_rows(ctx, kEvents, p);
        return kOk;
    }
    const std::string sql = std::string(kEventsText) + kEvents + ") v ORDER BY v.id";
    Result r = ctx.db().exec(sql.c_str(), p);
    Table t{{"Id", "Time", "Event", "Result", "Session", "User", "Name", "Participant SID",
             "Duration", "Reason"},
            {Align::Right},
            {}};
    for (int i = 0; i < r.rows(); ++i) {
        t.rows.push_back({r.get(i, 0), r.get(i, 1), Cell(r.get(i, 2), color_for(r.get(i, 2))),
                          Cell(r.get(i, 3), color_for(r.get(i, 3))),
                          Cell(r.get(i, 4), r.get(i, 10) == "t" ? Color::Yellow : Color::None),
                          r.get(i, 5), r.get(i, 6), r.get(i, 7), r.get(i, 8), r.get(i, 9)});
    }
    print(render_table(t, ctx.out));
    return kOk;
}

int run_sessions(Context& ctx, const Args& args) {
    if (args.positional.size() > 1) throw UsageError("sessions takes at most one SESSION");
    Param session, status;
    if (!args.positional.empty()) session = std::to_string(session_arg(args.positional[0]));
    if (auto v = args.value("status")) {
        if (*v != "calculated" && *v != "due" && *v != "provisional") {
            throw UsageError("--status must be calculated, due or provisional");
        }
        status = *v;
    }
    std::string last = "50";
    if (auto v = args.value("last")) last = std::to_string(parse_int(*v, "--last", 1, 1000000));
    const std::vector<Param> p = {session, last, status};
    if (ctx.json) {
        print_json_rows(ctx, kSessions, p);
        return kOk;
    }
    const std::string sql = std::string(kSessionsText) + kSessions + ") v";
    Result r = ctx.db().exec(sql.c_str(), p);
    Table t{{"Session", "Room", "Starts", "Ends", "Policy", "Status", "Due", "Calculated", "Roster",
             "People", "Note"},
            {Align::Right, Align::Left, Align::Left, Align::Left, Align::Left, Align::Left,
             Align::Left, Align::Left, Align::Right, Align::Right},
            {}};
    for (int i = 0; i < r.rows(); ++i) {
        t.rows.push_back({r.get(i, 0), r.get(i, 1), r.get(i, 2), r.get(i, 3), r.get(i, 4),
                          Cell(r.get(i, 5), color_for(r.get(i, 5))), r.get(i, 6), r.get(i, 7),
                          r.get(i, 8), r.get(i, 9), r.get(i, 10)});
    }
    print(render_table(t, ctx.out));
    return kOk;
}

}  // namespace

Command events_command() {
    return {
        "events",
        "[--session SESSION] [--type EVENT] [--last N] [--json]",
        "the webhook log (meeting_attendance_events), oldest of the last N first",
        "Lists the latest N (default 50) webhooks of meeting_attendance_events, oldest\n"
        "first like tail: time of the event, type, result (recorded or ignored), session\n"
        "(the room name, in yellow, when no session matched), user, name, participant sid,\n"
        "connection duration (on participant_left) and the reason an event was ignored.",
        {{"session", 's', ArgKind::Required, "SESSION", "only this session's webhooks"},
         {"type", 't', ArgKind::Required, "EVENT", "only this event type, e.g. participant_left"},
         {"last", 'n', ArgKind::Required, "N", "how many (default 50)"}},
        true,
        &run_events};
}

Command sessions_command() {
    return {"sessions",
            "[SESSION] [--status calculated|due|provisional] [--last N] [--json]",
            "the session schedule and where each session stands",
            "Lists attendance_session_schedule, latest start first (default 50), with a status:\n"
            "  calculated   attendance is final (nothing left to calculate)\n"
            "  due          its due time (Due, from attendance_sessions_due) has come: the\n"
            "               session ended and its calculation delay passed, or the retry after\n"
            "               a failed calculation is due; the scheduler (or `attendancectl\n"
            "               calculate`) calculates it now. Also a calculated session waiting\n"
            "               for recalculation (late webhook, roster change...)\n"
            "  provisional  not due yet: upcoming, in progress, in its calculation delay, or\n"
            "               waiting for the retry after a failure (Due says when); numbers are\n"
            "               provisional\n"
            "plus the roster size, the people seen, and notes (recalculation cause, failures).",
            {{"status", 0, ArgKind::Required, "STATUS", "only sessions with this status"},
             {"last", 'n', ArgKind::Required, "N", "how many (default 50)"}},
            true,
            &run_sessions};
}

}  // namespace attendancectl
