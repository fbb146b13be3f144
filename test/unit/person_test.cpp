// Person resolution (user id, role, attends) and room -> session mapping.
#include "core/person.hpp"

#include "core/errors.hpp"
#include "core/webhook.hpp"
#include "test_support.hpp"

#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

using attendance::test::has_substr;
using attendance::test::load_fixture;
using attendance::test::throws_error;

Participant participant(std::string identity, std::string metadata = "",
                        std::map<std::string, std::string> attributes = {},
                        std::string kind = "STANDARD") {
    Participant p;
    p.sid = "PA_test";
    p.identity = std::move(identity);
    p.metadata = std::move(metadata);
    p.attributes = std::move(attributes);
    p.kind = std::move(kind);
    p.state = "ACTIVE";
    return p;
}

Person resolve(const Participant& p) { return resolve_person(p, kDefaultIdentityPattern); }

// ---------------------------------------------------------------------------------------
// User id

TEST(PersonUserId, AttributesWinOverMetadataAndIdentity) {
    auto p = resolve(participant("user-456", R"({"user_id":7})", {{"user_id", "19"}}));
    EXPECT_EQ(p.user_id, std::optional<int64_t>(19));
    EXPECT_EQ(p.user_key, "19");
    EXPECT_EQ(p.user_id_from, "attributes");
}

TEST(PersonUserId, MetadataWinsOverIdentity) {
    auto p = resolve(participant("user-456", R"({"user_id":7})"));
    EXPECT_EQ(p.user_id, std::optional<int64_t>(7));
    EXPECT_EQ(p.user_key, "7");
    EXPECT_EQ(p.user_id_from, "metadata");
}

TEST(PersonUserId, MetadataUserIdAsNumberAndAsString) {
    auto n = resolve(participant("teacher-bob", R"({"user_id":42,"role":"teacher"})"));
    EXPECT_EQ(n.user_id, std::optional<int64_t>(42));
    EXPECT_EQ(n.user_id_from, "metadata");
    auto s = resolve(participant("teacher-bob", R"({"user_id":"42"})"));
    EXPECT_EQ(s.user_id, std::optional<int64_t>(42));
    EXPECT_EQ(s.user_key, "42");
    EXPECT_EQ(s.user_id_from, "metadata");
    auto big = resolve(participant("x", R"({"user_id":9007199254740993})"));
    EXPECT_EQ(big.user_id, std::optional<int64_t>(9007199254740993));
}

TEST(PersonUserId, UnusableAttributeOrMetadataFallsThrough) {
    // attributes.user_id not a number: metadata is used.
    auto a = resolve(participant("user-456", R"({"user_id":7})", {{"user_id", "abc"}}));
    EXPECT_EQ(a.user_id, std::optional<int64_t>(7));
    EXPECT_EQ(a.user_id_from, "metadata");
    // metadata user_id not an integer: the identity is used.
    for (const char* md : {R"({"user_id":"abc"})", R"({"user_id":7.5})", R"({"user_id":null})",
                           R"({"user_id":true})", R"({"user_id":[7]})", R"({"userId":7})"}) {
        SCOPED_TRACE(md);
        auto m = resolve(participant("user-456", md));
        EXPECT_EQ(m.user_id, std::optional<int64_t>(456));
        EXPECT_EQ(m.user_id_from, "identity_pattern");
    }
}

TEST(PersonUserId, NonJsonMetadataIgnored) {
    for (const char* md : {"not json", "{\"user_id\":", "[1,2]", "7", "\"7\"", ""}) {
        SCOPED_TRACE(md);
        auto p = resolve(participant("user-456", md));
        EXPECT_EQ(p.user_id, std::optional<int64_t>(456));
        EXPECT_EQ(p.user_id_from, "identity_pattern");
        EXPECT_EQ(p.role, "");
        EXPECT_TRUE(p.attends);
    }
}

