#include "core/calc.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace attendance::core {
namespace {

using V = std::vector<Interval>;
using nlohmann::json;

constexpr int64_t kSec = 1000;
constexpr int64_t kMin = 60 * kSec;
constexpr int64_t kNov14 = 1763078400000;  // 2025-11-14T00:00:00Z

// 2025-11-14 hh:mm:ss.mmm Z in epoch milliseconds.
constexpr int64_t at(int64_t h, int64_t m, int64_t s = 0, int64_t ms = 0) {
    return kNov14 + ((h * 60 + m) * 60 + s) * kSec + ms;
}

constexpr int64_t S = at(14, 30);    // worked-example start, 1763130600000
constexpr int64_t E = at(15, 15);    // worked-example end, 1763133300000
constexpr int64_t kW45 = 45 * kMin;  // 2700000

static_assert(S == 1763130600000);
static_assert(E == 1763133300000);

// Window [S, S + len) calculated after everything is over.
SessionWindow win(int64_t len = kW45) {
    return SessionWindow{S, S + len, std::nullopt, S + len + 60 * kMin};
}

Connection closed(int64_t join, int64_t leave, std::string sid = "PA_x") {
    return Connection{std::move(sid), join, leave, false, false};
}

Connection open_conn(int64_t join, std::string sid = "PA_open") {
    return Connection{std::move(sid), join, std::nullopt, false, false};
}

PersonInput person(std::vector<Connection> conns, std::string role = "student") {
    PersonInput p;
    p.user_key = "u";
    p.role = std::move(role);
    p.connections = std::move(conns);
    return p;
}

PersonResult calc(const SessionWindow& w, std::vector<Connection> conns,
                  const Policy& policy = Policy{}) {
    return calculate_person(w, policy, person(std::move(conns)));
}

// --- window edges --------------------------------------------------------------------------

TEST(CalcWindow, JoinBeforeStartIsClipped) {
    const PersonResult r = calc(win(), {closed(S - 5 * kMin, S + 30 * kMin)});
    EXPECT_EQ(r.presence_ms, 30 * kMin);
    EXPECT_EQ(r.window_ms, kW45);
    EXPECT_EQ(r.percentage_hundredths, 6667);
    EXPECT_EQ(r.first_presence_ms, S);
    EXPECT_EQ(r.first_join_ms, S - 5 * kMin);  // raw, unclipped
    EXPECT_EQ(r.counted, (V{{S - 5 * kMin, S + 30 * kMin}}));
    EXPECT_EQ(r.presence, (V{{S, S + 30 * kMin}}));
    EXPECT_EQ(r.status, "present");
}

TEST(CalcWindow, LeaveAfterEndIsClipped) {
    const PersonResult r = calc(win(), {closed(S + 10 * kMin, E + 7 * kMin)});
    EXPECT_EQ(r.presence_ms, 35 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 7778);
    EXPECT_EQ(r.last_leave_ms, E + 7 * kMin);  // raw, unclipped
    EXPECT_EQ(r.presence, (V{{S + 10 * kMin, E}}));
    EXPECT_EQ(r.status, "present");
}

TEST(CalcWindow, ExactEdgesGiveFullPresence) {
    const PersonResult r = calc(win(), {closed(S, E)});
    EXPECT_EQ(r.presence_ms, kW45);
    EXPECT_EQ(r.percentage_hundredths, 10000);
    EXPECT_EQ(r.first_presence_ms, S);
    EXPECT_EQ(r.total_duration_minutes, 45);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "present");
}

TEST(CalcWindow, ConnectionsTouchingTheWindowFromOutsideCountNothing) {
    // [S-1h, S) ends exactly at the start; [E, E+1h) starts exactly at the (exclusive) end.
    const PersonResult r = calc(win(), {closed(S - 60 * kMin, S), closed(E, E + 60 * kMin)});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.percentage_hundredths, 0);
    EXPECT_EQ(r.first_presence_ms, std::nullopt);
    EXPECT_EQ(r.first_join_ms, S - 60 * kMin);
    EXPECT_EQ(r.last_leave_ms, E + 60 * kMin);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

TEST(CalcWindow, OneMillisecondInsideEachEdgeCounts) {
    const PersonResult r =
        calc(win(), {closed(S - 60 * kMin, S + 1), closed(E - 1, E + 60 * kMin)});
    EXPECT_EQ(r.presence_ms, 2);
    EXPECT_EQ(r.presence, (V{{S, S + 1}, {E - 1, E}}));
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "below_absent");
}

TEST(CalcWindow, EndNotAfterStartThrows) {
    EXPECT_THROW(calc(SessionWindow{S, S, std::nullopt, E}, {}), std::invalid_argument);
    EXPECT_THROW(calc(SessionWindow{E, S, std::nullopt, E}, {}), std::invalid_argument);
    EXPECT_THROW(calc(SessionWindow{INT64_MIN, INT64_MAX, std::nullopt, 0}, {}),
                 std::invalid_argument);
}

// --- threshold edges of the default policy ---------------------------------------------------

TEST(CalcThresholds, ExactlyTenPercentIsPartialNotAbsent) {
    const PersonResult r = calc(win(), {closed(S, S + 270000)});  // 10% of 45 min
    EXPECT_EQ(r.percentage_hundredths, 1000);
    EXPECT_EQ(r.status, "partial");
    EXPECT_EQ(r.rule, "below_partial");
}

