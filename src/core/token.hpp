// LiveKit webhook token: a JWT (HS256) whose claims carry the API key (iss), the
// validity window (exp, nbf) and the SHA-256 of the exact body bytes (sha256).
#pragma once
#include "core/errors.hpp"
#include "core/no_postgres.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace attendance::core {

struct ParsedToken {
    std::string signing_input;  // "header.payload" exactly as received
    std::string signature;      // raw signature bytes
    std::string alg;
    std::string iss;
    std::optional<int64_t> exp;
    std::optional<int64_t> nbf;
    std::optional<int64_t> iat;
    std::optional<std::string> sha256;
};

// attendance.token_leeway's default: the clock skew allowed on exp and nbf.
inline constexpr int64_t kDefaultTokenLeewayS = 60;

struct VerifyOptions {
    int64_t now_s = 0;
    int64_t leeway_s = kDefaultTokenLeewayS;
    bool check_expiry = true;  // false only in replay mode for archived webhooks
};

// Strips an optional "Bearer " prefix and surrounding blanks; empty when no token.
std::string_view bare_token(std::string_view authorization);

// Splits and decodes the token without trusting it. Throws Error(28000) when the
// token is malformed or uses another algorithm than HS256.
ParsedToken parse_token(std::string_view token);

// Checks, in this order, the signature (constant time), the body hash (constant time),
// that exp is present, and (unless options.check_expiry is false) the validity window
// exp/nbf against options.now_s with the leeway. Throws Error(28000) with the precise
// reason; returns normally when the token is good.
void verify_token(const ParsedToken& token, std::string_view body, std::string_view secret,
                  const VerifyOptions& options);

// The body hash alone: the sha256 claim is present and is the body's (constant time).
void check_body_hash(const ParsedToken& token, std::string_view body);
// exp is present (the validity window needs it, even when it is not checked).
void check_has_exp(const ParsedToken& token);

// The validity window alone, at time `at_s` ("now", or in replay mode the webhook's
// own createdAt, so a token that had expired when it was sent is still rejected).
void check_token_window(const ParsedToken& token, int64_t at_s, int64_t leeway_s, const char* what);

// The same test without an error: true when exp/nbf admit `at_s` (exp must be present).
bool token_window_holds(const ParsedToken& token, int64_t at_s, int64_t leeway_s);

// The rejections whose messages both verification and the receiver's precheck give.
Error missing_token_error();                      // no token at all
Error unknown_key_error(const std::string& iss);  // iss names no active key
// At most 80 bytes of an attacker-chosen string in a message, cut at a UTF-8 boundary
// (the message is stored as text: it must stay valid UTF-8).
std::string clip_for_message(const std::string& s);

// What a receiver can judge without the secret, before it spends a database call
// (docs/proxy.md, "Rejected before the database"): a token is present (unless unsigned
// webhooks are accepted), well-formed HS256 with an iss, has exp, is valid now (unless
// the window is not checked), names a known key (when the names are known), and its
// sha256 claim is the body's. Each rule and message is the one verification applies;
// only the signature (HMAC) needs the secret and is left to verification.
enum class Rejection { None, MissingToken, MalformedToken, TokenWindow, UnknownKey, BodyHash };

struct PrecheckOptions {
    int64_t now_s = 0;
    int64_t leeway_s = kDefaultTokenLeewayS;
    bool check_window = true;     // false in replay mode (the webhook's createdAt decides)
    bool allow_unsigned = false;  // development mode
    // Whether an API key name is active; empty when the names are not known, and then
    // nothing is said about iss.
    std::function<bool(std::string_view)> key_known;
};

struct Precheck {
    Rejection rejection = Rejection::None;
    std::string message;  // "webhook rejected: ..." (SQLSTATE 28000), as verification says it
};

Precheck precheck_token(const std::optional<std::string_view>& authorization, std::string_view body,
                        const PrecheckOptions& options);

// The metric label of a rejection: missing_token, malformed_token, token_window,
// unknown_key, body_hash ("" for None).
const char* rejection_name(Rejection r);

// A token LiveKit would send for this body: HS256, iss, nbf/iat = now, exp = now + ttl.
std::string sign_token(std::string_view body, std::string_view api_key, std::string_view secret,
                       int64_t now_s, int64_t ttl_s = 600);

// Helpers shared with tests.
std::string base64_encode(std::string_view bytes);     // standard, padded
std::string base64url_encode(std::string_view bytes);  // unpadded
std::optional<std::string> base64url_decode(std::string_view text);
std::string sha256_base64(std::string_view bytes);
std::string hmac_sha256(std::string_view key, std::string_view data);
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace attendance::core
