// Terminal helpers: Ctrl-C handling for loops, sleeping that a signal interrupts, and
// reading a secret without echo.
#pragma once

#include <string>

namespace attendancectl {

// Installs SIGINT/SIGTERM handlers that only set a flag (see interrupted()).
void catch_interrupts();
bool interrupted();

// Sleeps up to `seconds`; returns early (false) once interrupted().
bool sleep_unless_interrupted(double seconds);

// Reads one line from stdin (trailing CR/LF removed). On a terminal, prompts on stderr
// and turns echo off while typing.
std::string read_secret(const std::string& prompt);

// Reads a whole file ("-" = stdin) byte for byte; throws InputError.
std::string read_file(const std::string& path);

}  // namespace attendancectl