TEST(PersonUserId, IdentityDefaultPattern) {
    const std::map<std::string, int64_t> ids = {
        {"user-456", 456}, {"456", 456}, {"456_ahmed", 456}, {"user_789", 789}, {"user-7", 7},
        {"12-phone", 12},  {"0", 0}};
    for (const auto& [identity, id] : ids) {
        SCOPED_TRACE(identity);
        auto p = resolve(participant(identity));
        EXPECT_EQ(p.user_id, std::optional<int64_t>(id));
        EXPECT_EQ(p.user_key, std::to_string(id));
        EXPECT_EQ(p.user_id_from, "identity_pattern");
    }
}

TEST(PersonUserId, IdentityWithoutIdIsTheKey) {
    for (const char* identity : {"teacher-bob", "user-", "userx-5", "user-abc", "ahmed_456",
                                 "USER-456", "user-456x", "99999999999999999999"}) {
        SCOPED_TRACE(identity);
        auto p = resolve(participant(identity));
        EXPECT_FALSE(p.user_id.has_value());
        EXPECT_EQ(p.user_key, identity);
        EXPECT_EQ(p.user_id_from, "identity");
        EXPECT_TRUE(p.attends);
    }
}

TEST(PersonUserId, CustomIdentityPattern) {
    auto p = resolve_person(participant("student-31"), "^student-([0-9]+)$");
    EXPECT_EQ(p.user_id, std::optional<int64_t>(31));
    EXPECT_EQ(p.user_id_from, "identity_pattern");
    // The custom pattern replaces the default one.
    auto q = resolve_person(participant("user-31"), "^student-([0-9]+)$");
    EXPECT_FALSE(q.user_id.has_value());
    EXPECT_EQ(q.user_key, "user-31");
    // A group that did not take part in the match gives no id.
    auto r = resolve_person(participant("guest"), "^(?:user-([0-9]+)|guest)$");
    EXPECT_FALSE(r.user_id.has_value());
    EXPECT_EQ(r.user_key, "guest");
}

// ---------------------------------------------------------------------------------------
// Role and attendance

TEST(PersonRole, FromAttributesOrMetadataLowercased) {
    EXPECT_EQ(resolve(participant("user-1", R"({"role":"Teacher"})")).role, "teacher");
    EXPECT_EQ(resolve(participant("user-1", "", {{"role", "STUDENT"}})).role, "student");
    // Attributes win over metadata.
    EXPECT_EQ(resolve(participant("user-1", R"({"role":"teacher"})", {{"role", "Student"}})).role,
              "student");
    // A non-string metadata role is ignored.
    EXPECT_EQ(resolve(participant("user-1", R"({"role":1})")).role, "");
    EXPECT_EQ(resolve(participant("user-1")).role, "");
}

TEST(PersonRole, ObserverDoesNotAttend) {
    for (const auto& p : {participant("user-1", R"({"role":"observer"})"),
                          participant("user-1", "", {{"role", "Observer"}})}) {
        auto person = resolve(p);
        EXPECT_EQ(person.role, "observer");
        EXPECT_FALSE(person.attends);
        EXPECT_TRUE(has_substr(person.not_attending_reason, "observer"));
        EXPECT_EQ(person.user_id, std::optional<int64_t>(1));
    }
    auto teacher = resolve(participant("user-1", R"({"role":"teacher"})"));
    EXPECT_TRUE(teacher.attends);
    EXPECT_EQ(teacher.not_attending_reason, "");
}

TEST(PersonRole, NonPersonKindsDoNotAttend) {
    for (const char* kind : {"AGENT", "EGRESS", "INGRESS", "SIP"}) {
        SCOPED_TRACE(kind);
        auto p = resolve(participant("user-5", R"({"role":"student"})", {}, kind));
        EXPECT_FALSE(p.attends);
        EXPECT_TRUE(has_substr(p.not_attending_reason, kind));
        EXPECT_EQ(p.user_id, std::optional<int64_t>(5));  // still identified
    }
    for (const char* kind : {"STANDARD", ""}) {
        SCOPED_TRACE(kind);
        EXPECT_TRUE(resolve(participant("user-5", "", {}, kind)).attends);
    }
}

