// The fold (docs/architecture.md, "The worker's loops"): the watermark, which sessions new
// events touch, and load -> outcome -> store for each batch of them.
#include "pg/fold.hpp"

#include "pg/columns.hpp"
#include "pg/crossings.hpp"
#include "pg/load.hpp"
#include "pg/settings.hpp"
#include "pg/store.hpp"
#include "pg/transactions.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace attendance::pg {

namespace {

// The log's id sequence: its last value drawn, its oid, how many ids a session caches.
constexpr const char* kSequence = R"sql(
SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END AS last_id,
       s.tableoid::bigint AS sequence, p.seqcache AS cache
FROM @s.meeting_attendance_events_id_seq s JOIN pg_catalog.pg_sequence p ON p.seqrelid = s.tableoid
)sql";

constexpr const char* kLockTimeout = R"sql(
SELECT set_config('lock_timeout', $1, true)
)sql";

// One fold at a time; the state row is locked before any schedule row.
constexpr const char* kFoldState = R"sql(
SELECT safe_id FROM @s.attendance_fold_state FOR UPDATE
)sql";

constexpr const char* kHighestId = R"sql(
SELECT coalesce(max(id), 0) AS high FROM @s.meeting_attendance_events
)sql";

// Whether the schema has the rooms (0.5.0) and the fold's reader of the log (0.5.2).
constexpr const char* kSchemaHas = R"sql(
SELECT to_regclass('@s.attendance_rooms') IS NOT NULL AS rooms,
       to_regprocedure('@s._attendance_new_events(bigint, bigint)') IS NOT NULL AS reader
)sql";

// The sessions each new event counts for, and those holding a connection it changes
// (docs/architecture.md, "Rooms and windows" and "The worker's loops"); the events come
// from the log's reader (no statement both reads the log and applies a rule). Set-returning
// SQL functions in FROM are inlined into the plan; in a select list they would be called
// once per event. {events}: the reader, or the log itself for an earlier version's schema;
// {sessions}: the claims and holds, or 0.4's match before the rooms.
constexpr const char* kNewEvents = R"sql(
SELECT m.session_id, floor(extract(epoch FROM clock_timestamp() - e.received_at) * 1000)::bigint
         AS lag_ms, e.result, e.id, e.event_type, e.user_key
FROM {events} LEFT JOIN LATERAL {sessions} m(session_id) ON true
)sql";
constexpr const char* kNewEventsReader = "@s._attendance_new_events($1, $2) e";
constexpr const char* kNewEventsLog =
    "(SELECT * FROM @s.meeting_attendance_events e WHERE e.id > $1 AND e.id <= $2) e";
constexpr const char* kClaimsAndHolds = R"sql(
(SELECT c.c FROM @s._attendance_claims(e.room_name, e.event_timestamp, e.joined_at,
                                       e.session_id, e.event_type, e.participant_sid) c(c)
 UNION SELECT h.h FROM @s._attendance_holds(e.room_name, e.event_timestamp, e.event_type,
                                            e.participant_sid) h(h))
)sql";
constexpr const char* kMatchBeforeRooms =
    "@s._attendance_match(e.room_name, e.event_timestamp, e.session_id)";

constexpr const char* kMarkedSessions = R"sql(
SELECT session_id FROM @s.attendance_session_schedule WHERE needs_fold
)sql";

// Sessions whose events were retired keep what they have: a new event matched to one is
// logged and changes nothing (docs/architecture.md, "Partitions and retention").
constexpr const char* kSkipRetired = R"sql(
UPDATE @s.attendance_session_schedule s SET needs_fold = false
WHERE session_id = ANY($1) AND to_jsonb(s) ->> 'events_retired_at' IS NOT NULL
RETURNING session_id
)sql";

constexpr const char* kFlagLate = R"sql(
SELECT @s._attendance_flag($1, 'late webhook') AS flagged
)sql";

constexpr const char* kFolded = R"sql(
UPDATE @s.attendance_session_schedule SET needs_fold = false
WHERE session_id = ANY($1) AND needs_fold
)sql";

constexpr const char* kMarkFailed = R"sql(
UPDATE @s.attendance_session_schedule SET needs_fold = true WHERE session_id = $1
)sql";

constexpr const char* kFoldDone = R"sql(
UPDATE @s.attendance_fold_state
SET safe_id = CASE WHEN $1 THEN greatest(safe_id, $2) ELSE safe_id END,
    last_fold_at = now(), last_events = $3, last_sessions = $4,
    last_lag_ms = CASE WHEN $5 >= 0 THEN $5 END, folds = folds + 1
)sql";

