#include "core/calc.hpp"

#include "core/timefmt.hpp"

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <utility>

namespace attendance::core {

namespace {

// 128-bit intermediate for the exact threshold comparisons (presence_ms * 10000 cannot
// overflow it). __extension__ keeps -Wpedantic quiet about the non-ISO type.
__extension__ typedef __int128 i128;

constexpr int64_t kFullBp = 10000;  // 100.00 %
constexpr int64_t kMsPerMinute = 60 * 1000;

void validate_window(const SessionWindow& w) {
    if (w.end_ms <= w.start_ms) {
        throw std::invalid_argument("attendance window end must be after its start");
    }
    int64_t len = 0;
    if (__builtin_sub_overflow(w.end_ms, w.start_ms, &len)) {
        throw std::invalid_argument("attendance window length overflows int64");
    }
}

void validate_bp(int64_t bp, const char* what) {
    if (bp < 0 || bp > kFullBp) {
        throw std::invalid_argument(std::string("policy ") + what +
                                    " must be between 0 and 10000 (hundredths of a percent)");
    }
}

void validate_numbers(const PolicyNumbers& n) {
    validate_bp(n.absent_below_bp, "absent_below_bp");
    validate_bp(n.partial_below_bp, "partial_below_bp");
    validate_bp(n.late_max_bp, "late_max_bp");
    if (n.late_after_ms < 0) {
        throw std::invalid_argument("policy late_after_ms must not be negative");
    }
    if (n.merge_gap_ms < 0) {
        throw std::invalid_argument("policy merge_gap_ms must not be negative");
    }
    if (n.reconnect_grace_ms < 0) {
        throw std::invalid_argument("policy reconnect_grace_ms must not be negative");
    }
}

void validate_person(const PersonInput& p) {
    if (p.override_status && p.override_status->empty()) {
        throw std::invalid_argument("override status must not be empty");
    }
}

// "pct < bp" exactly: presence_ms * 10000 < bp * window_ms.
bool pct_below(int64_t presence_ms, int64_t window_ms, int64_t bp) {
    return static_cast<i128>(presence_ms) * kFullBp < static_cast<i128>(bp) * window_ms;
}

// "pct <= bp" exactly: presence_ms * 10000 <= bp * window_ms.
bool pct_at_most(int64_t presence_ms, int64_t window_ms, int64_t bp) {
    return static_cast<i128>(presence_ms) * kFullBp <= static_cast<i128>(bp) * window_ms;
}

// first_presence_ms > start_ms + late_after_ms, without overflow.
bool is_late_start(int64_t first_presence_ms, int64_t start_ms, int64_t late_after_ms) {
    return static_cast<i128>(first_presence_ms) - start_ms > late_after_ms;
}

// round_half_up(presence_ms * 10000 / window_ms), capped at 10000. window_ms > 0.
int64_t percentage_hundredths(int64_t presence_ms, int64_t window_ms) {
    if (presence_ms <= 0) {
        return 0;
    }
    const i128 num = static_cast<i128>(presence_ms) * kFullBp * 2 + window_ms;
    const i128 den = static_cast<i128>(window_ms) * 2;
    const i128 q = num / den;
    return q >= kFullBp ? kFullBp : static_cast<int64_t>(q);
}

struct Decision {
    std::string status;
    std::string rule;
};

Decision decide(const SessionWindow& w, const PolicyNumbers& n, const PersonInput& p,
                int64_t presence_ms, int64_t window_ms,
                const std::optional<int64_t>& first_presence_ms) {
    if (p.override_status) {
        return {*p.override_status, kRuleOverride};
    }
    if (presence_ms == 0) {
        return {kStatusAbsent, kRuleNoPresence};
    }
    if (pct_below(presence_ms, window_ms, n.absent_below_bp)) {
        return {kStatusAbsent, kRuleBelowAbsent};
    }
    if (pct_below(presence_ms, window_ms, n.partial_below_bp)) {
        return {kStatusPartial, kRuleBelowPartial};
    }
    if (first_presence_ms && is_late_start(*first_presence_ms, w.start_ms, n.late_after_ms) &&
        pct_at_most(presence_ms, window_ms, n.late_max_bp)) {
        return {kStatusLate, kRuleLate};
    }
    return {kStatusPresent, kRulePresent};
}

// Why a connection does not count, or nullptr when it counts.
const char* ignored_reason(const Connection& c) {
    if (c.aborted) {
        return "aborted";
    }
    if (!c.join_ms) {
        return "no_join";
    }
    if (c.leave_ms && *c.leave_ms < *c.join_ms) {
        return "leave_before_join";
    }
    return nullptr;
}

const char* effective_end_source(const SessionWindow& w) {
    const char* source = "scheduled_end";
    int64_t end = w.end_ms;
    if (w.room_finished_ms && *w.room_finished_ms < end) {
        end = *w.room_finished_ms;
        source = "room_finished";
    }
    if (w.as_of_ms < end) {
        source = "as_of";
    }
    return source;
}

nlohmann::json ts_or_null(const std::optional<int64_t>& ms) {
    return ms ? nlohmann::json(format_timestamp_ms(*ms)) : nlohmann::json(nullptr);
}

nlohmann::json ms_or_null(const std::optional<int64_t>& ms) {
    return ms ? nlohmann::json(*ms) : nlohmann::json(nullptr);
}

std::string seconds_string(int64_t ms) {
    const bool neg = ms < 0;
    const uint64_t mag = neg ? 0 - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%llu.%03llu", neg ? "-" : "",
                  static_cast<unsigned long long>(mag / 1000),
                  static_cast<unsigned long long>(mag % 1000));
    return buf;
}

nlohmann::json interval_json(const Interval& iv) {
    return {{"start", format_timestamp_ms(iv.start_ms)},
            {"start_ms", iv.start_ms},
            {"end", format_timestamp_ms(iv.end_ms)},
            {"end_ms", iv.end_ms},
            {"ms", total_ms({iv})}};
}

nlohmann::json intervals_json(const std::vector<Interval>& ivs) {
    nlohmann::json out = nlohmann::json::array();
    for (const Interval& iv : ivs) {
        out.push_back(interval_json(iv));
    }
    return out;
}

std::string i128_string(i128 v) {
    if (v == 0) {
        return "0";
    }
    const bool neg = v < 0;
    std::string s;
    while (v != 0) {
        const int digit = static_cast<int>(v % 10);
        s.push_back(static_cast<char>('0' + (neg ? -digit : digit)));
        v /= 10;
    }
    if (neg) {
        s.push_back('-');
    }
    std::reverse(s.begin(), s.end());
    return s;
}

nlohmann::json numbers_json(const PolicyNumbers& n) {
    return {{"absent_below_bp", n.absent_below_bp},
            {"absent_below", format_percentage(n.absent_below_bp)},
            {"partial_below_bp", n.partial_below_bp},
            {"partial_below", format_percentage(n.partial_below_bp)},
            {"late_after_ms", n.late_after_ms},
            {"late_max_bp", n.late_max_bp},
            {"late_max", format_percentage(n.late_max_bp)},
            {"merge_gap_ms", n.merge_gap_ms},
            {"reconnect_grace_ms", n.reconnect_grace_ms}};
}

// The gaps of `clipped` (a sorted union inside the window) that follow the real leave of a
// counted connection with a network-type reason; bridged when shorter than the grace.
std::vector<BridgedGap> reconnect_gaps(const std::vector<Interval>& clipped,
                                       const PersonInput& person, int64_t grace_ms) {
    std::vector<BridgedGap> out;
    for (size_t i = 1; i < clipped.size(); ++i) {
        const Interval gap{clipped[i - 1].end_ms, clipped[i].start_ms};
        for (const Connection& c : person.connections) {
            if (ignored_reason(c) == nullptr && c.leave_ms && *c.leave_ms == gap.start_ms &&
                !c.synthetic_leave && bridges_reconnect(c.disconnect_reason)) {
                out.push_back({gap, gap.end_ms - gap.start_ms < grace_ms, c.disconnect_reason,
                               c.sid, c.room});
                break;
            }
        }
    }
    return out;
}

}  // namespace

