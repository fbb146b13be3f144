// parse_webhook: the recorded LiveKit fixtures (compact and ", "-spaced), hand-made
// bodies exercising proto3 JSON (camel/snake names, 64-bit ints as strings or numbers,
// enums as names or numbers, omitted defaults, unknown fields) and malformed bodies with
// the exact SQLSTATE each must raise.
#include "core/webhook.hpp"

#include "core/errors.hpp"
#include "test_support.hpp"

#include <cstdint>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace attendance::core {
namespace {

using namespace std::string_literals;
using attendance::test::has_substr;
using attendance::test::load_fixture;
using attendance::test::throws_error;

// "أحمد محمد" as UTF-8 bytes, spelled out so the test does not depend on the source
// character set.
const std::string kAhmad =
    "\xd8\xa3\xd8\xad\xd9\x85\xd8\xaf"
    " "
    "\xd9\x85\xd8\xad\xd9\x85\xd8\xaf";

// A minimal valid participant_joined around a participant object given as JSON text.
std::string join_with(const std::string& participant) {
    return R"({"event":"participant_joined","id":"EV_1","createdAt":"1763130580",)"
           R"("room":{"sid":"RM_1","name":"session-456"},"participant":)" +
           participant + "}";
}

Participant participant_of(const std::string& participant_json) {
    auto ev = parse_webhook(join_with(participant_json));
    EXPECT_TRUE(ev.participant.has_value());
    return ev.participant.value_or(Participant{});
}

// Field-by-field equality of two parsed events, reporting the first difference.
void expect_same_event(const WebhookEvent& a, const WebhookEvent& b) {
    EXPECT_EQ(a.event, b.event);
    EXPECT_EQ(a.kind, b.kind);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.created_at_s, b.created_at_s);
    ASSERT_EQ(a.room.has_value(), b.room.has_value());
    if (a.room) {
        EXPECT_EQ(a.room->name, b.room->name);
        EXPECT_EQ(a.room->sid, b.room->sid);
    }
    ASSERT_EQ(a.participant.has_value(), b.participant.has_value());
    if (a.participant) {
        const auto& p = *a.participant;
        const auto& q = *b.participant;
        EXPECT_EQ(p.sid, q.sid);
        EXPECT_EQ(p.identity, q.identity);
        EXPECT_EQ(p.name, q.name);
        EXPECT_EQ(p.metadata, q.metadata);
        EXPECT_EQ(p.kind, q.kind);
        EXPECT_EQ(p.state, q.state);
        EXPECT_EQ(p.joined_at_ms, q.joined_at_ms);
        EXPECT_EQ(p.attributes, q.attributes);
        EXPECT_EQ(p.disconnect_reason, q.disconnect_reason);
        EXPECT_EQ(p.hidden, q.hidden);
        EXPECT_EQ(p.recorder, q.recorder);
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

constexpr const char* kCompact = "session-456.jsonl";
constexpr const char* kSpaced = "session-456.spaced.jsonl";

// The delivery order of session-456 (README "The story").
const std::vector<std::string> kStoryEvents = {
    "room_started",       "participant_joined",
    "participant_joined", "participant_joined",
    "participant_joined", "participant_left",
    "participant_joined", "participant_joined",
    "participant_joined", "participant_connection_aborted",
    "participant_left",   "participant_left",
    "participant_left",   "participant_left",
    "room_finished"};

void check_story_file(const char* file) {
    auto requests = load_fixture(file);
    ASSERT_EQ(requests.size(), 15u) << file;
    std::set<std::string> ids;
    int64_t previous_created = 0;
    for (size_t i = 0; i < requests.size(); ++i) {
        SCOPED_TRACE(std::string(file) + " line " + std::to_string(i + 1));
        WebhookEvent ev;
        ASSERT_NO_THROW(ev = parse_webhook(requests[i].body));
        EXPECT_EQ(ev.event, kStoryEvents[i]);
        EXPECT_EQ(ev.kind, event_kind_of(kStoryEvents[i]));
        EXPECT_NE(ev.kind, EventKind::Other);
        EXPECT_EQ(ev.id.rfind("EV_", 0), 0u) << ev.id;
        // 2025-11-14 14:25:00Z .. 15:15:40Z, in delivery order.
        EXPECT_GE(ev.created_at_s, 1763130300);
        EXPECT_LE(ev.created_at_s, 1763133340);
        EXPECT_GE(ev.created_at_s, previous_created);
        previous_created = ev.created_at_s;
        ASSERT_TRUE(ev.room.has_value());
        EXPECT_EQ(ev.room->name, "session-456");
        EXPECT_EQ(ev.room->sid, "RM_9riR8rKUGCas");
        bool participant_event = ev.kind == EventKind::ParticipantJoined ||
                                 ev.kind == EventKind::ParticipantLeft ||
                                 ev.kind == EventKind::ParticipantConnectionAborted;
        EXPECT_EQ(ev.participant.has_value(), participant_event);
        if (ev.participant) {
            EXPECT_EQ(ev.participant->sid.rfind("PA_", 0), 0u);
            ASSERT_TRUE(ev.participant->joined_at_ms.has_value());
            EXPECT_LE(*ev.participant->joined_at_ms, ev.created_at_s * 1000);
            EXPECT_EQ(ev.participant->state,
                      ev.kind == EventKind::ParticipantJoined ? "ACTIVE" : "DISCONNECTED");
        }
        ids.insert(ev.id);
    }
    EXPECT_EQ(ids.size(), 14u) << "fifteen requests, one duplicate";
}

TEST(WebhookFixtures, EveryCompactBodyParses) { check_story_file(kCompact); }

TEST(WebhookFixtures, EverySpacedBodyParses) { check_story_file(kSpaced); }

TEST(WebhookFixtures, CompactAndSpacedParseIdentically) {
    auto compact = load_fixture(kCompact);
    auto spaced = load_fixture(kSpaced);
    ASSERT_EQ(compact.size(), spaced.size());
    for (size_t i = 0; i < compact.size(); ++i) {
        SCOPED_TRACE("line " + std::to_string(i + 1));
        // Different bytes (so different hashes) ...
        EXPECT_NE(compact[i].body, spaced[i].body);
        EXPECT_EQ(compact[i].body.find(", "), std::string::npos);
        EXPECT_NE(spaced[i].body.find(", "), std::string::npos);
        // ... same meaning.
        expect_same_event(parse_webhook(compact[i].body), parse_webhook(spaced[i].body));
    }
}

TEST(WebhookFixtures, RoomStartedAndFinished) {
    auto r = load_fixture(kCompact);
    auto started = parse_webhook(r.front().body);
    EXPECT_EQ(started.kind, EventKind::RoomStarted);
    EXPECT_EQ(started.id, "EV_AepappUrDxFx");
    EXPECT_EQ(started.created_at_s, 1763130300);  // 14:25:00Z
    EXPECT_FALSE(started.participant.has_value());
    auto finished = parse_webhook(r.back().body);
    EXPECT_EQ(finished.kind, EventKind::RoomFinished);
    EXPECT_EQ(finished.id, "EV_peQHznFywTs4");
    EXPECT_EQ(finished.created_at_s, 1763133340);  // 15:15:40Z
    EXPECT_FALSE(finished.participant.has_value());
}

TEST(WebhookFixtures, TeacherJoin) {
    for (const char* file : {kCompact, kSpaced}) {
        SCOPED_TRACE(file);
        auto ev = parse_webhook(load_fixture(file).at(1).body);
        EXPECT_EQ(ev.event, "participant_joined");
        EXPECT_EQ(ev.kind, EventKind::ParticipantJoined);
        EXPECT_EQ(ev.id, "EV_jBraYDw5kFk2");
        EXPECT_EQ(ev.created_at_s, 1763130580);  // 14:29:40Z
        ASSERT_TRUE(ev.participant.has_value());
        const auto& p = *ev.participant;
        EXPECT_EQ(p.sid, "PA_teacher7aaaa");
        EXPECT_EQ(p.identity, "user-7");
        EXPECT_EQ(p.name, "Teacher Fatima");
        EXPECT_EQ(p.state, "ACTIVE");
        EXPECT_EQ(p.kind, "STANDARD");                     // omitted = default
        EXPECT_EQ(p.disconnect_reason, "UNKNOWN_REASON");  // omitted = default
        EXPECT_TRUE(p.attributes.empty());
        EXPECT_FALSE(p.hidden);
        EXPECT_FALSE(p.recorder);
        EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130579100));  // 14:29:39.100Z
        auto md = nlohmann::json::parse(p.metadata);
        EXPECT_EQ(md.at("user_id"), 7);
        EXPECT_EQ(md.at("role"), "teacher");
    }
}

