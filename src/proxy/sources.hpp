// Where a request comes from, and what one source may cost (docs/proxy.md, "Hostile
// clients"): the source of a client address (an IPv4 address, or the /64 an IPv6
// address belongs to), the trusted sources (--trusted-sources), and the per-source
// budget of rejected requests (--reject-rate, --reject-burst). Pure and thread-safe:
// unit-tested without a server.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace attendance::proxy {

// An IP address as 16 bytes: IPv6, or IPv4 as its IPv4-mapped form (::ffff:a.b.c.d).
using Address = std::array<std::uint8_t, 16>;

// "192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"; nullopt when it is not an address.
std::optional<Address> parse_address(std::string_view text);
bool is_ipv4(const Address& a);

// What the per-source limits count: the IPv4 address itself ("192.0.2.7"), or the /64 of
// an IPv6 address ("2001:db8:1:2::/64"): one host commonly holds a whole /64.
std::string source_of(const Address& a);

struct Cidr {
    Address prefix{};
    int bits = 0;  // over the 16-byte form: an IPv4 /24 is 96 + 24
};

// A comma-separated list of addresses or CIDR blocks ("127.0.0.1, 10.0.0.0/8, ::1,
// fd00::/8"); blanks around items are ignored, "" is the empty list. nullopt and `error`
// set when an item is not one.
std::optional<std::vector<Cidr>> parse_cidrs(std::string_view list, std::string& error);
bool contains(const std::vector<Cidr>& blocks, const Address& a);

// Per source, a token bucket of rejected requests: it holds up to `burst` and refills at
// `rate` per second; each rejection takes one. A source whose bucket is empty is over
// its budget. rate 0 switches the budget off.
class RejectBudget {
  public:
    using Clock = std::chrono::steady_clock;

    RejectBudget(double rate, double burst) : rate_(rate), burst_(burst) {}

    bool enabled() const { return rate_ > 0; }
    // True when the source has no rejection left to spend now.
    bool over(const std::string& source, Clock::time_point now);
    // Seconds until the source has a rejection to spend again (at least 1).
    int retry_after_s(const std::string& source, Clock::time_point now);
    // One rejected request of the source.
    void charge(const std::string& source, Clock::time_point now);
    // Forgets the sources whose bucket is full again (they cost nothing to track).
    void sweep(Clock::time_point now);
    std::size_t tracked() const;

    // Sources tracked at most; past it a new source is not tracked (so never over budget)
    // until a sweep makes room. Bounds the memory an attack from many addresses takes.
    static constexpr std::size_t kMaxTracked = 100000;

  private:
    struct Bucket {
        double tokens = 0;
        Clock::time_point at;
    };
    double level(Bucket& b, Clock::time_point now) const;

    const double rate_;
    const double burst_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace attendance::proxy
