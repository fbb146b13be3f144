// LiveKit webhook tokens: the recorded fixtures (good and broken), hand-made JWTs for
// every rejection reason, the leeway edges, and the encoding/hash helpers.
#include "core/token.hpp"

#include "core/errors.hpp"
#include "core/webhook.hpp"
#include "test_support.hpp"

#include <cstdint>
#include <ctime>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace attendance::core {
namespace {

using attendance::test::has_substr;
using attendance::test::kFixtureApiKey;
using attendance::test::kFixtureSecret;
using attendance::test::load_fixture;
using attendance::test::negative_fixture;
using attendance::test::throws_error;
using nlohmann::json;

constexpr const char* kAuth = "28000";
constexpr int64_t kNow = 1763130580;  // 2025-11-14 14:29:40Z
const std::string kBody = R"({"event":"room_started","id":"EV_1","createdAt":"1763130580"})";

// A JWT from literal header and payload JSON texts, signed with `secret` (HS256 MAC
// whatever the header says, so only the header decides what parse_token sees).
std::string make_token(const std::string& header, const std::string& payload,
                       const std::string& secret = kFixtureSecret) {
    std::string input = base64url_encode(header) + "." + base64url_encode(payload);
    return input + "." + base64url_encode(hmac_sha256(secret, input));
}

const std::string kHs256 = R"({"alg":"HS256","typ":"JWT"})";

// Claims for kBody valid from kNow for 600 s, plus `extra` members (or overrides).
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

VerifyOptions at(int64_t now_s, int64_t leeway_s = 60) {
    VerifyOptions o;
    o.now_s = now_s;
    o.leeway_s = leeway_s;
    return o;
}

void verify(const std::string& token, const std::string& body, const VerifyOptions& o,
            const std::string& secret = kFixtureSecret) {
    verify_token(parse_token(bare_token(token)), body, secret, o);
}

int64_t real_now() { return int64_t(std::time(nullptr)); }

// ---------------------------------------------------------------------------------------
// Fixtures

void check_session_tokens(const char* file) {
    auto requests = load_fixture(file);
    ASSERT_EQ(requests.size(), 15u);
    for (size_t i = 0; i < requests.size(); ++i) {
        SCOPED_TRACE(std::string(file) + " line " + std::to_string(i + 1));
        const auto& r = requests[i];
        EXPECT_EQ(r.content_type, "application/webhook+json");
        ASSERT_TRUE(r.authorization.has_value());
        EXPECT_EQ(bare_token(*r.authorization), *r.authorization);
        ParsedToken t = parse_token(*r.authorization);
        EXPECT_EQ(t.alg, "HS256");
        EXPECT_EQ(t.iss, kFixtureApiKey);
        ASSERT_TRUE(t.iat && t.nbf && t.exp && t.sha256);
        EXPECT_EQ(*t.nbf, *t.iat);
        EXPECT_EQ(*t.exp, *t.iat + 300);
        EXPECT_EQ(*t.sha256, sha256_base64(r.body));
        EXPECT_EQ(t.signature.size(), 32u);
        // Signed at delivery, within the 30 s LiveKit keeps an event queued.
        int64_t created = parse_webhook(r.body).created_at_s;
        EXPECT_GE(*t.iat, created);
        EXPECT_LE(*t.iat, created + 30);

        // Good at the time it was sent, at the edge of its window, and in replay mode.
        EXPECT_NO_THROW(verify_token(t, r.body, kFixtureSecret, at(*t.iat)));
        EXPECT_NO_THROW(verify_token(t, r.body, kFixtureSecret, at(*t.exp + 60)));
        VerifyOptions replay;
        replay.now_s = real_now();
        replay.check_expiry = false;
        EXPECT_NO_THROW(verify_token(t, r.body, kFixtureSecret, replay));
        // Expired by the real clock (signed in November 2025).
        EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(real_now())); },
                                 kAuth, "expired"));
        // Another secret, or a body with one byte changed, fails.
        EXPECT_TRUE(throws_error(
            [&] { verify_token(t, r.body, "fixture-secret-0123456789abcdef0124", at(*t.iat)); },
            kAuth, "bad signature"));
        std::string changed = r.body;
        changed.back() = ' ';
        EXPECT_TRUE(throws_error([&] { verify_token(t, changed, kFixtureSecret, at(*t.iat)); },
                                 kAuth, "body hash"));
    }
}