// Only a person with an open connection changes as time passes: those persons (a session
// marked for the fold meanwhile is derived whole). Retired sessions keep what they have.
constexpr const char* kOpenConnections = R"sql(
SELECT DISTINCT c.session_id, c.user_key FROM @s.attendance_sessions c
WHERE c.leave_time IS NULL
  AND NOT EXISTS (SELECT 1 FROM @s.attendance_session_schedule s
                  WHERE s.session_id = c.session_id
                    AND to_jsonb(s) ->> 'events_retired_at' IS NOT NULL)
)sql";

// Reads, works out and stores the sessions `ids`, each locked in id order as calculations
// do; `only`: the persons of a session its new events name. Returns the calculated sessions
// that met an event their calculation did not see.
std::vector<int64_t> derive_and_store(SpiSession& spi, const std::vector<int64_t>& ids,
                                      const std::map<int64_t, std::set<std::string>>* only) {
    LoadOptions options;
    options.lock = true;
    options.only = only;
    Batch batch = load_batch(spi, ids, options);
    std::vector<Derived> sessions;
    sessions.reserve(batch.sessions.size());
    std::vector<int64_t> late;
    for (core::SessionInput& in : batch.sessions) {
        Derived& d = sessions.emplace_back();
        d.input = std::move(in);
        d.outcome = core::outcome_of(d.input);
        if (d.input.calculated && d.input.unseen_events) late.push_back(d.input.session_id);
    }
    store_fold(spi, sessions, batch.rooms_schema);
    return late;
}

// The settled high mark (docs/architecture.md, "The worker's loops"; docs/decisions.md):
// the highest log id H such that every row with an id up to H that will ever commit is
// visible to a snapshot taken after this returns; nothing when a transaction that drew
// such an id is still open after attendance.fold_wait.
//
// It takes no lock that an INSERT waits for. Every id comes from the log's sequence, and
// nextval locks the sequence (RowExclusiveLock, held to the end of the transaction) before
// it draws. So, once the sequence's last value L is read, every transaction that drew an
// id up to L has either ended or holds that lock. GetLockConflicts lists the holders
// without queueing a request (a LOCK TABLE would queue, and every new INSERT behind it),
// and the fold waits for each of those transactions to end (VirtualXactLock: a wait on the
// transaction, which nobody else queues behind). Whether a drawer had a transaction id yet
// does not matter: its lock was taken before its draw.
std::optional<int64_t> settled_high_mark(SpiSession& spi) {
    // A transaction snapshot (REPEATABLE READ, SERIALIZABLE) was taken before the wait: rows
    // committed during the wait are not visible to it, so nothing counts as settled.
    if (IsolationUsesXactSnapshot()) return std::nullopt;
    const Row seq = spi.query(kSequence)[0];
    // A session that caches ids could draw one below L later, without holding the lock now.
    if (seq["cache"].int8() != 1)
        throw core::Error("55000",
                          "the log's id sequence meeting_attendance_events_id_seq caches " +
                              std::to_string(seq["cache"].int8()) +
                              " values per session; the fold's watermark needs CACHE 1 "
                              "(ALTER SEQUENCE ... CACHE 1)");
    const int64_t last = seq["last_id"].int8();
    const Oid sequence = Oid(seq["sequence"].int8());
    const bool wait = settings.fold_wait_ms > 0;

    SubTransaction sub;
    bool settled = false;
    try {
        if (wait) spi.exec(kLockTimeout, {Arg::text(std::to_string(settings.fold_wait_ms) + "ms")});
        // The transactions that drew ids and are still open hold the sequence's lock.
        settled = wait_for_share_conflicts(sequence, wait);
    } catch (const PgError& e) {
        // Anything but lock_timeout (one is still open after fold_wait) is the fold's error;
        // the scope rolls the subtransaction back.
        if ((e.edata() ? e.edata()->sqlerrcode : 0) != ERRCODE_LOCK_NOT_AVAILABLE) throw;
        settled = false;
    }
    sub.rollback();  // either way: that ends the SET LOCAL
    if (!settled) return std::nullopt;
    return last;
}

}  // namespace