TEST(WebhookFixtures, ArabicNameRoundTripsByteExact) {
    ASSERT_EQ(kAhmad.size(), 17u);
    for (const char* file : {kCompact, kSpaced}) {
        SCOPED_TRACE(file);
        auto r = load_fixture(file);
        for (size_t i : {2u, 3u, 5u, 6u}) {
            auto ev = parse_webhook(r.at(i).body);
            ASSERT_TRUE(ev.participant.has_value());
            EXPECT_EQ(ev.participant->identity, "user-12");
            EXPECT_EQ(ev.participant->name, kAhmad);
            EXPECT_NE(r.at(i).body.find(kAhmad), std::string::npos) << "raw UTF-8 in the body";
        }
    }
    // The same name escaped as \uXXXX decodes to the same bytes.
    auto p = participant_of(
        R"({"sid":"PA_1","identity":"user-12","name":"\u0623\u062d\u0645\u062f \u0645\u062d\u0645\u062f"})");
    EXPECT_EQ(p.name, kAhmad);
}

TEST(WebhookFixtures, DuplicateDeliveryIsByteIdentical) {
    auto r = load_fixture(kCompact);
    EXPECT_EQ(r.at(2).body, r.at(3).body);
    EXPECT_EQ(r.at(2).authorization, r.at(3).authorization);
    auto a = parse_webhook(r.at(2).body);
    EXPECT_EQ(a.id, "EV_UNNxzFQU4tXb");
    EXPECT_EQ(a.participant->sid, "PA_abc123ahmed1");
    EXPECT_EQ(a.participant->joined_at_ms, std::optional<int64_t>(1763130734300));
}

TEST(WebhookFixtures, EgressParticipantKind) {
    auto r = load_fixture(kCompact);
    for (size_t i : {4u, 13u}) {
        auto ev = parse_webhook(r.at(i).body);
        ASSERT_TRUE(ev.participant.has_value());
        EXPECT_EQ(ev.participant->kind, "EGRESS");
        EXPECT_EQ(ev.participant->identity, "egress-rec");
        EXPECT_EQ(ev.participant->sid, "PA_V9gU6ZfU98BV");
    }
    // Everyone else is STANDARD.
    for (size_t i : {1u, 2u, 5u, 6u, 7u, 8u, 9u, 10u, 11u, 12u})
        EXPECT_EQ(parse_webhook(r.at(i).body).participant->kind, "STANDARD") << i;
}

TEST(WebhookFixtures, LeaveWithSignalClose) {
    auto ev = parse_webhook(load_fixture(kCompact).at(5).body);
    EXPECT_EQ(ev.kind, EventKind::ParticipantLeft);
    EXPECT_EQ(ev.id, "EV_CFDScwjyYkpC");
    EXPECT_EQ(ev.created_at_s, 1763131470);  // 14:44:30Z
    ASSERT_TRUE(ev.participant.has_value());
    EXPECT_EQ(ev.participant->sid, "PA_abc123ahmed1");
    EXPECT_EQ(ev.participant->state, "DISCONNECTED");
    EXPECT_EQ(ev.participant->disconnect_reason, "SIGNAL_CLOSE");
    // participant_left repeats joinedAtMs, so a lost join can be rebuilt.
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130734300));
}

TEST(WebhookFixtures, RejoinGetsNewSid) {
    auto ev = parse_webhook(load_fixture(kCompact).at(6).body);
    EXPECT_EQ(ev.participant->identity, "user-12");
    EXPECT_EQ(ev.participant->sid, "PA_abc123ahmed2");
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763131471000));
}

TEST(WebhookFixtures, ConnectionAborted) {
    auto ev = parse_webhook(load_fixture(kCompact).at(9).body);
    EXPECT_EQ(ev.event, "participant_connection_aborted");
    EXPECT_EQ(ev.kind, EventKind::ParticipantConnectionAborted);
    EXPECT_EQ(ev.participant->identity, "user-23");
    EXPECT_EQ(ev.participant->state, "DISCONNECTED");
    EXPECT_EQ(ev.participant->disconnect_reason, "CONNECTION_TIMEOUT");
}