TEST(TokenFixtures, CompactSessionTokensVerifyAtIat) { check_session_tokens("session-456.jsonl"); }

TEST(TokenFixtures, SpacedSessionTokensVerifyAtIat) {
    check_session_tokens("session-456.spaced.jsonl");
}

TEST(TokenFixtures, SpacingChangesTheHash) {
    auto compact = load_fixture("session-456.jsonl");
    auto spaced = load_fixture("session-456.spaced.jsonl");
    for (size_t i = 0; i < compact.size(); ++i) {
        SCOPED_TRACE("line " + std::to_string(i + 1));
        ParsedToken t = parse_token(*compact[i].authorization);
        EXPECT_TRUE(
            throws_error([&] { verify_token(t, spaced[i].body, kFixtureSecret, at(*t.iat)); },
                         kAuth, "body hash"));
    }
}

TEST(TokenNegatives, Unsigned) {
    auto r = negative_fixture("unsigned");
    EXPECT_FALSE(r.authorization.has_value());
    EXPECT_TRUE(bare_token(r.authorization.value_or("")).empty());
    EXPECT_TRUE(throws_error([&] { parse_token(bare_token(r.authorization.value_or(""))); }, kAuth,
                             "missing token"));
    // "Bearer" with nothing after it is no token either.
    EXPECT_TRUE(bare_token("Bearer ").empty());
    EXPECT_TRUE(throws_error([] { parse_token(bare_token("Bearer   ")); }, kAuth, "missing token"));
}

TEST(TokenNegatives, Tampered) {
    auto r = negative_fixture("tampered");
    ParsedToken t = parse_token(bare_token(*r.authorization));
    EXPECT_EQ(t.iss, kFixtureApiKey);
    EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(*t.iat)); }, kAuth,
                             "body hash"));
    VerifyOptions replay;
    replay.check_expiry = false;
    EXPECT_TRUE(
        throws_error([&] { verify_token(t, r.body, kFixtureSecret, replay); }, kAuth, "body hash"));
    // The token itself is intact: it matches the untampered teacher join.
    auto original = load_fixture("session-456.jsonl").at(1);
    EXPECT_EQ(*r.authorization, *original.authorization);
    EXPECT_NO_THROW(verify_token(t, original.body, kFixtureSecret, at(*t.iat)));
}

TEST(TokenNegatives, BadSecret) {
    auto r = negative_fixture("bad-secret");
    ParsedToken t = parse_token(bare_token(*r.authorization));
    EXPECT_EQ(t.iss, kFixtureApiKey);
    EXPECT_EQ(*t.sha256, sha256_base64(r.body));  // the hash is right, the MAC is not
    EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(*t.iat)); }, kAuth,
                             "bad signature"));
    EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(*t.iat)); }, kAuth,
                             "'APIfixture'"));
}

TEST(TokenNegatives, WrongKey) {
    auto r = negative_fixture("wrong-key");
    ParsedToken t = parse_token(bare_token(*r.authorization));
    // The PostgreSQL layer looks the key up and rejects it; the core just reports it.
    EXPECT_EQ(t.iss, "APIfixtureX");
    EXPECT_EQ(t.alg, "HS256");
    EXPECT_EQ(*t.sha256, sha256_base64(r.body));
}