FoldResult fold(SpiSession& spi, int64_t max_events) {
    FoldResult out;
    const int64_t safe_id = spi.query(kFoldState)[0]["safe_id"].int8();
    std::optional<int64_t> settled = settled_high_mark(spi);
    out.complete = settled.has_value();
    int64_t high = settled ? *settled : spi.query(kHighestId)[0]["high"].int8();
    // At most max_events ids past the watermark (docs/architecture.md, "The worker's
    // loops"); the next fold follows at once. Not when an ingesting transaction is still
    // open: the watermark stays, and a capped fold would fold the same ids again.
    if (max_events > 0 && settled && high - safe_id > max_events) {
        high = safe_id + max_events;
        out.capped = true;
    }

    std::set<int64_t> touched, whole;
    std::map<int64_t, std::set<std::string>> some;  // sessions whose new events name only these
    int64_t lag_ms = -1;
    if (high > safe_id) {
        // An earlier version's schema, before ALTER EXTENSION UPDATE, has no reader (the log
        // is read in the statement) and, before 0.5.0, no rooms.
        const Row schema = spi.query(kSchemaHas)[0];
        const bool rooms = schema["rooms"].truth(), reader = schema["reader"].truth();
        if (rooms) note_rooms(spi, true);
        const std::string sql =
            fill_in(fill_in(kNewEvents, "events", reader ? kNewEventsReader : kNewEventsLog),
                    "sessions", rooms ? kClaimsAndHolds : kMatchBeforeRooms);
        std::set<int64_t> events;
        for (const Row& r : spi.query(sql, {Arg::int8(safe_id), Arg::int8(high)})) {
            events.insert(r["id"].int8());
            lag_ms = std::max(lag_ms, r["lag_ms"].int8());
            if (r["session_id"].is_null() || r["result"].str() != "recorded") continue;
            const int64_t session = r["session_id"].int8();
            touched.insert(session);
            // Incremental (docs/architecture.md, "The worker's loops"): a participant's event
            // changes that person only, a room_started nobody; a room_finished, or an earlier
            // version's schema, the session.
            const std::string key = r["user_key"].str();
            const core::EventReach reach =
                core::reach_of(core::event_kind_of(r["event_type"].str()));
            if (rooms && reach == core::EventReach::Person && !key.empty())
                some[session].insert(key);
            else if (rooms && reach == core::EventReach::Nobody)
                some[session];  // derived for no person: its room events are still read
            else
                whole.insert(session);
        }
        out.events = int64_t(events.size());
    }
    // A session flagged by a schedule, roster, policy or rooms change, or whose last fold
    // failed, is derived whole.
    for (const Row& r : spi.query(kMarkedSessions, {}, false)) {
        touched.insert(r["session_id"].int8());
        whole.insert(r["session_id"].int8());
    }
    for (int64_t id : whole) some.erase(id);
    if (!touched.empty())
        for (const Row& r :
             spi.query(kSkipRetired, {Arg::int8_array({touched.begin(), touched.end()})}))
            touched.erase(r["session_id"].int8());

    // Derives and stores `ids`; returns how many were flagged. Flagging is derived, not
    // one-shot: a calculated session that claims an event its calculation did not see is
    // flagged whenever it is derived, so a fold that failed for it, a crash or a restore
    // cannot lose the flag.
    auto fold_some = [&](const std::vector<int64_t>& ids) -> int {
        const std::vector<int64_t> late = derive_and_store(spi, ids, &some);
        int flagged = 0;
        if (!late.empty())
            flagged = int(spi.query(kFlagLate, {Arg::int8_array(late)})[0]["flagged"].int8());
        spi.exec(kFolded, {Arg::int8_array(ids)});
        return flagged;
    };
    // attendance.calculation_batch_size sessions at a time (the upgrade's first fold
    // derives every session); each batch at once, and when that fails each of its sessions
    // alone, so that a failing session never keeps the others' live rows behind. A failing
    // one stays marked and is tried again by the next fold.
    const std::vector<int64_t> all(touched.begin(), touched.end());
    in_batches(
        all.size(), size_t(std::max(settings.calculation_batch_size, 1)),
        [&](size_t first, size_t last) {
            return std::pair<int, int>(int(last - first), fold_some({all.begin() + long(first),
                                                                     all.begin() + long(last)}));
        },
        [&](std::pair<int, int> done) {
            out.sessions += done.first;
            out.flagged += done.second;
        },
        [&](size_t k, const std::string& error) {
            ++out.failed;
            if (!out.message.empty()) out.message += "; ";
            out.message += "session " + std::to_string(all[k]) + ": " + error;
            spi.exec(kMarkFailed, {Arg::int8(all[k])});
        },
        true);
    spi.exec(kFoldDone,
             {Arg::boolean(out.complete), Arg::int8(high), Arg::int4(int32_t(out.events)),
              Arg::int4(out.sessions), Arg::int8(lag_ms)});
    return out;
}

int rederive_open(SpiSession& spi) {
    std::map<int64_t, std::set<std::string>> open;
    for (const Row& r : spi.query(kOpenConnections, {}, false))
        open[r["session_id"].int8()].insert(r["user_key"].str());
    if (open.empty()) return 0;
    std::vector<int64_t> ids;
    for (const auto& [id, keys] : open) ids.push_back(id);
    derive_and_store(spi, ids, has_rooms(spi) ? &open : nullptr);
    return int(ids.size());
}

}  // namespace attendance::pg