TEST(WebhookFixtures, AttributesUserId) {
    auto r = load_fixture(kCompact);
    for (size_t i : {8u, 10u}) {
        auto ev = parse_webhook(r.at(i).body);
        ASSERT_TRUE(ev.participant.has_value());
        EXPECT_EQ(ev.participant->identity, "user-19");
        EXPECT_EQ(ev.participant->attributes,
                  (std::map<std::string, std::string>{{"user_id", "19"}}));
    }
    EXPECT_EQ(parse_webhook(r.at(10).body).participant->disconnect_reason, "CLIENT_INITIATED");
}

// ---------------------------------------------------------------------------------------
// Hand-made bodies that must parse

TEST(WebhookProto3, SnakeCaseNames) {
    auto ev =
        parse_webhook(R"({"event":"participant_left","id":"EV_s","created_at":"1763130580",)"
                      R"("room":{"name":"session-1"},"participant":{"sid":"PA_s","identity":"u",)"
                      R"("joined_at":"1763130000","disconnect_reason":"CLIENT_INITIATED"}})");
    EXPECT_EQ(ev.created_at_s, 1763130580);
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130000000));
    EXPECT_EQ(ev.participant->disconnect_reason, "CLIENT_INITIATED");

    auto p = participant_of(R"({"sid":"PA_s","identity":"u","joined_at_ms":"1763130000123"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130000123));
    p = participant_of(R"({"sid":"PA_s","identity":"u","disconnect_reason":9})");
    EXPECT_EQ(p.disconnect_reason, "SIGNAL_CLOSE");
}

