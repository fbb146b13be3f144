#include "proxy/sources.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace attendance::proxy {

namespace {

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::optional<Address> parse_address(std::string_view text) {
    const std::string s(trim(text));
    Address a{};
    in_addr v4{};
    if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
        a[10] = 0xff;
        a[11] = 0xff;
        std::memcpy(a.data() + 12, &v4, 4);
        return a;
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
        std::memcpy(a.data(), &v6, 16);
        return a;
    }
    return std::nullopt;
}

bool is_ipv4(const Address& a) {
    static constexpr std::array<std::uint8_t, 12> kMapped = {0, 0, 0, 0, 0,    0,
                                                             0, 0, 0, 0, 0xff, 0xff};
    return std::equal(kMapped.begin(), kMapped.end(), a.begin());
}

std::string source_of(const Address& a) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (is_ipv4(a)) {
        inet_ntop(AF_INET, a.data() + 12, buf, sizeof buf);
        return buf;
    }
    Address prefix{};
    std::copy(a.begin(), a.begin() + 8, prefix.begin());
    inet_ntop(AF_INET6, prefix.data(), buf, sizeof buf);
    return std::string(buf) + "/64";
}

std::optional<std::vector<Cidr>> parse_cidrs(std::string_view list, std::string& error) {
    std::vector<Cidr> out;
    while (!trim(list).empty()) {
        const auto comma = list.find(',');
        const std::string_view item = trim(list.substr(0, comma));
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
        const auto slash = item.find('/');
        const auto address = parse_address(item.substr(0, slash));
        if (!address) {
            error = "'" + std::string(item) + "' is not an IP address or CIDR block";
            return std::nullopt;
        }
        Cidr block;
        block.prefix = *address;
        const int width = is_ipv4(*address) ? 32 : 128;
        int bits = width;
        if (slash != std::string_view::npos) {
            const std::string_view digits = item.substr(slash + 1);
            bits = digits.empty() || digits.size() > 3 ? -1 : 0;
            for (char c : digits)
                bits = c >= '0' && c <= '9' && bits >= 0 ? bits * 10 + (c - '0') : -1;
            if (bits < 0 || bits > width) {
                error = "'" + std::string(item) + "': the prefix length must be 0 to " +
                        std::to_string(width);
                return std::nullopt;
            }
        }
        block.bits = bits + (128 - width);
        out.push_back(block);
    }
    return out;
}

bool contains(const std::vector<Cidr>& blocks, const Address& a) {
    return std::any_of(blocks.begin(), blocks.end(), [&](const Cidr& c) {
        int bits = c.bits;
        for (std::size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
            const auto mask = static_cast<std::uint8_t>(bits >= 8 ? 0xff : 0xff << (8 - bits));
            if ((a[i] & mask) != (c.prefix[i] & mask)) return false;
        }
        return true;
    });
}

double RejectBudget::level(Bucket& b, Clock::time_point now) const {
    const double elapsed = std::chrono::duration<double>(now - b.at).count();
    if (elapsed > 0) {
        b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
        b.at = now;
    }
    return b.tokens;
}

bool RejectBudget::over(const std::string& source, Clock::time_point now) {
    if (!enabled()) return false;
    std::lock_guard lock(mu_);
    auto it = buckets_.find(source);
    return it != buckets_.end() && level(it->second, now) < 1.0;
}

int RejectBudget::retry_after_s(const std::string& source, Clock::time_point now) {
    if (!enabled()) return 1;
    std::lock_guard lock(mu_);
    auto it = buckets_.find(source);
    if (it == buckets_.end()) return 1;
    const double missing = 1.0 - level(it->second, now);
    return std::max(1, static_cast<int>(std::ceil(missing / rate_)));
}

void RejectBudget::charge(const std::string& source, Clock::time_point now) {
    if (!enabled()) return;
    std::lock_guard lock(mu_);
    auto it = buckets_.find(source);
    if (it == buckets_.end()) {
        if (buckets_.size() >= kMaxTracked) return;
        it = buckets_.emplace(source, Bucket{burst_, now}).first;
    }
    Bucket& b = it->second;
    b.tokens = std::max(0.0, level(b, now) - 1.0);
}

void RejectBudget::sweep(Clock::time_point now) {
    std::lock_guard lock(mu_);
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        if (level(it->second, now) >= burst_) {
            it = buckets_.erase(it);
        } else {
            ++it;
        }
    }
}

std::size_t RejectBudget::tracked() const {
    std::lock_guard lock(mu_);
    return buckets_.size();
}

}  // namespace attendance::proxy
