// attendance_ingest_webhook and attendance_sign_webhook: verification (core/token),
// parsing (core/webhook), person resolution (core/person); this file only loads and stores.
#include "pg/args.hpp"
#include "pg/calculate.hpp"
#include "pg/keys.hpp"
#include "pg/settings.hpp"
#include "pg/spi.hpp"

#include "core/person.hpp"
#include "core/token.hpp"
#include "core/webhook.hpp"

#include <nlohmann/json.hpp>

#include <ctime>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_ingest_webhook);
PG_FUNCTION_INFO_V1(attendance_sign_webhook);
PG_FUNCTION_INFO_V1(attendance_refresh_live);
}

namespace attendance::pg {

namespace {

using core::EventKind;

// At most 80 bytes of an attacker-chosen string in a message, cut at a UTF-8 boundary
// (the message is stored as text: it must stay valid UTF-8).
std::string clip_for_message(const std::string& s) {
    if (s.size() <= 80) return s;
    size_t n = 80;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return s.substr(0, n) + "...";
}

std::optional<int64_t> to_int64(const std::optional<std::string>& v) {
    if (!v) return std::nullopt;
    return std::stoll(*v);
}

// A calculated session that is not yet flagged: a participant webhook now must flag it
// for recalculation ("late webhook"). `t` is the schedule row's alias with its dot.
#define NEEDS_LATE_FLAG(t)                                                  \
    "(" t "calculated_at IS NOT NULL AND (NOT " t "needs_calculation OR " t \
    "recalculation_cause IS DISTINCT FROM 'late webhook'))"

struct SessionMatch {
    std::optional<int64_t> session_id;
    std::optional<std::string> roster_role;  // the person's role on the session's roster
    bool late = false;  // calculated and not yet flagged: a webhook now must flag it
};

SessionMatch resolve_session(SpiSession& spi, const std::string& room_name, int64_t event_ms,
                             std::optional<int64_t> user_id) {
    // FOR KEY SHARE: concurrent webhooks of a session do not block each other, but a
    // calculation of the session (FOR UPDATE) waits for them and they wait for it, so
    // a webhook is either seen by a calculation or flags the session afterwards. The
    // roster role and whether the session must be flagged come with it: the row is read
    // under the lock, so no calculation can change it before this webhook commits.
    auto rows = spi.query(
        "SELECT s.session_id, (SELECT r.role FROM @s.attendance_roster r "
        "  WHERE r.session_id = s.session_id AND r.user_id = $3), " NEEDS_LATE_FLAG(
            "s.") " "
        "FROM @s.attendance_session_schedule s WHERE s.room_name = $1 "
        "ORDER BY ($2 BETWEEN s.starts_at - interval '1 hour' AND s.ends_at + interval '1 hour') "
        "DESC, abs(extract(epoch FROM s.starts_at - $2)), s.session_id DESC LIMIT 1 "
        "FOR KEY SHARE OF s",
        {Arg::text(room_name), Arg::ts_ms(event_ms), Arg::opt_int8(user_id)});
    if (!rows.empty())
        return {to_int64(rows[0][0]), rows[0][1], rows[0][2] == std::optional<std::string>("t")};
    SessionMatch m;
    m.session_id = core::session_from_room(
        room_name, settings.room_pattern ? settings.room_pattern : core::kDefaultRoomPattern);
    if (!m.session_id) return m;
    // A session named by its room only (its schedule row, if any, has another room
    // name): the same lock and flag as above, by id; a roster may exist without it.
    auto by_id = spi.query(
        "SELECT " NEEDS_LATE_FLAG("s.") " FROM @s.attendance_session_schedule s "
        "WHERE s.session_id = $1 FOR KEY SHARE",
        {Arg::int8(*m.session_id)});
    if (!by_id.empty()) m.late = by_id[0][0] == std::optional<std::string>("t");
    if (user_id) {
        auto roster = spi.query(
            "SELECT role FROM @s.attendance_roster WHERE session_id = $1 AND user_id = $2",
            {Arg::int8(*m.session_id), Arg::int8(*user_id)}, true, 1);
        if (!roster.empty()) m.roster_role = roster[0][0];
    }
    return m;
}

struct Outcome {
    std::string result;  // recorded | ignored | duplicate
    std::string reason;
    std::optional<int64_t> row_id;
    std::optional<int64_t> session_id;
    std::string user_key;
};

int64_t options_now() { return int64_t(std::time(nullptr)); }

const char* log_verb(EventKind kind) {
    switch (kind) {
        case EventKind::ParticipantJoined:
            return "JOIN";
        case EventKind::ParticipantLeft:
            return "LEAVE";
        case EventKind::ParticipantConnectionAborted:
            return "ABORTED";
        case EventKind::RoomStarted:
            return "ROOM_STARTED";
        case EventKind::RoomFinished:
            return "ROOM_FINISHED";
        case EventKind::Other:
            return "OTHER";
    }
    return "OTHER";
}

std::string iso_ms(std::optional<int64_t> ms) {
    if (!ms) return "-";
    std::time_t s = std::time_t(*ms / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(*ms % 1000));
    return buf;
}

// Upserts of one connection. A leave may arrive before its join (fast rejoin): the
// row is created from the leave (its joinedAtMs) and completed when the join comes.
constexpr const char* kUpsertJoin =
    "INSERT INTO @s.attendance_sessions AS c (participant_sid, session_id, room_name, room_sid, "
    "participant_identity, user_key, user_id, participant_name, role, join_time, join_source, "
    "join_event_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'joined', $11) "
    "ON CONFLICT (participant_sid) DO UPDATE SET "
    "  join_time = coalesce(excluded.join_time, c.join_time), join_source = 'joined', "
    "  join_event_id = excluded.join_event_id, "
    "  end_reason = CASE WHEN c.end_reason = 'aborted' THEN NULL ELSE c.end_reason END, "
    "  participant_name = coalesce(excluded.participant_name, c.participant_name), updated_at = "
    "now()";

constexpr const char* kUpsertLeave =
    "INSERT INTO @s.attendance_sessions AS c (participant_sid, session_id, room_name, room_sid, "
    "participant_identity, user_key, user_id, participant_name, role, join_time, join_source, "
    "leave_time, "
    "end_reason, disconnect_reason, leave_event_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $10 IS NULL THEN NULL ELSE "
    "'rebuilt_from_leave' END, "
    "        $11, 'left', $12, $13) "
    "ON CONFLICT (participant_sid) DO UPDATE SET "
    "  leave_time = CASE WHEN c.leave_time IS NULL OR c.leave_is_synthetic OR c.end_reason = "
    "'aborted' "
    "                    THEN excluded.leave_time ELSE greatest(c.leave_time, excluded.leave_time) "
    "END, "
    "  end_reason = CASE WHEN c.end_reason = 'aborted' AND c.join_event_id IS NULL THEN 'aborted' "
    "ELSE 'left' END, "
    "  leave_is_synthetic = false, disconnect_reason = excluded.disconnect_reason, "
    "  leave_event_id = excluded.leave_event_id, "
    "  join_time = coalesce(c.join_time, excluded.join_time), "
    "  join_source = coalesce(c.join_source, excluded.join_source), updated_at = now()";

constexpr const char* kUpsertAborted =
    "INSERT INTO @s.attendance_sessions AS c (participant_sid, session_id, room_name, room_sid, "
    "participant_identity, user_key, user_id, participant_name, role, join_time, join_source, "
    "leave_time, "
    "end_reason, disconnect_reason, leave_event_id) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'aborted', $11, 'aborted', $12, $13) "
    "ON CONFLICT (participant_sid) DO UPDATE SET "
    "  end_reason = CASE WHEN c.join_event_id IS NULL THEN 'aborted' ELSE c.end_reason END, "
    "  disconnect_reason = coalesce(c.disconnect_reason, excluded.disconnect_reason), updated_at = "
    "now()";

// The person's live row from their connections, as a kept plan: ingestion runs it for
// every participant webhook, where a PL/pgSQL call cost an extra statement and a GUC save
// and restore. The SQL function _attendance_refresh_live calls the same statement.
constexpr const char* kRefreshLive =
    "UPDATE @s.meeting_attendances m SET first_join_time = a.first_join, "
    "  last_leave_time = a.last_leave, join_count = a.joins, leave_count = a.leaves, "
    "  join_leave_cycles = a.cycles, "
    "  total_duration_minutes = CASE WHEN m.is_calculated THEN m.total_duration_minutes "
    "                                ELSE a.minutes END, "
    "  is_calculated = false, updated_at = now() "
    "FROM (SELECT min(c.join_time) FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted') "
    "         AS first_join, "
    "       CASE WHEN bool_or(c.leave_time IS NULL AND c.join_time IS NOT NULL "
    "                         AND c.end_reason IS DISTINCT FROM 'aborted') THEN NULL "
    "            ELSE max(c.leave_time) FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted') "
    "       END AS last_leave, "
    "       count(*) FILTER (WHERE c.join_time IS NOT NULL "
    "                          AND c.end_reason IS DISTINCT FROM 'aborted')::int AS joins, "
    "       count(*) FILTER (WHERE c.end_reason = 'left')::int AS leaves, "
    "       coalesce(jsonb_agg(jsonb_build_object('participant_sid', c.participant_sid, "
    "           'joined_at', c.join_time, 'left_at', c.leave_time, 'end', c.end_reason, "
    "           'synthetic_leave', c.leave_is_synthetic) "
    "         ORDER BY c.join_time NULLS LAST, c.participant_sid), '[]') AS cycles, "
    "       coalesce(round(sum(extract(epoch FROM c.leave_time - c.join_time)) "
    "         FILTER (WHERE c.end_reason IS DISTINCT FROM 'aborted' "
    "                   AND c.leave_time > c.join_time) / 60), 0)::int AS minutes "
    "      FROM @s.attendance_sessions c WHERE c.session_id = $1 AND c.user_key = $2) a "
    "WHERE m.session_id = $1 AND m.user_key = $2";

}  // namespace

void refresh_live(SpiSession& spi, int64_t session_id, const std::string& user_key) {
    spi.exec(kRefreshLive, {Arg::int8(session_id), Arg::text(user_key)});
}

namespace {

Outcome record(SpiSession& spi, const core::WebhookEvent& ev, const std::string& body,
               const std::string& api_key) {
    Outcome out;
    const int64_t event_ms = ev.created_at_s * 1000;
    const std::string room_name = ev.room ? ev.room->name : "";
    const core::Participant* p = ev.participant ? &*ev.participant : nullptr;
    core::Person person;
    if (p)
        person =
            core::resolve_person(*p, settings.identity_pattern ? settings.identity_pattern
                                                               : core::kDefaultIdentityPattern);
    SessionMatch match;
    if (!room_name.empty()) {
        match = resolve_session(spi, room_name, event_ms, person.user_id);
        out.session_id = match.session_id;
        if (p && match.roster_role) core::apply_role(person, *match.roster_role);
    }

    const bool participant_event = ev.kind == EventKind::ParticipantJoined ||
                                   ev.kind == EventKind::ParticipantLeft ||
                                   ev.kind == EventKind::ParticipantConnectionAborted;
    out.result = "recorded";
    if (participant_event && !person.attends) {
        out.result = "ignored";
        out.reason = person.not_attending_reason;
    } else if (ev.kind == EventKind::RoomStarted || ev.kind == EventKind::Other) {
        out.result = "ignored";
        out.reason = ev.event + " has no attendance meaning";
    } else if (!out.session_id) {
        out.reason =
            "room '" + clip_for_message(room_name) + "' is not matched to a session (unmatched)";
    }

    std::optional<int64_t> joined_ms = p ? p->joined_at_ms : std::nullopt;
    auto rows = spi.query(
        "INSERT INTO @s.meeting_attendance_events (event_id, event_type, event_timestamp, "
        "session_id, room_name, "
        "room_sid, participant_sid, participant_identity, user_id, user_key, participant_name, "
        "role, "
        "participant_kind, joined_at, result, reason, api_key, raw_webhook_data) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
        "$18::jsonb) "
        "ON CONFLICT (event_id) DO NOTHING RETURNING id",
        {Arg::text(ev.id), Arg::text(ev.event), Arg::ts_ms(event_ms), Arg::opt_int8(out.session_id),
         Arg::opt_text(room_name), Arg::opt_text(ev.room ? ev.room->sid : ""),
         Arg::opt_text(p ? p->sid : ""), Arg::opt_text(p ? p->identity : ""),
         Arg::opt_int8(person.user_id), Arg::opt_text(p ? person.user_key : ""),
         Arg::opt_text(p ? p->name : ""), Arg::opt_text(person.role),
         Arg::opt_text(p ? p->kind : ""), Arg::opt_ts_ms(joined_ms), Arg::text(out.result),
         Arg::opt_text(out.reason), Arg::opt_text(api_key), Arg::text(body)});
    if (rows.empty()) {
        auto existing =
            spi.query("SELECT id, session_id FROM @s.meeting_attendance_events WHERE event_id = $1",
                      {Arg::text(ev.id)}, false,
                      1);  // fresh snapshot: the first delivery may have just committed
        Outcome dup;
        dup.user_key = person.user_key;
        dup.result = "duplicate";
        dup.reason = "event id already recorded";
        if (!existing.empty()) {
            dup.row_id = to_int64(existing[0][0]);
            dup.session_id = to_int64(existing[0][1]);
        }
        return dup;
    }
    out.row_id = to_int64(rows[0][0]);
    out.user_key = p ? person.user_key : "";
    if (out.result != "recorded") return out;

    if (ev.kind == EventKind::RoomFinished) {
        if (out.session_id) {
            auto updated = spi.query(
                "UPDATE @s.attendance_session_schedule SET room_finished_at = $2, updated_at = "
                "now(), "
                "needs_calculation = needs_calculation OR calculated_at IS NOT NULL, "
                "recalculation_cause = CASE WHEN calculated_at IS NOT NULL THEN 'late webhook' "
                "                           ELSE recalculation_cause END "
                "WHERE session_id = $1 RETURNING calculated_at IS NOT NULL",
                {Arg::int8(*out.session_id), Arg::ts_ms(event_ms)});
            // Only an already calculated session needs the scheduler now.
            if (!updated.empty() && updated[0][0] == std::optional<std::string>("t"))
                wake_worker_at_commit();
        }
        return out;
    }
    if (!participant_event) return out;

    // Lock the person's live row first, so concurrent webhooks of one person (two
    // devices, a join racing its leave) serialise and the live row sees both.
    if (out.session_id) {
        spi.query(
            "INSERT INTO @s.meeting_attendances AS m (session_id, user_key, user_id, "
            "participant_identity, "
            "participant_name, role) VALUES ($1, $2, $3, $4, $5, coalesce($6, 'student')) "
            "ON CONFLICT (session_id, user_key) DO UPDATE SET "
            "  participant_name = coalesce(excluded.participant_name, m.participant_name), "
            "  participant_identity = excluded.participant_identity, role = coalesce($6, m.role), "
            "  updated_at = now()",
            {Arg::int8(*out.session_id), Arg::text(person.user_key), Arg::opt_int8(person.user_id),
             Arg::text(p->identity), Arg::opt_text(p->name), Arg::opt_text(person.role)});
    }

    std::vector<Arg> conn = {Arg::text(p->sid),
                             Arg::opt_int8(out.session_id),
                             Arg::text(room_name),
                             Arg::opt_text(ev.room->sid),
                             Arg::text(p->identity),
                             Arg::text(person.user_key),
                             Arg::opt_int8(person.user_id),
                             Arg::opt_text(p->name),
                             Arg::opt_text(person.role)};
    if (ev.kind == EventKind::ParticipantJoined) {
        // joinedAtMs, else joinedAt, else the event's createdAt (DESIGN §4)
        conn.push_back(Arg::ts_ms(joined_ms.value_or(event_ms)));
        conn.push_back(Arg::text(ev.id));
        spi.exec(kUpsertJoin, conn);
    } else {
        conn.push_back(Arg::opt_ts_ms(joined_ms));
        conn.push_back(Arg::ts_ms(event_ms));
        conn.push_back(
            Arg::opt_text(p->disconnect_reason == "UNKNOWN_REASON" ? "" : p->disconnect_reason));
        conn.push_back(Arg::text(ev.id));
        spi.exec(ev.kind == EventKind::ParticipantLeft ? kUpsertLeave : kUpsertAborted, conn);
    }

    if (out.session_id) {
        refresh_live(spi, *out.session_id, person.user_key);
        // A webhook after calculation always leads to recalculation: flag the session
        // and wake the scheduler at commit. Only a calculated session not yet flagged
        // needs the statement; a concurrent webhook may have flagged it meanwhile.
        if (match.late &&
            spi.exec("UPDATE @s.attendance_session_schedule SET needs_calculation = true, "
                     "recalculation_cause = 'late webhook', updated_at = now() "
                     "WHERE session_id = $1 AND " NEEDS_LATE_FLAG(""),
                     {Arg::int8(*out.session_id)}) > 0)
            wake_worker_at_commit();
    }
    return out;
}

void log_processed(const core::WebhookEvent& ev, const Outcome& out) {
    const std::string& user_key = out.user_key;
    if (settings.webhook_log_level < 0) return;
    const core::Participant* p = ev.participant ? &*ev.participant : nullptr;
    std::optional<int64_t> left;
    if (ev.kind == EventKind::ParticipantLeft) left = ev.created_at_s * 1000;
    std::string line =
        std::string("[WEBHOOK] ") + log_verb(ev.kind) + " event processed: result=" + out.result +
        " webhook_id=" + ev.id +
        " event_row_id=" + (out.row_id ? std::to_string(*out.row_id) : "-") +
        " session_id=" + (out.session_id ? std::to_string(*out.session_id) : "unmatched") +
        " user=" + (user_key.empty() ? "-" : user_key) + " participant_sid=" + (p ? p->sid : "-") +
        " joined_at=" + iso_ms(p ? p->joined_at_ms : std::nullopt) + " left_at=" + iso_ms(left) +
        " room=" + (ev.room ? ev.room->name : "-");
    int level = settings.webhook_log_level;
    pg_call([&] { ereport(level, (errmsg("%s", line.c_str()), errhidestmt(true))); });
}

}  // namespace

}  // namespace attendance::pg