TEST(PersonRole, HiddenAndRecorderDoNotAttend) {
    auto hidden = participant("user-5");
    hidden.hidden = true;
    auto h = resolve(hidden);
    EXPECT_FALSE(h.attends);
    EXPECT_TRUE(has_substr(h.not_attending_reason, "hidden"));

    auto recorder = participant("user-5");
    recorder.recorder = true;
    auto r = resolve(recorder);
    EXPECT_FALSE(r.attends);
    EXPECT_TRUE(has_substr(r.not_attending_reason, "recorder"));
}

TEST(PersonRole, RosterTeacherWinsOverMetadataStudent) {
    auto p = resolve(participant("user-7", R"({"role":"student"})"));
    apply_role(p, "teacher");
    EXPECT_EQ(p.role, "teacher");
    EXPECT_TRUE(p.attends);
    // Case-insensitive roster role.
    auto q = resolve(participant("user-7"));
    apply_role(q, "Teacher");
    EXPECT_EQ(q.role, "teacher");
}

TEST(PersonRole, RosterObserverDoesNotAttend) {
    auto p = resolve(participant("user-7", R"({"role":"teacher"})"));
    ASSERT_TRUE(p.attends);
    apply_role(p, "observer");
    EXPECT_EQ(p.role, "observer");
    EXPECT_FALSE(p.attends);
    EXPECT_TRUE(has_substr(p.not_attending_reason, "observer"));
}

TEST(PersonRole, RosterRoleOverridesMetadataObserver) {
    auto p = resolve(participant("user-7", R"({"role":"observer"})"));
    ASSERT_FALSE(p.attends);
    apply_role(p, "student");
    EXPECT_EQ(p.role, "student");
    EXPECT_TRUE(p.attends);
    EXPECT_EQ(p.not_attending_reason, "");
}

TEST(PersonRole, EmptyRosterRoleChangesNothing) {
    auto p = resolve(participant("user-7", R"({"role":"observer"})"));
    apply_role(p, "");
    EXPECT_EQ(p.role, "observer");
    EXPECT_FALSE(p.attends);
}

TEST(PersonRole, RosterRoleCannotMakeANonPersonAttend) {
    for (const char* kind : {"EGRESS", "AGENT", "INGRESS", "SIP"}) {
        SCOPED_TRACE(kind);
        auto p = resolve(participant("user-7", "", {}, kind));
        apply_role(p, "teacher");
        EXPECT_EQ(p.role, "teacher");
        EXPECT_FALSE(p.attends);
        EXPECT_TRUE(has_substr(p.not_attending_reason, kind));
    }
    auto hidden = participant("user-7");
    hidden.hidden = true;
    auto h = resolve(hidden);
    apply_role(h, "student");
    EXPECT_FALSE(h.attends);
}

// An EGRESS (or hidden/recorder) participant whose metadata says "observer" must stay
// excluded whatever roster role it is given: its kind, not its role, excludes it.
TEST(PersonRole, RosterRoleCannotMakeAnObserverEgressAttend) {
    auto p = resolve(participant("user-7", R"({"role":"observer"})", {}, "EGRESS"));
    ASSERT_FALSE(p.attends);
    apply_role(p, "teacher");
    EXPECT_FALSE(p.attends) << "an EGRESS participant became attending via the roster";
    EXPECT_TRUE(has_substr(p.not_attending_reason, "EGRESS"));

    auto recorder = participant("user-8", R"({"role":"observer"})");
    recorder.recorder = true;
    auto r = resolve(recorder);
    ASSERT_FALSE(r.attends);
    apply_role(r, "student");
    EXPECT_FALSE(r.attends) << "a recorder became attending via the roster";
}

