// The receiver's precheck (core::precheck_token): what can be judged without the secret,
// with verification's own rules and messages. It must never refuse what verification
// accepts, and what it refuses, verification refuses with the same message.
#include "core/token.hpp"

#include "core/errors.hpp"
#include "test_support.hpp"

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace attendance::core {
namespace {

using attendance::test::kFixtureApiKey;
using attendance::test::kFixtureSecret;
using attendance::test::load_fixture;
using nlohmann::json;

constexpr int64_t kNow = 1763130580;
const std::string kBody = R"({"event":"room_started","id":"EV_1","createdAt":"1763130580"})";

std::string make_token(const std::string& header, const std::string& payload,
                       const std::string& secret = kFixtureSecret) {
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    return input + "." + base64url_encode(hmac_sha256(secret, input));
}

const std::string kHs256 = R"({"alg":"HS256","typ":"JWT"})";

std::string claims(json extra = json::object()) {
    json c = {{"iss", kFixtureApiKey},
              {"nbf", kNow},
              {"iat", kNow},
              {"exp", kNow + 600},
              {"sha256", sha256_base64(kBody)}};
    for (auto& [k, v] : extra.items()) {
        if (v.is_null())
            c.erase(k);
        else
            c[k] = v;
    }
    return c.dump();
}

const std::set<std::string> kKnown = {kFixtureApiKey, "APIother"};

PrecheckOptions options(int64_t now_s = kNow) {
    PrecheckOptions o;
    o.now_s = now_s;
    o.key_known = [](std::string_view iss) { return kKnown.count(std::string(iss)) > 0; };
    return o;
}

Precheck run(const std::optional<std::string>& auth, const std::string& body,
             const PrecheckOptions& o) {
    std::optional<std::string_view> view;
    if (auth) view = *auth;
    return precheck_token(view, body, o);
}

// What verification (with the secret, the same clock and the same key list) says: "" when
// it accepts, else its message.
std::string verification(const std::optional<std::string>& auth, const std::string& body,
                         const PrecheckOptions& o) {
    try {
        const std::string_view token = auth ? bare_token(*auth) : std::string_view();
        if (token.empty()) {
            if (o.allow_unsigned) return "";
            throw missing_token_error();
        }
        ParsedToken t = parse_token(token);
        if (o.key_known && !o.key_known(t.iss)) throw unknown_key_error(t.iss);
        VerifyOptions v;
        v.now_s = o.now_s;
        v.leeway_s = o.leeway_s;
        v.check_expiry = o.check_window;
        verify_token(t, body, kFixtureSecret, v);
        return "";
    } catch (const Error& e) {
        EXPECT_STREQ(e.sqlstate(), "28000");
        return e.what();
    }
}

TEST(Precheck, AGoodTokenPasses) {
    const std::string tok = make_token(kHs256, claims());
    EXPECT_EQ(run(tok, kBody, options()).rejection, Rejection::None);
    EXPECT_EQ(run("Bearer " + tok, kBody, options()).rejection, Rejection::None);
    // At the edges of the window with the leeway.
    EXPECT_EQ(run(tok, kBody, options(kNow - 60)).rejection, Rejection::None);
    EXPECT_EQ(run(tok, kBody, options(kNow + 660)).rejection, Rejection::None);
}

TEST(Precheck, NoTokenIsRefusedUnlessUnsignedWebhooksAreAccepted) {
    for (const std::optional<std::string>& auth :
         {std::optional<std::string>(), std::optional<std::string>(""),
          std::optional<std::string>("Bearer "), std::optional<std::string>("  ")}) {
        auto r = run(auth, kBody, options());
        EXPECT_EQ(r.rejection, Rejection::MissingToken);
        EXPECT_EQ(r.message, missing_token_error().what());
        EXPECT_NE(r.message.find("attendance.development_mode"), std::string::npos);
    }
    auto o = options();
    o.allow_unsigned = true;
    EXPECT_EQ(run(std::nullopt, kBody, o).rejection, Rejection::None);
}

TEST(Precheck, MalformedTokens) {
    const std::string none = R"({"alg":"none"})";
    for (const std::string& tok :
         {std::string("abc"), std::string("a.b"), std::string("a.b.c.d"),
          make_token(none, claims()), make_token(R"({"alg":"RS256"})", claims()),
          make_token(kHs256, "[1]"), make_token(kHs256, claims({{"iss", nullptr}})),
          make_token(kHs256, claims({{"exp", "soon"}})),
          base64url_encode(kHs256) + "." + base64url_encode(claims()) + ".",
          "!!!." + base64url_encode(claims()) + ".c2ln"}) {
        SCOPED_TRACE(tok);
        auto r = run(tok, kBody, options());
        EXPECT_EQ(r.rejection, Rejection::MalformedToken) << r.message;
        EXPECT_EQ(r.message.rfind("webhook rejected: ", 0), 0u);
    }
}

TEST(Precheck, TheValidityWindow) {
    const std::string tok = make_token(kHs256, claims());
    auto late = run(tok, kBody, options(kNow + 661));
    EXPECT_EQ(late.rejection, Rejection::TokenWindow);
    EXPECT_EQ(late.message,
              "webhook rejected: token expired at 1763131180 (now 1763131241, "
              "leeway 60 s)");
    EXPECT_EQ(verification(tok, kBody, options(kNow + 661)), late.message);
    auto early = run(tok, kBody, options(kNow - 61));
    EXPECT_EQ(verification(tok, kBody, options(kNow - 61)), early.message);
    EXPECT_EQ(early.rejection, Rejection::TokenWindow);
    EXPECT_NE(early.message.find("not yet valid"), std::string::npos);
    // The leeway is the extension's setting.
    auto o = options(kNow + 700);
    o.leeway_s = 120;
    EXPECT_EQ(run(tok, kBody, o).rejection, Rejection::None);
    // Replay mode: the window is the extension's to judge (against createdAt) ...
    o = options(kNow + 100000);
    o.check_window = false;
    EXPECT_EQ(run(tok, kBody, o).rejection, Rejection::None);
    // ... but exp must still be there.
    auto no_exp = run(make_token(kHs256, claims({{"exp", nullptr}})), kBody, o);
    EXPECT_EQ(no_exp.rejection, Rejection::TokenWindow);
    EXPECT_EQ(no_exp.message, "webhook rejected: token has no 'exp' claim");
}

TEST(Precheck, UnknownKeysWhenTheNamesAreKnown) {
    const std::string tok = make_token(kHs256, claims({{"iss", "APIstranger"}}), "other-secret");
    auto r = run(tok, kBody, options());
    EXPECT_EQ(r.rejection, Rejection::UnknownKey);
    EXPECT_EQ(r.message, "webhook rejected: unknown or retired API key 'APIstranger'");
    EXPECT_EQ(verification(tok, kBody, options()), r.message);
    // A name of 200 bytes is clipped in the message, as ingestion clips it.
    const std::string long_name(200, 'K');
    auto clipped = run(make_token(kHs256, claims({{"iss", long_name}})), kBody, options());
    EXPECT_EQ(clipped.message, unknown_key_error(long_name).what());
    EXPECT_LT(clipped.message.size(), 150u);
    // Names not known: nothing is said about iss.
    auto o = options();
    o.key_known = nullptr;
    EXPECT_EQ(run(tok, kBody, o).rejection, Rejection::None);
}

TEST(Precheck, TheBodyHash) {
    const std::string tok = make_token(kHs256, claims());
    auto r = run(tok, kBody + " ", options());
    EXPECT_EQ(r.rejection, Rejection::BodyHash);
    EXPECT_EQ(r.message,
              "webhook rejected: body hash mismatch (the body is not the one that was signed)");
    EXPECT_EQ(verification(tok, kBody + " ", options()), r.message);
    const std::string no_hash = make_token(kHs256, claims({{"sha256", nullptr}}));
    auto none = run(no_hash, kBody, options());
    EXPECT_EQ(none.rejection, Rejection::BodyHash);
    EXPECT_EQ(verification(no_hash, kBody, options()), none.message);
    EXPECT_EQ(none.message, "webhook rejected: token has no 'sha256' claim for the body");
}

TEST(Precheck, TheSignatureIsLeftToVerification) {
    // Well-formed, valid now, a known key, the right hash: only the secret can tell.
    const std::string forged = make_token(kHs256, claims(), "not-the-secret");
    EXPECT_EQ(run(forged, kBody, options()).rejection, Rejection::None);
    EXPECT_NE(verification(forged, kBody, options()).find("bad signature"), std::string::npos);
}

TEST(Precheck, RejectionNames) {
    EXPECT_STREQ(rejection_name(Rejection::None), "");
    EXPECT_STREQ(rejection_name(Rejection::MissingToken), "missing_token");
    EXPECT_STREQ(rejection_name(Rejection::MalformedToken), "malformed_token");
    EXPECT_STREQ(rejection_name(Rejection::TokenWindow), "token_window");
    EXPECT_STREQ(rejection_name(Rejection::UnknownKey), "unknown_key");
    EXPECT_STREQ(rejection_name(Rejection::BodyHash), "body_hash");
}

// Every token of the fixtures and many mutations of a good one, at several clocks, with
// and without the key list, in replay mode and not: the precheck refuses only what
// verification refuses.
TEST(Precheck, NeverRefusesWhatVerificationAccepts) {
    std::vector<std::pair<std::optional<std::string>, std::string>> requests;
    for (const char* file : {"session-456.jsonl", "negatives.jsonl"})
        for (const auto& r : load_fixture(file)) requests.emplace_back(r.authorization, r.body);
    const std::vector<json> mutations = {
        json::object(),
        {{"exp", nullptr}},
        {{"nbf", nullptr}},
        {{"exp", kNow - 100}},
        {{"nbf", kNow + 1000}},
        {{"iss", "APIother"}},
        {{"iss", "APIstranger"}},
        {{"sha256", nullptr}},
        {{"sha256", sha256_base64("other")}},
        {{"exp", 9223372036854775807LL}},
    };
    for (const auto& m : mutations) {
        requests.emplace_back(make_token(kHs256, claims(m)), kBody);
        requests.emplace_back(make_token(kHs256, claims(m), "wrong"), kBody);
    }
    int refused = 0;
    for (int64_t now : {kNow, kNow + 3600, int64_t(1763130600), int64_t(1900000000)}) {
        for (bool names : {true, false}) {
            for (bool window : {true, false}) {
                auto o = options(now);
                if (!names) o.key_known = nullptr;
                o.check_window = window;
                for (const auto& [auth, body] : requests) {
                    SCOPED_TRACE(auth.value_or("(none)"));
                    const auto pre = run(auth, body, o);
                    const std::string verdict = verification(auth, body, o);
                    if (pre.rejection == Rejection::None) continue;
                    ++refused;
                    EXPECT_NE(verdict, "") << "refused what verification accepts: " << pre.message;
                }
            }
        }
    }
    EXPECT_GT(refused, 50);
}

}  // namespace
}  // namespace attendance::core
