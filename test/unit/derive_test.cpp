#include "core/derive.hpp"

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

constexpr int64_t kSec = 1000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t S = 1763130600000;  // 2025-11-14T14:30:00Z
constexpr int64_t E = S + 45 * kMin;  // 15:15

int serial = 0;

LoggedEvent ev(EventKind kind, int64_t t, std::string sid = "", std::string user = "12",
               std::optional<int64_t> joined = std::nullopt, std::string id = "") {
    LoggedEvent e;
    e.event_id = id.empty() ? "EV_" + std::to_string(++serial) : id;
    e.kind = kind;
    e.time_ms = t;
    e.sid = std::move(sid);
    e.user_key = user;
    if (!user.empty() && std::all_of(user.begin(), user.end(), ::isdigit))
        e.user_id = std::stoll(user);
    e.identity = "user-" + user;
    e.joined_ms = joined;
    return e;
}
LoggedEvent join(int64_t t, std::string sid, std::string user = "12") {
    return ev(EventKind::ParticipantJoined, t, std::move(sid), std::move(user), t);
}
LoggedEvent leave(int64_t t, std::string sid, std::optional<int64_t> joined,
                  std::string user = "12") {
    return ev(EventKind::ParticipantLeft, t, std::move(sid), std::move(user), joined);
}
LoggedEvent aborted(int64_t t, std::string sid, std::string user = "12") {
    return ev(EventKind::ParticipantConnectionAborted, t, std::move(sid), std::move(user), t);
}
LoggedEvent finished(int64_t t) { return ev(EventKind::RoomFinished, t, "", ""); }

DeriveContext after_end() {
    DeriveContext c;
    c.scheduled_end_ms = E;
    c.as_of_ms = E + 60 * kMin;
    c.max_connection_age_ms = 6 * 60 * kMin;
    return c;
}

// Every permutation of `events` derives the same thing as the given order.
void expect_order_independent(std::vector<LoggedEvent> events, const DeriveContext& context) {
    std::sort(events.begin(), events.end(),
              [](const LoggedEvent& a, const LoggedEvent& b) { return a.event_id < b.event_id; });
    const SessionDerivation first = derive(events, context);
    size_t n = 0;
    do {
        ASSERT_EQ(derive(events, context), first) << "permutation " << n;
        ++n;
    } while (std::next_permutation(
        events.begin(), events.end(),
        [](const LoggedEvent& a, const LoggedEvent& b) { return a.event_id < b.event_id; }));
}

const DerivedConnection& only_connection(const SessionDerivation& d,
                                         const std::string& user = "12") {
    const DerivedPerson& p = d.persons.at(user);
    EXPECT_EQ(p.connections.size(), 1u);
    return p.connections.front();
}

TEST(Derive, JoinAndLeave) {
    auto d = derive({join(S + kMin, "PA_a"), leave(S + 40 * kMin, "PA_a", S + kMin)}, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.join_ms, S + kMin);
    EXPECT_EQ(c.leave_ms, S + 40 * kMin);
    EXPECT_EQ(c.join_source, "joined");
    EXPECT_EQ(c.end_reason, "left");
    const DerivedPerson& p = d.persons.at("12");
    EXPECT_EQ(p.join_count, 1);
    EXPECT_EQ(p.leave_count, 1);
    EXPECT_EQ(p.first_join_ms, S + kMin);
    EXPECT_EQ(p.last_leave_ms, S + 40 * kMin);
    EXPECT_EQ(p.connected_minutes, 39);
}

TEST(Derive, AbortThenJoinIsAJoinInEveryOrder) {
    // The abort must never end a connection that a join proves active.
    std::vector<LoggedEvent> events = {aborted(S + 5 * kSec, "PA_a"), join(S, "PA_a")};
    expect_order_independent(events, after_end());
    auto d = derive(events, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.join_source, "joined");
    EXPECT_EQ(c.end_reason, "reconciled");  // no leave: closed at the scheduled end
    EXPECT_EQ(c.leave_ms, E);
    EXPECT_TRUE(c.synthetic_leave);
}