TEST(CalcThresholds, OneMillisecondUnderTenPercentIsAbsentEvenThoughItRoundsTo10) {
    const PersonResult r = calc(win(), {closed(S, S + 269999)});
    EXPECT_EQ(r.presence_ms, 269999);
    EXPECT_EQ(r.percentage_hundredths, 1000);  // 9.99996 % displays as 10.00
    EXPECT_EQ(r.status, "absent");             // but the exact comparison says < 10 %
    EXPECT_EQ(r.rule, "below_absent");
}

TEST(CalcThresholds, ExactlyFiftyPercentOnTimeIsPresent) {
    const PersonResult r = calc(win(), {closed(S, S + 1350000)});
    EXPECT_EQ(r.percentage_hundredths, 5000);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "present");
}

TEST(CalcThresholds, ExactlyFiftyPercentWithLateFirstPresenceIsLate) {
    const PersonResult r = calc(win(), {closed(S + 20 * kMin, S + 20 * kMin + 1350000)});
    EXPECT_EQ(r.presence_ms, 1350000);
    EXPECT_EQ(r.percentage_hundredths, 5000);
    EXPECT_EQ(r.status, "late");
    EXPECT_EQ(r.rule, "late");
}

TEST(CalcThresholds, OneMillisecondUnderFiftyPercentIsPartial) {
    const PersonResult r = calc(win(), {closed(S, S + 1349999)});
    EXPECT_EQ(r.percentage_hundredths, 5000);  // rounds to 50.00
    EXPECT_EQ(r.status, "partial");
    EXPECT_EQ(r.rule, "below_partial");
}

TEST(CalcThresholds, ExactlySeventyFivePercentAfterLateJoinIsLate) {
    // 100-minute window: join at +20 min, 75 min of presence.
    const PersonResult r = calc(win(100 * kMin), {closed(S + 20 * kMin, S + 95 * kMin)});
    EXPECT_EQ(r.presence_ms, 75 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 7500);
    EXPECT_EQ(r.status, "late");
    EXPECT_EQ(r.rule, "late");
}

TEST(CalcThresholds, OneMillisecondOverSeventyFivePercentAfterLateJoinIsPresent) {
    const PersonResult r = calc(win(100 * kMin), {closed(S + 20 * kMin, S + 95 * kMin + 1)});
    EXPECT_EQ(r.presence_ms, 75 * kMin + 1);
    EXPECT_EQ(r.percentage_hundredths, 7500);  // rounds to 75.00, yet it is above 75 %
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "present");
}

TEST(CalcThresholds, FirstPresenceExactlyFifteenMinutesAfterStartIsNotLate) {
    const PersonResult r = calc(win(), {closed(S + 15 * kMin, E)});
    EXPECT_EQ(r.presence_ms, 30 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 6667);
    EXPECT_EQ(r.first_presence_ms, S + 15 * kMin);
    EXPECT_EQ(r.status, "present");
}

TEST(CalcThresholds, FirstPresenceOneMillisecondAfterFifteenMinutesIsLate) {
    const PersonResult r = calc(win(), {closed(S + 15 * kMin + 1, E)});
    EXPECT_EQ(r.presence_ms, 30 * kMin - 1);
    EXPECT_EQ(r.percentage_hundredths, 6667);
    EXPECT_EQ(r.first_presence_ms, S + 15 * kMin + 1);
    EXPECT_EQ(r.status, "late");
    EXPECT_EQ(r.rule, "late");
}

TEST(CalcThresholds, LatenessUsesFirstPresenceInsideWindowNotFirstJoin) {
    // An early visit that ends before the start does not make the person on time.
    const PersonResult r =
        calc(win(), {closed(S - 10 * kMin, S - 5 * kMin, "a"), closed(S + 20 * kMin, E, "b")});
    EXPECT_EQ(r.first_join_ms, S - 10 * kMin);
    EXPECT_EQ(r.first_presence_ms, S + 20 * kMin);
    EXPECT_EQ(r.presence_ms, 25 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 5556);
    EXPECT_EQ(r.status, "late");
}

TEST(CalcThresholds, FloatTrapTwentyNineOfFiftyMinutesPassesFiftyEightPercent) {
    Policy p;
    p.numbers.partial_below_bp = 5800;
    // In binary floating point 29/50*100 is 57.99999999999999 < 58: a float comparison
    // would wrongly say partial.
    volatile double f = 29.0 / 50.0 * 100.0;
    EXPECT_LT(f, 58.0);
    const PersonResult r = calc(win(50 * kMin), {closed(S, S + 29 * kMin)}, p);
    EXPECT_EQ(r.presence_ms, 29 * kMin);
    EXPECT_EQ(r.window_ms, 50 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 5800);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "present");
}

// --- union, flaps, merge gap -----------------------------------------------------------------

TEST(CalcUnion, OverlappingDevicesCountedOnce) {
    const PersonResult r = calc(
        win(), {closed(S, S + 30 * kMin, "phone"), closed(S + 10 * kMin, S + 40 * kMin, "laptop")});
    EXPECT_EQ(r.presence_ms, 40 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 8889);
    EXPECT_EQ(r.presence, (V{{S, S + 40 * kMin}}));
    EXPECT_EQ(r.counted.size(), 2u);
    EXPECT_EQ(r.status, "present");
}

TEST(CalcUnion, DeviceInsideAnotherAddsNothing) {
    const PersonResult r =
        calc(win(), {closed(S, E, "laptop"), closed(S + 5 * kMin, S + 6 * kMin, "phone"),
                     closed(S, E, "laptop-dup")});
    EXPECT_EQ(r.presence_ms, kW45);
    EXPECT_EQ(r.percentage_hundredths, 10000);
}

