#include "core/person.hpp"

#include "core/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <memory>
#include <regex>

namespace attendance::core {

namespace {

const std::regex& compiled(std::string_view pattern) {
    // Settings change rarely; keep the few patterns seen so far compiled.
    static std::map<std::string, std::unique_ptr<std::regex>, std::less<>> cache;
    auto it = cache.find(pattern);
    if (it != cache.end()) return *it->second;
    std::unique_ptr<std::regex> re;
    try {
        re = std::make_unique<std::regex>(std::string(pattern), std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw Error(sqlstate::kInvalidParameter,
                    "invalid pattern \"" + std::string(pattern) + "\": " + e.what());
    }
    if (re->mark_count() < 1)
        throw Error(sqlstate::kInvalidParameter,
                    "pattern \"" + std::string(pattern) + "\" needs a capturing group for the id");
    if (cache.size() > 32) cache.clear();
    return *cache.emplace(std::string(pattern), std::move(re)).first->second;
}

std::optional<int64_t> to_int64(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return char(std::tolower(c)); });
    return s;
}

std::optional<int64_t> json_int(const nlohmann::json& v) {
    // nlohmann reports unsigned numbers as integers too: check the unsigned form first.
    if (v.is_number_unsigned()) {
        if (v.get<uint64_t>() > uint64_t(INT64_MAX)) return std::nullopt;
        return int64_t(v.get<uint64_t>());
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) return to_int64(v.get_ref<const std::string&>());
    return std::nullopt;
}

// A role is a short lower-case word; anything else (NUL bytes, spaces, 1 kB of text
// from metadata) is not a role and is ignored.
std::string clean_role(const std::string& raw) {
    std::string role = lower(raw);
    if (role.empty() || role.size() > 32) return "";
    for (char c : role)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return "";
    return role;
}

void evaluate_attendance(Person& person) {
    person.attends = true;
    person.not_attending_reason.clear();
    if (person.role == "observer") {
        person.attends = false;
        person.not_attending_reason = "role observer does not attend";
    }
}

}  // namespace

Person resolve_person(const Participant& participant, std::string_view identity_pattern) {
    Person person;
    nlohmann::json metadata;
    if (!participant.metadata.empty()) {
        metadata = nlohmann::json::parse(participant.metadata, nullptr, false);
        if (metadata.is_discarded() || !metadata.is_object()) metadata = nlohmann::json();
    }

    if (auto it = participant.attributes.find("user_id"); it != participant.attributes.end()) {
        if (auto id = to_int64(it->second)) {
            person.user_id = id;
            person.user_id_from = "attributes";
        }
    }
    if (!person.user_id && metadata.is_object()) {
        if (auto it = metadata.find("user_id"); it != metadata.end()) {
            if (auto id = json_int(*it)) {
                person.user_id = id;
                person.user_id_from = "metadata";
            }
        }
    }
    if (!person.user_id) {
        std::smatch m;
        const std::string& identity = participant.identity;
        if (identity.size() <= kMaxPatternInput &&
            std::regex_match(identity, m, compiled(identity_pattern)) && m[1].matched) {
            if (auto id = to_int64(m[1].str())) {
                person.user_id = id;
                person.user_id_from = "identity_pattern";
            }
        }
    }
    if (person.user_id) {
        person.user_key = std::to_string(*person.user_id);
    } else {
        person.user_key = participant.identity;
        person.user_id_from = "identity";
    }

    if (auto it = participant.attributes.find("role"); it != participant.attributes.end())
        person.role = clean_role(it->second);
    else if (metadata.is_object())
        if (auto r = metadata.find("role"); r != metadata.end() && r->is_string())
            person.role = clean_role(r->get<std::string>());

    evaluate_attendance(person);
    const std::string& kind = participant.kind;
    std::string excluded;
    if (kind == "AGENT" || kind == "EGRESS" || kind == "INGRESS" || kind == "SIP" ||
        kind == "CONNECTOR")
        excluded = "participant kind " + kind + " is not a person attending";
    else if (participant.recorder)
        excluded = "recorder participant is not a person attending";
    else if (participant.hidden)
        excluded = "hidden participant is not a person attending";
    if (!excluded.empty()) {  // no role, from metadata or the roster, changes this
        person.attends = false;
        person.excluded_by_kind = true;
        person.not_attending_reason = excluded;
    }
    return person;
}

void apply_role(Person& person, std::string_view roster_role) {
    if (roster_role.empty()) return;
    person.role = lower(std::string(roster_role));
    if (!person.excluded_by_kind) evaluate_attendance(person);
}

std::optional<int64_t> session_from_room(std::string_view room_name,
                                         std::string_view room_pattern) {
    if (room_name.size() > kMaxPatternInput) return std::nullopt;
    std::match_results<std::string_view::const_iterator> m;
    if (std::regex_search(room_name.begin(), room_name.end(), m, compiled(room_pattern)) &&
        m[1].matched && m[1].length() > 0)
        return to_int64(
            room_name.substr(size_t(m[1].first - room_name.begin()), size_t(m[1].length())));
    return std::nullopt;
}

std::string check_pattern(std::string_view pattern) {
    try {
        compiled(pattern);
        return "";
    } catch (const Error& e) {
        return e.what();
    }
}

}  // namespace attendance::core
