// Replaying a JSON-lines webhook file (test/fixtures/livekit/*.jsonl): one object per
// line, {"authorization": "<jwt>" | null, "body": "<exact body>", ...}.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace attendancectl {

struct WebhookRequest {
    std::size_t line = 0;
    std::optional<std::string> authorization;
    std::string body;
    std::string content_type = "application/webhook+json";
    std::string label;  // the fixture's "variant", if any
};

// Reads and checks the whole file before anything is sent; throws InputError naming
// the line of the first problem. Blank lines are skipped.
std::vector<WebhookRequest> load_webhooks(const std::string& path);

enum class Outcome { Recorded, Duplicate, Ignored, Rejected };

struct Tally {
    std::size_t requests = 0;
    std::map<Outcome, std::size_t> counts;
    // (code, message) -> count; code is a SQLSTATE or "HTTP 401 (28000)".
    std::map<std::pair<std::string, std::string>, std::size_t> rejections;

    std::size_t count(Outcome o) const {
        auto it = counts.find(o);
        return it == counts.end() ? 0 : it->second;
    }
};

// Reads "result" of attendance_ingest_webhook()'s answer: recorded, duplicate, ignored.
std::optional<Outcome> outcome_of(const std::string& answer_json);

}  // namespace attendancectl
