// Rooms are timelines, sessions are windows (docs/architecture.md, "Rooms and windows"):
// connections are per room and sid; a session keeps the connections that meet its window;
// the reconnect grace bridges gaps after network-type disconnects only.
#include "core/calc.hpp"
#include "core/derive.hpp"

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

constexpr int64_t kSec = 1000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t A = 1763114400000;  // 2025-11-14T10:00:00Z: class A 10:00-11:00
constexpr int64_t B = A + 60 * kMin;  // class B 11:00-12:00 in the same room

int serial = 0;

LoggedEvent ev(EventKind kind, int64_t t, const std::string& room, const std::string& sid,
               const std::string& user, std::optional<int64_t> joined,
               const std::string& reason = "") {
    LoggedEvent e;
    e.event_id = "EV_r" + std::to_string(++serial);
    e.kind = kind;
    e.room = room;
    e.time_ms = t;
    e.sid = sid;
    e.user_key = user;
    e.user_id = std::stoll(user);
    e.identity = "user-" + user;
    e.joined_ms = joined;
    e.disconnect_reason = reason;
    return e;
}
LoggedEvent join(int64_t t, const std::string& sid, const std::string& user,
                 const std::string& room = "room-1") {
    return ev(EventKind::ParticipantJoined, t, room, sid, user, t);
}
LoggedEvent leave(int64_t t, const std::string& sid, int64_t joined, const std::string& user,
                  const std::string& reason = "CLIENT_INITIATED",
                  const std::string& room = "room-1") {
    return ev(EventKind::ParticipantLeft, t, room, sid, user, joined, reason);
}

DeriveContext window(int64_t start, int64_t end) {
    DeriveContext c;
    c.scheduled_start_ms = start;
    c.scheduled_end_ms = end;
    c.as_of_ms = end + 60 * kMin;
    c.max_connection_age_ms = 6 * 60 * kMin;
    return c;
}

PersonResult result(const SessionDerivation& d, const std::string& user, int64_t start, int64_t end,
                    const Policy& policy = Policy{}) {
    const DerivedPerson& p = d.persons.at(user);
    return calculate_person(SessionWindow{start, end, std::nullopt, end + 60 * kMin}, policy,
                            p.calc_input(std::nullopt));
}

// The student: in A only, 10:20-10:31, leaving after A's midpoint. A: 11 of 60
// minutes, partial 18.33; B: no row.
TEST(Rooms, BackToBackClassesEachKeepTheirOwnPeople) {
    const int64_t j = A + 20 * kMin, l = A + 31 * kMin;
    const std::vector<LoggedEvent> events = {join(j, "PA_1", "458"), leave(l, "PA_1", j, "458"),
                                             join(B + 2 * kMin, "PA_2", "459"),
                                             leave(B + 50 * kMin, "PA_2", B + 2 * kMin, "459")};
    const SessionDerivation a = derive(events, window(A, B));
    const SessionDerivation b = derive(events, window(B, B + 60 * kMin));
    ASSERT_EQ(a.persons.size(), 1u);
    ASSERT_EQ(b.persons.size(), 1u);
    EXPECT_TRUE(a.persons.count("458"));
    EXPECT_TRUE(b.persons.count("459"));
    const PersonResult r = result(a, "458", A, B);
    EXPECT_EQ(r.presence_ms, 11 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 1833);
    EXPECT_EQ(r.status, kStatusPartial);
}

// Joined B five minutes early while A was on: counted in A for the overlap, in B from its
// start; one connection across both windows counts for both.
TEST(Rooms, AConnectionAcrossTwoWindowsCountsForBoth) {
    const int64_t j = B - 5 * kMin, l = B + 60 * kMin;
    const std::vector<LoggedEvent> events = {join(j, "PA_1", "460"), leave(l, "PA_1", j, "460")};
    const SessionDerivation a = derive(events, window(A, B));
    const SessionDerivation b = derive(events, window(B, B + 60 * kMin));
    EXPECT_EQ(result(a, "460", A, B).presence_ms, 5 * kMin);
    EXPECT_EQ(result(b, "460", B, B + 60 * kMin).presence_ms, 60 * kMin);
    EXPECT_EQ(result(b, "460", B, B + 60 * kMin).status, kStatusPresent);
}

