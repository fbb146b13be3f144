// Secrets LiveKit puts inside webhook bodies (docs/security.md, "Secrets in stored
// bodies"): which fields bear them, and redacting them from a parsed body before it is
// stored. The one home of that rule: ingestion and the upgrade's pass over old rows
// (_attendance_redact_secrets) both call it.
#pragma once
#include "core/no_postgres.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace attendance::core {

// What a secret's value becomes in the stored body.
inline constexpr const char* kRedacted = "[redacted]";
inline constexpr const char* kRedactedJson = "\"[redacted]\"";  // as a JSON text

// Whether a JSON field name bears a secret, in LiveKit's protocol (livekit_models,
// livekit_egress, livekit_ingress): the room's TURN password, an ingress stream key, the
// egress upload credentials (S3/GCP/Azure/AliOSS keys, secrets, session tokens, the
// assume-role external id), proxy and webhook-config passwords and signing keys, tokens.
// Compared without case and underscores, so the protobuf JSON name (turnPassword) and
// the field name (turn_password) both count.
bool is_secret_field(std::string_view name);

// Replaces, in place, the value of every secret-bearing field that is neither null nor
// an empty string with kRedacted, at any depth (a secret's own value is not walked
// into). Returns the path of each replaced value (object keys, array indexes as decimal
// text), in document order; empty when the body holds no secret.
std::vector<std::vector<std::string>> redact_secrets(nlohmann::json& document);

}  // namespace attendance::core
