// A LiveKit webhook body (protobuf JSON) parsed into the fields attendance needs.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace attendance::core {

enum class EventKind {
    ParticipantJoined,
    ParticipantLeft,
    ParticipantConnectionAborted,
    RoomStarted,
    RoomFinished,
    Other,  // track, egress, ingress and future events: logged, no attendance meaning
};

struct Room {
    std::string sid;
    std::string name;
};

struct Participant {
    std::string sid;
    std::string identity;
    std::string name;
    std::string metadata;  // a JSON string in LiveKit; may be empty or not JSON
    std::string state;     // enum name: JOINING, JOINED, ACTIVE, DISCONNECTED
    std::string kind;      // enum name: STANDARD, INGRESS, EGRESS, SIP, AGENT, ...
    std::string disconnect_reason;
    std::map<std::string, std::string> attributes;
    std::optional<int64_t> joined_at_ms;  // joinedAtMs, else joinedAt * 1000
    bool hidden = false;
    bool recorder = false;
};

// Where a webhook's event time (created_at_s) came from.
enum class EventTimeSource {
    CreatedAt,   // the body's createdAt (always so outside development mode)
    JoinedAt,    // development mode, no createdAt: the participant's join time
    ReceivedAt,  // development mode, no createdAt: the receipt time passed in
};

struct WebhookEvent {
    std::string event;  // e.g. "participant_joined"
    EventKind kind = EventKind::Other;
    std::string id;  // EV_..., the idempotency key
    int64_t created_at_s = 0;
    EventTimeSource created_at_source = EventTimeSource::CreatedAt;
    std::optional<Room> room;
    std::optional<Participant> participant;

    // A body without createdAt, accepted only in development mode: its log row must say so.
    bool development_event() const { return created_at_source != EventTimeSource::CreatedAt; }
};

struct ParseLimits {
    size_t max_body_bytes = 1024 * 1024;
    int max_depth = 64;
};

// How lenient the parser is. The defaults are production's: createdAt is required.
struct ParseOptions {
    // attendance.development_mode: a body without createdAt (as a hand-written test
    // sends it) is accepted. Its event time is then
    //  - participant_joined: the participant's join time (joinedAtMs / joinedAt /
    //    joined_at), else the receipt time;
    //  - any other event (a leave happens when it is sent, not when the person joined):
    //    the receipt time, else the participant's join time;
    // and the event is a development event (WebhookEvent::development_event()).
    bool development_mode = false;
    // The receipt time in epoch seconds for such bodies; nullopt when the caller has none.
    std::optional<int64_t> received_at_s;
    // When set, receives the parsed document of an accepted body, so that the caller can
    // store it without parsing the same bytes again.
    nlohmann::json* document = nullptr;
};

// Earliest and latest accepted times (1970-01-01 .. 9999-12-31 23:59:59 UTC).
inline constexpr int64_t kMinEpochSeconds = 0;
inline constexpr int64_t kMaxEpochSeconds = 253402300799;

// Parses one webhook body. Throws Error with SQLSTATE 22P02 (not JSON), 22023 (JSON
// but not a LiveKit webhook; the message names the field), 22P05 (\u0000 in a
// string) or 54000 (over a limit).
WebhookEvent parse_webhook(std::string_view body, const ParseLimits& limits = {},
                           const ParseOptions& options = {});

EventKind event_kind_of(std::string_view event);

// Enum names for the numeric forms proto3 JSON also allows.
std::string participant_kind_name(int64_t value);
std::string participant_state_name(int64_t value);
std::string disconnect_reason_name(int64_t value);

}  // namespace attendance::core