std::vector<Connection> ten_flaps(int64_t first_join) {
    std::vector<Connection> c;
    for (int64_t i = 0; i < 10; ++i) {
        const int64_t j = first_join + i * 40 * kSec;  // 30 s connected, 10 s gap
        c.push_back(closed(j, j + 30 * kSec, "PA_flap" + std::to_string(i)));
    }
    return c;
}

TEST(CalcUnion, TenThirtySecondFlapsCountFiveMinutes) {
    const PersonResult r = calc(win(), ten_flaps(S + kMin));
    EXPECT_EQ(r.presence_ms, 300000);
    EXPECT_EQ(r.presence.size(), 10u);
    EXPECT_EQ(r.total_duration_minutes, 5);
    EXPECT_EQ(r.percentage_hundredths, 1111);
    EXPECT_EQ(r.status, "partial");
}

TEST(CalcUnion, MergeGapFifteenSecondsMakesTenSecondFlapsContinuous) {
    Policy p;
    p.numbers.merge_gap_ms = 15 * kSec;
    const PersonResult r = calc(win(), ten_flaps(S + kMin), p);
    EXPECT_EQ(r.presence, (V{{S + kMin, S + kMin + 390000}}));
    EXPECT_EQ(r.presence_ms, 390000);        // 300 s connected + 9 gaps of 10 s
    EXPECT_EQ(r.total_duration_minutes, 7);  // 6.5 min rounds half up
    EXPECT_EQ(r.percentage_hundredths, 1444);
    EXPECT_EQ(r.counted.size(), 10u);
}

TEST(CalcUnion, MergeGapSmallerThanTheGapsChangesNothing) {
    Policy p;
    p.numbers.merge_gap_ms = 10 * kSec - 1;
    const PersonResult r = calc(win(), ten_flaps(S + kMin), p);
    EXPECT_EQ(r.presence_ms, 300000);
    EXPECT_EQ(r.presence.size(), 10u);
}

TEST(CalcUnion, MergeGapNeverReachesOutsideTheWindow) {
    Policy p;
    p.numbers.merge_gap_ms = 5 * kMin;
    // Left before the start, back 1 min after it: the gap straddles the start, only the part
    // between two clipped intervals could be filled, and there is none before S+1min.
    const PersonResult r =
        calc(win(),
             {closed(S - 10 * kMin, S - kMin, "a"), closed(S + kMin, S + 20 * kMin, "b"),
              closed(S + 22 * kMin, S + 30 * kMin, "c")},
             p);
    EXPECT_EQ(r.presence, (V{{S + kMin, S + 30 * kMin}}));
    EXPECT_EQ(r.presence_ms, 29 * kMin);
    EXPECT_EQ(r.first_presence_ms, S + kMin);
}

TEST(CalcUnion, InputOrderDoesNotMatter) {
    std::vector<Connection> c = {closed(S + 20 * kMin, S + 25 * kMin, "c"),
                                 closed(S - kMin, S + 5 * kMin, "a"), open_conn(S + 30 * kMin, "d"),
                                 closed(S + 4 * kMin, S + 10 * kMin, "b")};
    const PersonResult r1 = calc(win(), c);
    std::reverse(c.begin(), c.end());
    const PersonResult r2 = calc(win(), c);
    EXPECT_EQ(r1, r2);
    EXPECT_EQ(r1.presence_ms, 10 * kMin + 5 * kMin + 15 * kMin);
    EXPECT_EQ(r1.counted.front(), (Interval{S - kMin, S + 5 * kMin}));
}

// --- open connections ------------------------------------------------------------------------

TEST(CalcOpen, OpenConnectionClosedAtScheduledEnd) {
    const PersonResult r = calc(win(), {open_conn(S + 10 * kMin)});
    EXPECT_EQ(r.presence_ms, 35 * kMin);
    EXPECT_EQ(r.open_connections, 1);
    EXPECT_EQ(r.counted, (V{{S + 10 * kMin, E}}));
    EXPECT_EQ(r.last_leave_ms, std::nullopt);
    EXPECT_EQ(r.first_join_ms, S + 10 * kMin);
}

TEST(CalcOpen, OpenConnectionClosedAtRoomFinishedWhenEarlier) {
    const SessionWindow w{S, E, E - 10 * kMin, E + 60 * kMin};
    const PersonResult r = calc(w, {open_conn(S + 10 * kMin)});
    EXPECT_EQ(r.presence_ms, 25 * kMin);
    EXPECT_EQ(r.counted, (V{{S + 10 * kMin, E - 10 * kMin}}));
    EXPECT_EQ(r.percentage_hundredths, 5556);
    EXPECT_EQ(effective_end_ms(w), E - 10 * kMin);
}

TEST(CalcOpen, RoomFinishedAfterEndClosesAtScheduledEnd) {
    const SessionWindow w{S, E, E + 40 * kSec, E + 60 * kMin};
    const PersonResult r = calc(w, {open_conn(S)});
    EXPECT_EQ(r.counted, (V{{S, E}}));
    EXPECT_EQ(r.presence_ms, kW45);
}

TEST(CalcOpen, ProvisionalCalculationClosesOpenConnectionAtAsOf) {
    const SessionWindow w{S, E, std::nullopt, S + 20 * kMin};  // mid-session
    const PersonResult r = calc(w, {open_conn(S + 5 * kMin)});
    EXPECT_EQ(r.presence_ms, 15 * kMin);
    EXPECT_EQ(r.counted, (V{{S + 5 * kMin, S + 20 * kMin}}));
    EXPECT_EQ(r.percentage_hundredths, 3333);
    EXPECT_EQ(r.status, "partial");
    EXPECT_EQ(r.open_connections, 1);
    EXPECT_EQ(effective_end_ms(w), S + 20 * kMin);
}

