// libFuzzer target: LiveKit webhook bodies -> parse_webhook -> resolve_person and
// session_from_room (src/core/webhook.cpp, src/core/person.cpp).
//
// Properties checked on every input (a violation aborts, so libFuzzer saves the input):
//  - parse_webhook throws nothing but core::Error, with one of the documented SQLSTATEs
//    (22P02, 22023, 22P05, 54000);
//  - every accepted event satisfies the invariants the PostgreSQL layer relies on
//    (event/id present, createdAt within 1970..9999, participant events carry a
//    participant with sid and identity and a named room, all text storable in a UTF8
//    database: valid UTF-8 without NUL);
//  - tighter limits only ever add 54000 rejections: small limits (depth 8, 4096 bytes),
//    the defaults and the largest settings (depth 1000, 64 MB) give the same event or
//    the same error unless the tighter one is over a limit;
//  - resolve_person with the default identity pattern and session_from_room with the
//    default room pattern never throw, and their results match straightforward
//    re-implementations of the two default patterns (regex-free oracles) and of the
//    user id sources (attributes, then metadata, then identity).
#include "core/errors.hpp"
#include "core/person.hpp"
#include "core/webhook.hpp"
#include "fuzz_support.hpp"

#include <nlohmann/json.hpp>

#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

namespace core = attendance::core;
using attendance::fuzz::printable;
using attendance::fuzz::sqlstate_is;
using attendance::fuzz::storable_text;

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool documented_parse_error(const core::Error& e) {
    return sqlstate_is(e, core::sqlstate::kInvalidText) ||
           sqlstate_is(e, core::sqlstate::kInvalidParameter) ||
           sqlstate_is(e, core::sqlstate::kUntranslatable) ||
           sqlstate_is(e, core::sqlstate::kProgramLimit);
}