// ---------------------------------------------------------------------------------------
// The fixture session

TEST(PersonFixtures, Session456People) {
    auto requests = load_fixture("session-456.jsonl");
    struct Expected {
        size_t line;
        std::optional<int64_t> user_id;
        const char* from;
        const char* role;
        bool attends;
    };
    const Expected expected[] = {
        {1, 7, "metadata", "teacher", true},      {2, 12, "identity_pattern", "", true},
        {4, std::nullopt, "identity", "", false}, {6, 12, "identity_pattern", "", true},
        {7, 40, "identity_pattern", "", true},    {8, 19, "attributes", "", true},
        {9, 23, "identity_pattern", "", true},
    };
    for (const auto& e : expected) {
        SCOPED_TRACE("line " + std::to_string(e.line + 1));
        auto ev = parse_webhook(requests.at(e.line).body);
        ASSERT_TRUE(ev.participant.has_value());
        auto p = resolve(*ev.participant);
        EXPECT_EQ(p.user_id, e.user_id);
        EXPECT_EQ(p.user_id_from, e.from);
        EXPECT_EQ(p.role, e.role);
        EXPECT_EQ(p.attends, e.attends);
    }
    auto recorder = resolve(*parse_webhook(requests.at(4).body).participant);
    EXPECT_EQ(recorder.user_key, "egress-rec");
    EXPECT_TRUE(has_substr(recorder.not_attending_reason, "EGRESS"));
}

// ---------------------------------------------------------------------------------------
// Room -> session

TEST(PersonSession, DefaultRoomPattern) {
    EXPECT_EQ(session_from_room("session-456", kDefaultRoomPattern), std::optional<int64_t>(456));
    EXPECT_EQ(session_from_room("class-session-12", kDefaultRoomPattern),
              std::optional<int64_t>(12));
    EXPECT_EQ(session_from_room("session-0", kDefaultRoomPattern), std::optional<int64_t>(0));
    for (const char* room : {"foo", "", "session-", "session-456-b", "session-abc", "Session-4",
                             "session-99999999999999999999"}) {
        SCOPED_TRACE(room);
        EXPECT_EQ(session_from_room(room, kDefaultRoomPattern), std::nullopt);
    }
}

TEST(PersonSession, CustomRoomPattern) {
    EXPECT_EQ(session_from_room("lesson_77_math", "^lesson_([0-9]+)_"), std::optional<int64_t>(77));
    EXPECT_EQ(session_from_room("session-456", "^lesson_([0-9]+)_"), std::nullopt);
    EXPECT_EQ(session_from_room("room/2025/31", "/(\\d+)$"), std::optional<int64_t>(31));
    // Only the first group counts.
    EXPECT_EQ(session_from_room("c3-s9", "^c(\\d+)-s(\\d+)$"), std::optional<int64_t>(3));
    // An empty group gives no session.
    EXPECT_EQ(session_from_room("room-", "room-([0-9]*)$"), std::nullopt);
}

TEST(PersonSession, InvalidPatternRejected) {
    for (const char* bad : {"session-([0-9]+", "(", "[a-", "*x(1)", "a{2,1}(b)"}) {
        SCOPED_TRACE(bad);
        EXPECT_TRUE(
            throws_error([&] { session_from_room("session-1", bad); }, "22023", "invalid pattern"));
        EXPECT_TRUE(has_substr(check_pattern(bad), "invalid pattern"));
        EXPECT_TRUE(throws_error([&] { resolve_person(participant("teacher-bob"), bad); }, "22023",
                                 "invalid pattern"));
    }
}

TEST(PersonSession, PatternWithoutCapturingGroupRejected) {
    for (const char* bad : {"session-[0-9]+$", "session-(?:[0-9]+)$", ""}) {
        SCOPED_TRACE(bad);
        EXPECT_TRUE(has_substr(check_pattern(bad), "capturing group"));
        EXPECT_TRUE(
            throws_error([&] { session_from_room("session-1", bad); }, "22023", "capturing group"));
        EXPECT_TRUE(throws_error([&] { resolve_person(participant("user-1"), bad); }, "22023",
                                 "capturing group"));
    }
}

