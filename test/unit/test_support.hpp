// Shared helpers for the webhook, token and person unit tests: the LiveKit fixture
// files (one JSON request per line) and assertions on attendance::core::Error.
#pragma once

#include "core/errors.hpp"

#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#ifndef ATTENDANCE_FIXTURE_DIR
#error "compile the unit tests with -DATTENDANCE_FIXTURE_DIR='\"<repo>/test/fixtures\"'"
#endif

namespace attendance::test {

// The fixture API key and secret (test/fixtures/livekit/README.md).
inline constexpr const char* kFixtureApiKey = "APIfixture";
inline constexpr const char* kFixtureSecret = "fixture-secret-0123456789abcdef0123";

// One recorded webhook request.
struct FixtureRequest {
    std::optional<std::string> authorization;  // bare JWT; nullopt when the line has null
    std::string body;                          // the exact body bytes
    std::string content_type;
    std::string variant;  // negatives.jsonl only
};

inline std::string fixture_path(std::string_view name) {
    return std::string(ATTENDANCE_FIXTURE_DIR) + "/livekit/" + std::string(name);
}

// Reads a JSON-lines fixture; throws (so the calling test fails loudly) when the file is
// missing, a line is not JSON or a line lacks "body".
inline std::vector<FixtureRequest> load_fixture(std::string_view name) {
    const std::string path = fixture_path(name);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open fixture " + path);
    std::vector<FixtureRequest> out;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.empty() || line == "\r") continue;
        auto j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || !j.contains("body") || !j["body"].is_string())
            throw std::runtime_error(path + ":" + std::to_string(number) + ": not a fixture line");
        FixtureRequest r;
        if (auto a = j.find("authorization"); a != j.end() && a->is_string())
            r.authorization = a->get<std::string>();
        r.body = j["body"].get<std::string>();
        if (auto c = j.find("content_type"); c != j.end() && c->is_string())
            r.content_type = c->get<std::string>();
        if (auto v = j.find("variant"); v != j.end() && v->is_string())
            r.variant = v->get<std::string>();
        out.push_back(std::move(r));
    }
    return out;
}

// The request of negatives.jsonl with this "variant"; throws when absent.
inline FixtureRequest negative_fixture(std::string_view variant) {
    for (auto& r : load_fixture("negatives.jsonl"))
        if (r.variant == variant) return r;
    throw std::runtime_error("negatives.jsonl has no variant " + std::string(variant));
}

// What an attendance::core::Error carried.
struct Thrown {
    std::string sqlstate;
    std::string message;
};

// Runs f; returns the Error it threw, or nullopt when it returned normally. Any other
// exception type escapes, which fails the test with its message.
template <class F>
std::optional<Thrown> thrown_by(F&& f) {
    try {
        f();
    } catch (const core::Error& e) {
        return Thrown{e.sqlstate(), e.what()};
    }
    return std::nullopt;
}

inline ::testing::AssertionResult has_substr(const std::string& text, std::string_view part) {
    if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure()
           << "\"" << text << "\" does not contain \"" << part << "\"";
}

// Asserts that `f` throws core::Error with exactly `sqlstate` and a message containing
// `part`.
template <class F>
::testing::AssertionResult throws_error(F&& f, std::string_view sqlstate, std::string_view part) {
    auto t = thrown_by(std::forward<F>(f));
    if (!t)
        return ::testing::AssertionFailure()
               << "expected Error " << sqlstate << " (\"" << part << "\"), nothing was thrown";
    if (t->sqlstate != sqlstate)
        return ::testing::AssertionFailure()
               << "expected SQLSTATE " << sqlstate << ", got " << t->sqlstate << ": " << t->message;
    return has_substr(t->message, part);
}

}  // namespace attendance::test
