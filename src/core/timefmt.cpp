#include "core/timefmt.hpp"

#include <cstdio>

namespace attendance::core {

namespace {

constexpr int64_t kMsPerDay = 24 * 60 * 60 * 1000;
constexpr int64_t kSecondsPerDay = 24 * 60 * 60;

// Quotient and remainder rounded towards minus infinity (b > 0).
int64_t floor_div(int64_t a, int64_t b) {
    const int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}
int64_t floor_mod(int64_t a, int64_t b) {
    const int64_t r = a % b;
    return r < 0 ? r + b : r;
}

// The milliseconds into its UTC day of a Unix time shifted by an offset, in [0, kMsPerDay).
int64_t ms_of_day(int64_t ms_since_epoch, int64_t utc_offset_s) {
    return (floor_mod(ms_since_epoch, kMsPerDay) + floor_mod(utc_offset_s, kSecondsPerDay) * 1000) %
           kMsPerDay;
}

}  // namespace

CivilTime civil_from_unix_ms(int64_t ms_since_epoch) {
    CivilTime c;
    const int64_t days = floor_div(ms_since_epoch, kMsPerDay);
    int64_t rem = floor_mod(ms_since_epoch, kMsPerDay);  // no days * kMsPerDay: may overflow
    c.millisecond = static_cast<int>(rem % 1000);
    rem /= 1000;
    c.second = static_cast<int>(rem % 60);
    rem /= 60;
    c.minute = static_cast<int>(rem % 60);
    c.hour = static_cast<int>(rem / 60);

    // civil_from_days (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"),
    // proleptic Gregorian: days since 1970-01-01 to year, month, day.
    const int64_t z = days + 719468;
    const int64_t era = floor_div(z, 146097);
    const int64_t doe = z - era * 146097;                                       // [0, 146096]
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                // [0, 365]
    const int64_t mp = (5 * doy + 2) / 153;                                     // [0, 11]
    c.day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
    c.month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
    c.year = yoe + era * 400 + (c.month <= 2 ? 1 : 0);
    return c;
}

std::string format_timestamp_ms(int64_t ms_since_epoch) {
    const CivilTime c = civil_from_unix_ms(ms_since_epoch);
    char buf[160];  // room for any int64 and int, as the compiler counts
    std::snprintf(buf, sizeof buf, "%s%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", c.year < 0 ? "-" : "",
                  static_cast<long long>(c.year < 0 ? -c.year : c.year), c.month, c.day, c.hour,
                  c.minute, c.second, c.millisecond);
    return buf;
}

std::string format_clock_hm(int64_t ms_since_epoch, int64_t utc_offset_s) {
    const int64_t minutes = ms_of_day(ms_since_epoch, utc_offset_s) / 60000;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%02d:%02d", static_cast<int>(minutes / 60),
                  static_cast<int>(minutes % 60));
    return buf;
}

std::string format_clock_hms(int64_t ms_since_epoch, int64_t utc_offset_s) {
    const int64_t seconds = ms_of_day(ms_since_epoch, utc_offset_s) / 1000;
    char buf[48];
    std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", static_cast<int>(seconds / 3600),
                  static_cast<int>(seconds / 60 % 60), static_cast<int>(seconds % 60));
    return buf;
}

}  // namespace attendance::core