using namespace attendance;
using namespace attendance::pg;

extern "C" Datum attendance_ingest_webhook(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        std::string body = text_arg(fcinfo, 0, "body");
        std::optional<std::string> authorization = opt_text_arg(fcinfo, 1);
        core::ParseLimits limits{size_t(settings.max_body_bytes), settings.max_json_depth};
        if (body.size() > limits.max_body_bytes)
            throw core::Error(
                core::sqlstate::kProgramLimit,
                "webhook body is " + std::to_string(body.size()) + " bytes, over the limit of " +
                    std::to_string(limits.max_body_bytes) + " (attendance.max_body_bytes)");

        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        std::string api_key;
        std::optional<core::ParsedToken> parsed;
        std::string_view token =
            authorization ? core::bare_token(*authorization) : std::string_view();
        bool unsigned_accepted = false;
        if (token.empty()) {
            if (!settings.development_mode)
                throw core::auth_error(
                    "missing token (no Authorization header); unsigned webhooks are accepted only "
                    "when a "
                    "superuser sets attendance.development_mode");
            unsigned_accepted = true;
        } else {
            parsed = core::parse_token(token);
            auto secret = active_secret(spi, parsed->iss);
            if (!secret)
                throw core::auth_error("unknown or retired API key '" +
                                       clip_for_message(parsed->iss) + "'");
            core::VerifyOptions options;
            options.now_s = int64_t(std::time(nullptr));
            options.leeway_s = settings.token_leeway_s;
            options.check_expiry = !settings.replay_mode;
            core::verify_token(*parsed, body, *secret, options);
            api_key = parsed->iss;
        }

        core::WebhookEvent ev = core::parse_webhook(body, limits);
        // Replay mode skips the expiry check against the clock only: a token valid now
        // (e.g. re-signed) passes as always; otherwise it must still have been valid
        // when LiveKit sent the webhook (its createdAt).
        if (parsed && settings.replay_mode &&
            !core::token_window_holds(*parsed, options_now(), settings.token_leeway_s))
            core::check_token_window(*parsed, ev.created_at_s, settings.token_leeway_s,
                                     "webhook createdAt");
        if (unsigned_accepted)
            pg_call([] {
                ereport(WARNING, (errmsg("attendance: accepted an UNSIGNED webhook because "
                                         "attendance.development_mode is on"),
                                  errhint("Never enable development mode in production.")));
            });
        Outcome out = record(spi, ev, body, api_key);
        log_processed(ev, out);
        spi.finish();

        nlohmann::json response = {
            {"result", out.result},
            {"event", ev.event},
            {"event_id", ev.id},
            {"session_id", out.session_id ? nlohmann::json(*out.session_id) : nlohmann::json()},
            {"log_id", out.row_id ? nlohmann::json(*out.row_id) : nlohmann::json()},
            {"reason", out.reason.empty() ? nlohmann::json() : nlohmann::json(out.reason)}};
        return jsonb_datum(response.dump());
    });
}

extern "C" Datum attendance_sign_webhook(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        std::string body = text_arg(fcinfo, 0, "body");
        std::string api_key = text_arg(fcinfo, 1, "api_key");
        int64_t ttl = PG_ARGISNULL(2) ? 600 : PG_GETARG_INT32(2);
        if (ttl <= 0) throw core::Error("22023", "ttl must be positive (seconds)");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        auto secret = active_secret(spi, api_key);
        if (!secret)
            throw core::Error("42704",
                              "unknown or retired API key '" + clip_for_message(api_key) + "'");
        spi.finish();
        std::string token =
            core::sign_token(body, api_key, *secret, int64_t(std::time(nullptr)), ttl);
        return pg_call([&] {
            return PointerGetDatum(cstring_to_text_with_len(token.data(), int(token.size())));
        });
    });
}

extern "C" Datum attendance_refresh_live(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        int64_t session_id = PG_GETARG_INT64(0);
        std::string user_key = text_arg(fcinfo, 1, "user_key");
        SpiSession spi(extension_schema(fcinfo->flinfo->fn_oid));
        refresh_live(spi, session_id, user_key);
        spi.finish();
        PG_RETURN_VOID();
    });
}
