// Who a participant is (user id, role) and which session a room belongs to.
#pragma once
#include "core/no_postgres.hpp"

#include "core/webhook.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace attendance::core {

inline constexpr const char* kDefaultIdentityPattern = "^(?:user[-_])?([0-9]+)(?:[-_].*)?$";
inline constexpr const char* kDefaultRoomPattern = "session-([0-9]+)$";

struct Person {
    std::optional<int64_t> user_id;
    std::string user_key;      // user id as text, else the identity itself
    std::string user_id_from;  // "attributes" | "metadata" | "identity_pattern" | "identity"
    std::string role;          // from attributes/metadata "role", lower case; empty if none
    bool attends = true;       // false for agents, recorders, hidden participants, observers
    bool excluded_by_kind =
        false;  // agent/egress/ingress/sip, recorder or hidden: no role changes that
    std::string not_attending_reason;
};

// Identities and room names longer than this are never matched against the patterns
// (std::regex recurses per character); the identity itself is then the person's key.
inline constexpr size_t kMaxPatternInput = 256;

// Person resolution (docs/decisions.md): attributes.user_id, else metadata JSON user_id, else
// the identity through `identity_pattern` (ECMAScript regex, first group = the id),
// else the identity itself. Throws Error(22023) if the pattern does not compile.
Person resolve_person(const Participant& participant, std::string_view identity_pattern);

// Applies a roster role (which wins over attributes/metadata) and re-evaluates
// whether the person attends (observers do not).
void apply_role(Person& person, std::string_view roster_role);

// Session id from a room name through `room_pattern` (regex search, first group).
std::optional<int64_t> session_from_room(std::string_view room_name, std::string_view room_pattern);

// Validates a pattern (one capturing group required); returns an error text or "".
std::string check_pattern(std::string_view pattern);

}  // namespace attendance::core
