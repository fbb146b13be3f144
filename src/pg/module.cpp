// Module entry: PG_MODULE_MAGIC, settings (and the SQL functions that read them), error
// raising, and the worker registration.
#include "pg/crossings.hpp"
#include "pg/scheduler.hpp"
#include "pg/settings.hpp"

#include "core/person.hpp"
#include "core/token.hpp"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
PG_FUNCTION_INFO_V1(attendance_calculation_delay);
PG_FUNCTION_INFO_V1(attendance_partition_interval);
PG_FUNCTION_INFO_V1(attendance_event_retention);
}

namespace attendance::pg {

Settings settings;

namespace detail {

ErrorData* run_catching(void (*fn)(void*), void* arg) noexcept {
    MemoryContext caller_context = CurrentMemoryContext;
    ErrorData* volatile edata = nullptr;
    PG_TRY();
    { fn(arg); }
    PG_CATCH();
    {
        MemoryContextSwitchTo(caller_context);
        edata = CopyErrorData();
        FlushErrorState();
    }
    PG_END_TRY();
    return edata;
}

void store_error(PendingError& out, const char* sqlstate, const char* message) noexcept {
    std::strncpy(out.sqlstate, sqlstate && std::strlen(sqlstate) == 5 ? sqlstate : "XX000", 5);
    out.sqlstate[5] = '\0';
    size_t n = std::strlen(message);
    if (n >= sizeof(out.message)) {
        n = sizeof(out.message) - 1;
        while (n > 0 && (static_cast<unsigned char>(message[n]) & 0xC0) == 0x80)
            --n;  // UTF-8 boundary
    }
    std::memcpy(out.message, message, n);
    out.message[n] = '\0';
}

void raise_pending(const PendingError& err, ErrorData* pg_error) {
    if (pg_error) ReThrowError(pg_error);
    const char* s = err.sqlstate;
    ereport(ERROR,
            (errcode(MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4])), errmsg("%s", err.message)));
    pg_unreachable();
}

}  // namespace detail

namespace {

const struct config_enum_entry log_level_options[] = {
    {"debug2", DEBUG2, false}, {"debug1", DEBUG1, false}, {"log", LOG, false},
    {"info", INFO, false},     {"notice", NOTICE, false}, {"off", -1, false},
    {nullptr, 0, false}};

const struct config_enum_entry retention_action_options[] = {
    {"drop", 0, false}, {"detach", 1, false}, {nullptr, 0, false}};

bool check_pattern_guc(char** newval, void**, GucSource) {
    if (!*newval) return true;
    std::string error;
    try {
        error = core::check_pattern(*newval);
    } catch (...) {
        error = "the pattern could not be checked";
    }
    if (!error.empty()) {
        GUC_check_errdetail("%s", error.c_str());
        return false;
    }
    return true;
}

}  // namespace