TEST(CalcOpen, AsOfBeforeJoinContributesNothingButStillCountsAsOpen) {
    const SessionWindow w{S, E, std::nullopt, S + kMin};
    const PersonResult r = calc(w, {open_conn(S + 5 * kMin)});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.counted, V{});
    EXPECT_EQ(r.open_connections, 1);
    EXPECT_EQ(r.first_join_ms, S + 5 * kMin);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

TEST(CalcOpen, RealLeaveIsNotCappedByRoomFinished) {
    const SessionWindow w{S, E, S + 30 * kMin, E + 60 * kMin};
    const PersonResult r = calc(w, {closed(S, S + 40 * kMin)});
    EXPECT_EQ(r.presence_ms, 40 * kMin);
    EXPECT_EQ(r.open_connections, 0);
}

TEST(CalcOpen, LastLeaveEmptyWhileAnyConnectionIsOpen) {
    const PersonResult open =
        calc(win(), {closed(S, S + 10 * kMin, "a"), open_conn(S + 20 * kMin, "b")});
    EXPECT_EQ(open.last_leave_ms, std::nullopt);
    EXPECT_EQ(open.open_connections, 1);
    EXPECT_EQ(open.presence_ms, 35 * kMin);
    const PersonResult done =
        calc(win(), {closed(S, S + 10 * kMin, "a"), closed(S + 20 * kMin, S + 30 * kMin, "b")});
    EXPECT_EQ(done.last_leave_ms, S + 30 * kMin);
    EXPECT_EQ(done.first_join_ms, S);
    EXPECT_EQ(done.open_connections, 0);
}

TEST(CalcOpen, SyntheticLeaveCountsLikeARealLeave) {
    Connection c = closed(S + 5 * kMin, S + 25 * kMin);
    c.synthetic_leave = true;
    const PersonResult r = calc(win(), {c});
    EXPECT_EQ(r.presence_ms, 20 * kMin);
    EXPECT_EQ(r.last_leave_ms, S + 25 * kMin);
    EXPECT_EQ(r.open_connections, 0);
}

// --- bad and ignored connections -------------------------------------------------------------

TEST(CalcIgnored, LeaveBeforeJoinContributesNothing) {
    const PersonResult r = calc(win(), {closed(S + 20 * kMin, S + 10 * kMin)});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.counted, V{});
    EXPECT_EQ(r.first_join_ms, std::nullopt);
    EXPECT_EQ(r.last_leave_ms, std::nullopt);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

TEST(CalcIgnored, LeaveBeforeJoinDoesNotDisturbOtherConnections) {
    const PersonResult r =
        calc(win(), {closed(S, S + 30 * kMin, "good"), closed(E, S, "inverted")});
    EXPECT_EQ(r.presence_ms, 30 * kMin);
    EXPECT_EQ(r.first_join_ms, S);
    EXPECT_EQ(r.last_leave_ms, S + 30 * kMin);
    EXPECT_EQ(r.status, "present");
}

TEST(CalcIgnored, ZeroLengthConnectionCountsNoTime) {
    const PersonResult r = calc(win(), {closed(S + kMin, S + kMin)});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.counted, V{});
    EXPECT_EQ(r.first_join_ms, S + kMin);
    EXPECT_EQ(r.status, "absent");
}

TEST(CalcIgnored, AbortedConnectionIsAbsent) {
    Connection c = closed(S + 20 * kMin, S + 30 * kMin, "PA_aborted");
    c.aborted = true;
    const PersonResult r = calc(win(), {c});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.percentage_hundredths, 0);
    EXPECT_EQ(r.first_join_ms, std::nullopt);
    EXPECT_EQ(r.open_connections, 0);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

TEST(CalcIgnored, ConnectionWithoutJoinIsIgnored) {
    const Connection c{"PA_nojoin", std::nullopt, S + 30 * kMin, false, false};
    const Connection c2{"PA_nothing", std::nullopt, std::nullopt, false, false};
    const PersonResult r = calc(win(), {c, c2});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.last_leave_ms, std::nullopt);
    EXPECT_EQ(r.open_connections, 0);
    EXPECT_EQ(r.status, "absent");
}

TEST(CalcIgnored, NoConnectionsAtAllIsAbsent) {
    const PersonResult r = calc(win(), {});
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.window_ms, kW45);
    EXPECT_EQ(r.total_duration_minutes, 0);
    EXPECT_EQ(r.first_presence_ms, std::nullopt);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

// --- roles and overrides ---------------------------------------------------------------------

Policy teacher_policy() {
    Policy p;
    p.name = "strict-teacher";
    PolicyNumbers t;
    t.partial_below_bp = 9000;
    p.by_role["teacher"] = t;
    return p;
}

TEST(CalcRole, TeacherNeedsNinetyPercent) {
    const Policy p = teacher_policy();
    const std::vector<Connection> c = {closed(S, S + 36 * kMin)};  // 80 %
    const PersonResult teacher = calculate_person(win(), p, person(c, "teacher"));
    const PersonResult student = calculate_person(win(), p, person(c, "student"));
    EXPECT_EQ(teacher.percentage_hundredths, 8000);
    EXPECT_EQ(teacher.status, "partial");
    EXPECT_EQ(teacher.rule, "below_partial");
    EXPECT_EQ(student.percentage_hundredths, 8000);
    EXPECT_EQ(student.status, "present");
}

TEST(CalcRole, TeacherAtExactlyNinetyPercentIsPresent) {
    const PersonResult r =
        calculate_person(win(), teacher_policy(), person({closed(S, S + 2430000)}, "teacher"));
    EXPECT_EQ(r.percentage_hundredths, 9000);
    EXPECT_EQ(r.status, "present");
}