// Someone who used the room the day before, and someone who left before the start, get no
// row; the roster still does.
TEST(Rooms, NobodyOutsideTheWindowGetsARow) {
    const int64_t y = A - 24 * 60 * kMin;
    const std::vector<LoggedEvent> events = {
        join(y, "PA_y", "470"), leave(y + 30 * kMin, "PA_y", y, "470"),
        join(A - 10 * kMin, "PA_e", "471"), leave(A - 2 * kMin, "PA_e", A - 10 * kMin, "471")};
    DeriveContext c = window(A, B);
    c.roster[472] = "student";
    const SessionDerivation d = derive(events, c);
    EXPECT_EQ(d.persons.size(), 1u);
    EXPECT_TRUE(d.persons.count("472"));
}

// An aborted attempt inside the window is kept as the session's evidence whether or not
// the session is scheduled, but alone it makes nobody a person of a scheduled session; an
// attempt outside the window is not the session's at all.
TEST(Rooms, AnAbortedAttemptAloneIsEvidenceWithoutARow) {
    std::vector<LoggedEvent> events = {ev(EventKind::ParticipantConnectionAborted, A + 20 * kMin,
                                          "room-1", "PA_x", "473", A + 20 * kMin),
                                       ev(EventKind::ParticipantConnectionAborted, B + 5 * kMin,
                                          "room-1", "PA_y", "474", B + 5 * kMin)};
    const SessionDerivation d = derive(events, window(A, B));
    EXPECT_TRUE(d.persons.empty());
    ASSERT_EQ(d.rowless.size(), 1u);
    EXPECT_EQ(d.rowless.front().sid, "PA_x");
    EXPECT_EQ(d.rowless.front().user_key, "473");
    EXPECT_EQ(d.rowless.front().end_reason, "aborted");
    DeriveContext rostered = window(A, B);
    rostered.roster[473] = "student";
    const SessionDerivation r = derive(events, rostered);
    EXPECT_TRUE(r.rowless.empty());
    ASSERT_EQ(r.persons.count("473"), 1u);
    EXPECT_EQ(r.persons.at("473").connections.size(), 1u);
}

// A connection still open is kept (it meets the window from the join on).
TEST(Rooms, AnOpenConnectionFromBeforeTheStartIsKept) {
    const std::vector<LoggedEvent> events = {join(A - 50 * kMin, "PA_1", "480")};
    const SessionDerivation d = derive(events, window(A, B));
    ASSERT_TRUE(d.persons.count("480"));
    const PersonResult r = result(d, "480", A, B);
    EXPECT_EQ(r.presence_ms, 60 * kMin);
}

// Connections are per room: the same sid in a breakout room is another connection, and
// room_finished closes only its own room's connections.
TEST(Rooms, ConnectionsAndRoomFinishedArePerRoom) {
    std::vector<LoggedEvent> events = {
        join(A, "PA_1", "490", "room-1"),
        leave(A + 20 * kMin, "PA_1", A, "490", "CLIENT_INITIATED", "room-1"),
        join(A + 20 * kMin, "PA_1", "490", "room-1-breakout-1"),
        ev(EventKind::RoomFinished, A + 30 * kMin, "room-1", "", "0", std::nullopt)};
    events.back().user_key.clear();
    events.back().user_id.reset();
    const SessionDerivation d = derive(events, window(A, B));
    const DerivedPerson& p = d.persons.at("490");
    ASSERT_EQ(p.connections.size(), 2u);
    EXPECT_EQ(p.connections[1].room, "room-1-breakout-1");
    EXPECT_FALSE(p.connections[1].synthetic_leave && *p.connections[1].leave_ms == A + 30 * kMin)
        << "room-1's room_finished must not close the breakout room's connection";
    EXPECT_EQ(result(d, "490", A, B).presence_ms, 60 * kMin);
}

// Every order of a shared-room stream derives the same for each window.
TEST(Rooms, SharedRoomStreamsInEveryOrder) {
    std::vector<LoggedEvent> events = {
        join(A + 5 * kMin, "PA_1", "501"), leave(A + 58 * kMin, "PA_1", A + 5 * kMin, "501"),
        join(B - 5 * kMin, "PA_2", "502"), leave(B + 30 * kMin, "PA_2", B - 5 * kMin, "502"),
        join(B + 1 * kMin, "PA_3", "503")};
    std::sort(events.begin(), events.end(),
              [](const LoggedEvent& a, const LoggedEvent& b) { return a.event_id < b.event_id; });
    const SessionDerivation a0 = derive(events, window(A, B));
    const SessionDerivation b0 = derive(events, window(B, B + 60 * kMin));
    size_t n = 0;
    do {
        EXPECT_EQ(derive(events, window(A, B)), a0);
        EXPECT_EQ(derive(events, window(B, B + 60 * kMin)), b0);
        ++n;
    } while (std::next_permutation(
        events.begin(), events.end(),
        [](const LoggedEvent& a, const LoggedEvent& b) { return a.event_id < b.event_id; }));
    EXPECT_EQ(n, 120u);
    EXPECT_EQ(a0.persons.size(), 2u);  // 501, and 502 for the overlap
    EXPECT_EQ(b0.persons.size(), 2u);  // 502 and 503
}

