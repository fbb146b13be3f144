// attendance_ingest_webhook and attendance_sign_webhook: verification (core/token),
// parsing (core/webhook), person resolution (core/person), and the one row the hot path
// appends to the log (docs/architecture.md, "The hot path").
#include "pg/args.hpp"
#include "pg/crossings.hpp"
#include "pg/keys.hpp"
#include "pg/scheduler.hpp"
#include "pg/settings.hpp"
#include "pg/spi.hpp"

#include "core/calc.hpp"
#include "core/person.hpp"
#include "core/redact.hpp"
#include "core/timefmt.hpp"
#include "core/token.hpp"
#include "core/webhook.hpp"

#include <nlohmann/json.hpp>

#include <cinttypes>
#include <cstdio>
#include <ctime>

extern "C" {
PG_FUNCTION_INFO_V1(attendance_ingest_webhook);
PG_FUNCTION_INFO_V1(attendance_sign_webhook);
PG_FUNCTION_INFO_V1(attendance_redact_secrets);
}

namespace attendance::pg {

namespace {

using core::EventKind;

using core::clip_for_message;

struct Outcome {
    std::string result;  // recorded | ignored | duplicate | retired
    std::string reason;
    std::optional<int64_t> row_id;
    std::optional<int64_t> session_id;  // the session the room names (room pattern), if any
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
    return ms ? core::format_timestamp_ms(*ms) : std::string("-");
}

// The hot path (docs/architecture.md): one row appended to the log, idempotent on the
// event id, and nothing else written or locked. The log is partitioned by event time; a
// redelivery carries the same createdAt, so (event_id, event_timestamp) is unique across
// partitions. An event in a retired range is not stored (a trigger on the default
// partition, the only place such a row could go, skips it). Which session the event counts for, who
// attends and in which role are decided when deriving, against the schedule and roster as
// they are then.
constexpr const char* kAppend = R"sql(
INSERT INTO @s.meeting_attendance_events (event_id, event_type, event_timestamp, session_id,
  room_name, room_sid, participant_sid, participant_identity, user_id, user_key,
  participant_name, role, participant_kind, joined_at, result, reason, api_key,
  disconnect_reason, duration_minutes, development_event, raw_webhook_data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, $21)
ON CONFLICT DO NOTHING RETURNING id
)sql";

// A redelivery's first delivery, by its room (one shard on a Citus cluster), and without it.
constexpr const char* kLoggedInRoom = R"sql(
SELECT id FROM @s.meeting_attendance_events
WHERE event_id = $1 AND event_timestamp = $2 AND room_name = $3
)sql";
constexpr const char* kLogged = R"sql(
SELECT id FROM @s.meeting_attendance_events WHERE event_id = $1 AND event_timestamp = $2
)sql";

// When the range of the log holding a time was retired.
constexpr const char* kRetiredRange = R"sql(
SELECT retired_at::text AS retired_at FROM @s.attendance_retired_events
WHERE $1 >= range_start AND $1 < range_end ORDER BY retired_at LIMIT 1
)sql";

// The stored body as jsonb, built from the document the parser already made (the same
// bytes are not parsed a second time). A number with a fraction or an exponent keeps
// jsonb's own reading of its text: the document holds it as a double, whose text may
// differ; so does a database whose encoding is not UTF-8.
bool has_fraction(const nlohmann::json& j) {
    if (j.is_number_float()) return true;
    if (j.is_structured())
        for (const auto& v : j)
            if (has_fraction(v)) return true;
    return false;
}

// The stored body: the received one with every secret LiveKit put in it replaced by the
// redaction marker (core/redact.hpp; docs/security.md). The signature was verified over
// the received bytes before; the derivation reads the log's columns, never the body.
Datum stored_body(const std::string& body, nlohmann::json& document) {
    const bool from_document = document.is_object() && !has_fraction(document);
    const auto secrets = document.is_object() ? core::redact_secrets(document)
                                              : std::vector<std::vector<std::string>>();
    if (from_document && GetDatabaseEncoding() == PG_UTF8) return jsonb_from_json(document);
    return jsonb_replace_paths(jsonb_from_text(body), secrets, core::kRedactedJson);
}

