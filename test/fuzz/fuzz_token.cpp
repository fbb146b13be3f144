// libFuzzer target: the webhook Authorization header and body -> bare_token,
// parse_token, verify_token and check_token_window (src/core/token.cpp), the way
// src/pg/ingest.cpp uses them (normal mode, and replay mode where the window is checked
// at the webhook's createdAt).
//
// Input: Authorization header value, '\n', body bytes (no '\n': all of it is the header
// and the body is empty).
//
// Properties (a violation aborts, so libFuzzer saves the input):
//  - nothing but core::Error with SQLSTATE 28000 escapes the token functions;
//  - bare_token returns a trimmed part of its argument;
//  - a parsed token is HS256 with an issuer, and its signing input is the token's text
//    up to the second dot;
//  - a token that verifies really carries the HMAC of its signing input under the
//    secret, the SHA-256 of the body and a window containing "now" (with the leeway);
//  - round trip: for every body, sign_token(body, key, secret, now) parses back to the
//    claims it was made with and verifies at `now` (with and without "Bearer "), and
//    fails for another secret or another body; also with the key and secret taken from
//    the input;
//  - the receiver's precheck (precheck_token) throws nothing and never refuses a header
//    and body that verification accepts, now or in replay mode;
//  - base64url_decode(base64url_encode(x)) == x and constant_time_equal(a, b) == (a == b).
#include "core/errors.hpp"
#include "core/token.hpp"
#include "core/webhook.hpp"
#include "fuzz_support.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace core = attendance::core;
using attendance::fuzz::printable;
using attendance::fuzz::sqlstate_is;

