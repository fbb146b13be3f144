// A session's outcome (docs/architecture.md, "Calculation"): the pure step between the
// loader (src/pg/load.cpp), which reads everything a batch needs, and the store
// (src/pg/store.cpp), which writes it. From what was read it gives the session's
// derivation (connections, persons, live summary: core::derive, derive_persons or
// assemble) and, for a calculation, each person's result (clipping, rules, reconnect
// grace: core::calculate_person) and the cause it is audited with (cause precedence:
// core::prevailing_cause). The fold and the calculations both come through it.
#pragma once
#include "core/no_postgres.hpp"

#include "core/calc.hpp"
#include "core/derive.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace attendance::core {

// Everything the loader read of one session.
struct SessionInput {
    int64_t session_id = 0;
    bool scheduled = false;
    SessionWindow window{};  // scheduled sessions; as_of_ms is the time of the read
    DeriveContext context;
    std::map<std::string, std::pair<std::string, std::string>> overrides;  // key -> status, reason
    // Derive just these persons (the fold's incremental unit); nothing: the whole session.
    std::optional<std::set<std::string>> only;
    std::string policy_name = "default";
    std::optional<Policy> policy;              // a calculation's
    std::optional<std::string> pending_cause;  // recalculation_cause while flagged
    bool calculated = false;                   // calculated at least once
    bool unseen_events = false;  // events the last calculation did not see: late webhooks
    std::optional<int64_t> room_finished_ms;  // the latest room_finished, as last stored
    // When partitions holding its events were retired (attendance.event_retention).
    std::optional<std::string> events_retired_at;
    // The logged events (when read), and what the fold stored (from_store).
    std::vector<LoggedEvent> events;
    bool events_read = false;
    bool from_store = false;
    bool store_current = false;  // every stored connection is as it was stored
    std::map<std::string, DerivedPerson> stored_persons;
    std::map<std::string, std::string> stored_roles;

    bool over() const { return window.as_of_ms >= window.end_ms; }
    std::optional<std::string> override_status(const std::string& user_key) const;
};

// What is stored of a person's result (the whole trace is attendance_explain's).
struct PersonOutcome {
    std::string status;
    std::string rule;
    int64_t presence_ms = 0;
    int64_t percentage_hundredths = 0;
    int64_t total_duration_minutes = 0;
};

struct SessionOutcome {
    SessionDerivation derivation;
    // A calculation's: each person's result, in the order of derivation.persons (empty for
    // the fold), and the cause the batch is audited with.
    std::vector<PersonOutcome> results;
    std::string cause;

    // The result of the person with this key, if calculated.
    const PersonOutcome* result_of(const std::string& user_key) const;
};

// The cause a calculation is audited with: a change the caller makes itself (an override,
// anything but "manual" and "scheduled") is audited as that change; otherwise, for a
// session calculated before, the cause that prevails over the caller's among its pending
// cause and a late webhook (events its last calculation did not see).
std::string audit_cause(const SessionInput& in, const std::string& given);

// The session's outcome. calculate_as: the caller's cause, for a calculation (the session
// must be scheduled and have its policy); nothing for the fold (derivation only).
// verify: a session read from what the fold stored is derived from its events too (which
// the loader then read) and a difference is an error (attendance.verify_calculation).
// The stored persons are moved into the derivation (a batch's connections are many):
// in.stored_persons is left empty; nothing else of `in` changes.
SessionOutcome outcome_of(SessionInput& in,
                          const std::optional<std::string>& calculate_as = std::nullopt,
                          bool verify = false);

}  // namespace attendance::core