Outcome record(SpiSession& spi, const core::WebhookEvent& ev, const std::string& body,
               nlohmann::json& document, const std::string& api_key) {
    Outcome out;
    const int64_t event_ms = ev.created_at_s * 1000;
    const std::string room_name = ev.room ? ev.room->name : "";
    const core::Participant* p = ev.participant ? &*ev.participant : nullptr;
    core::Person person;
    if (p)
        person =
            core::resolve_person(*p, settings.identity_pattern ? settings.identity_pattern
                                                               : core::kDefaultIdentityPattern);
    if (!room_name.empty())
        out.session_id = core::session_from_room(
            room_name, settings.room_pattern ? settings.room_pattern : core::kDefaultRoomPattern);

    const bool participant_event = ev.kind == EventKind::ParticipantJoined ||
                                   ev.kind == EventKind::ParticipantLeft ||
                                   ev.kind == EventKind::ParticipantConnectionAborted;
    out.result = "recorded";
    if (ev.development_event())
        out.reason = std::string("development event: no createdAt, its time is the ") +
                     (ev.created_at_source == core::EventTimeSource::JoinedAt ? "join time"
                                                                              : "receipt time");
    if (participant_event && person.excluded_by_kind) {
        out.result = "ignored";
        out.reason = person.not_attending_reason;
    } else if (ev.kind == EventKind::RoomStarted || ev.kind == EventKind::Other) {
        out.result = "ignored";
        out.reason = ev.event + " has no attendance meaning";
    }

    std::optional<int64_t> joined_ms = p ? p->joined_at_ms : std::nullopt;
    const std::string disconnect =
        p && p->disconnect_reason != "UNKNOWN_REASON" ? p->disconnect_reason : "";
    // duration_minutes (a column of the application the extension replaces): how long the
    // connection a leave closes lasted.
    std::optional<int64_t> duration_minutes;
    if (ev.kind == EventKind::ParticipantLeft && joined_ms)
        duration_minutes = core::round_minutes(event_ms - *joined_ms);
    auto rows = spi.query(kAppend, {Arg::text(ev.id),
                                    Arg::text(ev.event),
                                    Arg::ts_ms(event_ms),
                                    Arg::opt_int8(out.session_id),
                                    Arg::text(room_name),
                                    Arg::opt_text(ev.room ? ev.room->sid : ""),
                                    Arg::opt_text(p ? p->sid : ""),
                                    Arg::opt_text(p ? p->identity : ""),
                                    Arg::opt_int8(person.user_id),
                                    Arg::opt_text(p ? person.user_key : ""),
                                    Arg::opt_text(p ? p->name : ""),
                                    Arg::opt_text(person.role),
                                    Arg::opt_text(p ? p->kind : ""),
                                    Arg::opt_ts_ms(joined_ms),
                                    Arg::text(out.result),
                                    Arg::opt_text(out.reason),
                                    Arg::opt_text(api_key),
                                    Arg::opt_text(disconnect),
                                    Arg::opt_int4(duration_minutes),
                                    Arg::boolean(ev.development_event()),
                                    Arg::jsonb(stored_body(body, document))});
    out.user_key = p ? person.user_key : "";
    if (rows.empty()) {
        // A redelivery: the first delivery is what counts (same bytes, same event).
        // Only redeliveries (and events of retired ranges) pay for these look-ups (fresh
        // snapshot: the first delivery may have just committed).
        // By its room first: on a Citus cluster that is the one shard holding it
        // (docs/scaling.md, "Citus"); then without it, for a row logged without a room before
        // 0.5.2 (NULL, not '') on one node.
        auto existing =
            spi.query(kLoggedInRoom, {Arg::text(ev.id), Arg::ts_ms(event_ms), Arg::text(room_name)},
                      false, 1);
        if (existing.empty())
            existing = spi.query(kLogged, {Arg::text(ev.id), Arg::ts_ms(event_ms)}, false, 1);
        if (!existing.empty()) {
            out.result = "duplicate";
            out.reason = "event id already recorded";
            out.row_id = existing[0]["id"].int8();
            return out;
        }
        // Not stored: its time lies in a range of the log already retired, so every
        // session it could count for is final (docs/architecture.md).
        auto retired = spi.query(kRetiredRange, {Arg::ts_ms(event_ms)}, false, 1);
        out.result = "retired";
        out.reason = retired.empty()
                         ? std::string("not stored: its time lies in a retired range of the log")
                         : "not stored: its time lies in a range of the log retired at " +
                               retired[0]["retired_at"].str() +
                               " (attendance.event_retention); every session it could count "
                               "for is final";
        return out;
    }
    out.row_id = rows[0]["id"].int8();
    if (out.result == "recorded") note_event_at_commit();
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
    log_message(settings.webhook_log_level, line, {}, true);
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
            if (!settings.development_mode) throw core::missing_token_error();
            unsigned_accepted = true;
        } else {
            parsed = core::parse_token(token);
            auto secret = active_secret(spi, parsed->iss);
            if (!secret) throw core::unknown_key_error(parsed->iss);
            core::VerifyOptions options;
            options.now_s = int64_t(std::time(nullptr));
            options.leeway_s = settings.token_leeway_s;
            options.check_expiry = !settings.replay_mode;
            core::verify_token(*parsed, body, *secret, options);
            api_key = parsed->iss;
        }

        // Development mode also accepts a hand-written body without createdAt; its log row
        // says so (development_event, and the reason names where its time came from).
        core::ParseOptions parse_options;
        parse_options.development_mode = settings.development_mode;
        parse_options.received_at_s = int64_t(std::time(nullptr));
        nlohmann::json document;
        parse_options.document = &document;
        core::WebhookEvent ev = core::parse_webhook(body, limits, parse_options);
        // Replay mode skips the expiry check against the clock only: a token valid now
        // (e.g. re-signed) passes as always; otherwise it must still have been valid
        // when LiveKit sent the webhook (its createdAt).
        if (parsed && settings.replay_mode &&
            !core::token_window_holds(*parsed, options_now(), settings.token_leeway_s))
            core::check_token_window(*parsed, ev.created_at_s, settings.token_leeway_s,
                                     "webhook createdAt");
        if (unsigned_accepted)
            log_message(WARNING,
                        "attendance: accepted an UNSIGNED webhook because "
                        "attendance.development_mode is on",
                        "Never enable development mode in production.");
        Outcome out = record(spi, ev, body, document, api_key);
        log_processed(ev, out);
        spi.finish();

        nlohmann::json response = {
            {"result", out.result},
            {"event", ev.event},
            {"event_id", ev.id},
            {"session_id", out.session_id ? nlohmann::json(*out.session_id) : nlohmann::json()},
            {"log_id", out.row_id ? nlohmann::json(*out.row_id) : nlohmann::json()},
            {"reason", out.reason.empty() ? nlohmann::json() : nlohmann::json(out.reason)}};
        // Built as jsonb directly, like the stored body (no text to parse).
        return jsonb_from_json(response);
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
        return text_datum(token);
    });
}

// 0.2.0's live-row refresh. Live rows are derived by the fold since 0.3.0, whose upgrade
// script drops the SQL function; the symbol stays so that the 0.1.0 -> 0.2.0 script,
// which creates it, still loads on the way to 0.3.0.
extern "C" {
PG_FUNCTION_INFO_V1(attendance_refresh_live);
}
extern "C" Datum attendance_refresh_live(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return entry([&]() -> Datum {
        throw core::Error("0A000",
                          "_attendance_refresh_live was removed in 0.3.0: live rows are derived "
                          "from the log (ALTER EXTENSION attendance UPDATE)");
    });
}

// _attendance_redact_secrets(jsonb): the same redaction for a body already stored (the
// upgrade to 0.4.0 runs it over the rows logged before). Only the secrets' values change.
extern "C" Datum attendance_redact_secrets(PG_FUNCTION_ARGS) {
    return entry([&]() -> Datum {
        Datum value = PG_GETARG_DATUM(0);
        nlohmann::json document = nlohmann::json::parse(jsonb_to_text(value));
        return jsonb_replace_paths(value, core::redact_secrets(document), core::kRedactedJson);
    });
}