bool bridges_reconnect(const std::string& reason) {
    static const char* const kNetwork[] = {"SIGNAL_CLOSE",
                                           "CONNECTION_TIMEOUT",
                                           "MIGRATION",
                                           "MEDIA_FAILURE",
                                           "STATE_MISMATCH",
                                           "SERVER_SHUTDOWN",
                                           "9",
                                           "14",
                                           "8",
                                           "15",
                                           "6",
                                           "3"};
    for (const char* name : kNetwork) {
        if (reason == name) {
            return true;
        }
    }
    return false;
}

const PolicyNumbers& Policy::for_role(const std::string& role) const {
    const auto it = by_role.find(role);
    return it != by_role.end() ? it->second : numbers;
}

int64_t effective_end_ms(const SessionWindow& window) {
    int64_t end = window.end_ms;
    if (window.room_finished_ms) {
        end = std::min(end, *window.room_finished_ms);
    }
    return std::min(end, window.as_of_ms);
}

PersonResult calculate_person(const SessionWindow& window, const Policy& policy,
                              const PersonInput& person) {
    validate_window(window);
    const PolicyNumbers& n = policy.for_role(person.role);
    validate_numbers(n);
    validate_person(person);

    const int64_t eff_end = effective_end_ms(window);
    PersonResult r;
    r.window_ms = window.end_ms - window.start_ms;

    std::optional<int64_t> last_leave;
    for (const Connection& c : person.connections) {
        if (ignored_reason(c) != nullptr) {
            continue;
        }
        const int64_t join = *c.join_ms;
        r.first_join_ms = r.first_join_ms ? std::min(*r.first_join_ms, join) : join;
        int64_t end = eff_end;
        if (c.leave_ms) {
            end = *c.leave_ms;
            last_leave = last_leave ? std::max(*last_leave, end) : end;
        } else {
            ++r.open_connections;
        }
        if (end > join) {
            r.counted.push_back({join, end});
        }
    }
    if (r.open_connections == 0) {
        r.last_leave_ms = last_leave;
    }
    std::sort(r.counted.begin(), r.counted.end(), [](const Interval& a, const Interval& b) {
        return a.start_ms != b.start_ms ? a.start_ms < b.start_ms : a.end_ms < b.end_ms;
    });

    const std::vector<Interval> clipped =
        clip(union_of(r.counted), Interval{window.start_ms, window.end_ms});
    r.reconnects = reconnect_gaps(clipped, person, n.reconnect_grace_ms);
    std::vector<Interval> bridged = clipped;
    for (const BridgedGap& g : r.reconnects) {
        if (g.bridged) {
            bridged.push_back(g.gap);
        }
    }
    r.presence = merge_gaps(union_of(bridged), n.merge_gap_ms);
    r.presence_ms = total_ms(r.presence);
    r.percentage_hundredths = percentage_hundredths(r.presence_ms, r.window_ms);
    if (!r.presence.empty()) {
        r.first_presence_ms = r.presence.front().start_ms;
    }
    r.total_duration_minutes = round_minutes(r.presence_ms);

    Decision d = decide(window, n, person, r.presence_ms, r.window_ms, r.first_presence_ms);
    r.status = std::move(d.status);
    r.rule = std::move(d.rule);
    return r;
}