TEST(WebhookProto3, CamelCaseWinsOverSnakeCase) {
    auto ev = parse_webhook(
        R"({"event":"room_started","id":"EV_c","createdAt":"1763130580","created_at":"1",)"
        R"("room":{"name":"r"}})");
    EXPECT_EQ(ev.created_at_s, 1763130580);
    auto p = participant_of(
        R"({"sid":"PA","identity":"u","joinedAtMs":"1763130000500","joined_at_ms":"1000"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130000500));
}

TEST(WebhookProto3, Int64AsStringsAndNumbers) {
    const char* strings =
        R"({"event":"participant_joined","id":"EV_i","createdAt":"1763130580",)"
        R"("room":{"name":"r"},"participant":{"sid":"PA","identity":"u","joinedAtMs":"1763130579100"}})";
    const char* numbers =
        R"({"event":"participant_joined","id":"EV_i","createdAt":1763130580,)"
        R"("room":{"name":"r"},"participant":{"sid":"PA","identity":"u","joinedAtMs":1763130579100}})";
    auto a = parse_webhook(strings);
    auto b = parse_webhook(numbers);
    EXPECT_EQ(a.created_at_s, 1763130580);
    EXPECT_EQ(b.created_at_s, 1763130580);
    EXPECT_EQ(a.participant->joined_at_ms, std::optional<int64_t>(1763130579100));
    EXPECT_EQ(b.participant->joined_at_ms, std::optional<int64_t>(1763130579100));
    auto p = participant_of(R"({"sid":"PA","identity":"u","joinedAt":1763130579})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130579000));
}

TEST(WebhookProto3, TimeRangeEdgesAccepted) {
    auto at = [](const std::string& created) {
        return parse_webhook(R"({"event":"room_started","id":"EV","createdAt":)" + created +
                             R"(,"room":{"name":"r"}})")
            .created_at_s;
    };
    EXPECT_EQ(at("1"), 1);
    EXPECT_EQ(at("\"1\""), 1);
    EXPECT_EQ(at("253402300799"), kMaxEpochSeconds);  // 9999-12-31 23:59:59Z
    EXPECT_EQ(at("\"253402300799\""), kMaxEpochSeconds);
    auto p = participant_of(R"({"sid":"PA","identity":"u","joinedAtMs":"253402300799999"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(253402300799999));
}

TEST(WebhookProto3, EnumsAsNumbers) {
    auto p =
        participant_of(R"({"sid":"PA","identity":"u","kind":2,"state":3,"disconnectReason":9})");
    EXPECT_EQ(p.kind, "EGRESS");
    EXPECT_EQ(p.state, "DISCONNECTED");
    EXPECT_EQ(p.disconnect_reason, "SIGNAL_CLOSE");
    p = participant_of(R"({"sid":"PA","identity":"u","kind":4,"state":2,"disconnectReason":1})");
    EXPECT_EQ(p.kind, "AGENT");
    EXPECT_EQ(p.state, "ACTIVE");
    EXPECT_EQ(p.disconnect_reason, "CLIENT_INITIATED");
    // A number from a newer LiveKit keeps its number as the name.
    p = participant_of(R"({"sid":"PA","identity":"u","kind":42})");
    EXPECT_EQ(p.kind, "42");
    // Names are kept as sent.
    p = participant_of(R"({"sid":"PA","identity":"u","kind":"SIP","state":"JOINED"})");
    EXPECT_EQ(p.kind, "SIP");
    EXPECT_EQ(p.state, "JOINED");
}

TEST(WebhookProto3, EnumNameTables) {
    EXPECT_EQ(participant_kind_name(0), "STANDARD");
    EXPECT_EQ(participant_kind_name(1), "INGRESS");
    EXPECT_EQ(participant_kind_name(2), "EGRESS");
    EXPECT_EQ(participant_kind_name(3), "SIP");
    EXPECT_EQ(participant_kind_name(4), "AGENT");
    EXPECT_EQ(participant_kind_name(-1), "-1");
    EXPECT_EQ(participant_state_name(0), "JOINING");
    EXPECT_EQ(participant_state_name(1), "JOINED");
    EXPECT_EQ(participant_state_name(2), "ACTIVE");
    EXPECT_EQ(participant_state_name(3), "DISCONNECTED");
    EXPECT_EQ(participant_state_name(4), "4");
    EXPECT_EQ(disconnect_reason_name(0), "UNKNOWN_REASON");
    EXPECT_EQ(disconnect_reason_name(9), "SIGNAL_CLOSE");
    EXPECT_EQ(disconnect_reason_name(14), "CONNECTION_TIMEOUT");
}

TEST(WebhookProto3, OmittedDefaults) {
    auto p = participant_of(R"({"sid":"PA","identity":"u"})");
    EXPECT_EQ(p.kind, "STANDARD");
    EXPECT_EQ(p.state, "JOINING");
    EXPECT_EQ(p.disconnect_reason, "UNKNOWN_REASON");
    EXPECT_EQ(p.name, "");
    EXPECT_EQ(p.metadata, "");
    EXPECT_TRUE(p.attributes.empty());
    EXPECT_FALSE(p.joined_at_ms.has_value());
    EXPECT_FALSE(p.hidden);
    EXPECT_FALSE(p.recorder);
    // null is the same as omitted.
    p = participant_of(R"({"sid":"PA","identity":"u","kind":null,"joinedAtMs":null,"name":null})");
    EXPECT_EQ(p.kind, "STANDARD");
    EXPECT_FALSE(p.joined_at_ms.has_value());
    EXPECT_EQ(p.name, "");
    // A room without sid is fine (only the name matters).
    auto ev =
        parse_webhook(R"({"event":"room_finished","id":"EV","createdAt":"5","room":{"name":"r"}})");
    EXPECT_EQ(ev.room->sid, "");
    EXPECT_EQ(ev.room->name, "r");
}

TEST(WebhookProto3, UnknownFieldsIgnored) {
    auto ev = parse_webhook(
        R"({"newTopLevel":{"a":[1,2,{"b":null,"c":"x"}]},"event":"participant_joined",)"
        R"("id":"EV_u","createdAt":"1763130580","numDropped":"3",)"
        R"("room":{"name":"session-9","futureRoomField":[{"x":{"y":[true,false]}}],"maxParticipants":9},)"
        R"("participant":{"sid":"PA_u","identity":"user-9","tracks":[{"sid":"TR_1","type":"AUDIO",)"
        R"("codecs":[{"mimeType":"audio/opus"}]}],"region":"eu","isPublisher":true,)"
        R"("permission":{"canPublish":true,"canPublishSources":[1,2],"agent":false}},)"
        R"("egressInfo":null,"trailing":1.5e3})");
    EXPECT_EQ(ev.kind, EventKind::ParticipantJoined);
    EXPECT_EQ(ev.id, "EV_u");
    EXPECT_EQ(ev.room->name, "session-9");
    EXPECT_EQ(ev.participant->sid, "PA_u");
    EXPECT_EQ(ev.participant->identity, "user-9");
    EXPECT_FALSE(ev.participant->hidden);
}

TEST(WebhookProto3, ArbitraryWhitespace) {
    auto ev = parse_webhook(
        "\r\n\t {\n  \"event\" :\t\"participant_left\" ,\r\n  \"id\"\n:\n\"EV_w\",\n"
        "  \"createdAt\" : \"1763131470\" ,  \"room\" : { \"name\" : \"session-456\" } ,\n"
        "  \"participant\" : {\n\t\"sid\" : \"PA_w\" , \"identity\" : \"user-12\" ,\n"
        "\t\"joinedAtMs\" : 1763130734300 , \"kind\" : 0 ,\n"
        "\t\"attributes\" : { \"user_id\" : \"12\" }\n  }\n}\n\n ");
    EXPECT_EQ(ev.kind, EventKind::ParticipantLeft);
    EXPECT_EQ(ev.id, "EV_w");
    EXPECT_EQ(ev.created_at_s, 1763131470);
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130734300));
    EXPECT_EQ(ev.participant->attributes.at("user_id"), "12");
    EXPECT_EQ(ev.participant->kind, "STANDARD");
}

TEST(WebhookProto3, JoinedAtFallback) {
    // joinedAtMs missing: seconds * 1000.
    auto p = participant_of(R"({"sid":"PA","identity":"u","joinedAt":"1763130579"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130579000));
    // joinedAtMs at its default (0) counts as missing.
    p = participant_of(R"({"sid":"PA","identity":"u","joinedAtMs":"0","joinedAt":"1763130579"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130579000));
    // Both: the millisecond value wins.
    p = participant_of(
        R"({"sid":"PA","identity":"u","joinedAt":"1763130579","joinedAtMs":"1763130579100"})");
    EXPECT_EQ(p.joined_at_ms, std::optional<int64_t>(1763130579100));
    // Neither (or both zero): no join time; the caller falls back to createdAt.
    p = participant_of(R"({"sid":"PA","identity":"u","joinedAt":"0","joinedAtMs":0})");
    EXPECT_FALSE(p.joined_at_ms.has_value());
}

TEST(WebhookProto3, PermissionHiddenAndRecorder) {
    auto p = participant_of(R"({"sid":"PA","identity":"u","permission":{"hidden":true}})");
    EXPECT_TRUE(p.hidden);
    EXPECT_FALSE(p.recorder);
    p = participant_of(R"({"sid":"PA","identity":"u","permission":{"recorder":true}})");
    EXPECT_FALSE(p.hidden);
    EXPECT_TRUE(p.recorder);
    p = participant_of(
        R"({"sid":"PA","identity":"u","permission":{"hidden":false,"recorder":false,"canPublish":true}})");
    EXPECT_FALSE(p.hidden);
    EXPECT_FALSE(p.recorder);
}

TEST(WebhookProto3, AttributesAndMetadataKeptVerbatim) {
    auto p = participant_of(
        R"({"sid":"PA","identity":"u","metadata":"not json at all","attributes":{"user_id":"19","role":"Student","empty":""}})");
    EXPECT_EQ(p.metadata, "not json at all");
    EXPECT_EQ(p.attributes, (std::map<std::string, std::string>{
                                {"empty", ""}, {"role", "Student"}, {"user_id", "19"}}));
}

TEST(WebhookEvents, OtherEventsParseAsOther) {
    struct Case {
        const char* body;
        const char* event;
    };
    const Case cases[] = {
        {R"({"event":"track_published","id":"EV_t","createdAt":"1763130600","room":{"name":"session-456"},)"
         R"("participant":{"sid":"PA_1","identity":"user-7"},"track":{"sid":"TR_1","type":"VIDEO"}})",
         "track_published"},
        {R"({"event":"track_unpublished","id":"EV_t2","createdAt":"1763130600","room":{"name":"session-456"},)"
         R"("participant":{"sid":"PA_1","identity":"user-7"},"track":{"sid":"TR_1"}})",
         "track_unpublished"},
        // Egress/ingress events carry no room or participant at all.
        {R"({"event":"egress_started","id":"EV_e","createdAt":"1763130600","egressInfo":{"egressId":"EG_1","roomName":"session-456"}})",
         "egress_started"},
        {R"({"event":"egress_ended","id":"EV_e2","createdAt":1763130600})", "egress_ended"},
        {R"({"event":"ingress_started","id":"EV_i","createdAt":"1763130600","ingressInfo":{}})",
         "ingress_started"},
        {R"({"event":"some_future_event","id":"EV_f","createdAt":"1763130600","room":{}})",
         "some_future_event"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.event);
        WebhookEvent ev;
        ASSERT_NO_THROW(ev = parse_webhook(c.body));
        EXPECT_EQ(ev.event, c.event);
        EXPECT_EQ(ev.kind, EventKind::Other);
        EXPECT_EQ(ev.created_at_s, 1763130600);
    }
    EXPECT_EQ(event_kind_of("participant_joined"), EventKind::ParticipantJoined);
    EXPECT_EQ(event_kind_of("participant_left"), EventKind::ParticipantLeft);
    EXPECT_EQ(event_kind_of("participant_connection_aborted"),
              EventKind::ParticipantConnectionAborted);
    EXPECT_EQ(event_kind_of("room_started"), EventKind::RoomStarted);
    EXPECT_EQ(event_kind_of("room_finished"), EventKind::RoomFinished);
    EXPECT_EQ(event_kind_of("Participant_Joined"), EventKind::Other);
    EXPECT_EQ(event_kind_of(""), EventKind::Other);
}

// ---------------------------------------------------------------------------------------
// Limits that must still parse

std::string nested_arrays(int levels) {
    return std::string(size_t(levels), '[') + std::string(size_t(levels), ']');
}

// A valid room_started whose unknown field "x" holds `value`; the object itself is
// nesting level 1.
std::string with_unknown(const std::string& value) {
    return R"({"event":"room_started","id":"EV_x","createdAt":"1763130300","room":{"name":"r"},"x":)" +
           value + "}";
}

TEST(WebhookLimits, ExactlyAtDepthLimitPasses) {
    ParseLimits limits{.max_depth = 8};
    // Object (1) + 7 arrays = depth 8.
    EXPECT_NO_THROW(parse_webhook(with_unknown(nested_arrays(7)), limits));
    // Object (1) + 8 arrays = depth 9.
    EXPECT_TRUE(throws_error([&] { parse_webhook(with_unknown(nested_arrays(8)), limits); },
                             sqlstate::kProgramLimit, "8"));
}

TEST(WebhookLimits, BracketsInsideStringsDoNotCount) {
    ParseLimits limits{.max_depth = 3};
    auto ev = parse_webhook(with_unknown(R"("[[[[[[{{{{{ \" [[[[[")"), limits);
    EXPECT_EQ(ev.id, "EV_x");
}

TEST(WebhookLimits, ExactlyAtBodyLimitPasses) {
    std::string body = with_unknown("0");
    ParseLimits limits{.max_body_bytes = body.size()};
    EXPECT_NO_THROW(parse_webhook(body, limits));
    limits.max_body_bytes = body.size() - 1;
    EXPECT_TRUE(throws_error([&] { parse_webhook(body, limits); }, sqlstate::kProgramLimit,
                             std::to_string(body.size())));
}

TEST(WebhookLimits, HundredThousandElementArrayParses) {
    std::string array = "[";
    for (int i = 0; i < 100000; ++i) array += i ? ",7" : "7";
    array += "]";
    std::string body = with_unknown(array);
    ASSERT_LT(body.size(), ParseLimits{}.max_body_bytes);
    auto ev = parse_webhook(body);
    EXPECT_EQ(ev.kind, EventKind::RoomStarted);
    EXPECT_EQ(ev.room->name, "r");
}

TEST(WebhookLimits, HugeStringParses) {
    std::string body = with_unknown("\"" + std::string(500 * 1024, 'z') + "\"");
    ASSERT_LT(body.size(), ParseLimits{}.max_body_bytes);
    auto ev = parse_webhook(body);
    EXPECT_EQ(ev.id, "EV_x");
}

TEST(WebhookLimits, EscapedBackslashBeforeU0000IsNotNul) {
    // "\\u0000" is a backslash followed by the text u0000, not a NUL character.
    auto ev = parse_webhook(with_unknown(R"("\\u0000")"));
    EXPECT_EQ(ev.id, "EV_x");
}

// ---------------------------------------------------------------------------------------
// Malformed bodies: exact SQLSTATE, and for 22023 the field named in the message

struct BadBody {
    std::string name;
    std::string body;
    std::string sqlstate;
    std::string part;  // must appear in the message
    ParseLimits limits{};
};

std::ostream& operator<<(std::ostream& os, const BadBody& b) { return os << b.name; }

const std::string kRoom = R"("room":{"sid":"RM_1","name":"session-456"})";
const std::string kHead = R"({"event":"participant_joined","id":"EV_1","createdAt":"1763130580",)";

std::string bad_participant(const std::string& participant) { return join_with(participant); }

std::string bad_created(const std::string& created) {
    return R"({"event":"room_started","id":"EV_1","createdAt":)" + created + "," + kRoom + "}";
}

std::vector<BadBody> bad_bodies() {
    const std::string valid = join_with(R"({"sid":"PA_1","identity":"user-7"})");
    std::vector<BadBody> v = {
        // Not JSON: 22P02
        {"Empty", "", "22P02", "invalid JSON"},
        {"OnlyWhitespace", " \n\t ", "22P02", "invalid JSON"},
        {"Truncated", valid.substr(0, valid.size() / 2), "22P02", "invalid JSON"},
        {"TruncatedLastBrace", valid.substr(0, valid.size() - 1), "22P02", "invalid JSON"},
        {"TrailingGarbage", valid + " x", "22P02", "invalid JSON"},
        {"TwoObjects", valid + valid, "22P02", "invalid JSON"},
        {"SingleQuotes", "{'event':'room_started','id':'EV_1','createdAt':'1763130580'}", "22P02",
         "invalid JSON"},
        {"TrailingComma", R"({"event":"room_started","id":"EV_1",})", "22P02", "invalid JSON"},
        // Valid JSON grammar, but a number no double holds (found by the abuse suite)
        {"NumberOverflow",
         R"({"event":"track_published","id":"EV_1","createdAt":"1763130580","x":1e400})", "22023",
         "number overflow"},
        {"InvalidUtf8InString",
         join_with("{\"sid\":\"PA_1\",\"identity\":\"user-7\",\"name\":\"a\xff b\"}"), "22P02",
         "invalid JSON"},
        {"InvalidUtf8OutsideString", "{\xff\"event\":\"room_started\"}", "22P02", "invalid JSON"},
        {"TruncatedUtf8Sequence",
         join_with("{\"sid\":\"PA_1\",\"identity\":\"user-7\",\"name\":\"\xd8\"}"), "22P02",
         "invalid JSON"},
        {"LoneSurrogateEscape", join_with(R"({"sid":"PA_1","identity":"user-7","name":"\ud800"})"),
         "22P02", "invalid JSON"},
        {"RawNulInString",
         join_with("{\"sid\":\"PA_1\",\"identity\":\"user-7\",\"name\":\"a\0b\"}"s), "22P02",
         "invalid JSON"},
        {"RawNulOutsideString", "{\"event\":\"room_started\"\0}"s, "22P02", "invalid JSON"},
        // \u0000 cannot be stored: 22P05
        {"EscapedNulInValue", join_with(R"({"sid":"PA_1","identity":"user-7","name":"a\u0000b"})"),
         "22P05", "\\u0000"},
        {"EscapedNulInKey", join_with(R"({"sid":"PA_1","identity":"user-7","a\u0000":1})"), "22P05",
         "\\u0000"},
        {"EscapedNulInUnknownNestedField", with_unknown(R"({"deep":["ok","\u0000"]})"), "22P05",
         "\\u0000"},
        // JSON, but not a webhook: 22023
        {"Null", "null", "22023", "JSON object"},
        {"EmptyArray", "[]", "22023", "JSON object"},
        {"Number", "42", "22023", "JSON object"},
        {"String", R"("participant_joined")", "22023", "JSON object"},
        {"EmptyObject", "{}", "22023", "'event'"},
        {"MissingEvent", R"({"id":"EV_1","createdAt":"1763130580",)" + kRoom + "}", "22023",
         "'event'"},
        {"EventNotString", R"({"event":1,"id":"EV_1","createdAt":"1763130580",)" + kRoom + "}",
         "22023", "'event'"},
        {"EventEmpty", R"({"event":"","id":"EV_1","createdAt":"1763130580",)" + kRoom + "}",
         "22023", "'event'"},
        {"MissingId", R"({"event":"room_started","createdAt":"1763130580",)" + kRoom + "}", "22023",
         "'id'"},
        {"IdNumber", R"({"event":"room_started","id":7,"createdAt":"1763130580",)" + kRoom + "}",
         "22023", "'id'"},
        {"IdEmpty", R"({"event":"room_started","id":"","createdAt":"1763130580",)" + kRoom + "}",
         "22023", "'id'"},
        {"MissingCreatedAt", R"({"event":"room_started","id":"EV_1",)" + kRoom + "}", "22023",
         "'createdAt'"},
        {"CreatedAtZero", bad_created("\"0\""), "22023", "'createdAt'"},
        {"CreatedAtAbc", bad_created("\"abc\""), "22023", "'createdAt'"},
        {"CreatedAtEmptyString", bad_created("\"\""), "22023", "'createdAt'"},
        {"CreatedAtDecimalString", bad_created("\"1.5\""), "22023", "'createdAt'"},
        {"CreatedAtDecimalNumber", bad_created("1.5"), "22023", "'createdAt'"},
        {"CreatedAtBoolean", bad_created("true"), "22023", "'createdAt'"},
        {"CreatedAtObject", bad_created("{}"), "22023", "'createdAt'"},
        {"CreatedAtNegative", bad_created("-1"), "22023", "'createdAt'"},
        {"CreatedAtNegativeString", bad_created("\"-86400\""), "22023", "'createdAt'"},
        {"CreatedAtYear10000", bad_created("253402300800"), "22023", "'createdAt'"},
        {"CreatedAtYear10000String", bad_created("\"253402300800\""), "22023", "'createdAt'"},
        {"CreatedAtOverInt64", bad_created("99999999999999999999"), "22023", "'createdAt'"},
        {"CreatedAtOverInt64String", bad_created("\"99999999999999999999\""), "22023",
         "'createdAt'"},
        {"CreatedAtUint64Max", bad_created("18446744073709551615"), "22023", "'createdAt'"},
        {"CreatedAtInt64MaxPlusOne", bad_created("9223372036854775808"), "22023", "'createdAt'"},
        {"JoinedWithoutParticipant", kHead + kRoom + "}", "22023", "'participant'"},
        {"LeftWithoutParticipant",
         R"({"event":"participant_left","id":"EV_1","createdAt":"1763130580",)" + kRoom + "}",
         "22023", "'participant'"},
        {"AbortedWithoutParticipant",
         R"({"event":"participant_connection_aborted","id":"EV_1","createdAt":"1763130580",)" +
             kRoom + "}",
         "22023", "'participant'"},
        {"ParticipantNull", kHead + kRoom + R"(,"participant":null})", "22023", "'participant'"},
        {"ParticipantString", bad_participant(R"("PA_1")"), "22023", "'participant'"},
        {"ParticipantArray", bad_participant(R"([{"sid":"PA_1","identity":"u"}])"), "22023",
         "'participant'"},
        {"ParticipantWithoutSid", bad_participant(R"({"identity":"user-7"})"), "22023",
         "'participant.sid'"},
        {"ParticipantSidNumber", bad_participant(R"({"sid":5,"identity":"user-7"})"), "22023",
         "'participant.sid'"},
        {"ParticipantWithoutIdentity", bad_participant(R"({"sid":"PA_1"})"), "22023",
         "'participant.identity'"},
        {"ParticipantEmptyIdentity", bad_participant(R"({"sid":"PA_1","identity":""})"), "22023",
         "'participant.identity'"},
        {"ParticipantNameNumber", bad_participant(R"({"sid":"PA_1","identity":"u","name":1})"),
         "22023", "'participant.name'"},
        {"MetadataObject",
         bad_participant(R"({"sid":"PA_1","identity":"u","metadata":{"user_id":7}})"), "22023",
         "'participant.metadata'"},
        {"LeftWithoutRoom",
         R"({"event":"participant_left","id":"EV_1","createdAt":"1763130580",)"
         R"("participant":{"sid":"PA_1","identity":"user-7"}})",
         "22023", "'room'"},
        {"RoomStartedWithoutRoom", R"({"event":"room_started","id":"EV_1","createdAt":"1"})",
         "22023", "'room'"},
        {"RoomFinishedRoomNull",
         R"({"event":"room_finished","id":"EV_1","createdAt":"1","room":null})", "22023", "'room'"},
        {"RoomWithoutName",
         R"({"event":"room_started","id":"EV_1","createdAt":"1","room":{"sid":"RM_1"}})", "22023",
         "'room.name'"},
        {"RoomEmptyName",
         R"({"event":"room_finished","id":"EV_1","createdAt":"1","room":{"name":""}})", "22023",
         "'room.name'"},
        {"RoomArray", R"({"event":"room_started","id":"EV_1","createdAt":"1","room":[]})", "22023",
         "'room'"},
        {"RoomNameNumber",
         R"({"event":"room_started","id":"EV_1","createdAt":"1","room":{"name":456}})", "22023",
         "'room.name'"},
        {"AttributesNotObject",
         bad_participant(R"({"sid":"PA_1","identity":"u","attributes":["user_id","19"]})"), "22023",
         "'participant.attributes'"},
        {"AttributeValueNumber",
         bad_participant(R"({"sid":"PA_1","identity":"u","attributes":{"user_id":19}})"), "22023",
         "'participant.attributes.user_id'"},
        {"JoinedAtMsX", bad_participant(R"({"sid":"PA_1","identity":"u","joinedAtMs":"x"})"),
         "22023", "'participant.joinedAtMs'"},
        {"JoinedAtMsNegative",
         bad_participant(R"({"sid":"PA_1","identity":"u","joinedAtMs":"-1000"})"), "22023",
         "'participant.joinedAtMs'"},
        {"JoinedAtMsYear10000",
         bad_participant(R"({"sid":"PA_1","identity":"u","joinedAtMs":"253402300800000"})"),
         "22023", "'participant.joinedAtMs'"},
        {"JoinedAtX", bad_participant(R"({"sid":"PA_1","identity":"u","joinedAt":"x"})"), "22023",
         "'participant.joinedAt'"},
        {"JoinedAtYear10000",
         bad_participant(R"({"sid":"PA_1","identity":"u","joinedAt":253402300800})"), "22023",
         "'participant.joinedAt'"},
        {"PermissionHiddenYes",
         bad_participant(R"({"sid":"PA_1","identity":"u","permission":{"hidden":"yes"}})"), "22023",
         "'participant.permission.hidden'"},
        {"PermissionRecorderNumber",
         bad_participant(R"({"sid":"PA_1","identity":"u","permission":{"recorder":1}})"), "22023",
         "'participant.permission.recorder'"},
        {"PermissionNotObject",
         bad_participant(R"({"sid":"PA_1","identity":"u","permission":true})"), "22023",
         "'participant.permission'"},
        {"KindFractional", bad_participant(R"({"sid":"PA_1","identity":"u","kind":2.5})"), "22023",
         "'participant.kind'"},
        {"StateBoolean", bad_participant(R"({"sid":"PA_1","identity":"u","state":true})"), "22023",
         "'participant.state'"},
        {"DisconnectReasonObject",
         bad_participant(R"({"sid":"PA_1","identity":"u","disconnectReason":{}})"), "22023",
         "'participant.disconnectReason'"},
        // Over a limit: 54000
        {"DepthOverLimit", with_unknown(nested_arrays(8)), "54000", "deeper than 8",
         ParseLimits{.max_depth = 8}},
        {"DepthOverLimitObjects", with_unknown(R"({"a":{"b":{"c":{"d":{"e":{"f":{"g":{}}}}}}}})"),
         "54000", "deeper than 8", ParseLimits{.max_depth = 8}},
        {"DepthHundredThousandDefaultLimits", with_unknown(nested_arrays(100000)), "54000",
         "deeper than 64"},
        {"DepthUnbalancedOverLimit", std::string(70, '['), "54000", "deeper than 64"},
        {"BodyOverLimit", valid, "54000", "over the limit of 100",
         ParseLimits{.max_body_bytes = 100}},
        {"BodyOverDefaultLimit", with_unknown("\"" + std::string(1024 * 1024, 'a') + "\""), "54000",
         "over the limit of 1048576"},
    };
    return v;
}

class WebhookMalformed : public ::testing::TestWithParam<BadBody> {};

TEST_P(WebhookMalformed, RaisesExactSqlstate) {
    const BadBody& c = GetParam();
    EXPECT_TRUE(throws_error([&] { parse_webhook(c.body, c.limits); }, c.sqlstate, c.part))
        << "body: " << c.body.substr(0, 300);
}

INSTANTIATE_TEST_SUITE_P(Bodies, WebhookMalformed, ::testing::ValuesIn(bad_bodies()),
                         [](const ::testing::TestParamInfo<BadBody>& info) {
                             return info.param.name;
                         });

TEST(WebhookMalformedCount, AtLeastThirtyCases) { EXPECT_GE(bad_bodies().size(), 30u); }

// The 22023 messages say what kind of problem it is, not only which field.
TEST(WebhookMessages, SayWhatIsWrong) {
    auto t = attendance::test::thrown_by([] { parse_webhook(bad_created("\"abc\"")); });
    ASSERT_TRUE(t);
    EXPECT_TRUE(has_substr(t->message, "not an integer"));
    EXPECT_TRUE(has_substr(t->message, "abc"));
    t = attendance::test::thrown_by([] { parse_webhook(bad_created("-1")); });
    ASSERT_TRUE(t);
    EXPECT_TRUE(has_substr(t->message, "out of range"));
    t = attendance::test::thrown_by([] { parse_webhook(bad_created("\"99999999999999999999\"")); });
    ASSERT_TRUE(t);
    EXPECT_TRUE(has_substr(t->message, "out of range"));
    t = attendance::test::thrown_by([] { parse_webhook(""); });
    ASSERT_TRUE(t);
    EXPECT_TRUE(has_substr(t->message, "invalid JSON in webhook body"));
}

}  // namespace
}  // namespace attendance::core

// Found by the fuzz harness's invariants: an empty enum name means the default.
TEST(WebhookFuzzFindings, EmptyEnumNamesAreTheDefaults) {
    auto ev = attendance::core::parse_webhook(
        R"({"event":"participant_left","id":"EV_1","createdAt":"1763130580","room":{"name":"r"},)"
        R"("participant":{"sid":"PA_1","identity":"u","kind":"","state":"","disconnectReason":""}})");
    ASSERT_TRUE(ev.participant);
    EXPECT_EQ(ev.participant->kind, "STANDARD");
    EXPECT_EQ(ev.participant->state, "JOINING");
    EXPECT_EQ(ev.participant->disconnect_reason, "UNKNOWN_REASON");
}

// ---- development mode: a body written by hand ---------------------------------------
namespace attendance::core {
namespace {

std::string curl_body() {
    std::ifstream in(
        std::string(ATTENDANCE_FIXTURE_DIR) + "/development/curl-participant-joined.json",
        std::ios::binary);
    if (!in) throw std::runtime_error("cannot open the development fixture");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

ParseOptions development(std::optional<int64_t> received_at_s = std::nullopt) {
    ParseOptions o;
    o.development_mode = true;
    o.received_at_s = received_at_s;
    return o;
}

constexpr int64_t kReceived = 1763130700;

TEST(WebhookDevelopment, CurlBodyIsRefusedOutsideDevelopmentMode) {
    const std::string body = curl_body();
    EXPECT_TRUE(
        throws_error([&] { parse_webhook(body); }, "22023", "field 'createdAt' is missing"));
    ParseOptions off;
    off.received_at_s = kReceived;  // a receipt time alone changes nothing
    EXPECT_TRUE(throws_error([&] { parse_webhook(body, {}, off); }, "22023",
                             "field 'createdAt' is missing"));
}

TEST(WebhookDevelopment, CurlBodyTakesItsTimesFromJoinedAt) {
    const auto ev = parse_webhook(curl_body(), {}, development(kReceived));
    EXPECT_EQ(ev.kind, EventKind::ParticipantJoined);
    EXPECT_EQ(ev.id, "EV_manual_curl_1");
    ASSERT_TRUE(ev.room);
    EXPECT_EQ(ev.room->name, "session-456");
    ASSERT_TRUE(ev.participant);
    EXPECT_EQ(ev.participant->identity, "user-12");
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130605000));
    EXPECT_EQ(ev.created_at_s, 1763130605);  // the join time, not the receipt time
    EXPECT_EQ(ev.created_at_source, EventTimeSource::JoinedAt);
    EXPECT_TRUE(ev.development_event());
    // without a receipt time as well
    EXPECT_EQ(parse_webhook(curl_body(), {}, development()).created_at_s, 1763130605);
}

TEST(WebhookDevelopment, JoinWithoutJoinTimeTakesTheReceiptTime) {
    const std::string body =
        R"({"event":"participant_joined","id":"EV_d1","room":{"name":"session-1"},)"
        R"("participant":{"sid":"PA_d1","identity":"user-3"}})";
    const auto ev = parse_webhook(body, {}, development(kReceived));
    EXPECT_EQ(ev.created_at_s, kReceived);
    EXPECT_EQ(ev.created_at_source, EventTimeSource::ReceivedAt);
    EXPECT_TRUE(ev.development_event());
    EXPECT_FALSE(ev.participant->joined_at_ms);
    // with neither a join time nor a receipt time there is no event time
    EXPECT_TRUE(throws_error([&] { parse_webhook(body, {}, development()); }, "22023",
                             "neither a join time nor a receipt time"));
}

TEST(WebhookDevelopment, LeaveTakesTheReceiptTimeFirst) {
    const std::string body =
        R"({"event":"participant_left","id":"EV_d2","room":{"name":"session-1"},)"
        R"("participant":{"sid":"PA_d2","identity":"user-3","joined_at":"1763130605"}})";
    auto ev = parse_webhook(body, {}, development(kReceived));
    EXPECT_EQ(ev.created_at_s, kReceived);  // the leave happened now, not at the join
    EXPECT_EQ(ev.created_at_source, EventTimeSource::ReceivedAt);
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130605000));
    ev = parse_webhook(body, {}, development());  // no receipt time: the join time
    EXPECT_EQ(ev.created_at_s, 1763130605);
    EXPECT_EQ(ev.created_at_source, EventTimeSource::JoinedAt);
    EXPECT_TRUE(ev.development_event());
}

TEST(WebhookDevelopment, RoomEventTakesTheReceiptTime) {
    const std::string body =
        R"({"event":"room_finished","id":"EV_d3","room":{"name":"session-1"}})";
    const auto ev = parse_webhook(body, {}, development(kReceived));
    EXPECT_EQ(ev.created_at_s, kReceived);
    EXPECT_EQ(ev.created_at_source, EventTimeSource::ReceivedAt);
    EXPECT_TRUE(throws_error([&] { parse_webhook(body, {}, development()); }, "22023",
                             "field 'createdAt' is missing"));
}

TEST(WebhookDevelopment, CreatedAtStillWinsAndIsNoDevelopmentEvent) {
    const std::string body =
        R"({"event":"participant_joined","id":"EV_d4","created_at":"1763130999",)"
        R"("room":{"name":"session-1"},"participant":{"sid":"PA_d4","identity":"u","joined_at":1763130605}})";
    const auto dev = parse_webhook(body, {}, development(kReceived));
    const auto prod = parse_webhook(body);
    EXPECT_EQ(dev.created_at_s, 1763130999);
    EXPECT_EQ(prod.created_at_s, 1763130999);
    EXPECT_EQ(dev.created_at_source, EventTimeSource::CreatedAt);
    EXPECT_FALSE(dev.development_event());
    EXPECT_FALSE(prod.development_event());
}

TEST(WebhookDevelopment, ZeroCreatedAtIsAbsent) {
    // proto3 omits a default 0; a literal "0" means the same
    const std::string body =
        R"({"event":"participant_joined","id":"EV_d5","createdAt":"0","room":{"name":"r"},)"
        R"("participant":{"sid":"PA_d5","identity":"u","joinedAtMs":"1763130605123"}})";
    EXPECT_TRUE(
        throws_error([&] { parse_webhook(body); }, "22023", "field 'createdAt' is missing"));
    const auto ev = parse_webhook(body, {}, development(kReceived));
    EXPECT_EQ(ev.created_at_s, 1763130605);  // whole seconds of joinedAtMs
    EXPECT_EQ(ev.participant->joined_at_ms, std::optional<int64_t>(1763130605123));
    EXPECT_TRUE(ev.development_event());
}

TEST(WebhookDevelopment, OtherFieldsAreCheckedAsAlways) {
    // development mode relaxes createdAt only
    EXPECT_TRUE(throws_error(
        [] {
            parse_webhook(R"({"event":"participant_joined","room":{"name":"r"},)"
                          R"("participant":{"sid":"PA","identity":"u","joined_at":1}})",
                          {}, development(kReceived));
        },
        "22023", "field 'id' is missing"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_webhook(R"({"event":"participant_joined","id":"EV","room":{"name":"r"}})", {},
                          development(kReceived));
        },
        "22023", "has no 'participant'"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_webhook(R"({"event":"room_started","id":"EV","room":{"name":"r"}})", {},
                          development(int64_t(-5)));
        },
        "22023", "out of range"));
}

}  // namespace
}  // namespace attendance::core
