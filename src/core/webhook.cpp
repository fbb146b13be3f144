#include "core/webhook.hpp"

#include "core/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cctype>
#include <limits>

namespace attendance::core {

namespace {

using json = nlohmann::json;

[[noreturn]] void not_a_webhook(const std::string& why) {
    throw Error(sqlstate::kInvalidParameter, "not a LiveKit webhook: " + why);
}

// Deepest bracket nesting outside strings; stops counting once over the limit.
int nesting_depth(std::string_view body, int limit) {
    int depth = 0, deepest = 0;
    bool in_string = false, escaped = false;
    for (char c : body) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > deepest) deepest = depth;
            if (deepest > limit) return deepest;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return deepest;
}

bool has_nul(const json& value) {
    switch (value.type()) {
        case json::value_t::string:
            return value.get_ref<const std::string&>().find('\0') != std::string::npos;
        case json::value_t::array:
            for (const auto& v : value)
                if (has_nul(v)) return true;
            return false;
        case json::value_t::object:
            for (const auto& [k, v] : value.items())
                if (k.find('\0') != std::string::npos || has_nul(v)) return true;
            return false;
        default:
            return false;
    }
}

// proto3 JSON: lowerCamelCase, with the original snake_case name accepted too.
const json* field(const json& obj, const char* camel, const char* snake) {
    auto it = obj.find(camel);
    if (it != obj.end() && !it->is_null()) return &*it;
    if (snake) {
        it = obj.find(snake);
        if (it != obj.end() && !it->is_null()) return &*it;
    }
    return nullptr;
}

std::optional<std::string> get_string(const json& obj, const char* camel, const char* snake,
                                      const std::string& path) {
    const json* v = field(obj, camel, snake);
    if (!v) return std::nullopt;
    if (!v->is_string()) not_a_webhook("field '" + path + "' must be a string");
    return v->get<std::string>();
}

// 64-bit integers arrive as strings ("1763130580") or as numbers.
std::optional<int64_t> get_int64(const json& obj, const char* camel, const char* snake,
                                 const std::string& path) {
    const json* v = field(obj, camel, snake);
    if (!v) return std::nullopt;
    // nlohmann reports unsigned numbers as integers too: check the unsigned form first.
    if (v->is_number_unsigned()) {
        auto u = v->get<uint64_t>();
        if (u > uint64_t(std::numeric_limits<int64_t>::max()))
            not_a_webhook("field '" + path + "' is out of range");
        return int64_t(u);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_string()) {
        const auto& s = v->get_ref<const std::string&>();
        size_t i = (!s.empty() && s[0] == '-') ? 1 : 0;
        bool digits = i < s.size() && std::all_of(s.begin() + long(i), s.end(), [](char c) {
                          return std::isdigit(static_cast<unsigned char>(c)) != 0;
                      });
        if (!digits) not_a_webhook("field '" + path + "' is not an integer: \"" + s + "\"");
        int64_t out = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        if (ec != std::errc() || ptr != s.data() + s.size())
            not_a_webhook("field '" + path + "' is out of range");
        return out;
    }
    not_a_webhook("field '" + path + "' must be an integer (number or string)");
}

bool get_bool(const json& obj, const char* camel, const char* snake, const std::string& path) {
    const json* v = field(obj, camel, snake);
    if (!v) return false;
    if (!v->is_boolean()) not_a_webhook("field '" + path + "' must be a boolean");
    return v->get<bool>();
}

std::string get_enum(const json& obj, const char* camel, const char* snake, const std::string& path,
                     std::string (*name_of)(int64_t)) {
    const json* v = field(obj, camel, snake);
    if (!v) return name_of(0);  // omitted = the enum's default
    // An empty name is the enum's default, as if the field were omitted.
    if (v->is_string())
        return v->get_ref<const std::string&>().empty() ? name_of(0) : v->get<std::string>();
    if (v->is_number_unsigned())
        return name_of(v->get<uint64_t>() > 1000 ? -1 : int64_t(v->get<uint64_t>()));
    if (v->is_number_integer()) return name_of(v->get<int64_t>());
    not_a_webhook("field '" + path + "' must be an enum name or number");
}

int64_t checked_seconds(int64_t s, const std::string& path) {
    if (s < kMinEpochSeconds || s > kMaxEpochSeconds)
        not_a_webhook("field '" + path + "' is out of range (" + std::to_string(s) +
                      " is not between 1970 and 9999)");
    return s;
}

Participant parse_participant(const json& p) {
    if (!p.is_object()) not_a_webhook("field 'participant' must be an object");
    Participant out;
    out.sid = get_string(p, "sid", nullptr, "participant.sid").value_or("");
    if (out.sid.empty()) not_a_webhook("field 'participant.sid' is missing");
    out.identity = get_string(p, "identity", nullptr, "participant.identity").value_or("");
    if (out.identity.empty()) not_a_webhook("field 'participant.identity' is missing");
    out.name = get_string(p, "name", nullptr, "participant.name").value_or("");
    out.metadata = get_string(p, "metadata", nullptr, "participant.metadata").value_or("");
    out.state = get_enum(p, "state", nullptr, "participant.state", participant_state_name);
    out.kind = get_enum(p, "kind", nullptr, "participant.kind", participant_kind_name);
    out.disconnect_reason = get_enum(p, "disconnectReason", "disconnect_reason",
                                     "participant.disconnectReason", disconnect_reason_name);
    if (const json* attrs = field(p, "attributes", nullptr)) {
        if (!attrs->is_object()) not_a_webhook("field 'participant.attributes' must be an object");
        for (const auto& [k, v] : attrs->items()) {
            if (!v.is_string())
                not_a_webhook("field 'participant.attributes." + k + "' must be a string");
            out.attributes.emplace(k, v.get<std::string>());
        }
    }
    if (auto ms = get_int64(p, "joinedAtMs", "joined_at_ms", "participant.joinedAtMs")) {
        if (*ms < kMinEpochSeconds * 1000 || *ms > kMaxEpochSeconds * 1000 + 999)
            not_a_webhook("field 'participant.joinedAtMs' is out of range (" + std::to_string(*ms) +
                          " is not between 1970 and 9999)");
        if (*ms > 0) out.joined_at_ms = *ms;
    }
    if (!out.joined_at_ms) {
        if (auto s = get_int64(p, "joinedAt", "joined_at", "participant.joinedAt"))
            if (checked_seconds(*s, "participant.joinedAt") > 0) out.joined_at_ms = *s * 1000;
    }
    if (const json* perm = field(p, "permission", nullptr)) {
        if (!perm->is_object()) not_a_webhook("field 'participant.permission' must be an object");
        out.hidden = get_bool(*perm, "hidden", nullptr, "participant.permission.hidden");
        out.recorder = get_bool(*perm, "recorder", nullptr, "participant.permission.recorder");
    }
    return out;
}

Room parse_room(const json& r) {
    if (!r.is_object()) not_a_webhook("field 'room' must be an object");
    Room out;
    out.sid = get_string(r, "sid", nullptr, "room.sid").value_or("");
    out.name = get_string(r, "name", nullptr, "room.name").value_or("");
    return out;
}

template <size_t N>
std::string enum_name(const std::array<const char*, N>& names, int64_t value) {
    if (value >= 0 && size_t(value) < N) return names[size_t(value)];
    return std::to_string(value);
}

}  // namespace