nlohmann::json explain(const SessionWindow& window, const Policy& policy, const PersonInput& person,
                       const PersonResult& result) {
    validate_window(window);
    const PolicyNumbers& n = policy.for_role(person.role);
    validate_numbers(n);
    validate_person(person);

    const Interval w{window.start_ms, window.end_ms};
    const int64_t eff_end = effective_end_ms(window);
    const char* eff_source = effective_end_source(window);

    nlohmann::json j;
    j["user_key"] = person.user_key;
    j["role"] = person.role;
    j["status"] = result.status;
    j["rule"] = result.rule;
    j["override_status"] =
        person.override_status ? nlohmann::json(*person.override_status) : nlohmann::json(nullptr);

    const bool role_specific = policy.by_role.find(person.role) != policy.by_role.end();
    j["policy"] = {{"name", policy.name},
                   {"numbers_source", role_specific ? "role:" + person.role : "default"},
                   {"numbers", numbers_json(n)}};

    j["window"] = {{"start", format_timestamp_ms(window.start_ms)},
                   {"start_ms", window.start_ms},
                   {"end", format_timestamp_ms(window.end_ms)},
                   {"end_ms", window.end_ms},
                   {"window_ms", result.window_ms},
                   {"window_seconds", seconds_string(result.window_ms)},
                   {"room_finished", ts_or_null(window.room_finished_ms)},
                   {"room_finished_ms", ms_or_null(window.room_finished_ms)},
                   {"as_of", format_timestamp_ms(window.as_of_ms)},
                   {"as_of_ms", window.as_of_ms},
                   {"effective_end", format_timestamp_ms(eff_end)},
                   {"effective_end_ms", eff_end},
                   {"effective_end_source", eff_source}};

    nlohmann::json conns = nlohmann::json::array();
    for (const Connection& c : person.connections) {
        nlohmann::json cj;
        cj["sid"] = c.sid;
        cj["room"] = c.room;
        cj["disconnect_reason"] = c.disconnect_reason.empty() ? nlohmann::json(nullptr)
                                                              : nlohmann::json(c.disconnect_reason);
        cj["join"] = ts_or_null(c.join_ms);
        cj["join_ms"] = ms_or_null(c.join_ms);
        cj["leave"] = ts_or_null(c.leave_ms);
        cj["leave_ms"] = ms_or_null(c.leave_ms);
        cj["aborted"] = c.aborted;
        cj["synthetic_leave"] = c.synthetic_leave;
        const char* reason = ignored_reason(c);
        cj["counted"] = reason == nullptr;
        cj["ignored_reason"] = reason ? nlohmann::json(reason) : nlohmann::json(nullptr);
        cj["open"] = reason == nullptr && !c.leave_ms;
        cj["effective"] = nullptr;
        cj["end_source"] = nullptr;
        cj["clipped"] = nullptr;
        cj["clipped_ms"] = 0;
        if (reason == nullptr) {
            const int64_t end = c.leave_ms ? *c.leave_ms : eff_end;
            cj["end_source"] =
                c.leave_ms ? (c.synthetic_leave ? "synthetic_leave" : "leave") : eff_source;
            const Interval eff{*c.join_ms, end};
            if (eff.end_ms > eff.start_ms) {
                cj["effective"] = interval_json(eff);
                const std::vector<Interval> cl = clip({eff}, w);
                if (!cl.empty()) {
                    cj["clipped"] = interval_json(cl.front());
                    cj["clipped_ms"] = total_ms(cl);
                }
            }
        }
        conns.push_back(std::move(cj));
    }
    j["connections"] = std::move(conns);
    j["open_connections"] = result.open_connections;

    // Recompute the intermediate steps from the counted intervals for the trace.
    const std::vector<Interval> unioned = union_of(result.counted);
    const std::vector<Interval> clipped = clip(unioned, w);
    std::vector<Interval> gaps;
    for (size_t i = 1; i < clipped.size(); ++i) {
        const Interval gap{clipped[i - 1].end_ms, clipped[i].start_ms};
        const bool reconnect =
            std::any_of(result.reconnects.begin(), result.reconnects.end(),
                        [&](const BridgedGap& g) { return g.bridged && g.gap == gap; });
        if (reconnect) {
            continue;  // listed under "reconnects"
        }
        // A gap is filled when the final presence covers it.
        for (const Interval& p : result.presence) {
            if (p.start_ms <= gap.start_ms && gap.end_ms <= p.end_ms) {
                gaps.push_back(gap);
                break;
            }
        }
    }
    j["union"] = intervals_json(unioned);
    j["union_ms"] = total_ms(unioned);
    j["clipped_union"] = intervals_json(clipped);
    j["clipped_union_ms"] = total_ms(clipped);
    j["merge_gap"] = {{"max_gap_ms", n.merge_gap_ms},
                      {"enabled", n.merge_gap_ms > 0},
                      {"gaps_filled", intervals_json(gaps)},
                      {"filled_ms", total_ms(gaps)}};
    nlohmann::json reconnects = nlohmann::json::array();
    for (const BridgedGap& g : result.reconnects) {
        nlohmann::json gj = interval_json(g.gap);
        gj["bridged"] = g.bridged;
        gj["reason"] = g.reason;
        gj["participant_sid"] = g.sid;
        gj["room"] = g.room;
        reconnects.push_back(std::move(gj));
    }
    // The bridged gaps alone, as the presence counts them; reconnect_grace lists every gap
    // after a network-type disconnect, bridged or not.
    nlohmann::json bridged_only = nlohmann::json::array();
    for (const nlohmann::json& g : reconnects) {
        if (g["bridged"] == true) {
            bridged_only.push_back(g);
        }
    }
    j["reconnects"] = std::move(bridged_only);
    j["reconnect_grace"] = {{"grace_ms", n.reconnect_grace_ms},
                            {"enabled", n.reconnect_grace_ms > 0},
                            {"gaps", std::move(reconnects)},
                            {"bridged_ms", [&] {
                                 int64_t t = 0;
                                 for (const BridgedGap& g : result.reconnects) {
                                     if (g.bridged) {
                                         t += g.gap.end_ms - g.gap.start_ms;
                                     }
                                 }
                                 return t;
                             }()}};
    j["presence"] = intervals_json(result.presence);
    j["presence_ms"] = result.presence_ms;
    j["presence_seconds"] = seconds_string(result.presence_ms);
    j["window_ms"] = result.window_ms;
    j["percentage"] = format_percentage(result.percentage_hundredths);
    j["percentage_hundredths"] = result.percentage_hundredths;
    j["total_duration_minutes"] = result.total_duration_minutes;
    j["first_presence"] = ts_or_null(result.first_presence_ms);
    j["first_presence_ms"] = ms_or_null(result.first_presence_ms);
    j["first_join"] = ts_or_null(result.first_join_ms);
    j["first_join_ms"] = ms_or_null(result.first_join_ms);
    j["last_leave"] = ts_or_null(result.last_leave_ms);
    j["last_leave_ms"] = ms_or_null(result.last_leave_ms);

    // Every rule in order with its exact integer test; the first one that holds is hit.
    const int64_t p = result.presence_ms;
    const int64_t wm = result.window_ms;
    const i128 lhs = static_cast<i128>(p) * kFullBp;
    auto cmp = [&](const char* rule, const char* test, int64_t bp, bool holds) {
        return nlohmann::json{{"rule", rule},
                              {"test", test},
                              {"presence_ms_x10000", i128_string(lhs)},
                              {"threshold_bp_x_window_ms", i128_string(static_cast<i128>(bp) * wm)},
                              {"holds", holds},
                              {"hit", result.rule == rule}};
    };
    nlohmann::json checks = nlohmann::json::array();
    checks.push_back({{"rule", kRuleOverride},
                      {"test", "override_status is set"},
                      {"holds", person.override_status.has_value()},
                      {"hit", result.rule == kRuleOverride}});
    checks.push_back({{"rule", kRuleNoPresence},
                      {"test", "presence_ms == 0"},
                      {"holds", p == 0},
                      {"hit", result.rule == kRuleNoPresence}});
    checks.push_back(cmp(kRuleBelowAbsent, "presence_ms*10000 < absent_below_bp*window_ms",
                         n.absent_below_bp, pct_below(p, wm, n.absent_below_bp)));
    checks.push_back(cmp(kRuleBelowPartial, "presence_ms*10000 < partial_below_bp*window_ms",
                         n.partial_below_bp, pct_below(p, wm, n.partial_below_bp)));
    nlohmann::json late =
        cmp(kRuleLate,
            "first_presence_ms > start_ms + late_after_ms and "
            "presence_ms*10000 <= late_max_bp*window_ms",
            n.late_max_bp,
            result.first_presence_ms &&
                is_late_start(*result.first_presence_ms, window.start_ms, n.late_after_ms) &&
                pct_at_most(p, wm, n.late_max_bp));
    const i128 late_edge = static_cast<i128>(window.start_ms) + n.late_after_ms;
    if (late_edge <= INT64_MAX) {
        late["late_after"] = format_timestamp_ms(static_cast<int64_t>(late_edge));
    }
    late["late_after_ms"] = i128_string(late_edge);
    late["first_presence_late"] =
        result.first_presence_ms.has_value() &&
        is_late_start(*result.first_presence_ms, window.start_ms, n.late_after_ms);
    late["at_most_late_max"] = pct_at_most(p, wm, n.late_max_bp);
    checks.push_back(std::move(late));
    checks.push_back({{"rule", kRulePresent},
                      {"test", "otherwise"},
                      {"holds", true},
                      {"hit", result.rule == kRulePresent}});
    j["rules"] = std::move(checks);
    return j;
}

int64_t round_minutes(int64_t ms) {
    const int64_t q = ms / kMsPerMinute;
    const int64_t r = ms % kMsPerMinute;  // has the sign of ms
    if (r >= kMsPerMinute / 2) return q + 1;
    if (r <= -kMsPerMinute / 2) return q - 1;
    return q;
}

std::string format_percentage(int64_t hundredths) {
    const bool neg = hundredths < 0;
    const uint64_t mag =
        neg ? 0 - static_cast<uint64_t>(hundredths) : static_cast<uint64_t>(hundredths);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%llu.%02llu", neg ? "-" : "",
                  static_cast<unsigned long long>(mag / 100),
                  static_cast<unsigned long long>(mag % 100));
    return buf;
}

std::optional<std::string> prevailing_cause(const std::optional<std::string>& pending,
                                            const std::optional<std::string>& incoming) {
    if (!incoming) return pending;
    if (!pending || *incoming == kLateWebhookCause) return incoming;
    return pending;
}

}  // namespace attendance::core
