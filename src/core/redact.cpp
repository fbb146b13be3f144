#include "core/redact.hpp"

#include <array>

namespace attendance::core {

namespace {

constexpr std::array<std::string_view, 12> kSecretFields = {
    "turnpassword", "streamkey",  "accesskey", "secret",     "sessiontoken", "assumeroleexternalid",
    "credentials",  "accountkey", "password",  "signingkey", "token",        "apisecret",
};

// A step of the path to the current value: an object key, or an array index.
struct Step {
    const std::string* key;  // nullptr: an array element
    size_t index;
};

// Walks without copying a key; a path is built only for a value that is replaced.
void walk(nlohmann::json& j, std::vector<Step>& path, std::vector<std::vector<std::string>>& out) {
    if (j.is_object()) {
        for (auto& [key, value] : j.get_ref<nlohmann::json::object_t&>()) {
            if (is_secret_field(key)) {
                const bool empty = value.is_null() || (value.is_string() &&
                                                       value.get_ref<const std::string&>().empty());
                if (empty) continue;
                value = kRedacted;
                std::vector<std::string> p;
                p.reserve(path.size() + 1);
                for (const Step& s : path) p.push_back(s.key ? *s.key : std::to_string(s.index));
                p.push_back(key);
                out.push_back(std::move(p));
            } else if (value.is_structured()) {
                path.push_back({&key, 0});
                walk(value, path, out);
                path.pop_back();
            }
        }
    } else if (j.is_array()) {
        auto& array = j.get_ref<nlohmann::json::array_t&>();
        for (size_t i = 0; i < array.size(); ++i) {
            if (!array[i].is_structured()) continue;
            path.push_back({nullptr, i});
            walk(array[i], path, out);
            path.pop_back();
        }
    }
}

}  // namespace

bool is_secret_field(std::string_view name) {
    if (name.size() > 40) return false;
    char folded[40];  // no allocation: this runs for every key of every webhook
    size_t n = 0;
    for (char c : name) {
        if (c == '_' || c == '-') continue;
        folded[n++] = c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
    }
    const std::string_view key(folded, n);
    for (std::string_view s : kSecretFields)
        if (key == s) return true;
    return false;
}

std::vector<std::vector<std::string>> redact_secrets(nlohmann::json& document) {
    std::vector<std::vector<std::string>> out;
    std::vector<Step> path;
    walk(document, path, out);
    return out;
}

}  // namespace attendance::core