TEST(TokenNegatives, Expired) {
    auto r = negative_fixture("expired");
    ParsedToken t = parse_token(bare_token(*r.authorization));
    int64_t created = parse_webhook(r.body).created_at_s;
    EXPECT_EQ(created, 1763130580);
    ASSERT_TRUE(t.exp.has_value());
    EXPECT_EQ(*t.exp, 1763044480);
    EXPECT_GT(created - *t.exp, 86000) << "expired about a day before it was sent";
    // At the time it was sent: expired.
    EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(created)); }, kAuth,
                             "expired"));
    // Replay mode: signature and hash are fine, but the window checked at createdAt fails.
    VerifyOptions replay;
    replay.check_expiry = false;
    EXPECT_NO_THROW(verify_token(t, r.body, kFixtureSecret, replay));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, created, 60, "createdAt"); }, kAuth,
                             "expired at 1763044480 (createdAt 1763130580, leeway 60 s)"));
    // By the real clock as well.
    EXPECT_TRUE(throws_error([&] { verify_token(t, r.body, kFixtureSecret, at(real_now())); },
                             kAuth, "expired"));
}

// ---------------------------------------------------------------------------------------
// Hand-made tokens

TEST(TokenHandMade, GoodTokenVerifies) {
    std::string tok = make_token(kHs256, claims());
    EXPECT_NO_THROW(verify(tok, kBody, at(kNow)));
    ParsedToken t = parse_token(tok);
    EXPECT_EQ(t.signing_input, tok.substr(0, tok.rfind('.')));
    EXPECT_EQ(t.exp, std::optional<int64_t>(kNow + 600));
    EXPECT_EQ(t.nbf, std::optional<int64_t>(kNow));
    EXPECT_EQ(t.iat, std::optional<int64_t>(kNow));
}

TEST(TokenHandMade, AlgNoneRejected) {
    std::string header = R"({"alg":"none","typ":"JWT"})";
    std::string unsigned_tok = base64url_encode(header) + "." + base64url_encode(claims()) + ".";
    EXPECT_TRUE(throws_error([&] { parse_token(unsigned_tok); }, kAuth, "'none'"));
    EXPECT_TRUE(throws_error([&] { parse_token(make_token(header, claims())); }, kAuth,
                             "unsupported token algorithm"));
}

TEST(TokenHandMade, OtherAlgorithmsRejected) {
    for (const char* alg : {"HS512", "HS384", "RS256", "ES256", "hs256", "HS256 ", ""}) {
        SCOPED_TRACE(alg);
        std::string header = json{{"alg", alg}, {"typ", "JWT"}}.dump();
        EXPECT_TRUE(throws_error([&] { parse_token(make_token(header, claims())); }, kAuth,
                                 "only HS256 is accepted"));
    }
}

TEST(TokenHandMade, MissingOrNonStringAlgRejected) {
    for (const char* header : {R"({"typ":"JWT"})", R"({"alg":256})", R"({"alg":null})", "{}"}) {
        SCOPED_TRACE(header);
        EXPECT_TRUE(
            throws_error([&] { parse_token(make_token(header, claims())); }, kAuth, "'alg'"));
    }
}

TEST(TokenHandMade, MissingExpRejected) {
    std::string tok = make_token(kHs256, claims({{"exp", nullptr}}));
    ParsedToken t = parse_token(tok);
    EXPECT_FALSE(t.exp.has_value());
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(kNow)); }, kAuth, "no 'exp'"));
    // exp is required even when expiry is not checked (replay mode).
    VerifyOptions replay;
    replay.check_expiry = false;
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, replay); }, kAuth, "no 'exp'"));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, kNow, 60, "now"); }, kAuth, "'exp'"));
}

TEST(TokenHandMade, NonNumericClaimsRejected) {
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"exp", std::to_string(kNow + 600)}})));
        },
        kAuth, "claim 'exp' is not a number"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"nbf", true}})));
        },
        kAuth, "claim 'nbf'"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"exp", 1e300}})));
        },
        kAuth, "claim 'exp' is out of range"));
}

TEST(TokenHandMade, MissingIssRejected) {
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"iss", nullptr}})));
        },
        kAuth, "'iss'"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"iss", ""}})));
        },
        kAuth, "'iss'"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"iss", 5}})));
        },
        kAuth, "'iss'"));
}

TEST(TokenHandMade, NbfInTheFutureRejected) {
    std::string tok = make_token(kHs256, claims({{"nbf", kNow + 3600}, {"exp", kNow + 7200}}));
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(kNow)); }, kAuth, "not yet valid"));
    EXPECT_NO_THROW(verify(tok, kBody, at(kNow + 3600)));
}