TEST(CalcRole, ForRoleFallsBackToDefaultNumbers) {
    const Policy p = teacher_policy();
    EXPECT_EQ(p.for_role("teacher").partial_below_bp, 9000);
    EXPECT_EQ(p.for_role("student").partial_below_bp, 5000);
    EXPECT_EQ(p.for_role("observer").absent_below_bp, 1000);
    EXPECT_EQ(&p.for_role("nobody"), &p.numbers);
}

TEST(CalcRole, RoleSpecificMergeGapIsUsed) {
    Policy p;
    PolicyNumbers t;
    t.merge_gap_ms = 15 * kSec;
    p.by_role["teacher"] = t;
    const PersonResult teacher = calculate_person(win(), p, person(ten_flaps(S), "teacher"));
    const PersonResult student = calculate_person(win(), p, person(ten_flaps(S), "student"));
    EXPECT_EQ(teacher.presence_ms, 390000);
    EXPECT_EQ(student.presence_ms, 300000);
}

TEST(CalcOverride, OverrideWinsAndKeepsTheNumbers) {
    PersonInput in = person({closed(S + 20 * kMin, S + 30 * kMin)});
    in.override_status = "excused";
    const PersonResult r = calculate_person(win(), Policy{}, in);
    EXPECT_EQ(r.status, "excused");
    EXPECT_EQ(r.rule, "override");
    EXPECT_EQ(r.presence_ms, 10 * kMin);
    EXPECT_EQ(r.percentage_hundredths, 2222);
    EXPECT_EQ(r.first_presence_ms, S + 20 * kMin);
    EXPECT_EQ(r.total_duration_minutes, 10);
}

TEST(CalcOverride, OverrideToPresentOnSomeoneWhoNeverCame) {
    PersonInput in = person({});
    in.override_status = "present";
    const PersonResult r = calculate_person(win(), Policy{}, in);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "override");
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.percentage_hundredths, 0);
}

TEST(CalcOverride, EmptyOverrideThrows) {
    PersonInput in = person({});
    in.override_status = "";
    EXPECT_THROW(calculate_person(win(), Policy{}, in), std::invalid_argument);
}

TEST(CalcPolicy, OutOfRangeNumbersThrow) {
    Policy p;
    p.numbers.partial_below_bp = 10001;
    EXPECT_THROW(calc(win(), {}, p), std::invalid_argument);
    p = Policy{};
    p.numbers.merge_gap_ms = -1;
    EXPECT_THROW(calc(win(), {}, p), std::invalid_argument);
    p = Policy{};
    p.numbers.late_after_ms = -1;
    EXPECT_THROW(calc(win(), {}, p), std::invalid_argument);
    p = Policy{};
    p.numbers.absent_below_bp = -1;
    EXPECT_THROW(calc(win(), {}, p), std::invalid_argument);
}

// --- rounding --------------------------------------------------------------------------------

TEST(CalcRounding, WorkedExamplePresenceRoundsTo9499) {
    const PersonResult r = calc(win(), {closed(S, S + 2564700)});
    EXPECT_EQ(r.percentage_hundredths, 9499);  // 94.98888...
    EXPECT_EQ(format_percentage(r.percentage_hundredths), "94.99");
}

TEST(CalcRounding, ExactHalfRoundsUp) {
    // 1899700 / 2000000 = 94.985 % exactly -> 94.99; one ms less (94.98495 %) -> 94.98.
    EXPECT_EQ(calc(win(2000000), {closed(S, S + 1899700)}).percentage_hundredths, 9499);
    EXPECT_EQ(calc(win(2000000), {closed(S, S + 1899699)}).percentage_hundredths, 9498);
    // 1 ms of 20000 ms = 0.005 % exactly -> 0.01.
    EXPECT_EQ(calc(win(20000), {closed(S, S + 1)}).percentage_hundredths, 1);
}

TEST(CalcRounding, TinyPresenceRoundsToZeroButIsBelowAbsentNotNoPresence) {
    const PersonResult r = calc(win(), {closed(S, S + 1)});
    EXPECT_EQ(r.presence_ms, 1);
    EXPECT_EQ(r.percentage_hundredths, 0);
    EXPECT_EQ(r.rule, "below_absent");
}

TEST(CalcRounding, NearlyFullRoundsToHundredAndFullIsCappedAtHundred) {
    EXPECT_EQ(calc(win(2000000), {closed(S, S + 1999900)}).percentage_hundredths, 10000);
    EXPECT_EQ(calc(win(2000000), {closed(S, S + 1999899)}).percentage_hundredths, 9999);
    const PersonResult full = calc(win(), {closed(S - 60 * kMin, E + 60 * kMin, "a"),
                                           closed(S - kMin, E + kMin, "b"), open_conn(S, "c")});
    EXPECT_EQ(full.presence_ms, kW45);
    EXPECT_EQ(full.percentage_hundredths, 10000);
}

TEST(CalcRounding, TotalDurationMinutesRoundsHalfUp) {
    EXPECT_EQ(calc(win(), {closed(S, S + 29999)}).total_duration_minutes, 0);
    EXPECT_EQ(calc(win(), {closed(S, S + 30000)}).total_duration_minutes, 1);
    EXPECT_EQ(calc(win(), {closed(S, S + 89999)}).total_duration_minutes, 1);
    EXPECT_EQ(calc(win(), {closed(S, S + 90000)}).total_duration_minutes, 2);
    EXPECT_EQ(calc(win(), {closed(S, S + 2564700)}).total_duration_minutes, 43);
}