// person.cpp's to_int64: blanks trimmed, then the whole text is one int64.
std::optional<int64_t> oracle_int64(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    if (s.empty()) return std::nullopt;
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

// kDefaultIdentityPattern "^(?:user[-_])?([0-9]+)(?:[-_].*)?$" without a regex: an
// optional "user-"/"user_", a run of digits (the id), then the end or '-'/'_' followed
// by anything but line terminators (ECMAScript '.').
std::optional<int64_t> oracle_identity(std::string_view id) {
    if (id.size() > core::kMaxPatternInput) return std::nullopt;
    std::string_view rest = id;
    if (rest.size() >= 5 && rest.substr(0, 4) == "user" && (rest[4] == '-' || rest[4] == '_'))
        rest.remove_prefix(5);
    size_t n = 0;
    while (n < rest.size() && is_digit(rest[n])) ++n;
    if (n == 0) return std::nullopt;
    std::string_view digits = rest.substr(0, n), tail = rest.substr(n);
    if (!tail.empty()) {
        if (tail[0] != '-' && tail[0] != '_') return std::nullopt;
        if (tail.find_first_of("\n\r") != std::string_view::npos) return std::nullopt;
    }
    return oracle_int64(digits);  // out of int64 range: no id
}

// kDefaultRoomPattern "session-([0-9]+)$" (search): the name ends with "session-"
// followed by the digits of the id.
std::optional<int64_t> oracle_room(std::string_view name) {
    if (name.size() > core::kMaxPatternInput) return std::nullopt;
    size_t n = 0;
    while (n < name.size() && is_digit(name[name.size() - 1 - n])) ++n;
    if (n == 0) return std::nullopt;
    std::string_view head = name.substr(0, name.size() - n);
    constexpr std::string_view kPrefix = "session-";
    if (head.size() < kPrefix.size() || head.substr(head.size() - kPrefix.size()) != kPrefix)
        return std::nullopt;
    return oracle_int64(name.substr(name.size() - n));
}

// The user id in participant metadata: a JSON object whose "user_id" is an integer
// within int64 (nlohmann keeps non-negative numbers as unsigned) or a text holding one.
std::optional<int64_t> oracle_metadata_id(const std::string& metadata) {
    if (metadata.empty()) return std::nullopt;
    auto doc = nlohmann::json::parse(metadata, nullptr, false);
    if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
    auto it = doc.find("user_id");
    if (it == doc.end()) return std::nullopt;
    if (it->is_number_unsigned()) {
        auto u = it->get<uint64_t>();
        if (u > uint64_t(std::numeric_limits<int64_t>::max())) return std::nullopt;
        return int64_t(u);
    }
    if (it->is_number_integer()) return it->get<int64_t>();
    if (it->is_string()) return oracle_int64(it->get<std::string>());
    return std::nullopt;
}

std::string show(const std::optional<int64_t>& v) {
    return v ? std::to_string(*v) : std::string("none");
}

void check_room_mapping(std::string_view name) {
    std::optional<int64_t> got;
    try {
        got = core::session_from_room(name, core::kDefaultRoomPattern);
    } catch (...) {
        attendance::fuzz::unexpected_exception("session_from_room");
    }
    auto want = oracle_room(name);
    FUZZ_CHECK(got == want, "session_from_room(" + printable(name) + ") = " + show(got) +
                                ", expected " + show(want));
}

bool excluded_kind(const std::string& kind) {
    return kind == "AGENT" || kind == "EGRESS" || kind == "INGRESS" || kind == "SIP" ||
           kind == "CONNECTOR";
}

void check_person(const core::Participant& p) {
    core::Person person;
    try {
        person = core::resolve_person(p, core::kDefaultIdentityPattern);
    } catch (...) {  // the default pattern compiles: not even core::Error may escape
        attendance::fuzz::unexpected_exception("resolve_person");
    }
    const std::string ctx = " (identity " + printable(p.identity) + ")";
    FUZZ_CHECK(!person.user_key.empty() || p.identity.empty(), "empty user_key" + ctx);
    FUZZ_CHECK(storable_text(person.user_key) || !storable_text(p.identity),
               "user_key not storable" + ctx);
    // The role comes from attributes or from the metadata JSON: when those are storable
    // text, so must the role be (the metadata's own escapes can still produce a NUL).
    auto attr_role = p.attributes.find("role");
    if (storable_text(p.metadata) &&
        (attr_role == p.attributes.end() || storable_text(attr_role->second)))
        FUZZ_CHECK(
            storable_text(person.role),
            "role " + printable(person.role) + " is not storable text (valid UTF-8, no NUL)" + ctx);
    const std::string& from = person.user_id_from;
    FUZZ_CHECK(from == "attributes" || from == "metadata" || from == "identity_pattern" ||
                   from == "identity",
               "user_id_from " + printable(from) + ctx);
    if (person.user_id) {
        FUZZ_CHECK(from != "identity", "user_id set but from 'identity'" + ctx);
        FUZZ_CHECK(
            person.user_key == std::to_string(*person.user_id),
            "user_key " + printable(person.user_key) + " for id " + show(person.user_id) + ctx);
    } else {
        FUZZ_CHECK(from == "identity" && person.user_key == p.identity,
                   "no user_id but user_key " + printable(person.user_key) + ctx);
    }
    // attributes.user_id wins whenever it is an integer.
    if (auto it = p.attributes.find("user_id"); it != p.attributes.end()) {
        if (auto want = oracle_int64(it->second))
            FUZZ_CHECK(from == "attributes" && person.user_id == want,
                       "attributes.user_id " + printable(it->second) + " gave " +
                           show(person.user_id) + " from " + from + ctx);
        else
            FUZZ_CHECK(from != "attributes", "non-integer attributes.user_id used" + ctx);
    } else {
        FUZZ_CHECK(from != "attributes", "user id from absent attributes" + ctx);
    }
    // Else the metadata's user_id, when it is an integer within int64.
    if (from != "attributes") {
        auto want = oracle_metadata_id(p.metadata);
        if (want)
            FUZZ_CHECK(from == "metadata" && person.user_id == want,
                       "metadata user_id " + show(want) + " gave " + show(person.user_id) +
                           " from " + from + " (metadata " + printable(p.metadata) + ")" + ctx);
        else
            FUZZ_CHECK(from != "metadata",
                       "user id " + show(person.user_id) +
                           " from metadata without an int64 user_id (metadata " +
                           printable(p.metadata) + ")" + ctx);
    }
    // The identity pattern, when nothing before it gave an id.
    if (from == "identity_pattern" || from == "identity") {
        auto want = oracle_identity(p.identity);
        FUZZ_CHECK(person.user_id == want, "identity pattern gave " + show(person.user_id) +
                                               ", expected " + show(want) + ctx);
    }
    // Role is lower case; observers and non-persons do not attend; reasons are given.
    for (char c : person.role)
        FUZZ_CHECK(!(c >= 'A' && c <= 'Z'),
                   "role " + printable(person.role) + " not lower case" + ctx);
    bool non_person = excluded_kind(p.kind) || p.recorder || p.hidden;
    FUZZ_CHECK(person.excluded_by_kind == non_person,
               "excluded_by_kind wrong for kind " + printable(p.kind) + ctx);
    if (non_person || person.role == "observer")
        FUZZ_CHECK(!person.attends, "non-person or observer attends" + ctx);
    else
        FUZZ_CHECK(person.attends,
                   "a person with role " + printable(person.role) + " does not attend" + ctx);
    FUZZ_CHECK(person.attends == person.not_attending_reason.empty(), "reason mismatch" + ctx);
    // A roster role never re-admits a non-person, and "observer" always excludes.
    core::Person teacher = person;
    core::apply_role(teacher, "Teacher");
    FUZZ_CHECK(teacher.role == "teacher" && teacher.attends == !non_person,
               "roster role teacher" + ctx);
    core::Person observer = person;
    core::apply_role(observer, "observer");
    FUZZ_CHECK(!observer.attends, "roster role observer attends" + ctx);
}

void check_event(const core::WebhookEvent& ev, std::string_view body,
                 const core::ParseLimits& limits) {
    FUZZ_CHECK(body.size() <= limits.max_body_bytes, "accepted a body over max_body_bytes");
    FUZZ_CHECK(!ev.event.empty() && storable_text(ev.event), "event " + printable(ev.event));
    FUZZ_CHECK(!ev.id.empty() && storable_text(ev.id), "id " + printable(ev.id));
    FUZZ_CHECK(ev.kind == core::event_kind_of(ev.event), "kind does not match event");
    FUZZ_CHECK(
        ev.created_at_s >= core::kMinEpochSeconds && ev.created_at_s <= core::kMaxEpochSeconds,
        "created_at_s " + std::to_string(ev.created_at_s));
    FUZZ_CHECK(ev.created_at_s != 0, "createdAt 0 (= omitted) accepted");
    bool participant_event = ev.kind == core::EventKind::ParticipantJoined ||
                             ev.kind == core::EventKind::ParticipantLeft ||
                             ev.kind == core::EventKind::ParticipantConnectionAborted;
    bool room_event =
        ev.kind == core::EventKind::RoomStarted || ev.kind == core::EventKind::RoomFinished;
    if (participant_event)
        FUZZ_CHECK(ev.participant.has_value(), ev.event + " without participant");
    if (participant_event || room_event)
        FUZZ_CHECK(ev.room && !ev.room->name.empty(), ev.event + " without room name");
    if (ev.room) {
        FUZZ_CHECK(storable_text(ev.room->sid) && storable_text(ev.room->name), "room text");
    }
    if (ev.participant) {
        const core::Participant& p = *ev.participant;
        FUZZ_CHECK(!p.sid.empty() && !p.identity.empty(), "participant without sid/identity");
        // Enum fields always carry a name (an omitted one gets the enum's default).
        FUZZ_CHECK(!p.state.empty(), "participant.state is an empty enum name");
        FUZZ_CHECK(!p.kind.empty(), "participant.kind is an empty enum name");
        FUZZ_CHECK(!p.disconnect_reason.empty(),
                   "participant.disconnectReason is an empty enum name");
        for (const std::string* s :
             {&p.sid, &p.identity, &p.name, &p.metadata, &p.state, &p.kind, &p.disconnect_reason})
            FUZZ_CHECK(storable_text(*s), "participant text " + printable(*s));
        for (const auto& [k, v] : p.attributes)
            FUZZ_CHECK(storable_text(k) && storable_text(v), "attribute " + printable(k));
        if (p.joined_at_ms)
            FUZZ_CHECK(
                *p.joined_at_ms > 0 && *p.joined_at_ms <= core::kMaxEpochSeconds * 1000 + 999,
                "joined_at_ms " + std::to_string(*p.joined_at_ms));
    }
}

bool same_event(const core::WebhookEvent& a, const core::WebhookEvent& b) {
    auto same_room = [](const std::optional<core::Room>& x, const std::optional<core::Room>& y) {
        return x.has_value() == y.has_value() && (!x || (x->sid == y->sid && x->name == y->name));
    };
    auto same_participant = [](const std::optional<core::Participant>& x,
                               const std::optional<core::Participant>& y) {
        if (x.has_value() != y.has_value()) return false;
        if (!x) return true;
        return x->sid == y->sid && x->identity == y->identity && x->name == y->name &&
               x->metadata == y->metadata && x->state == y->state && x->kind == y->kind &&
               x->disconnect_reason == y->disconnect_reason && x->attributes == y->attributes &&
               x->joined_at_ms == y->joined_at_ms && x->hidden == y->hidden &&
               x->recorder == y->recorder;
    };
    return a.event == b.event && a.kind == b.kind && a.id == b.id &&
           a.created_at_s == b.created_at_s && same_room(a.room, b.room) &&
           same_participant(a.participant, b.participant);
}

struct Outcome {
    std::optional<core::WebhookEvent> event;
    std::string sqlstate;
    std::string message;
};

Outcome parse(std::string_view body, const core::ParseLimits& limits) {
    Outcome out;
    try {
        out.event = core::parse_webhook(body, limits);
    } catch (const core::Error& e) {
        FUZZ_CHECK(documented_parse_error(e), std::string("undocumented SQLSTATE ") +
                                                  (e.sqlstate() ? e.sqlstate() : "(null)") + ": " +
                                                  e.what());
        FUZZ_CHECK(e.what()[0] != '\0', "empty error message");
        out.sqlstate = e.sqlstate();
        out.message = e.what();
    } catch (...) {
        attendance::fuzz::unexpected_exception("parse_webhook");
    }
    if (out.event) check_event(*out.event, body, limits);
    return out;
}

// `tight` has lower limits than `loose`: it may only add "54000 over a limit" rejections;
// otherwise both give the same event or the same error.
void check_monotone(const char* tight_name, const Outcome& tight, const char* loose_name,
                    const Outcome& loose) {
    const std::string names = std::string(" (") + tight_name + " vs " + loose_name + " limits)";
    auto show_outcome = [](const Outcome& o) {
        return o.event ? std::string("accepted") : o.sqlstate + " " + o.message;
    };
    if (tight.event) {
        FUZZ_CHECK(loose.event && same_event(*tight.event, *loose.event),
                   "tighter limits accepted what looser ones did not (or differently): " +
                       show_outcome(loose) + names);
    } else if (tight.sqlstate != core::sqlstate::kProgramLimit) {
        FUZZ_CHECK(
            !loose.event && loose.sqlstate == tight.sqlstate && loose.message == tight.message,
            "tighter: " + show_outcome(tight) + "; looser: " + show_outcome(loose) + names);
    }
    if (loose.sqlstate == core::sqlstate::kProgramLimit)
        FUZZ_CHECK(tight.sqlstate == core::sqlstate::kProgramLimit,
                   "over the looser limits but not over the tighter ones" + names);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view body(reinterpret_cast<const char*>(data), size);

    // The default limits, small ones, and the largest the settings allow
    // (attendance.max_json_depth <= 1000, attendance.max_body_bytes <= 64 MB).
    core::ParseLimits small_limits, largest_limits;
    small_limits.max_depth = 8;
    small_limits.max_body_bytes = 4096;
    largest_limits.max_depth = 1000;
    largest_limits.max_body_bytes = 64 * 1024 * 1024;
    Outcome full = parse(body, core::ParseLimits{});
    Outcome small = parse(body, small_limits);
    Outcome largest = parse(body, largest_limits);
    check_monotone("small", small, "default", full);
    check_monotone("default", full, "largest", largest);

    if (full.event) {
        if (full.event->participant) check_person(*full.event->participant);
        if (full.event->room) check_room_mapping(full.event->room->name);
    }

    // The same functions on raw bytes (no need to find a valid webhook first): the first
    // line as identity and room name, the whole input as participant metadata.
    std::string_view line = body.substr(0, body.find('\n'));
    check_room_mapping(line);
    core::Participant p;
    p.identity = std::string(line.empty() ? std::string_view("x") : line);
    p.metadata = std::string(body);
    p.kind = size % 7 == 0 ? "AGENT" : "STANDARD";
    p.hidden = size % 11 == 0;
    if (size > 0 && data[0] == '~') p.attributes.emplace("user_id", std::string(line.substr(1)));
    check_person(p);
    return 0;
}