TEST(TokenHandMade, ExpLeewayEdges) {
    const int64_t exp = kNow + 600;
    std::string tok = make_token(kHs256, claims({{"exp", exp}}));
    EXPECT_NO_THROW(verify(tok, kBody, at(exp)));
    EXPECT_NO_THROW(verify(tok, kBody, at(exp + 60)));
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(exp + 61)); }, kAuth, "expired"));
    // Another leeway moves the edge.
    EXPECT_NO_THROW(verify(tok, kBody, at(exp, 0)));
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(exp + 1, 0)); }, kAuth, "expired"));
    EXPECT_NO_THROW(verify(tok, kBody, at(exp + 300, 300)));
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(exp + 301, 300)); }, kAuth, "expired"));
}

TEST(TokenHandMade, NbfLeewayEdges) {
    const int64_t nbf = kNow + 60;
    std::string tok = make_token(kHs256, claims({{"nbf", nbf}}));
    EXPECT_NO_THROW(verify(tok, kBody, at(kNow)));  // nbf == now + leeway
    std::string late = make_token(kHs256, claims({{"nbf", kNow + 61}}));
    EXPECT_TRUE(throws_error([&] { verify(late, kBody, at(kNow)); }, kAuth, "not yet valid"));
    EXPECT_NO_THROW(verify(late, kBody, at(kNow + 1)));
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(kNow, 59)); }, kAuth, "not yet valid"));
}

TEST(TokenHandMade, NoNbfIsFine) {
    std::string tok = make_token(kHs256, claims({{"nbf", nullptr}, {"iat", nullptr}}));
    EXPECT_NO_THROW(verify(tok, kBody, at(0)));
    EXPECT_FALSE(parse_token(tok).nbf.has_value());
    EXPECT_FALSE(parse_token(tok).iat.has_value());
}

TEST(TokenHandMade, BearerPrefix) {
    const std::string tok = make_token(kHs256, claims());
    for (const std::string& h :
         {tok, "Bearer " + tok, "bearer " + tok, "BEARER " + tok, "BeArEr " + tok, "Bearer\t" + tok,
          "  Bearer   " + tok + "  ", tok + "\r\n", "\t" + tok}) {
        SCOPED_TRACE(h);
        EXPECT_EQ(bare_token(h), tok);
        EXPECT_NO_THROW(verify(h, kBody, at(kNow)));
    }
    // Not a "Bearer " prefix: left alone (and then not a valid token).
    EXPECT_EQ(bare_token("Bearer" + tok), "Bearer" + tok);
    EXPECT_EQ(bare_token("Basic " + tok), "Basic " + tok);
    EXPECT_TRUE(bare_token("").empty());
    EXPECT_TRUE(bare_token(" \t ").empty());
    EXPECT_TRUE(bare_token("Bearer").empty());
}

TEST(TokenHandMade, WrongNumberOfParts) {
    const std::string tok = make_token(kHs256, claims());
    const std::string two = tok.substr(0, tok.rfind('.'));
    for (const std::string& t :
         std::vector<std::string>{two, tok + ".x", tok + ".", "abc", "a.b.c.d.e", "."}) {
        SCOPED_TRACE(t);
        EXPECT_TRUE(throws_error([&] { parse_token(t); }, kAuth, "three dot-separated parts"));
    }
}

TEST(TokenHandMade, GarbageBase64Rejected) {
    const std::string p = base64url_encode(claims());
    const std::string h = base64url_encode(kHs256);
    EXPECT_TRUE(throws_error([&] { parse_token("!!!!." + p + ".c2ln"); }, kAuth,
                             "header is not base64url"));
    EXPECT_TRUE(throws_error([&] { parse_token(h + ".pay+load/." + "c2ln"); }, kAuth,
                             "payload is not base64url"));
    EXPECT_TRUE(throws_error([&] { parse_token(h + "." + p + ".sig*nature"); }, kAuth,
                             "signature is not base64url"));
    EXPECT_TRUE(throws_error([&] { parse_token(h + "." + p + "."); }, kAuth, "signature"));
    EXPECT_TRUE(throws_error([&] { parse_token(".."); }, kAuth, "header"));
    // Decodes, but not to a JSON object.
    EXPECT_TRUE(throws_error([&] { parse_token(base64url_encode("not json") + "." + p + ".c2ln"); },
                             kAuth, "header is not a JSON object"));
    EXPECT_TRUE(throws_error([&] { parse_token(h + "." + base64url_encode("[1,2]") + ".c2ln"); },
                             kAuth, "payload is not a JSON object"));
}