TEST(CalcFormat, FormatPercentage) {
    EXPECT_EQ(format_percentage(9499), "94.99");
    EXPECT_EQ(format_percentage(10000), "100.00");
    EXPECT_EQ(format_percentage(0), "0.00");
    EXPECT_EQ(format_percentage(5), "0.05");
    EXPECT_EQ(format_percentage(1000), "10.00");
    EXPECT_EQ(format_percentage(6185), "61.85");
    EXPECT_EQ(format_percentage(-5), "-0.05");
}

// --- the worked example (test/fixtures/livekit/README.md, session-456) -----------------------

const SessionWindow kExample{S, E, at(15, 15, 40), at(15, 20)};

PersonInput user7() {
    PersonInput p = person({closed(at(14, 29, 39, 100), at(15, 15, 2), "PA_teacher7")}, "teacher");
    p.user_key = "7";
    return p;
}
PersonInput user12() {
    PersonInput p = person({closed(at(14, 32, 14, 300), at(14, 44, 30), "PA_abc123ahmed1"),
                            open_conn(at(14, 44, 31), "PA_abc123ahmed2")});
    p.user_key = "12";
    return p;
}
PersonInput user40() {
    PersonInput p = person({closed(at(14, 46, 10), at(15, 14), "PA_user40")});
    p.user_key = "40";
    return p;
}
PersonInput user19() {
    PersonInput p = person({closed(at(14, 50), at(15, 5), "PA_user19")});
    p.user_key = "19";
    return p;
}
PersonInput user23() {
    Connection c{"PA_user23", at(14, 50, 5), std::nullopt, true, false};
    PersonInput p = person({c});
    p.user_key = "23";
    return p;
}

TEST(CalcWorkedExample, User7TeacherClippedBothEndsPresent) {
    const PersonResult r = calculate_person(kExample, Policy{}, user7());
    EXPECT_EQ(r.presence_ms, 2700000);
    EXPECT_EQ(r.percentage_hundredths, 10000);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.first_join_ms, at(14, 29, 39, 100));
    EXPECT_EQ(r.last_leave_ms, at(15, 15, 2));
    EXPECT_EQ(r.first_presence_ms, S);
    EXPECT_EQ(r.total_duration_minutes, 45);
    // Also present under a policy where teachers need 90 %.
    EXPECT_EQ(calculate_person(kExample, teacher_policy(), user7()).status, "present");
}

TEST(CalcWorkedExample, User12LostLeaveClosedAtScheduledEnd) {
    const PersonResult r = calculate_person(kExample, Policy{}, user12());
    EXPECT_EQ(r.presence_ms, 2564700);  // 735.7 s + 1829.0 s
    EXPECT_EQ(r.percentage_hundredths, 9499);
    EXPECT_EQ(r.status, "present");
    EXPECT_EQ(r.rule, "present");
    EXPECT_EQ(r.open_connections, 1);
    EXPECT_EQ(r.last_leave_ms, std::nullopt);
    EXPECT_EQ(r.first_join_ms, at(14, 32, 14, 300));
    EXPECT_EQ(r.first_presence_ms, at(14, 32, 14, 300));
    EXPECT_EQ(r.counted, (V{{at(14, 32, 14, 300), at(14, 44, 30)}, {at(14, 44, 31), E}}));
    EXPECT_EQ(r.presence, r.counted);
    EXPECT_EQ(r.total_duration_minutes, 43);
}

TEST(CalcWorkedExample, User12DuplicatedJoinCountedOnce) {
    PersonInput p = user12();
    p.connections.push_back(p.connections.front());  // the same connection twice
    const PersonResult r = calculate_person(kExample, Policy{}, p);
    EXPECT_EQ(r.presence_ms, 2564700);
    EXPECT_EQ(r.percentage_hundredths, 9499);
}

TEST(CalcWorkedExample, User12ProvisionalAtFifteenHundred) {
    SessionWindow w = kExample;
    w.room_finished_ms = std::nullopt;
    w.as_of_ms = at(15, 0);
    const PersonResult r = calculate_person(w, Policy{}, user12());
    EXPECT_EQ(r.presence_ms, 735700 + 929000);
    EXPECT_EQ(r.percentage_hundredths, 6166);  // 61.6555...
    EXPECT_EQ(r.status, "present");
}

TEST(CalcWorkedExample, User40LateJoinIsLate) {
    const PersonResult r = calculate_person(kExample, Policy{}, user40());
    EXPECT_EQ(r.presence_ms, 1670000);
    EXPECT_EQ(r.percentage_hundredths, 6185);
    EXPECT_EQ(r.first_presence_ms, at(14, 46, 10));
    EXPECT_EQ(r.status, "late");
    EXPECT_EQ(r.rule, "late");
}

TEST(CalcWorkedExample, User19IsPartial) {
    const PersonResult r = calculate_person(kExample, Policy{}, user19());
    EXPECT_EQ(r.presence_ms, 900000);
    EXPECT_EQ(r.percentage_hundredths, 3333);
    EXPECT_EQ(r.status, "partial");
    EXPECT_EQ(r.rule, "below_partial");
}

TEST(CalcWorkedExample, User23AbortedIsAbsent) {
    const PersonResult r = calculate_person(kExample, Policy{}, user23());
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.percentage_hundredths, 0);
    EXPECT_EQ(r.status, "absent");
    EXPECT_EQ(r.rule, "no_presence");
}

