#include "cli/replay.hpp"

#include "cli/cli.hpp"
#include "cli/terminal.hpp"

#include <nlohmann/json.hpp>

#include <sstream>

namespace attendancectl {

std::vector<WebhookRequest> load_webhooks(const std::string& path) {
    const std::string data = read_file(path);
    std::vector<WebhookRequest> out;
    std::istringstream in(data);
    std::string line;
    std::size_t number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        const std::string where = path + ":" + std::to_string(number) + ": ";
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::parse_error& e) {
            throw InputError(where + "not a JSON object (" + e.what() + ")");
        }
        if (!j.is_object()) throw InputError(where + "not a JSON object");
        WebhookRequest r;
        r.line = number;
        if (!j.contains("body") || !j["body"].is_string()) {
            throw InputError(where + "\"body\" must be a string (the exact body bytes)");
        }
        r.body = j["body"].get<std::string>();
        if (j.contains("authorization") && !j["authorization"].is_null()) {
            if (!j["authorization"].is_string()) {
                throw InputError(where + "\"authorization\" must be a string or null");
            }
            r.authorization = j["authorization"].get<std::string>();
            if (r.authorization->find_first_of("\r\n") != std::string::npos) {
                throw InputError(where + "\"authorization\" contains a line break");
            }
        }
        if (j.contains("content_type") && j["content_type"].is_string()) {
            r.content_type = j["content_type"].get<std::string>();
            if (r.content_type.find_first_of("\r\n") != std::string::npos) {
                throw InputError(where + "\"content_type\" contains a line break");
            }
        }
        if (j.contains("variant") && j["variant"].is_string())
            r.label = j["variant"].get<std::string>();
        out.push_back(std::move(r));
    }
    if (out.empty()) throw InputError(path + ": no webhooks in the file");
    return out;
}

std::optional<Outcome> outcome_of(const std::string& answer_json) {
    try {
        const nlohmann::json j = nlohmann::json::parse(answer_json);
        const std::string result = j.is_object() ? j.value("result", "") : "";
        if (result == "recorded") return Outcome::Recorded;
        if (result == "duplicate") return Outcome::Duplicate;
        // retired: acknowledged, not stored (its range of the log was retired)
        if (result == "ignored" || result == "retired") return Outcome::Ignored;
    } catch (const nlohmann::json::exception&) {
    }
    return std::nullopt;
}

}  // namespace attendancectl