TEST(TokenHandMade, SignatureOfWrongLengthRejected) {
    const std::string tok = make_token(kHs256, claims());
    const std::string input = tok.substr(0, tok.rfind('.'));
    std::string mac = hmac_sha256(kFixtureSecret, input);
    ASSERT_EQ(mac.size(), 32u);
    // Truncated MAC (a prefix of the right one), and the right one with a byte appended.
    for (const std::string& sig : {mac.substr(0, 31), mac.substr(0, 16), mac + "x"}) {
        SCOPED_TRACE(sig.size());
        std::string t = input + "." + base64url_encode(sig);
        EXPECT_TRUE(throws_error([&] { verify(t, kBody, at(kNow)); }, kAuth, "bad signature"));
    }
    // One bit flipped.
    mac[0] = char(mac[0] ^ 1);
    EXPECT_TRUE(throws_error([&] { verify(input + "." + base64url_encode(mac), kBody, at(kNow)); },
                             kAuth, "bad signature"));
}

TEST(TokenHandMade, Sha256ClaimRequired) {
    std::string tok = make_token(kHs256, claims({{"sha256", nullptr}}));
    EXPECT_FALSE(parse_token(tok).sha256.has_value());
    EXPECT_TRUE(throws_error([&] { verify(tok, kBody, at(kNow)); }, kAuth, "no 'sha256'"));
    EXPECT_TRUE(throws_error(
        [] {
            parse_token(make_token(kHs256, claims({{"sha256", 42}})));
        },
        kAuth, "'sha256' claim is not a string"));
    // The hash is standard base64, padded: the base64url form does not match.
    std::string url_hash = sha256_base64(kBody);
    for (auto& c : url_hash) c = c == '+' ? '-' : c == '/' ? '_' : c;
    url_hash.erase(url_hash.find('='));
    ASSERT_EQ(base64url_decode(url_hash), base64url_decode(sha256_base64(kBody)));
    std::string url = make_token(kHs256, claims({{"sha256", url_hash}}));
    EXPECT_TRUE(throws_error([&] { verify(url, kBody, at(kNow)); }, kAuth, "body hash"));
}

TEST(TokenHandMade, SignatureCheckedBeforeEverythingElse) {
    // Wrong secret and wrong body and expired: the signature is reported.
    std::string tok = make_token(kHs256, claims({{"exp", 1}}), "another-secret");
    EXPECT_TRUE(throws_error([&] { verify(tok, "other body", at(kNow)); }, kAuth, "bad signature"));
}

TEST(TokenSign, RoundTrip) {
    std::string tok = sign_token(kBody, kFixtureApiKey, kFixtureSecret, kNow);
    ParsedToken t = parse_token(tok);
    EXPECT_EQ(t.alg, "HS256");
    EXPECT_EQ(t.iss, kFixtureApiKey);
    EXPECT_EQ(t.nbf, std::optional<int64_t>(kNow));
    EXPECT_EQ(t.iat, std::optional<int64_t>(kNow));
    EXPECT_EQ(t.exp, std::optional<int64_t>(kNow + 600));
    EXPECT_EQ(t.sha256, std::optional<std::string>(sha256_base64(kBody)));
    EXPECT_NO_THROW(verify_token(t, kBody, kFixtureSecret, at(kNow)));
    EXPECT_NO_THROW(verify_token(t, kBody, kFixtureSecret, at(kNow + 660)));
    EXPECT_TRUE(throws_error([&] { verify_token(t, kBody, kFixtureSecret, at(kNow + 661)); }, kAuth,
                             "expired"));
    EXPECT_TRUE(
        throws_error([&] { verify_token(t, kBody, "wrong", at(kNow)); }, kAuth, "bad signature"));
    EXPECT_TRUE(throws_error([&] { verify_token(t, kBody + " ", kFixtureSecret, at(kNow)); }, kAuth,
                             "body hash"));
    // Custom lifetime.
    ParsedToken s = parse_token(sign_token(kBody, "K", "S", 100, 5));
    EXPECT_EQ(s.exp, std::optional<int64_t>(105));
    EXPECT_EQ(s.iss, "K");
}

