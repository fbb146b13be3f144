#include "core/token.hpp"

#include "core/errors.hpp"

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <array>
#include <cctype>
#include <limits>

namespace attendance::core {

namespace {

constexpr std::string_view kB64 =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string encode(std::string_view bytes, bool url) {
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    auto ch = [&](uint32_t v) {
        char c = kB64[v & 63];
        if (url && c == '+') c = '-';
        if (url && c == '/') c = '_';
        out.push_back(c);
    };
    for (; i + 2 < bytes.size(); i += 3) {
        uint32_t v =
            (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
        ch(v >> 18);
        ch(v >> 12);
        ch(v >> 6);
        ch(v);
    }
    size_t rest = bytes.size() - i;
    if (rest == 1) {
        uint32_t v = uint8_t(bytes[i]) << 16;
        ch(v >> 18);
        ch(v >> 12);
        if (!url) out += "==";
    } else if (rest == 2) {
        uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
        ch(v >> 18);
        ch(v >> 12);
        ch(v >> 6);
        if (!url) out += "=";
    }
    return out;
}

int decode_char(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

std::optional<int64_t> claim_int(const nlohmann::json& claims, const char* name) {
    auto it = claims.find(name);
    if (it == claims.end() || it->is_null()) return std::nullopt;
    // nlohmann reports unsigned numbers as integers too: check the unsigned form first.
    if (it->is_number_unsigned()) {
        auto v = it->get<uint64_t>();
        if (v > uint64_t(std::numeric_limits<int64_t>::max()))
            throw auth_error(std::string("claim '") + name + "' is out of range");
        return int64_t(v);
    }
    if (it->is_number_integer()) return it->get<int64_t>();
    if (it->is_number_float()) {
        double d = it->get<double>();
        if (!(d > -9.2e18 && d < 9.2e18))
            throw auth_error(std::string("claim '") + name + "' is out of range");
        return int64_t(d);
    }
    throw auth_error(std::string("claim '") + name + "' is not a number");
}

nlohmann::json decode_json_part(std::string_view part, const char* what) {
    auto raw = base64url_decode(part);
    if (!raw) throw auth_error(std::string("malformed token: ") + what + " is not base64url");
    auto parsed = nlohmann::json::parse(*raw, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_object())
        throw auth_error(std::string("malformed token: ") + what + " is not a JSON object");
    return parsed;
}

}  // namespace

std::string base64_encode(std::string_view bytes) { return encode(bytes, false); }
std::string base64url_encode(std::string_view bytes) { return encode(bytes, true); }

std::optional<std::string> base64url_decode(std::string_view text) {
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(text.size() * 3 / 4);
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
        int v = decode_char(c);
        if (v < 0) return std::nullopt;
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(char((acc >> bits) & 0xFF));
        }
    }
    return out;
}

std::string sha256_base64(std::string_view bytes) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest.data());
    return base64_encode(
        std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), int(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac.data(), &len))
        throw Error(sqlstate::kInternal, "HMAC-SHA256 failed in OpenSSL");
    return std::string(reinterpret_cast<const char*>(mac.data()), len);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    if (a.empty()) return true;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view bare_token(std::string_view authorization) {
    auto trim = [](std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() &&
               (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
            s.remove_suffix(1);
        return s;
    };
    authorization = trim(authorization);
    if (authorization.size() >= 6) {
        std::string prefix(authorization.substr(0, 6));
        for (auto& c : prefix) c = char(std::tolower(static_cast<unsigned char>(c)));
        if (prefix == "bearer" &&
            (authorization.size() == 6 || authorization[6] == ' ' || authorization[6] == '\t'))
            authorization = trim(authorization.substr(6));
    }
    return authorization;
}

ParsedToken parse_token(std::string_view token) {
    if (token.empty()) throw auth_error("missing token (no Authorization header)");
    auto dot1 = token.find('.');
    auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
    if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
        throw auth_error("malformed token: expected three dot-separated parts");
    ParsedToken t;
    auto header = decode_json_part(token.substr(0, dot1), "header");
    auto alg = header.find("alg");
    if (alg == header.end() || !alg->is_string())
        throw auth_error("malformed token: header has no 'alg'");
    t.alg = alg->get<std::string>();
    if (t.alg != "HS256")
        throw auth_error("unsupported token algorithm '" + t.alg + "' (only HS256 is accepted)");
    auto claims = decode_json_part(token.substr(dot1 + 1, dot2 - dot1 - 1), "payload");
    auto sig = base64url_decode(token.substr(dot2 + 1));
    if (!sig || sig->empty()) throw auth_error("malformed token: signature is not base64url");
    t.signature = std::move(*sig);
    t.signing_input = std::string(token.substr(0, dot2));
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || iss->get<std::string>().empty())
        throw auth_error("malformed token: no 'iss' claim (API key)");
    t.iss = iss->get<std::string>();
    t.exp = claim_int(claims, "exp");
    t.nbf = claim_int(claims, "nbf");
    t.iat = claim_int(claims, "iat");
    auto sha = claims.find("sha256");
    if (sha != claims.end() && !sha->is_null()) {
        if (!sha->is_string()) throw auth_error("malformed token: 'sha256' claim is not a string");
        t.sha256 = sha->get<std::string>();
    }
    return t;
}