std::string participant_kind_name(int64_t value) {
    static constexpr std::array<const char*, 6> names = {"STANDARD", "INGRESS", "EGRESS",
                                                         "SIP",      "AGENT",   "CONNECTOR"};
    return enum_name(names, value);
}

std::string participant_state_name(int64_t value) {
    static constexpr std::array<const char*, 4> names = {"JOINING", "JOINED", "ACTIVE",
                                                         "DISCONNECTED"};
    return enum_name(names, value);
}

std::string disconnect_reason_name(int64_t value) {
    static constexpr std::array<const char*, 16> names = {
        "UNKNOWN_REASON",      "CLIENT_INITIATED",  "DUPLICATE_IDENTITY", "SERVER_SHUTDOWN",
        "PARTICIPANT_REMOVED", "ROOM_DELETED",      "STATE_MISMATCH",     "JOIN_FAILURE",
        "MIGRATION",           "SIGNAL_CLOSE",      "ROOM_CLOSED",        "USER_UNAVAILABLE",
        "USER_REJECTED",       "SIP_TRUNK_FAILURE", "CONNECTION_TIMEOUT", "MEDIA_FAILURE"};
    return enum_name(names, value);
}

EventKind event_kind_of(std::string_view event) {
    if (event == "participant_joined") return EventKind::ParticipantJoined;
    if (event == "participant_left") return EventKind::ParticipantLeft;
    if (event == "participant_connection_aborted") return EventKind::ParticipantConnectionAborted;
    if (event == "room_started") return EventKind::RoomStarted;
    if (event == "room_finished") return EventKind::RoomFinished;
    return EventKind::Other;
}