TEST(PersonSession, CheckPatternAcceptsGoodPatterns) {
    EXPECT_EQ(check_pattern(kDefaultRoomPattern), "");
    EXPECT_EQ(check_pattern(kDefaultIdentityPattern), "");
    EXPECT_EQ(check_pattern("^lesson_(\\d+)_"), "");
}

// ---------------------------------------------------------------------------------------
// Robustness: long identities and room names (a webhook body may be up to 1 MiB) must not
// crash the process. Run in a child process so a crash fails only this test.

TEST(PersonRobustnessDeathTest, LongIdentityDoesNotCrash) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const std::string identity = "user-" + std::string(200000, '1') + "!";
    EXPECT_EXIT(
        {
            auto p = resolve(participant(identity));
            std::exit(p.user_key == identity ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "");
    // Over kMaxPatternInput the pattern is not tried (std::regex recurses per
    // character): the identity itself is the key, and nothing crashes.
    const std::string named = "1_" + std::string(200000, 'a');
    EXPECT_EXIT(
        {
            auto p = resolve(participant(named));
            std::exit(!p.user_id && p.user_key == named ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "");
}

TEST(PersonRobustness, PatternStillAppliesUpToTheLimit) {
    const std::string named = "1_" + std::string(kMaxPatternInput - 2, 'a');
    ASSERT_EQ(named.size(), kMaxPatternInput);
    auto p = resolve(participant(named));
    EXPECT_EQ(p.user_id, std::optional<int64_t>(1));
    const std::string longer = named + "a";
    EXPECT_FALSE(resolve(participant(longer)).user_id);
}

TEST(PersonRobustnessDeathTest, LongRoomNameDoesNotCrash) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const std::string room = "session-" + std::string(200000, '1');
    EXPECT_EXIT(
        {
            auto s = session_from_room(room, kDefaultRoomPattern);
            std::exit(s.has_value() ? 1 : 0);  // too large for int64: no session
        },
        ::testing::ExitedWithCode(0), "");
}

// Found by fuzz_webhook (test/fuzz/crashes/webhook/): metadata is JSON text inside a
// string, so its own \u0000 escapes reach us decoded.
TEST(PersonFuzzFindings, NulOrJunkRoleFromMetadataIsNoRole) {
    EXPECT_EQ(resolve(participant("user-5", R"({"role":"\u0000"})")).role, "");
    EXPECT_EQ(resolve(participant("user-5", R"({"role":"stu\u0000dent"})")).role, "");
    EXPECT_EQ(resolve(participant("user-5", R"({"role":"te acher"})")).role, "");
    EXPECT_EQ(resolve(participant("user-5", R"({"role":"Teacher"})")).role, "teacher");
    EXPECT_EQ(resolve(participant("user-5", "{\"role\":\"" + std::string(40, 'a') + "\"}")).role,
              "");
}

TEST(PersonFuzzFindings, MetadataUserIdBeyondInt64IsNoUserId) {
    auto p = resolve(participant("user-5", R"({"user_id":18446744073709551615})"));
    EXPECT_EQ(p.user_id, std::optional<int64_t>(5));  // falls through to the identity
    EXPECT_EQ(p.user_id_from, "identity_pattern");
    auto q = resolve(participant("user-5", R"({"user_id":9223372036854775808})"));
    EXPECT_EQ(q.user_id, std::optional<int64_t>(5));
    auto r = resolve(participant("user-5", R"({"user_id":9223372036854775807})"));
    EXPECT_EQ(r.user_id, std::optional<int64_t>(INT64_MAX));
}

}  // namespace
}  // namespace attendance::core
