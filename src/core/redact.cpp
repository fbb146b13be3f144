#include "core/redact.hpp"

#include <array>

namespace attendance::core {

namespace {

constexpr std::array<std::string_view, 12> kSecretFields = {
    "turnpassword", "streamkey",  "accesskey", "secret",     "sessiontoken", "assumeroleexternalid",
    "credentials",  "accountkey", "password",  "signingkey", "token",        "apisecret",
};

void walk(nlohmann::json& j, std::vector<std::string>& path,
          std::vector<std::vector<std::string>>& out) {
    if (j.is_object()) {
        for (auto it = j.begin(); it != j.end(); ++it) {
            path.push_back(it.key());
            nlohmann::json& value = it.value();
            if (is_secret_field(it.key())) {
                const bool empty = value.is_null() || (value.is_string() &&
                                                       value.get_ref<const std::string&>().empty());
                if (!empty) {
                    value = kRedacted;
                    out.push_back(path);
                }
            } else {
                walk(value, path, out);
            }
            path.pop_back();
        }
    } else if (j.is_array()) {
        for (size_t i = 0; i < j.size(); ++i) {
            path.push_back(std::to_string(i));
            walk(j[i], path, out);
            path.pop_back();
        }
    }
}

}  // namespace

bool is_secret_field(std::string_view name) {
    if (name.size() > 40) return false;
    std::string folded;
    folded.reserve(name.size());
    for (char c : name) {
        if (c == '_' || c == '-') continue;
        folded.push_back(c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c);
    }
    for (std::string_view s : kSecretFields)
        if (folded == s) return true;
    return false;
}

std::vector<std::vector<std::string>> redact_secrets(nlohmann::json& document) {
    std::vector<std::vector<std::string>> out;
    std::vector<std::string> path;
    walk(document, path, out);
    return out;
}

}  // namespace attendance::core