// The fold derives only the persons its new events name: for every person, that gives
// exactly what the whole session's derivation gives them, in two rooms with room_finished,
// lost joins and leaves, aborts, redeliveries, a roster and a manual status.
TEST(Rooms, DerivingSomePersonsGivesWhatTheWholeSessionGivesThem) {
    std::mt19937_64 rng(20261206);
    for (int round = 0; round < 30; ++round) {
        std::vector<LoggedEvent> events;
        for (int person = 0; person < 12; ++person) {
            const std::string user = std::to_string(600 + person);
            int64_t t = A - 30 * kMin + int64_t(rng() % (100 * kMin));
            for (int k = 0; k < 3; ++k) {
                const std::string sid = "PA_" + user + "_" + std::to_string(k);
                const std::string room = rng() % 3 ? "room-1" : "room-1-breakout-1";
                const int64_t stay = int64_t(rng() % (25 * kMin));
                const auto r = rng() % 10;
                if (r != 0) events.push_back(join(t, sid, user, room));
                if (r == 1)
                    events.push_back(ev(EventKind::ParticipantConnectionAborted, t + kSec, room,
                                        sid, user, t + kSec));
                if (r != 2)
                    events.push_back(leave(t + stay, sid, t, user,
                                           rng() % 2 ? "SIGNAL_CLOSE" : "CLIENT_INITIATED", room));
                if (r == 3) events.push_back(events.back());
                t += stay + int64_t(rng() % (5 * kMin));
            }
        }
        if (round % 2) {
            events.push_back(
                ev(EventKind::RoomFinished, B - 5 * kMin, "room-1", "", "0", std::nullopt));
            events.back().user_key.clear();
            events.back().user_id.reset();
        }
        std::shuffle(events.begin(), events.end(), rng);
        DeriveContext c = window(A, B);
        c.roster[600] = "student";
        c.roster[699] = "teacher";  // no events at all
        c.overridden = {"605"};
        const SessionDerivation whole = derive(events, c);
        std::set<std::string> seen;
        for (int person = 0; person < 12; ++person) {
            const std::string user = std::to_string(600 + person);
            const SessionDerivation some = derive_persons(events, c, {user, "nobody"});
            ASSERT_LE(some.persons.size(), 1u);
            if (whole.persons.count(user)) {
                ASSERT_EQ(some.persons.count(user), 1u) << "round " << round << " " << user;
                EXPECT_EQ(some.persons.at(user), whole.persons.at(user))
                    << "round " << round << " " << user;
                seen.insert(user);
            } else {
                EXPECT_TRUE(some.persons.empty()) << "round " << round << " " << user;
            }
            std::vector<DerivedConnection> theirs;
            for (const DerivedConnection& r : whole.rowless)
                if (r.user_key == user) theirs.push_back(r);
            EXPECT_EQ(some.rowless, theirs) << "round " << round << " " << user;
        }
        EXPECT_EQ(derive_persons(events, c, {"699"}).persons.at("699"), whole.persons.at("699"));
        EXPECT_EQ(seen.size() + 1, whole.persons.size()) << "round " << round;
    }
}

