// Unix milliseconds as civil UTC time and the texts made from it: the one home of timestamp
// formatting for the extension, attendance-proxy and attendancectl (docs/decisions.md, "The
// programs' libraries", says why it is not gmtime_r or std::chrono's calendar). Pure C++
// (no PostgreSQL), exact integer arithmetic for any int64, proleptic Gregorian calendar,
// valid before 1970 too.
#pragma once

#include "core/no_postgres.hpp"

#include <cstdint>
#include <string>

namespace attendance::core {

// A moment in UTC: the calendar date and the time of day, to the millisecond.
struct CivilTime {
    int64_t year = 1970;  // astronomical: 0 is 1 BC, -1 is 2 BC
    int month = 1;        // 1..12
    int day = 1;          // 1..31
    int hour = 0;         // 0..23
    int minute = 0;       // 0..59
    int second = 0;       // 0..59
    int millisecond = 0;  // 0..999

    bool operator==(const CivilTime&) const = default;
};

// The civil UTC time of a Unix time in ms; exact for every int64 (negative times round
// down: -1 is 1969-12-31 23:59:59.999).
CivilTime civil_from_unix_ms(int64_t ms_since_epoch);

// ISO-8601 with milliseconds: 1763130734300 -> "2025-11-14T14:32:14.300Z". Years outside
// 0000-9999 are printed with more digits or a leading '-'.
std::string format_timestamp_ms(int64_t ms_since_epoch);

// The wall clock of a Unix time in ms shifted by a UTC offset in seconds (e.g. a session's
// offset): "HH:MM" and "HH:MM:SS", seconds and minutes rounded down. Any offset is taken
// modulo a day; nothing overflows.
std::string format_clock_hm(int64_t ms_since_epoch, int64_t utc_offset_s);
std::string format_clock_hms(int64_t ms_since_epoch, int64_t utc_offset_s);

}  // namespace attendance::core
