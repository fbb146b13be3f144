#pragma once
// The version of the extension, the proxy and attendancectl. Its one home is
// default_version in attendance.control: both builds (the PGXS Makefile and CMake) read it
// from there and define ATTENDANCE_VERSION.

#ifndef ATTENDANCE_VERSION
#error "ATTENDANCE_VERSION is defined by the build, from default_version in attendance.control"
#endif

namespace attendance {
inline constexpr const char* kVersion = ATTENDANCE_VERSION;
}  // namespace attendance
