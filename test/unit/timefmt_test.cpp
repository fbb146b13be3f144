#include "core/timefmt.hpp"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <limits>
#include <random>
#include <string>

#include <gtest/gtest.h>

namespace attendance::core {
namespace {

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kSec = 1000;
constexpr int64_t kDay = 86400 * kSec;
constexpr int64_t kNov14 = 1763078400000;  // 2025-11-14T00:00:00Z

// 2025-11-14 hh:mm:ss.mmm Z in epoch milliseconds.
constexpr int64_t at(int64_t h, int64_t m, int64_t s = 0, int64_t ms = 0) {
    return kNov14 + ((h * 60 + m) * 60 + s) * kSec + ms;
}

// What the formatters replaced by the module printed (gmtime_r of the whole seconds): the
// reference for valid inputs, which must come out byte-identical.
std::string libc_timestamp(int64_t ms) {
    const std::time_t s = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&s, &tm);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(ms % 1000));
    return buf;
}
std::string libc_clock(int64_t ms, int64_t offset_s, bool seconds) {
    const std::time_t t = static_cast<std::time_t>(ms / 1000 + offset_s);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[48];
    if (seconds) {
        std::snprintf(buf, sizeof buf, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else {
        std::snprintf(buf, sizeof buf, "%02d:%02d", tm.tm_hour, tm.tm_min);
    }
    return buf;
}

TEST(TimeFormat, Timestamps) {
    EXPECT_EQ(format_timestamp_ms(at(14, 32, 14, 300)), "2025-11-14T14:32:14.300Z");
    EXPECT_EQ(format_timestamp_ms(1763130734300), "2025-11-14T14:32:14.300Z");
    EXPECT_EQ(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(1999), "1970-01-01T00:00:01.999Z");
}

TEST(TimeFormat, NegativeTimesRoundDown) {
    // The milliseconds of a time before 1970 count forward from the start of its second.
    EXPECT_EQ(format_timestamp_ms(-1), "1969-12-31T23:59:59.999Z");
    EXPECT_EQ(format_timestamp_ms(-999), "1969-12-31T23:59:59.001Z");
    EXPECT_EQ(format_timestamp_ms(-1000), "1969-12-31T23:59:59.000Z");
    EXPECT_EQ(format_timestamp_ms(-1001), "1969-12-31T23:59:58.999Z");
    EXPECT_EQ(format_timestamp_ms(-kDay), "1969-12-31T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-kDay - 1), "1969-12-30T23:59:59.999Z");
    EXPECT_EQ(format_timestamp_ms(-14182940000), "1969-07-20T20:17:40.000Z");
    EXPECT_EQ(format_timestamp_ms(-2208988800000), "1900-01-01T00:00:00.000Z");
}

TEST(TimeFormat, LeapYears) {
    EXPECT_EQ(format_timestamp_ms(951782400000), "2000-02-29T00:00:00.000Z");  // 400 divides
    EXPECT_EQ(format_timestamp_ms(951782400000 + kDay), "2000-03-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(1709251199999), "2024-02-29T23:59:59.999Z");
    EXPECT_EQ(format_timestamp_ms(1709251200000), "2024-03-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(1677628799999), "2023-02-28T23:59:59.999Z");  // not leap
    EXPECT_EQ(format_timestamp_ms(1677628800000), "2023-03-01T00:00:00.000Z");
    // 1900 and 2100: divisible by 100, not by 400, so no 29 February.
    EXPECT_EQ(format_timestamp_ms(-2203977600000), "1900-02-28T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-2203977600000 + kDay), "1900-03-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(4107456000000), "2100-02-28T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(4107456000000 + kDay), "2100-03-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-11670998400000), "1600-02-29T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-11670998400000 + kDay), "1600-03-01T00:00:00.000Z");
}

TEST(TimeFormat, YearsAtTheEdges) {
    EXPECT_EQ(format_timestamp_ms(253402300799999), "9999-12-31T23:59:59.999Z");
    EXPECT_EQ(format_timestamp_ms(253402300800000), "10000-01-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-62167219200000), "0000-01-01T00:00:00.000Z");
    EXPECT_EQ(format_timestamp_ms(-62167219200001), "-0001-12-31T23:59:59.999Z");
    // the whole int64 range, as java.time prints it (astronomical years)
    EXPECT_EQ(format_timestamp_ms(kMax), "292278994-08-17T07:12:55.807Z");
    EXPECT_EQ(format_timestamp_ms(kMin), "-292275055-05-16T16:47:04.192Z");
}

TEST(TimeFormat, CivilFields) {
    EXPECT_EQ(civil_from_unix_ms(at(14, 32, 14, 300)), (CivilTime{2025, 11, 14, 14, 32, 14, 300}));
    EXPECT_EQ(civil_from_unix_ms(0), (CivilTime{1970, 1, 1, 0, 0, 0, 0}));
    EXPECT_EQ(civil_from_unix_ms(-1), (CivilTime{1969, 12, 31, 23, 59, 59, 999}));
    EXPECT_EQ(civil_from_unix_ms(-62167219200001), (CivilTime{-1, 12, 31, 23, 59, 59, 999}));
}

// Random times from year 1 to 9999, and every day of the century turns 1899-1901 and
// 2099-2101, against libc's gmtime_r: the same calendar, and byte-identical texts where
// the replaced formatters were right (times from 1970; whole seconds before it).
void expect_as_gmtime(int64_t ms) {
    const int64_t whole = ms - ((ms % 1000) + 1000) % 1000;  // rounded down to the second
    const std::string ours = format_timestamp_ms(ms);
    if (ms >= 0) {
        ASSERT_EQ(ours, libc_timestamp(ms)) << ms;
    } else {
        ASSERT_EQ(format_timestamp_ms(whole), libc_timestamp(whole)) << whole;
        ASSERT_EQ(ours.substr(0, 20), libc_timestamp(whole).substr(0, 20)) << ms;
    }
}

TEST(TimeFormat, AgreesWithGmtime) {
    std::mt19937_64 rng(22);
    const int64_t first = -62135596800000;  // 0001-01-01
    const int64_t last = 253402300799999;   // 9999-12-31T23:59:59.999
    for (int i = 0; i < 200000; ++i) {
        ASSERT_NO_FATAL_FAILURE(expect_as_gmtime(
            first + static_cast<int64_t>(rng() % static_cast<uint64_t>(last - first + 1))));
    }
    for (const int64_t from : {-2240524800000, 4070908800000}) {  // 1899-01-01, 2099-01-01
        for (int64_t day = from; day < from + 3 * 366 * kDay; day += kDay) {
            ASSERT_NO_FATAL_FAILURE(expect_as_gmtime(day));
            ASSERT_NO_FATAL_FAILURE(expect_as_gmtime(day + kDay - 1));
        }
    }
}

TEST(TimeFormat, Clocks) {
    EXPECT_EQ(format_clock_hm(at(14, 32, 14, 300), 0), "14:32");
    EXPECT_EQ(format_clock_hms(at(14, 32, 14, 300), 0), "14:32:14");
    EXPECT_EQ(format_clock_hm(at(14, 32, 59, 999), 0), "14:32");  // rounded down
    EXPECT_EQ(format_clock_hms(at(14, 32, 59, 999), 0), "14:32:59");
    EXPECT_EQ(format_clock_hm(at(14, 32), 3600), "15:32");             // UTC+1
    EXPECT_EQ(format_clock_hm(at(14, 32), -5 * 3600), "09:32");        // UTC-5
    EXPECT_EQ(format_clock_hm(at(14, 32), 5 * 3600 + 1800), "20:02");  // UTC+5:30
    EXPECT_EQ(format_clock_hms(at(14, 32, 5), 20 * 60 + 45), "14:52:50");
    // across midnight, both ways
    EXPECT_EQ(format_clock_hm(at(23, 30), 3600), "00:30");
    EXPECT_EQ(format_clock_hm(at(0, 30), -3600), "23:30");
    EXPECT_EQ(format_clock_hms(at(23, 59, 59, 999), 1), "00:00:00");
    // before 1970: the clock of the second the time falls in
    EXPECT_EQ(format_clock_hms(-1, 0), "23:59:59");
    EXPECT_EQ(format_clock_hm(-1, 3600), "00:59");
    EXPECT_EQ(format_clock_hms(-kDay - 1500, 0), "23:59:58");
    // any offset is a shift modulo a day; nothing overflows
    EXPECT_EQ(format_clock_hm(at(14, 32), 86400 + 3600), "15:32");
    EXPECT_EQ(format_clock_hm(at(14, 32), -86400 - 3600), "13:32");
    EXPECT_EQ(format_clock_hms(kMax, kMax), format_clock_hms(kMax, kMax % 86400));
    EXPECT_EQ(format_clock_hms(kMin, kMin), format_clock_hms(kMin, kMin % 86400 + 86400));
    EXPECT_EQ(format_clock_hms(kMax, 0), "07:12:55");
    EXPECT_EQ(format_clock_hms(kMin, 0), "16:47:04");
}

TEST(TimeFormat, ClocksAgreeWithGmtime) {
    std::mt19937_64 rng(5);
    for (int i = 0; i < 100000; ++i) {
        const int64_t ms = static_cast<int64_t>(rng() % 4102444800000);  // 1970 to 2100
        const int64_t offset = static_cast<int64_t>(rng() % (28 * 3600)) - 14 * 3600;
        ASSERT_EQ(format_clock_hm(ms, offset), libc_clock(ms, offset, false))
            << ms << " " << offset;
        ASSERT_EQ(format_clock_hms(ms, offset), libc_clock(ms, offset, true))
            << ms << " " << offset;
    }
}

}  // namespace
}  // namespace attendance::core