// The fold's unit for each kind of event (core::reach_of): a room_started changes nobody,
// so a session whose only new event is one derives no person. Adding room_started events
// anywhere in a stream (in either room, with or without room_finished) derives the same.
TEST(Rooms, ARoomStartedChangesNoPerson) {
    EXPECT_EQ(reach_of(EventKind::ParticipantJoined), EventReach::Person);
    EXPECT_EQ(reach_of(EventKind::ParticipantLeft), EventReach::Person);
    EXPECT_EQ(reach_of(EventKind::ParticipantConnectionAborted), EventReach::Person);
    EXPECT_EQ(reach_of(EventKind::RoomStarted), EventReach::Nobody);
    EXPECT_EQ(reach_of(EventKind::RoomFinished), EventReach::Session);
    EXPECT_EQ(reach_of(EventKind::Other), EventReach::Session);
    std::mt19937_64 rng(20261207);
    for (int round = 0; round < 30; ++round) {
        std::vector<LoggedEvent> events;
        for (int person = 0; person < 8; ++person) {
            const std::string user = std::to_string(700 + person);
            int64_t t = A - 30 * kMin + int64_t(rng() % (100 * kMin));
            for (int k = 0; k < 3; ++k) {
                const std::string sid = "PA_" + user + "_" + std::to_string(k);
                const std::string room = rng() % 3 ? "room-1" : "room-1-breakout-1";
                const int64_t stay = int64_t(rng() % (25 * kMin));
                if (rng() % 8) events.push_back(join(t, sid, user, room));
                if (rng() % 8)
                    events.push_back(leave(t + stay, sid, t, user, "SIGNAL_CLOSE", room));
                t += stay + int64_t(rng() % (5 * kMin));
            }
        }
        if (round % 2) {
            events.push_back(
                ev(EventKind::RoomFinished, B - 5 * kMin, "room-1", "", "0", std::nullopt));
            events.back().user_key.clear();
            events.back().user_id.reset();
        }
        const SessionDerivation without = derive(events, window(A, B));
        ASSERT_FALSE(without.persons.empty());
        for (int k = 0; k < 4; ++k) {
            // at a join's exact time too, where its rank orders it first
            const int64_t at =
                k == 0 ? events.front().time_ms : A - 40 * kMin + int64_t(rng() % (130 * kMin));
            events.push_back(ev(EventKind::RoomStarted, at, k % 2 ? "room-1" : "room-1-breakout-1",
                                "", "0", std::nullopt));
            events.back().user_key.clear();
            events.back().user_id.reset();
        }
        std::shuffle(events.begin(), events.end(), rng);
        EXPECT_EQ(derive(events, window(A, B)), without) << "round " << round;
    }
}

// A calculation that reads what the fold stored (the connections meeting the window, each
// person's identity and role) gives what deriving from the log gives at the calculation's
// time: connections closed by a rule that depends on the time are closed again, and the
// persons assembled from them.
TEST(Rooms, AssemblingStoredConnectionsLaterGivesTheDerivationThen) {
    std::mt19937_64 rng(20261207);
    for (int round = 0; round < 40; ++round) {
        std::vector<LoggedEvent> events;
        for (int person = 0; person < 10; ++person) {
            const std::string user = std::to_string(700 + person);
            int64_t t = A - 40 * kMin + int64_t(rng() % (110 * kMin));
            for (int k = 0; k < 3; ++k) {
                const std::string sid = "PA_" + user + "_" + std::to_string(k);
                const std::string room = rng() % 4 ? "room-1" : "room-1-breakout-1";
                const int64_t stay = int64_t(rng() % (30 * kMin));
                const auto r = rng() % 8;
                if (r != 0) events.push_back(join(t, sid, user, room));
                if (r == 1)
                    events.push_back(ev(EventKind::ParticipantConnectionAborted, t + kSec, room,
                                        sid, user, t + kSec));
                if (r > 3) events.push_back(leave(t + stay, sid, t, user, "SIGNAL_CLOSE", room));
                t += stay + int64_t(rng() % (5 * kMin));
            }
            if (rng() % 3 == 0) events.back().role = "teacher";
        }
        if (round % 3 == 0) {
            events.push_back(
                ev(EventKind::RoomFinished, B - 10 * kMin, "room-1", "", "0", std::nullopt));
            events.back().user_key.clear();
            events.back().user_id.reset();
        }
        DeriveContext folded = window(A, B);
        folded.as_of_ms = A + 20 * kMin + int64_t(rng() % (40 * kMin));  // during the class
        if (round % 4 == 0) folded.max_connection_age_ms = 30 * kMin;
        folded.roster[700] = "student";
        folded.roster[799] = "student";
        folded.overridden = {"703"};
        DeriveContext calculated = folded;
        calculated.as_of_ms = B + 10 * kMin;  // after the end
        // what a session reads: its rooms' events within the maximum age of its window
        std::erase_if(events, [&](const LoggedEvent& e) {
            return e.time_ms < A - folded.max_connection_age_ms ||
                   e.time_ms >= B + folded.max_connection_age_ms;
        });
        const SessionDerivation stored = derive(events, folded);
        // what the fold stored, read back
        std::map<std::string, DerivedPerson> persons;
        std::map<std::string, std::string> roles;
        for (const auto& [key, p] : stored.persons) {
            DerivedPerson& q = persons[key];
            q.user_key = key;
            q.user_id = p.user_id;
            q.identity = p.identity;
            q.name = p.name;
            roles[key] = p.role;
            for (DerivedConnection c : p.connections) {
                reconcile_again(c, calculated);
                q.connections.push_back(c);
            }
        }
        for (DerivedConnection c : stored.rowless) {
            reconcile_again(c, calculated);
            persons[c.user_key].user_key = c.user_key;
            persons[c.user_key].connections.push_back(c);
        }
        SessionDerivation from_store = assemble(persons, roles, calculated);
        SessionDerivation from_log = derive(events, calculated);
        from_log.room_finished_ms.reset();
        EXPECT_EQ(from_store, from_log) << "round " << round;
    }
}