TEST(CalcWorkedExample, User31NeverJoinedIsAbsent) {
    PersonInput p = person({});
    p.user_key = "31";
    const PersonResult r = calculate_person(kExample, Policy{}, p);
    EXPECT_EQ(r.presence_ms, 0);
    EXPECT_EQ(r.percentage_hundredths, 0);
    EXPECT_EQ(r.status, "absent");
}

// --- explain ---------------------------------------------------------------------------------

TEST(CalcExplain, User12TraceHasRulePercentageUnionAndClipping) {
    const PersonInput p = user12();
    const PersonResult r = calculate_person(kExample, Policy{}, p);
    const json j = explain(kExample, Policy{}, p, r);
    EXPECT_EQ(j["rule"], "present");
    EXPECT_EQ(j["status"], "present");
    EXPECT_EQ(j["percentage"], "94.99");
    EXPECT_EQ(j["percentage_hundredths"], 9499);
    EXPECT_EQ(j["presence_ms"], 2564700);
    EXPECT_EQ(j["presence_seconds"], "2564.700");
    EXPECT_EQ(j["window"]["window_ms"], 2700000);
    EXPECT_EQ(j["window"]["start"], "2025-11-14T14:30:00.000Z");
    EXPECT_EQ(j["window"]["effective_end_source"], "scheduled_end");
    EXPECT_EQ(j["window"]["room_finished"], "2025-11-14T15:15:40.000Z");

    ASSERT_EQ(j["connections"].size(), 2u);
    const json& c1 = j["connections"][0];
    EXPECT_EQ(c1["sid"], "PA_abc123ahmed1");
    EXPECT_EQ(c1["join"], "2025-11-14T14:32:14.300Z");
    EXPECT_EQ(c1["join_ms"], at(14, 32, 14, 300));
    EXPECT_EQ(c1["leave"], "2025-11-14T14:44:30.000Z");
    EXPECT_EQ(c1["open"], false);
    EXPECT_EQ(c1["end_source"], "leave");
    EXPECT_EQ(c1["clipped_ms"], 735700);
    const json& c2 = j["connections"][1];
    EXPECT_EQ(c2["sid"], "PA_abc123ahmed2");
    EXPECT_EQ(c2["open"], true);
    EXPECT_TRUE(c2["leave"].is_null());
    EXPECT_EQ(c2["end_source"], "scheduled_end");
    EXPECT_EQ(c2["effective"]["end"], "2025-11-14T15:15:00.000Z");
    EXPECT_EQ(c2["clipped"]["start_ms"], at(14, 44, 31));
    EXPECT_EQ(c2["clipped"]["end_ms"], E);
    EXPECT_EQ(c2["clipped_ms"], 1829000);

    ASSERT_EQ(j["union"].size(), 2u);
    EXPECT_EQ(j["union"][0]["start"], "2025-11-14T14:32:14.300Z");
    EXPECT_EQ(j["union"][1]["end_ms"], E);
    EXPECT_EQ(j["union_ms"], 2564700);
    EXPECT_EQ(j["presence"].size(), 2u);
    EXPECT_EQ(j["merge_gap"]["max_gap_ms"], 0);
    EXPECT_EQ(j["merge_gap"]["filled_ms"], 0);
    EXPECT_EQ(j["open_connections"], 1);
    EXPECT_EQ(j["policy"]["name"], "default");
    EXPECT_EQ(j["policy"]["numbers"]["partial_below_bp"], 5000);
    EXPECT_EQ(j["policy"]["numbers"]["absent_below"], "10.00");
    EXPECT_EQ(j["role"], "student");

    // The rule list marks exactly one hit, the one in "rule".
    int hits = 0;
    for (const json& rule : j["rules"]) {
        if (rule["hit"] == true) {
            ++hits;
            EXPECT_EQ(rule["rule"], "present");
        }
    }
    EXPECT_EQ(hits, 1);
    // Serialises (no int128 or NaN leaks).
    EXPECT_NE(j.dump().find("\"percentage\":\"94.99\""), std::string::npos);
}

TEST(CalcExplain, User7BothEndsClipped) {
    const PersonInput p = user7();
    const json j = explain(kExample, Policy{}, p, calculate_person(kExample, Policy{}, p));
    const json& c = j["connections"][0];
    EXPECT_EQ(c["effective"]["start"], "2025-11-14T14:29:39.100Z");
    EXPECT_EQ(c["effective"]["end"], "2025-11-14T15:15:02.000Z");
    EXPECT_EQ(c["effective"]["ms"], 2722900);
    EXPECT_EQ(c["clipped"]["start"], "2025-11-14T14:30:00.000Z");
    EXPECT_EQ(c["clipped"]["end"], "2025-11-14T15:15:00.000Z");
    EXPECT_EQ(c["clipped_ms"], 2700000);
    EXPECT_EQ(j["percentage"], "100.00");
    EXPECT_EQ(j["role"], "teacher");
    EXPECT_EQ(j["policy"]["numbers_source"], "default");
}