namespace {

// The fixture key and secret (test/fixtures/livekit/README.md), so the seed corpus's
// recorded tokens verify and the fuzzer starts from the deepest paths.
constexpr std::string_view kApiKey = "APIfixture";
constexpr std::string_view kSecret = "fixture-secret-0123456789abcdef0123";
constexpr int64_t kNow = 1763130600;  // 2025-11-14 14:30:00Z, inside the fixtures' story
constexpr int64_t kLeeway = 60;

template <typename F>
bool auth_only(const char* where, F&& fn) {  // true when fn returned normally
    try {
        fn();
        return true;
    } catch (const core::Error& e) {
        FUZZ_CHECK(sqlstate_is(e, core::sqlstate::kInvalidAuthorization),
                   std::string(where) + " threw SQLSTATE " +
                       (e.sqlstate() ? e.sqlstate() : "(null)") + ": " + e.what());
        return false;
    } catch (...) {
        attendance::fuzz::unexpected_exception(where);
    }
}

void check_verified(const core::ParsedToken& t, std::string_view body, int64_t at_s,
                    bool window_checked) {
    FUZZ_CHECK(core::hmac_sha256(kSecret, t.signing_input) == t.signature,
               "verified a token whose signature is not the HMAC of its signing input");
    FUZZ_CHECK(t.sha256 && *t.sha256 == core::sha256_base64(body),
               "verified a token whose sha256 claim is not the body's hash");
    FUZZ_CHECK(t.exp.has_value(), "verified a token without exp");
    if (window_checked) {
        FUZZ_CHECK(*t.exp >= at_s - kLeeway, "verified an expired token");
        FUZZ_CHECK(!t.nbf || *t.nbf <= at_s + kLeeway, "verified a token not yet valid");
    }
}

void check_parsed(const core::ParsedToken& t, std::string_view token) {
    FUZZ_CHECK(t.alg == "HS256", "accepted alg " + printable(t.alg));
    FUZZ_CHECK(!t.iss.empty(), "accepted a token without iss");
    FUZZ_CHECK(!t.signature.empty(), "accepted an empty signature");
    size_t dot1 = token.find('.');
    size_t dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    FUZZ_CHECK(dot2 != std::string_view::npos && t.signing_input == token.substr(0, dot2),
               "signing input is not the text before the second dot");
    FUZZ_CHECK(token.find('.', dot2 + 1) == std::string_view::npos, "accepted a fourth part");
}

// What the receiver refuses before the database (docs/proxy.md), verification must refuse.
void check_precheck(std::string_view authorization, std::string_view body, bool verifies_now,
                    bool verifies_replay) {
    for (bool window : {true, false}) {
        core::PrecheckOptions o;
        o.now_s = kNow;
        o.leeway_s = kLeeway;
        o.check_window = window;
        o.key_known = [](std::string_view iss) { return iss == kApiKey; };
        core::Precheck r;
        try {
            r = core::precheck_token(authorization, body, o);
        } catch (...) {
            attendance::fuzz::unexpected_exception("precheck_token");
        }
        FUZZ_CHECK(
            r.rejection == core::Rejection::None || !(window ? verifies_now : verifies_replay),
            "the precheck refused what verification accepts: " + r.message);
        FUZZ_CHECK((r.rejection == core::Rejection::None) == r.message.empty(),
                   "a precheck rejection without a message, or a message without one");
    }
}

// The Authorization header as src/pg/ingest.cpp handles it, at kNow and in replay mode.
void check_header(std::string_view authorization, std::string_view body) {
    std::string_view token = core::bare_token(authorization);
    FUZZ_CHECK(token.empty() ||
                   (token.data() >= authorization.data() &&
                    token.data() + token.size() <= authorization.data() + authorization.size()),
               "bare_token result is not part of its argument");
    if (!token.empty()) {
        FUZZ_CHECK(token.front() != ' ' && token.front() != '\t',
                   "bare_token left a leading blank");
        FUZZ_CHECK(token.back() != ' ' && token.back() != '\t' && token.back() != '\r' &&
                       token.back() != '\n',
                   "bare_token left a trailing blank");
    }
    core::ParsedToken t;
    if (!auth_only("parse_token", [&] { t = core::parse_token(token); }))
        return check_precheck(authorization, body, false, false);
    check_parsed(t, token);

    core::VerifyOptions now;
    now.now_s = kNow;
    now.leeway_s = kLeeway;
    // Verification with the fixture secret; the extension would also refuse another iss.
    const bool ok_now =
        auth_only("verify_token", [&] { core::verify_token(t, body, kSecret, now); });
    if (ok_now) check_verified(t, body, kNow, true);

    // Replay mode: no clock check, then the window at the webhook's own createdAt.
    core::VerifyOptions replay = now;
    replay.check_expiry = false;
    const bool ok_replay =
        auth_only("verify_token(replay)", [&] { core::verify_token(t, body, kSecret, replay); });
    check_precheck(authorization, body, ok_now && t.iss == kApiKey, ok_replay && t.iss == kApiKey);
    if (ok_replay) {
        check_verified(t, body, kNow, false);
        int64_t created = 0;
        try {
            created = core::parse_webhook(body).created_at_s;
        } catch (const core::Error&) {
        } catch (...) {
            attendance::fuzz::unexpected_exception("parse_webhook");
        }
        if (created != 0 && auth_only("check_token_window(createdAt)", [&] {
                core::check_token_window(t, created, kLeeway, "webhook createdAt");
            }))
            check_verified(t, body, created, true);
    }
    // The window alone at the extremes of what callers pass: no overflow, only 28000.
    for (int64_t at : {core::kMinEpochSeconds, kNow, core::kMaxEpochSeconds})
        for (int64_t leeway : {int64_t(0), kLeeway, int64_t(86400)})
            auth_only("check_token_window",
                      [&] { core::check_token_window(t, at, leeway, "now"); });
}

void round_trip(std::string_view body, std::string_view key, std::string_view secret) {
    std::string token;
    try {
        token = core::sign_token(body, key, secret, kNow);
    } catch (...) {
        attendance::fuzz::unexpected_exception("sign_token");
    }
    const std::string ctx = " (key " + printable(key) + ", body " + printable(body) + ")";
    for (const std::string& header : {token, "Bearer " + token, "bearer\t" + token + "\r\n"}) {
        std::string_view bare = core::bare_token(header);
        FUZZ_CHECK(bare == token, "bare_token(" + printable(header) + ") lost the token" + ctx);
    }
    core::ParsedToken t;
    if (!auth_only("parse_token(signed)", [&] { t = core::parse_token(token); }))
        attendance::fuzz::violated("round_trip", "parse_token rejected a signed token" + ctx);
    FUZZ_CHECK(t.alg == "HS256" && t.iss == key && t.exp == kNow + 600 && t.nbf == kNow &&
                   t.iat == kNow && t.sha256 == core::sha256_base64(body),
               "claims differ from what was signed" + ctx);
    core::VerifyOptions at;
    at.now_s = kNow;
    at.leeway_s = kLeeway;
    try {
        core::verify_token(t, body, secret, at);
    } catch (const core::Error& e) {
        attendance::fuzz::violated(
            "round_trip", std::string("a freshly signed token does not verify: ") + e.what() + ctx);
    } catch (...) {
        attendance::fuzz::unexpected_exception("verify_token(signed)");
    }
    // ... and it verifies for that body and secret only.
    std::string other_body = std::string(body) + " ";
    std::string other_secret = std::string(secret) + "x";
    FUZZ_CHECK(!auth_only("verify_token(other body)",
                          [&] { core::verify_token(t, other_body, secret, at); }),
               "a signed token verified for another body" + ctx);
    FUZZ_CHECK(!auth_only("verify_token(other secret)",
                          [&] { core::verify_token(t, body, other_secret, at); }),
               "a signed token verified with another secret" + ctx);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view input(reinterpret_cast<const char*>(data), size);
    size_t nl = input.find('\n');
    std::string_view authorization = input.substr(0, nl);
    std::string_view body =
        nl == std::string_view::npos ? std::string_view() : input.substr(nl + 1);

    check_header(authorization, body);

    // Round trip with the fixed key and secret, for any body.
    round_trip(body, kApiKey, kSecret);
    // ... and with key and secret from the input. The key goes into the JSON claims, so
    // (like every text PostgreSQL hands over) it must be valid UTF-8; the secret is bytes.
    if (!authorization.empty() && attendance::fuzz::storable_text(authorization))
        round_trip(body, authorization, authorization.substr(authorization.size() / 2));

    // Encoding helpers.
    auto decoded = core::base64url_decode(core::base64url_encode(input));
    FUZZ_CHECK(decoded && *decoded == input, "base64url round trip failed for " + printable(input));
    FUZZ_CHECK(core::base64_encode(input).size() == (size + 2) / 3 * 4, "base64 length");
    FUZZ_CHECK(core::constant_time_equal(authorization, body) == (authorization == body),
               "constant_time_equal disagrees with ==");
    return 0;
}