Policy with_grace(int64_t ms) {
    Policy p;
    p.numbers.reconnect_grace_ms = ms;
    return p;
}

// Network drops within the grace are presence; a leave the person chose is not; a gap as
// long as the grace is not.
TEST(Reconnect, NetworkDropsWithinTheGraceAreBridged) {
    const struct {
        const char* reason;
        int64_t gap_ms;
        bool bridged;
    } cases[] = {{"SIGNAL_CLOSE", 8 * kSec, true},      {"CONNECTION_TIMEOUT", 20 * kSec, true},
                 {"MIGRATION", 15 * kSec, true},        {"14", 20 * kSec, true},
                 {"CLIENT_INITIATED", 8 * kSec, false}, {"PARTICIPANT_REMOVED", 8 * kSec, false},
                 {"ROOM_DELETED", 8 * kSec, false},     {"", 8 * kSec, false},
                 {"SIGNAL_CLOSE", 2 * kMin, false},     {"SIGNAL_CLOSE", 2 * kMin - 1, true}};
    for (const auto& c : cases) {
        const int64_t drop = A + 30 * kMin;
        const std::vector<LoggedEvent> events = {join(A, "PA_1", "510"),
                                                 leave(drop, "PA_1", A, "510", c.reason),
                                                 join(drop + c.gap_ms, "PA_2", "510")};
        const SessionDerivation d = derive(events, window(A, B));
        const PersonResult r = result(d, "510", A, B, with_grace(2 * kMin));
        EXPECT_EQ(r.presence_ms, 60 * kMin - (c.bridged ? 0 : c.gap_ms))
            << c.reason << " " << c.gap_ms;
        ASSERT_EQ(r.reconnects.size(), bridges_reconnect(c.reason) ? 1u : 0u) << c.reason;
        if (!r.reconnects.empty()) {
            EXPECT_EQ(r.reconnects[0].bridged, c.bridged);
        }
        // Off by default: the gap is absence, and explain still names it.
        const PersonResult off = result(d, "510", A, B);
        EXPECT_EQ(off.presence_ms, 60 * kMin - c.gap_ms);
    }
}

TEST(Reconnect, ExplainShowsEachGapAndItsReason) {
    const int64_t drop = A + 30 * kMin;
    const std::vector<LoggedEvent> events = {join(A, "PA_1", "511"),
                                             leave(drop, "PA_1", A, "511", "SIGNAL_CLOSE"),
                                             join(drop + 8 * kSec, "PA_2", "511")};
    const SessionDerivation d = derive(events, window(A, B));
    const DerivedPerson& p = d.persons.at("511");
    const PersonInput in = p.calc_input(std::nullopt);
    const SessionWindow w{A, B, std::nullopt, B + kMin};
    const Policy policy = with_grace(2 * kMin);
    const PersonResult r = calculate_person(w, policy, in);
    const nlohmann::json j = explain(w, policy, in, r);
    ASSERT_EQ(j["reconnect_grace"]["gaps"].size(), 1u);
    EXPECT_EQ(j["reconnect_grace"]["gaps"][0]["reason"], "SIGNAL_CLOSE");
    EXPECT_EQ(j["reconnect_grace"]["gaps"][0]["bridged"], true);
    EXPECT_EQ(j["reconnect_grace"]["bridged_ms"], 8 * kSec);
    EXPECT_EQ(j["connections"][0]["room"], "room-1");
}

}  // namespace
}  // namespace attendance::core