TEST(CalcExplain, AbortedAndLateAndRoleNumbers) {
    const PersonInput p23 = user23();
    const json j23 = explain(kExample, Policy{}, p23, calculate_person(kExample, Policy{}, p23));
    EXPECT_EQ(j23["rule"], "no_presence");
    EXPECT_EQ(j23["connections"][0]["counted"], false);
    EXPECT_EQ(j23["connections"][0]["ignored_reason"], "aborted");
    EXPECT_TRUE(j23["connections"][0]["clipped"].is_null());
    EXPECT_EQ(j23["percentage"], "0.00");

    const PersonInput p40 = user40();
    const json j40 = explain(kExample, Policy{}, p40, calculate_person(kExample, Policy{}, p40));
    EXPECT_EQ(j40["rule"], "late");
    EXPECT_EQ(j40["percentage"], "61.85");
    EXPECT_EQ(j40["first_presence"], "2025-11-14T14:46:10.000Z");
    const json& late = j40["rules"][4];
    EXPECT_EQ(late["rule"], "late");
    EXPECT_EQ(late["hit"], true);
    EXPECT_EQ(late["late_after"], "2025-11-14T14:45:00.000Z");
    EXPECT_EQ(late["presence_ms_x10000"], "16700000000");
    EXPECT_EQ(late["threshold_bp_x_window_ms"], "20250000000");

    const PersonInput t = person({closed(S, S + 36 * kMin)}, "teacher");
    const Policy tp = teacher_policy();
    const json jt = explain(win(), tp, t, calculate_person(win(), tp, t));
    EXPECT_EQ(jt["policy"]["name"], "strict-teacher");
    EXPECT_EQ(jt["policy"]["numbers_source"], "role:teacher");
    EXPECT_EQ(jt["policy"]["numbers"]["partial_below_bp"], 9000);
    EXPECT_EQ(jt["rule"], "below_partial");
}

TEST(CalcExplain, MergeGapListsFilledGapsAndProvisionalEnd) {
    Policy p;
    p.numbers.merge_gap_ms = 15 * kSec;
    const SessionWindow w{S, E, std::nullopt, S + 20 * kMin};
    std::vector<Connection> c = ten_flaps(S);
    c.push_back(open_conn(S + 10 * kMin, "PA_still_here"));
    const PersonInput in = person(c);
    const PersonResult r = calculate_person(w, p, in);
    EXPECT_EQ(r.presence_ms, 390000 + 10 * kMin);
    const json j = explain(w, p, in, r);
    EXPECT_EQ(j["merge_gap"]["max_gap_ms"], 15000);
    EXPECT_EQ(j["merge_gap"]["gaps_filled"].size(), 9u);
    EXPECT_EQ(j["merge_gap"]["filled_ms"], 90000);
    EXPECT_EQ(j["clipped_union_ms"], 300000 + 10 * kMin);
    EXPECT_EQ(j["window"]["effective_end_source"], "as_of");
    EXPECT_EQ(j["connections"][10]["end_source"], "as_of");
    EXPECT_EQ(j["connections"][10]["effective"]["end_ms"], S + 20 * kMin);
}

TEST(CalcExplain, OverrideAndSyntheticLeaveAreVisible) {
    Connection c = closed(S, S + 10 * kMin, "PA_synth");
    c.synthetic_leave = true;
    PersonInput in = person({c, closed(S + 20 * kMin, S + 10 * kMin, "PA_bad")});
    in.override_status = "excused";
    const PersonResult r = calculate_person(win(), Policy{}, in);
    const json j = explain(win(), Policy{}, in, r);
    EXPECT_EQ(j["rule"], "override");
    EXPECT_EQ(j["status"], "excused");
    EXPECT_EQ(j["override_status"], "excused");
    EXPECT_EQ(j["percentage"], "22.22");
    EXPECT_EQ(j["connections"][0]["synthetic_leave"], true);
    EXPECT_EQ(j["connections"][0]["end_source"], "synthetic_leave");
    EXPECT_EQ(j["connections"][1]["ignored_reason"], "leave_before_join");
    EXPECT_EQ(j["rules"][0]["hit"], true);
}

}  // namespace
}  // namespace attendance::core

namespace attendance::core {
namespace {

TEST(RoundMinutes, HalfAwayFromZeroLikePostgresRound) {
    EXPECT_EQ(round_minutes(0), 0);
    EXPECT_EQ(round_minutes(29'999), 0);
    EXPECT_EQ(round_minutes(30'000), 1);
    EXPECT_EQ(round_minutes(89'999), 1);
    EXPECT_EQ(round_minutes(90'000), 2);
    EXPECT_EQ(round_minutes(-29'999), 0);
    EXPECT_EQ(round_minutes(-30'000), -1);
    EXPECT_EQ(round_minutes(-90'000), -2);
    EXPECT_EQ(round_minutes(INT64_MAX), INT64_MAX / 60'000 + 1);  // no overflow
    EXPECT_EQ(round_minutes(INT64_MIN), INT64_MIN / 60'000 - 1);
}

}  // namespace
}  // namespace attendance::core

// Cause precedence (one home: core::prevailing_cause; _attendance_flag and the audit ask it).
TEST(CausePrecedence, ALateWebhookWinsOverEveryCause) {
    using attendance::core::prevailing_cause;
    using Cause = std::optional<std::string>;
    EXPECT_EQ(prevailing_cause(Cause("roster change"), Cause("late webhook")),
              Cause("late webhook"));
    EXPECT_EQ(prevailing_cause(Cause("late webhook"), Cause("roster change")),
              Cause("late webhook"));
    EXPECT_EQ(prevailing_cause(std::nullopt, Cause("late webhook")), Cause("late webhook"));
}

TEST(CausePrecedence, APendingCauseIsKeptOverALaterOne) {
    using attendance::core::prevailing_cause;
    using Cause = std::optional<std::string>;
    EXPECT_EQ(prevailing_cause(Cause("policy change"), Cause("roster change")),
              Cause("policy change"));
    EXPECT_EQ(prevailing_cause(std::nullopt, Cause("session moved")), Cause("session moved"));
    EXPECT_EQ(prevailing_cause(Cause("session moved"), std::nullopt), Cause("session moved"));
    EXPECT_EQ(prevailing_cause(std::nullopt, std::nullopt), std::nullopt);
}