TEST(Derive, JoinAbortLeaveEndsWithTheLeaveInEveryOrder) {
    std::vector<LoggedEvent> events = {join(S, "PA_a"), aborted(S + kSec, "PA_a"),
                                       leave(S + 30 * kMin, "PA_a", S)};
    expect_order_independent(events, after_end());
    const auto d = derive(events, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.leave_ms, S + 30 * kMin);
    EXPECT_EQ(c.end_reason, "left");
    EXPECT_EQ(c.leave_event_id, events[2].event_id);
    EXPECT_EQ(d.persons.at("12").leave_count, 1);
}

TEST(Derive, AbortWithoutJoinIsNeverPresence) {
    auto d = derive({aborted(S + kMin, "PA_a")}, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.end_reason, "aborted");
    EXPECT_EQ(d.persons.at("12").join_count, 0);
    EXPECT_FALSE(d.persons.at("12").first_join_ms);
    EXPECT_TRUE(d.persons.at("12").calc_input(std::nullopt).connections.front().aborted);
}

TEST(Derive, TwoLeavesNameTheLeaveTheyTakeTheTimeFrom) {
    std::vector<LoggedEvent> events = {join(S, "PA_a"), leave(S + 10 * kMin, "PA_a", S),
                                       leave(S + 20 * kMin, "PA_a", S)};
    expect_order_independent(events, after_end());
    const auto d = derive(events, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.leave_ms, S + 20 * kMin);
    EXPECT_EQ(c.leave_event_id, events[2].event_id);
}

TEST(Derive, LeaveBeforeJoinAndLostJoin) {
    // Fast rejoin: the second connection's leave is logged before its join; the third
    // connection's join is lost and rebuilt from its leave.
    std::vector<LoggedEvent> events = {
        leave(S + 20 * kMin, "PA_b", S + 10 * kMin), join(S + 10 * kMin, "PA_b"), join(S, "PA_a"),
        leave(S + 9 * kMin, "PA_a", S), leave(S + 44 * kMin, "PA_c", S + 30 * kMin)};
    expect_order_independent(events, after_end());
    const auto d = derive(events, after_end());
    const auto& p = d.persons.at("12");
    ASSERT_EQ(p.connections.size(), 3u);
    EXPECT_EQ(p.connections[1].join_source, "joined");
    EXPECT_EQ(p.connections[2].join_source, "rebuilt_from_leave");
    EXPECT_EQ(p.connections[2].join_ms, S + 30 * kMin);
    EXPECT_EQ(p.join_count, 3);
    EXPECT_EQ(p.leave_count, 3);
}

TEST(Derive, RoomFinishedBeforeAnythingClosesOpenConnections) {
    std::vector<LoggedEvent> events = {finished(S + 40 * kMin), join(S, "PA_a"),
                                       join(S + kMin, "PA_b", "13")};
    expect_order_independent(events, after_end());
    auto d = derive(events, after_end());
    EXPECT_EQ(d.room_finished_ms, S + 40 * kMin);
    const auto& c = only_connection(d, "13");
    EXPECT_EQ(c.leave_ms, S + 40 * kMin);
    EXPECT_EQ(c.disconnect_reason, "reconciled: room_finished");
}

TEST(Derive, AConnectionAfterARoomFinishedIsNotClosedByIt) {
    // The room finished, then was used again: only a later room_finished closes the
    // later connection.
    auto d = derive({finished(S + 5 * kMin), join(S + 10 * kMin, "PA_a")}, after_end());
    const auto& c = only_connection(d);
    EXPECT_EQ(c.leave_ms, E);
    EXPECT_EQ(c.disconnect_reason, "reconciled: scheduled_end");
}

TEST(Derive, OpenWhileTheSessionRuns) {
    DeriveContext ctx = after_end();
    ctx.as_of_ms = S + 10 * kMin;
    auto d = derive({join(S, "PA_a")}, ctx);
    const auto& c = only_connection(d);
    EXPECT_FALSE(c.leave_ms);
    EXPECT_EQ(c.end_reason, "");
    EXPECT_FALSE(d.persons.at("12").last_leave_ms);  // "in meeting"
}

