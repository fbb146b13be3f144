// The attendance rules (docs/decisions.md, "Calculation") as a pure function of a person's
// connections, the session window and the policy. Pure C++ (no PostgreSQL), int64 milliseconds
// since the Unix epoch, exact integer arithmetic, no floats anywhere.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/intervals.hpp"

namespace attendance::core {

// Status strings produced by the rules (an override may produce any other text).
inline constexpr const char* kStatusPresent = "present";
inline constexpr const char* kStatusLate = "late";
inline constexpr const char* kStatusPartial = "partial";
inline constexpr const char* kStatusAbsent = "absent";

// Rule names reported in PersonResult::rule and in the explain trace.
inline constexpr const char* kRuleOverride = "override";
inline constexpr const char* kRuleNoPresence = "no_presence";
inline constexpr const char* kRuleBelowAbsent = "below_absent";
inline constexpr const char* kRuleBelowPartial = "below_partial";
inline constexpr const char* kRuleLate = "late";
inline constexpr const char* kRulePresent = "present";

// Percentages are in hundredths of a percent ("basis points"): 10% = 1000, 100% = 10000.
// Valid ranges (checked by calculate_person/explain for the numbers actually used, else
// std::invalid_argument): every *_bp in [0, 10000]; late_after_ms >= 0; merge_gap_ms >= 0.
struct PolicyNumbers {
    int64_t absent_below_bp = 1000;          // presence < 10%  -> absent
    int64_t partial_below_bp = 5000;         // presence < 50%  -> partial
    int64_t late_after_ms = 15 * 60 * 1000;  // first presence later than start + 15 min ...
    int64_t late_max_bp = 7500;              // ... and percentage <= 75%  -> late
    int64_t merge_gap_ms = 0;  // gaps <= this between connections count as presence (0 = off)
    // A gap after a network-type disconnect (bridges_reconnect) shorter than this, before the
    // person's next join, counts as presence (0 = off).
    int64_t reconnect_grace_ms = 0;

    bool operator==(const PolicyNumbers&) const = default;
};

struct Policy {
    std::string name = "default";
    PolicyNumbers numbers;
    std::map<std::string, PolicyNumbers> by_role;  // role-specific overrides, e.g. "teacher"

    // by_role[role] when present, else numbers.
    const PolicyNumbers& for_role(const std::string& role) const;
};

struct Connection {
    std::string sid;
    std::optional<int64_t> join_ms;
    std::optional<int64_t> leave_ms;  // empty = still open
    bool aborted = false;             // participant_connection_aborted: never presence
    bool synthetic_leave = false;     // leave_ms was written by reconciliation (trace only)
    std::string room;                 // the room (trace only)
    std::string disconnect_reason;    // LiveKit's disconnectReason of a real leave, else empty

    bool operator==(const Connection&) const = default;
};

// Whether a leave with this disconnectReason (LiveKit's enum name, or its number) is a
// network-type drop whose gap before the next join the reconnect grace may bridge:
// SIGNAL_CLOSE, CONNECTION_TIMEOUT, MIGRATION, MEDIA_FAILURE, STATE_MISMATCH,
// SERVER_SHUTDOWN. A leave the person or the room chose (CLIENT_INITIATED,
// PARTICIPANT_REMOVED, ROOM_DELETED, ROOM_CLOSED, ...) or an unknown reason never bridges.
bool bridges_reconnect(const std::string& disconnect_reason);

// A gap inside the window after a network-type disconnect, and whether the reconnect grace
// counted it as presence.
struct BridgedGap {
    Interval gap;
    bool bridged = false;
    std::string reason;  // the disconnectReason of the leave that opened it
    std::string sid;     // the connection that left
    std::string room;

    bool operator==(const BridgedGap&) const = default;
};

struct SessionWindow {
    int64_t start_ms;  // scheduled start (inclusive)
    int64_t end_ms;    // scheduled end (exclusive); must be > start_ms
    std::optional<int64_t> room_finished_ms;
    int64_t as_of_ms;  // calculation time; open connections never count past it
};

struct PersonInput {
    std::string user_key;
    std::string role = "student";
    std::vector<Connection> connections;
    std::optional<std::string> override_status;  // if set, must be non-empty
};

struct PersonResult {
    std::string status;       // "present" | "late" | "partial" | "absent" | override text
    std::string rule;         // "override", "no_presence", "below_absent", "below_partial", "late",
                              // "present"
    int64_t presence_ms = 0;  // union of clipped intervals (after merge gap)
    int64_t window_ms = 0;
    int64_t percentage_hundredths = 0;         // numeric(5,2) * 100: half up, cap 10000
    std::optional<int64_t> first_presence_ms;  // first instant of presence inside the window
    // Raw, unclipped, over counted connections (not aborted, with a join, leave >= join).
    // last_leave_ms is empty if any counted connection is still open (no leave_ms).
    std::optional<int64_t> first_join_ms, last_leave_ms;
    int64_t total_duration_minutes = 0;  // presence rounded half up to whole minutes
    // Effective interval of every contributing connection before clipping (non-empty only),
    // sorted by start then end.
    std::vector<Interval> counted;
    std::vector<BridgedGap> reconnects;  // gaps after network-type disconnects (bridged or not)
    std::vector<Interval> presence;      // final union inside the window (after merge gap)
    int64_t open_connections = 0;        // counted connections without a leave (closed at the
                                         // effective end)

    bool operator==(const PersonResult&) const = default;
};

// min(end_ms, room_finished_ms if present, as_of_ms): where an open connection is closed.
int64_t effective_end_ms(const SessionWindow& window);

// Applies the status rules. Throws std::invalid_argument when window.end_ms <= window.start_ms,
// when the policy numbers used are out of range, or when override_status is set but empty.
PersonResult calculate_person(const SessionWindow& window, const Policy& policy,
                              const PersonInput& person);

// The full trace behind `result` (normally the value calculate_person returned for the same
// inputs): window, policy numbers used, every connection (raw, effective, clipped), union,
// merge gap, presence, seconds, percentage ("94.99"), rule checks and the rule hit. Times
// are ISO-8601 UTC strings with milliseconds plus *_ms integers. Same throws as
// calculate_person.
nlohmann::json explain(const SessionWindow& window, const Policy& policy, const PersonInput& person,
                       const PersonResult& result);

// Whole minutes from milliseconds, rounded half away from zero (as PostgreSQL's round()):
// 89999 -> 1, 90000 -> 2, -90000 -> -2. Never overflows.
int64_t round_minutes(int64_t ms);

// 9499 -> "94.99", 10000 -> "100.00", 0 -> "0.00", -5 -> "-0.05".
std::string format_percentage(int64_t hundredths);

// The one home of cause precedence (docs/architecture.md, "One home for each rule"): the
// cause that stands when `incoming` meets a session whose pending cause is `pending`. A
// late webhook wins over every cause; otherwise the pending cause is kept; nothing
// incoming keeps the pending one. The flag (_attendance_flag, through
// _attendance_prevailing_cause) and the calculation's audit (core::audit_cause) both ask it.
inline constexpr const char* kLateWebhookCause = "late webhook";
std::optional<std::string> prevailing_cause(const std::optional<std::string>& pending,
                                            const std::optional<std::string>& incoming);

}  // namespace attendance::core