void verify_token(const ParsedToken& token, std::string_view body, std::string_view secret,
                  const VerifyOptions& options) {
    // Integrity first (signature, then body hash), then the validity window.
    if (!constant_time_equal(hmac_sha256(secret, token.signing_input), token.signature))
        throw auth_error("bad signature for API key '" + token.iss + "'");
    check_body_hash(token, body);
    check_has_exp(token);
    if (options.check_expiry) check_token_window(token, options.now_s, options.leeway_s, "now");
}

void check_body_hash(const ParsedToken& token, std::string_view body) {
    if (!token.sha256) throw auth_error("token has no 'sha256' claim for the body");
    if (!constant_time_equal(sha256_base64(body), *token.sha256))
        throw auth_error("body hash mismatch (the body is not the one that was signed)");
}

void check_has_exp(const ParsedToken& token) {
    if (!token.exp) throw auth_error("token has no 'exp' claim");
}

bool token_window_holds(const ParsedToken& token, int64_t at_s, int64_t leeway_s) {
    if (!token.exp || at_s - leeway_s > *token.exp) return false;
    return !(token.nbf && *token.nbf > at_s + leeway_s);
}

void check_token_window(const ParsedToken& token, int64_t at_s, int64_t leeway_s,
                        const char* what) {
    check_has_exp(token);
    // Written so that no sum can overflow, whatever the claims say.
    if (at_s - leeway_s > *token.exp)
        throw auth_error("token expired at " + std::to_string(*token.exp) + " (" + what + " " +
                         std::to_string(at_s) + ", leeway " + std::to_string(leeway_s) + " s)");
    if (token.nbf && *token.nbf > at_s + leeway_s)  // at_s is a clock value: no overflow
        throw auth_error("token not yet valid (nbf " + std::to_string(*token.nbf) + ", " + what +
                         " " + std::to_string(at_s) + ", leeway " + std::to_string(leeway_s) +
                         " s)");
}

Error missing_token_error() {
    return auth_error(
        "missing token (no Authorization header); unsigned webhooks are accepted only when a "
        "superuser sets attendance.development_mode");
}

Error unknown_key_error(const std::string& iss) {
    return auth_error("unknown or retired API key '" + clip_for_message(iss) + "'");
}

std::string clip_for_message(const std::string& s) {
    if (s.size() <= 80) return s;
    size_t n = 80;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
    return s.substr(0, n) + "...";
}

Precheck precheck_token(const std::optional<std::string_view>& authorization, std::string_view body,
                        const PrecheckOptions& options) {
    const std::string_view token = authorization ? bare_token(*authorization) : std::string_view();
    if (token.empty()) {
        if (options.allow_unsigned) return {};
        return {Rejection::MissingToken, missing_token_error().what()};
    }
    Precheck out;
    // Each test throws as verification does; `as` names the kind of rejection.
    auto test = [&out](Rejection as, auto&& check) {
        if (out.rejection != Rejection::None) return;
        try {
            check();
        } catch (const Error& e) {
            out = {as, e.what()};
        }
    };
    ParsedToken parsed;
    test(Rejection::MalformedToken, [&] { parsed = parse_token(token); });
    // The cheap tests first; the body hash, whose cost grows with the body, last.
    test(Rejection::TokenWindow, [&] {
        check_has_exp(parsed);
        if (options.check_window)
            check_token_window(parsed, options.now_s, options.leeway_s, "now");
    });
    test(Rejection::UnknownKey, [&] {
        if (options.key_known && !options.key_known(parsed.iss))
            throw unknown_key_error(parsed.iss);
    });
    test(Rejection::BodyHash, [&] { check_body_hash(parsed, body); });
    return out;
}

const char* rejection_name(Rejection r) {
    switch (r) {
        case Rejection::None:
            return "";
        case Rejection::MissingToken:
            return "missing_token";
        case Rejection::MalformedToken:
            return "malformed_token";
        case Rejection::TokenWindow:
            return "token_window";
        case Rejection::UnknownKey:
            return "unknown_key";
        case Rejection::BodyHash:
            return "body_hash";
    }
    return "";
}

std::string sign_token(std::string_view body, std::string_view api_key, std::string_view secret,
                       int64_t now_s, int64_t ttl_s) {
    nlohmann::json header = {{"alg", "HS256"}, {"typ", "JWT"}};
    nlohmann::json claims = {{"iss", std::string(api_key)},
                             {"nbf", now_s},
                             {"iat", now_s},
                             {"exp", now_s + ttl_s},
                             {"sha256", sha256_base64(body)}};
    std::string payload;
    try {
        payload = claims.dump();
    } catch (const nlohmann::json::exception&) {  // only the key is text we did not make
        throw Error(sqlstate::kInvalidParameter, "the API key is not valid UTF-8");
    }
    std::string input = base64url_encode(header.dump()) + "." + base64url_encode(payload);
    return input + "." + base64url_encode(hmac_sha256(secret, input));
}

}  // namespace attendance::core
