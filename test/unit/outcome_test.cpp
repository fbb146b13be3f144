// core::outcome_of: the pure step between the loader and the store (docs/architecture.md,
// "Calculation").
#include "core/outcome.hpp"

#include "core/errors.hpp"

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

constexpr int64_t kMin = 60 * 1000;
constexpr int64_t S = 1763130600000;  // 2025-11-14T14:30:00Z
constexpr int64_t E = S + 60 * kMin;

LoggedEvent event(EventKind kind, int64_t t, const std::string& sid, const std::string& user,
                  std::optional<int64_t> joined, const std::string& id) {
    LoggedEvent e;
    e.event_id = id;
    e.kind = kind;
    e.room = "room-1";
    e.time_ms = t;
    e.sid = sid;
    e.user_key = user;
    e.user_id = std::stoll(user);
    e.identity = "user-" + user;
    e.joined_ms = joined;
    return e;
}

// A scheduled, finished session: 12 the whole hour, 13 from minute 30, 14 on the roster only.
SessionInput class_of_three() {
    SessionInput in;
    in.session_id = 456;
    in.scheduled = true;
    in.window.start_ms = S;
    in.window.end_ms = E;
    in.window.as_of_ms = E + 10 * kMin;
    in.context.scheduled_start_ms = S;
    in.context.scheduled_end_ms = E;
    in.context.as_of_ms = in.window.as_of_ms;
    in.context.max_connection_age_ms = 6 * 60 * kMin;
    in.context.roster[14] = "student";
    in.events = {
        event(EventKind::ParticipantJoined, S, "PA_1", "12", S, "EV_1"),
        event(EventKind::ParticipantLeft, E, "PA_1", "12", S, "EV_2"),
        event(EventKind::ParticipantJoined, S + 30 * kMin, "PA_2", "13", S + 30 * kMin, "EV_3"),
        event(EventKind::ParticipantLeft, E, "PA_2", "13", S + 30 * kMin, "EV_4")};
    in.events_read = true;
    Policy policy;
    policy.numbers.absent_below_bp = 2500;
    policy.numbers.partial_below_bp = 7500;
    policy.numbers.late_after_ms = 10 * kMin;
    policy.numbers.late_max_bp = 9000;
    in.policy = policy;
    return in;
}

// What the loader reads back of a derivation the fold stored: each person's connections and
// facts (user id, identity, name) and derived role; assemble() works out the rest.
std::map<std::string, DerivedPerson> as_stored(const SessionDerivation& derived,
                                               std::map<std::string, std::string>& roles) {
    std::map<std::string, DerivedPerson> persons;
    for (const auto& [key, p] : derived.persons) {
        DerivedPerson& s = persons[key];
        s.user_key = key;
        s.user_id = p.user_id;
        s.identity = p.identity;
        s.name = p.name;
        s.connections = p.connections;
        roles[key] = p.role;
    }
    return persons;
}

TEST(Outcome, TheFoldDerivesAndCalculatesNothing) {
    SessionInput in = class_of_three();
    const SessionOutcome out = outcome_of(in);
    EXPECT_EQ(out.derivation.persons.size(), 3u);
    EXPECT_TRUE(out.results.empty());
    EXPECT_TRUE(out.cause.empty());
}

TEST(Outcome, ACalculationGivesEveryPersonAResult) {
    SessionInput in = class_of_three();
    const SessionOutcome out = outcome_of(in, std::string("scheduled"));
    ASSERT_EQ(out.results.size(), 3u);
    EXPECT_EQ(out.result_of("12")->status, "present");
    EXPECT_EQ(out.result_of("13")->status, "partial");
    EXPECT_EQ(out.result_of("14")->status, "absent");
    EXPECT_EQ(out.cause, "scheduled");
}

TEST(Outcome, AnOverrideWinsOverTheRules) {
    SessionInput in = class_of_three();
    in.overrides["14"] = {"excused", "doctor's note"};
    in.context.overridden.push_back("14");
    EXPECT_EQ(outcome_of(in, std::string("override")).result_of("14")->status, "excused");
}

TEST(Outcome, TheAuditCauseFollowsPrecedence) {
    SessionInput in = class_of_three();
    in.calculated = true;
    in.pending_cause = "roster change";
    EXPECT_EQ(outcome_of(in, std::string("scheduled")).cause, "roster change");
    in.unseen_events = true;
    EXPECT_EQ(outcome_of(in, std::string("scheduled")).cause, "late webhook");
    // a change the caller makes itself is audited as that change
    EXPECT_EQ(outcome_of(in, std::string("override")).cause, "override");
    // never calculated: the caller's cause
    in.calculated = false;
    EXPECT_EQ(outcome_of(in, std::string("manual")).cause, "manual");
}

TEST(Outcome, WhatTheFoldStoredGivesTheSameAsTheLog) {
    SessionInput logged = class_of_three();
    const SessionDerivation derived = derive(logged.events, logged.context);
    SessionInput stored = logged;
    stored.from_store = true;
    std::map<std::string, std::string> roles;
    stored.stored_persons = as_stored(derived, roles);
    stored.stored_roles = roles;
    const SessionOutcome a = outcome_of(logged, std::string("scheduled"));
    const SessionOutcome b = outcome_of(stored, std::string("scheduled"), true);
    EXPECT_EQ(a.derivation, b.derivation);
    EXPECT_EQ(a.result_of("13")->percentage_hundredths, b.result_of("13")->percentage_hundredths);
    EXPECT_EQ(a.result_of("nobody"), nullptr);
}

TEST(Outcome, VerifyingAStoreThatDiffersFromTheLogFails) {
    SessionInput stored = class_of_three();
    const SessionDerivation derived = derive(stored.events, stored.context);
    stored.from_store = true;
    stored.stored_persons = as_stored(derived, stored.stored_roles);
    stored.stored_persons["13"].connections.front().join_ms = S + 40 * kMin;
    SessionInput again = stored;
    EXPECT_THROW(outcome_of(stored, std::string("scheduled"), true), Error);
    EXPECT_NO_THROW(outcome_of(again, std::string("scheduled"), false));
}

TEST(Outcome, ACalculationNeedsAWindowAndAPolicy) {
    SessionInput in = class_of_three();
    in.policy.reset();
    EXPECT_THROW(outcome_of(in, std::string("scheduled")), Error);
    EXPECT_NO_THROW(outcome_of(in));
}

}  // namespace
}  // namespace attendance::core
