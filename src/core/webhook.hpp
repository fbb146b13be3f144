// A LiveKit webhook body (protobuf JSON) parsed into the fields attendance needs.
#pragma once
#include "core/no_postgres.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

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

struct WebhookEvent {
    std::string event;  // e.g. "participant_joined"
    EventKind kind = EventKind::Other;
    std::string id;  // EV_..., the idempotency key
    int64_t created_at_s = 0;
    std::optional<Room> room;
    std::optional<Participant> participant;
};

struct ParseLimits {
    size_t max_body_bytes = 1024 * 1024;
    int max_depth = 64;
};

// Earliest and latest accepted times (1970-01-01 .. 9999-12-31 23:59:59 UTC).
inline constexpr int64_t kMinEpochSeconds = 0;
inline constexpr int64_t kMaxEpochSeconds = 253402300799;

// Parses one webhook body. Throws Error with SQLSTATE 22P02 (not JSON), 22023 (JSON
// but not a LiveKit webhook; the message names the field), 22P05 (\u0000 in a
// string) or 54000 (over a limit).
WebhookEvent parse_webhook(std::string_view body, const ParseLimits& limits = {});

EventKind event_kind_of(std::string_view event);

// Enum names for the numeric forms proto3 JSON also allows.
std::string participant_kind_name(int64_t value);
std::string participant_state_name(int64_t value);
std::string disconnect_reason_name(int64_t value);

}  // namespace attendance::core