TEST(TokenSign, ResignedFixtureBodiesVerify) {
    // What attendance_sign_webhook() is for: re-signing archived bodies.
    for (const auto& r : load_fixture("session-456.spaced.jsonl")) {
        int64_t created = parse_webhook(r.body).created_at_s;
        std::string tok = sign_token(r.body, kFixtureApiKey, kFixtureSecret, created);
        EXPECT_NO_THROW(verify(tok, r.body, at(created)));
        ParsedToken original = parse_token(*r.authorization);
        EXPECT_EQ(parse_token(tok).sha256, original.sha256);
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

TEST(TokenHelpers, Sha256Base64) {
    EXPECT_EQ(sha256_base64(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    EXPECT_EQ(sha256_base64("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    // Binary input, NUL included.
    EXPECT_NE(sha256_base64(std::string("a\0b", 3)), sha256_base64("a"));
}

TEST(TokenHelpers, HmacSha256Rfc4231) {
    // RFC 4231 test case 2.
    std::string mac = hmac_sha256("Jefe", "what do ya want for nothing?");
    ASSERT_EQ(mac.size(), 32u);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : mac) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
    EXPECT_EQ(out, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(TokenHelpers, Base64Rfc4648) {
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
    EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64url_encode("f"), "Zg");
    EXPECT_EQ(base64url_encode("fo"), "Zm8");
    EXPECT_EQ(base64url_encode("foobar"), "Zm9vYmFy");
    EXPECT_EQ(base64_encode("\xfb\xff"), "+/8=");
    EXPECT_EQ(base64url_encode("\xfb\xff"), "-_8");
}

TEST(TokenHelpers, Base64UrlDecode) {
    EXPECT_EQ(base64url_decode(""), std::optional<std::string>(""));
    EXPECT_EQ(base64url_decode("Zm9vYmFy"), std::optional<std::string>("foobar"));
    EXPECT_EQ(base64url_decode("Zg"), std::optional<std::string>("f"));
    EXPECT_EQ(base64url_decode("Zg=="), std::optional<std::string>("f"));  // padding tolerated
    EXPECT_EQ(base64url_decode("-_8"), std::optional<std::string>("\xfb\xff"));
    // Round trip of every byte value, at every length modulo 3.
    std::string all;
    for (int i = 0; i < 256; ++i) all.push_back(char(i));
    for (size_t n :
         {size_t(0), size_t(1), size_t(2), size_t(3), size_t(254), size_t(255), size_t(256)}) {
        std::string s = all.substr(0, n);
        EXPECT_EQ(base64url_decode(base64url_encode(s)), std::optional<std::string>(s)) << n;
    }
    // Invalid characters (including the standard alphabet's + and /), and impossible lengths.
    for (const char* bad : {"+/8", "Zm9v+", "Zm/v", "Zm9v YmFy", "Zm9v*", "Zm=9v", "Z", "Zm9vY",
                            "Zm9v\n", "Zm9v\xff"}) {
        EXPECT_FALSE(base64url_decode(bad).has_value()) << bad;
    }
}

TEST(TokenHelpers, ConstantTimeEqual) {
    EXPECT_TRUE(constant_time_equal("", ""));
    EXPECT_TRUE(constant_time_equal("abc", "abc"));
    EXPECT_TRUE(constant_time_equal(std::string("a\0c", 3), std::string("a\0c", 3)));
    EXPECT_FALSE(constant_time_equal("abc", "abd"));
    EXPECT_FALSE(constant_time_equal("abc", "ab"));
    EXPECT_FALSE(constant_time_equal("ab", "abc"));
    EXPECT_FALSE(constant_time_equal("", "a"));
    EXPECT_FALSE(constant_time_equal(std::string("a\0c", 3), std::string("a\0d", 3)));
    EXPECT_FALSE(constant_time_equal("Abc", "abc"));
}

TEST(TokenWindow, CheckTokenWindow) {
    ParsedToken t;
    t.exp = 1000;
    t.nbf = 500;
    EXPECT_NO_THROW(check_token_window(t, 500, 0, "now"));
    EXPECT_NO_THROW(check_token_window(t, 1000, 0, "now"));
    EXPECT_NO_THROW(check_token_window(t, 440, 60, "now"));
    EXPECT_NO_THROW(check_token_window(t, 1060, 60, "now"));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, 1061, 60, "createdAt"); }, kAuth,
                             "token expired at 1000 (createdAt 1061, leeway 60 s)"));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, 439, 60, "now"); }, kAuth,
                             "token not yet valid (nbf 500, now 439, leeway 60 s)"));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, 1001, 0, "now"); }, kAuth, "expired"));
    EXPECT_TRUE(throws_error([&] { check_token_window(t, 499, 0, "now"); }, kAuth, "not yet"));
    t.nbf.reset();
    EXPECT_NO_THROW(check_token_window(t, std::numeric_limits<int64_t>::min() / 2, 60, "now"));
    t.exp.reset();
    EXPECT_TRUE(throws_error([&] { check_token_window(t, 500, 60, "now"); }, kAuth, "no 'exp'"));
}