void define_settings() {
    DefineCustomBoolVariable("attendance.development_mode",
                             "Accepts webhooks without an Authorization token (development only).",
                             "Superuser-only. Every unsigned webhook accepted this way logs a "
                             "WARNING. Signed webhooks are "
                             "still verified.",
                             &settings.development_mode, false, PGC_SUSET, 0, nullptr, nullptr,
                             nullptr);
    DefineCustomBoolVariable(
        "attendance.verify_calculation",
        "Checks every calculation that reads what the fold stored against the log.",
        "Superuser-only, for tests and diagnosis: such a calculation also derives its "
        "sessions from the logged events and fails (XX000) if the two differ.",
        &settings.verify_calculation, false, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("attendance.replay_mode",
                             "Skips only the token expiry check, to replay archived webhooks.",
                             "Superuser-only. The signature and the body hash are still checked.",
                             &settings.replay_mode, false, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.token_leeway", "Clock skew allowed on token exp and nbf.",
                            nullptr, &settings.token_leeway_s, int(core::kDefaultTokenLeewayS), 0,
                            3600, PGC_SUSET, GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.max_body_bytes", "Largest webhook body accepted.", nullptr,
                            &settings.max_body_bytes, 1024 * 1024, 1024, 64 * 1024 * 1024,
                            PGC_SUSET, GUC_UNIT_BYTE, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.max_json_depth", "Deepest JSON nesting accepted in a webhook body.", nullptr,
        &settings.max_json_depth, 64, 2, 1000, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable(
        "attendance.identity_pattern",
        "Regular expression that extracts a user id from a participant identity.",
        "ECMAScript syntax, matched against the whole identity; the first capturing group is the "
        "id.",
        &settings.identity_pattern, core::kDefaultIdentityPattern, PGC_SUSET, 0, check_pattern_guc,
        nullptr, nullptr);
    DefineCustomStringVariable(
        "attendance.room_pattern",
        "Regular expression that extracts a session id from a room name not registered with "
        "attendance_schedule_session.",
        "ECMAScript syntax, searched in the room name; the first capturing group is the session "
        "id.",
        &settings.room_pattern, core::kDefaultRoomPattern, PGC_SUSET, 0, check_pattern_guc, nullptr,
        nullptr);
    DefineCustomStringVariable(
        "attendance.breakout_pattern",
        "Regular expression that names the main room of a breakout room.",
        "PostgreSQL regular expression syntax, matched against a room name; the first capture "
        "group that matched is the main room's name, whose sessions the breakout room belongs "
        "to. Empty: no breakout room is found by name.",
        &settings.breakout_pattern, "^(?:breakout-[0-9]+-(.+)|(.+)-breakout-[0-9]+)$", PGC_SUSET, 0,
        nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.early_join_tolerance",
        "How long before a session's start an event of its rooms still counts for it.",
        "An event earlier than this, of a connection that ended before the start, is listed as "
        "unmatched; it never adds presence (the window clips).",
        &settings.early_join_tolerance_s, 15 * 60, 0, 24 * 3600, PGC_SUSET, GUC_UNIT_S, nullptr,
        nullptr, nullptr);
    DefineCustomEnumVariable("attendance.webhook_log_level",
                             "Server log level of the line written for each processed webhook.",
                             nullptr, &settings.webhook_log_level, LOG, log_level_options,
                             PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable(
        "attendance.database_name", "Database the background scheduler works in.",
        "The extension must be created in this database.", &settings.database_name, "postgres",
        PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable(
        "attendance.enable_scheduler", "Starts the background scheduler (needs preloading).",
        nullptr, &settings.scheduler_enabled, true, PGC_POSTMASTER, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.calculation_delay",
                            "How long after a session's scheduled end it is calculated.", nullptr,
                            &settings.calculation_delay_s, 300, 0, 7 * 24 * 3600, PGC_SIGHUP,
                            GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.calculation_batch_size",
        "How many due sessions are calculated together, with one statement per table.",
        "A batch that fails is retried one session at a time, so a failing session never stops "
        "the others. 1 calculates every session on its own.",
        &settings.calculation_batch_size, 500, 1, 10000, PGC_SUSET, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.fold_interval",
        "How far the live rows and connections may lag the log: the scheduler folds new events "
        "at most this often.",
        "Milliseconds. The fold runs only while new events exist.", &settings.fold_interval_ms, 500,
        100, 3600 * 1000, PGC_SIGHUP, GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.fold_wait",
        "How long a fold waits for ingesting transactions still open before folding what is "
        "committed.",
        "Milliseconds; 0 does not wait. A transaction still open is folded by a later fold.",
        &settings.fold_wait_ms, 200, 0, 60 * 1000, PGC_SUSET, GUC_UNIT_MS, nullptr, nullptr,
        nullptr);
    DefineCustomIntVariable(
        "attendance.fold_max_events",
        "At most this many logged events are folded in one transaction; the rest by the next "
        "fold, at once.",
        "Bounds one fold's work (and its burst on the CPU) after a backlog, e.g. a restart.",
        &settings.fold_max_events, 5000, 100, 1000000, PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.reconcile_interval",
                            "How often the scheduler derives again the sessions with connections "
                            "still open (reconciliation).",
                            nullptr, &settings.reconcile_interval_s, 3600, 1, 7 * 24 * 3600,
                            PGC_SIGHUP, GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.max_connection_age",
        "Open connections older than this are closed by reconciliation when nothing else "
        "(room_finished, the session's end) closes them.",
        nullptr, &settings.max_connection_age_s, 6 * 3600, 60, 30 * 24 * 3600, PGC_SIGHUP,
        GUC_UNIT_S, nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.run_history_retention",
                            "Days of scheduler run history kept.", nullptr,
                            &settings.run_history_retention_days, 30, 1, 3650, PGC_SIGHUP, 0,
                            nullptr, nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.partition_interval",
        "Time range of one partition of the webhook log (meeting_attendance_events).",
        "Partitions are aligned to multiples of the interval since 1970-01-01 UTC. A change "
        "applies to the partitions created afterwards.",
        &settings.partition_interval_min, 30 * 24 * 60, 1, 366 * 24 * 60, PGC_SUSET, GUC_UNIT_MIN,
        nullptr, nullptr, nullptr);
    DefineCustomIntVariable("attendance.partitions_ahead",
                            "How many partitions of the log the scheduler keeps created beyond the "
                            "one holding the current time.",
                            nullptr, &settings.partitions_ahead, 2, 1, 100, PGC_SUSET, 0, nullptr,
                            nullptr, nullptr);
    DefineCustomIntVariable(
        "attendance.event_retention",
        "How long logged webhooks are kept; 0 (the default) keeps everything.",
        "A partition whose whole range is older than this is retired (see "
        "attendance.retention_action) once every session its events count for is calculated "
        "and final. Results, overrides and audit rows are kept.",
        &settings.event_retention_min, 0, 0, INT_MAX, PGC_SUSET, GUC_UNIT_MIN, nullptr, nullptr,
        nullptr);
    DefineCustomEnumVariable("attendance.retention_action",
                             "What retiring a partition of the log does: drop it, or detach it "
                             "(kept as a table of its own, for archiving).",
                             nullptr, &settings.retention_action, 0, retention_action_options,
                             PGC_SUSET, 0, nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("attendance");
}

}  // namespace attendance::pg

void _PG_init(void) {
    attendance::pg::define_settings();
    attendance::pg::register_worker_if_preloaded();
}

// The settings the SQL reads, as intervals: the delay for the view attendance_sessions_due
// (the one "due" rule); the log's for the partition maintenance (attendance_maintain_log),
// a retention of 0 keeping everything (NULL).
extern "C" Datum attendance_calculation_delay(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return attendance::pg::entry([&]() -> Datum {
        return attendance::pg::interval_datum(int64(attendance::pg::settings.calculation_delay_s) *
                                              USECS_PER_SEC);
    });
}

extern "C" Datum attendance_partition_interval(PG_FUNCTION_ARGS) {
    (void)fcinfo;
    return attendance::pg::entry([&]() -> Datum {
        return attendance::pg::interval_datum(
            int64(attendance::pg::settings.partition_interval_min) * 60 * USECS_PER_SEC);
    });
}

extern "C" Datum attendance_event_retention(PG_FUNCTION_ARGS) {
    return attendance::pg::entry([&]() -> Datum {
        if (attendance::pg::settings.event_retention_min <= 0) {
            fcinfo->isnull = true;
            return Datum(0);
        }
        return attendance::pg::interval_datum(int64(attendance::pg::settings.event_retention_min) *
                                              60 * USECS_PER_SEC);
    });
}