TEST(Derive, DuplicatesCountOnce) {
    LoggedEvent j = join(S, "PA_a");
    LoggedEvent l = leave(S + 30 * kMin, "PA_a", S);
    auto once = derive({j, l}, after_end());
    EXPECT_EQ(derive({l, j, l, j, j}, after_end()), once);
}

TEST(Derive, RosterWinsOverTheEventsRoleAndObserversAreDropped) {
    LoggedEvent t = join(S, "PA_t", "7");
    t.role = "teacher";
    LoggedEvent o = join(S, "PA_o", "8");
    o.role = "observer";
    DeriveContext ctx = after_end();
    ctx.roster = {{7, "observer"}, {8, "student"}, {9, "student"}};
    auto d = derive({t, o}, ctx);
    EXPECT_EQ(d.persons.count("7"), 0u);
    EXPECT_EQ(d.persons.at("8").role, "student");
    EXPECT_EQ(d.persons.at("9").connections.size(), 0u);  // expected, never came
    ctx.roster.clear();
    auto d2 = derive({t, o}, ctx);
    EXPECT_EQ(d2.persons.at("7").role, "teacher");
    EXPECT_EQ(d2.persons.count("8"), 0u);
}

TEST(Derive, AnOverrideMakesAPerson) {
    DeriveContext ctx = after_end();
    ctx.overridden = {"42"};
    auto d = derive({}, ctx);
    ASSERT_EQ(d.persons.count("42"), 1u);
    EXPECT_EQ(d.persons.at("42").connections.size(), 0u);
}

TEST(Derive, SmallSetsInEveryOrder) {
    // Every permutation of a set mixing all the awkward cases (8! = 40,320 orders).
    std::vector<LoggedEvent> events = {
        join(S, "PA_a"),
        aborted(S + 2 * kSec, "PA_a"),
        leave(S + 10 * kMin, "PA_a", S),
        leave(S + 10 * kMin, "PA_a", S, "12"),  // a second leave at the same time
        leave(S + 30 * kMin, "PA_b", S + 12 * kMin),
        join(S + 12 * kMin, "PA_b"),
        aborted(S + 31 * kMin, "PA_c"),
        finished(S + 40 * kMin)};
    expect_order_independent(events, after_end());
}

TEST(Derive, LargeClassesInRandomOrders) {
    std::mt19937_64 rng(20261201);
    for (int round = 0; round < 20; ++round) {
        std::vector<LoggedEvent> events;
        for (int person = 0; person < 25; ++person) {
            const std::string user = std::to_string(100 + person);
            int64_t t = S - 5 * kMin + int64_t(rng() % (20 * kMin));
            for (int k = 0; k < 4 && t < E + 10 * kMin; ++k) {
                const std::string sid = "PA_" + user + "_" + std::to_string(k);
                const int64_t stay = int64_t(rng() % (15 * kMin));
                const auto r = rng() % 10;
                if (r != 0) events.push_back(join(t, sid, user));  // sometimes a lost join
                if (r == 1) events.push_back(aborted(t + kSec, sid, user));
                if (r != 2) events.push_back(leave(t + stay, sid, t, user));  // lost leave
                if (r == 3) events.push_back(events.back());                  // redelivery
                t += stay + int64_t(rng() % (3 * kMin));
            }
        }
        if (round % 2) events.push_back(finished(E - kMin));
        const SessionDerivation expected = derive(events, after_end());
        for (int shuffle = 0; shuffle < 20; ++shuffle) {
            std::shuffle(events.begin(), events.end(), rng);
            ASSERT_EQ(derive(events, after_end()), expected) << "round " << round;
        }
    }
}

TEST(Derive, CyclesJson) {
    auto d = derive({join(S, "PA_a"), leave(S + 10 * kMin, "PA_a", S)}, after_end());
    auto j = cycles_json(d.persons.at("12"));
    ASSERT_EQ(j.size(), 1u);
    EXPECT_EQ(j[0]["joined_at"], "2025-11-14T14:30:00.000Z");
    EXPECT_EQ(j[0]["left_at"], "2025-11-14T14:40:00.000Z");
    EXPECT_EQ(j[0]["end"], "left");
    EXPECT_EQ(j[0]["synthetic_leave"], false);
}

}  // namespace
}  // namespace attendance::core