WebhookEvent parse_webhook(std::string_view body, const ParseLimits& limits,
                           const ParseOptions& options) {
    if (body.size() > limits.max_body_bytes)
        throw Error(sqlstate::kProgramLimit, "webhook body is " + std::to_string(body.size()) +
                                                 " bytes, over the limit of " +
                                                 std::to_string(limits.max_body_bytes) +
                                                 " (attendance.max_body_bytes)");
    if (int depth = nesting_depth(body, limits.max_depth); depth > limits.max_depth)
        throw Error(sqlstate::kProgramLimit, "webhook body nests deeper than " +
                                                 std::to_string(limits.max_depth) +
                                                 " levels (attendance.max_json_depth)");
    json doc;
    try {
        doc = json::parse(body.begin(), body.end());
    } catch (const json::parse_error& e) {
        std::string what = e.what();
        auto pos = what.find("] ");
        throw Error(sqlstate::kInvalidText,
                    "invalid JSON in webhook body: " +
                        (pos == std::string::npos ? what : what.substr(pos + 2)));
    } catch (const json::exception& e) {
        // e.g. out_of_range.406 "number overflow parsing '1e400'": valid JSON grammar,
        // but no LiveKit webhook carries such a number.
        std::string what = e.what();
        auto pos = what.find("] ");
        not_a_webhook(pos == std::string::npos ? what : what.substr(pos + 2));
    }
    if (body.find("\\u0000") != std::string_view::npos && has_nul(doc))
        throw Error(sqlstate::kUntranslatable,
                    "webhook body contains \\u0000, which PostgreSQL cannot store");
    if (!doc.is_object()) not_a_webhook("the body must be a JSON object");

    WebhookEvent ev;
    ev.event = get_string(doc, "event", nullptr, "event").value_or("");
    if (ev.event.empty()) not_a_webhook("field 'event' is missing");
    ev.kind = event_kind_of(ev.event);
    ev.id = get_string(doc, "id", nullptr, "id").value_or("");
    if (ev.id.empty()) not_a_webhook("field 'id' is missing");
    auto created = get_int64(doc, "createdAt", "created_at", "createdAt");
    const bool has_created = created && *created != 0;  // 0 is proto3's omitted default
    if (!has_created && !options.development_mode) not_a_webhook("field 'createdAt' is missing");
    if (has_created) ev.created_at_s = checked_seconds(*created, "createdAt");
    if (const json* room = field(doc, "room", nullptr)) ev.room = parse_room(*room);
    if (const json* p = field(doc, "participant", nullptr)) ev.participant = parse_participant(*p);
    if (!has_created) {
        // Development mode only (see ParseOptions).
        std::optional<int64_t> joined_s;
        if (ev.participant && ev.participant->joined_at_ms)
            joined_s = *ev.participant->joined_at_ms / 1000;
        std::optional<int64_t> received_s;
        if (options.received_at_s) {
            if (*options.received_at_s < kMinEpochSeconds ||
                *options.received_at_s > kMaxEpochSeconds)
                throw Error(sqlstate::kInvalidParameter,
                            "receipt time " + std::to_string(*options.received_at_s) +
                                " is out of range (not between 1970 and 9999)");
            received_s = options.received_at_s;
        }
        const bool join_time_first = ev.kind == EventKind::ParticipantJoined;
        const auto& first = join_time_first ? joined_s : received_s;
        const auto& second = join_time_first ? received_s : joined_s;
        if (!first && !second)
            not_a_webhook(
                "field 'createdAt' is missing, and there is neither a join time nor a receipt time "
                "to take its place (development mode)");
        ev.created_at_s = first ? *first : *second;
        ev.created_at_source = (first ? join_time_first : !join_time_first)
                                   ? EventTimeSource::JoinedAt
                                   : EventTimeSource::ReceivedAt;
    }

    bool participant_event = ev.kind == EventKind::ParticipantJoined ||
                             ev.kind == EventKind::ParticipantLeft ||
                             ev.kind == EventKind::ParticipantConnectionAborted;
    if (participant_event && !ev.participant)
        not_a_webhook("'" + ev.event + "' has no 'participant'");
    if (participant_event || ev.kind == EventKind::RoomStarted ||
        ev.kind == EventKind::RoomFinished) {
        if (!ev.room) not_a_webhook("'" + ev.event + "' has no 'room'");
        if (ev.room->name.empty()) not_a_webhook("field 'room.name' is missing");
    }
    if (options.document) *options.document = std::move(doc);
    return ev;
}

}  // namespace attendance::core