// exp far in the future must mean "not expired". exp + leeway overflows int64 here.
TEST(TokenWindow, ExpNearInt64MaxDoesNotOverflow) {
    ParsedToken t;
    t.exp = std::numeric_limits<int64_t>::max();
    EXPECT_NO_THROW(check_token_window(t, kNow, 60, "now"));
    std::string tok =
        make_token(kHs256, claims({{"exp", std::numeric_limits<int64_t>::max() - 10}}));
    EXPECT_NO_THROW(verify(tok, kBody, at(kNow)));
}

// An exp too large for int64 is reported as out of range, not silently wrapped.
TEST(TokenHandMade, ExpOverInt64Rejected) {
    auto tok = make_token(kHs256, R"({"iss":"APIfixture","exp":18446744073709551615,"sha256":")" +
                                      sha256_base64(kBody) + R"("})");
    auto t = attendance::test::thrown_by([&] { parse_token(tok); });
    ASSERT_TRUE(t.has_value()) << "parsed, exp = " << parse_token(tok).exp.value_or(0);
    EXPECT_EQ(t->sqlstate, kAuth);
    EXPECT_TRUE(has_substr(t->message, "claim 'exp' is out of range"));
}

}  // namespace
}  // namespace attendance::core

namespace {
TEST(TokenWindowHolds, AgreesWithCheckTokenWindow) {
    using attendance::core::ParsedToken;
    ParsedToken t;
    t.exp = 1000;
    t.nbf = 500;
    EXPECT_TRUE(attendance::core::token_window_holds(t, 1000, 60));
    EXPECT_TRUE(attendance::core::token_window_holds(t, 1060, 60));
    EXPECT_FALSE(attendance::core::token_window_holds(t, 1061, 60));
    EXPECT_TRUE(attendance::core::token_window_holds(t, 440, 60));
    EXPECT_FALSE(attendance::core::token_window_holds(t, 439, 60));
    t.exp.reset();
    EXPECT_FALSE(attendance::core::token_window_holds(t, 700, 60));
}
}  // namespace

namespace {
TEST(TokenSigning, KeyThatIsNotUtf8IsAClearError) {
    try {
        attendance::core::sign_token("{}", "API\xff", "secret-0123456789abcdef", 1000);
        FAIL() << "expected an error";
    } catch (const attendance::core::Error& e) {
        EXPECT_STREQ(e.sqlstate(), "22023");
    }
}
}  // namespace
