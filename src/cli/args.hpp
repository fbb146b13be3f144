// Command-line parsing: GNU-style long and short options, "--opt=value", "--", and
// options before or after positional arguments.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attendancectl {

// A mistake on the command line (exit code 2).
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class ArgKind {
    None,      // a flag
    Required,  // --opt VALUE or --opt=VALUE
    Number     // optional numeric value: taken from the next word only if it is a number
};

struct OptionSpec {
    const char* name;  // long name without "--"
    char short_name;   // 0: none
    ArgKind kind;
    const char* metavar;
    const char* help;
};

struct Args {
    std::map<std::string, std::optional<std::string>> options;  // by long name
    std::vector<std::string> positional;

    bool has(const std::string& name) const { return options.count(name) != 0; }
    std::optional<std::string> value(const std::string& name) const;
};

// Parses words against the option specs. Throws UsageError.
Args parse_args(const std::vector<std::string>& words, const std::vector<OptionSpec>& specs);

// Strict number parsing for option values and arguments; `what` names the thing in
// the error message. Throw UsageError.
int64_t parse_int(const std::string& text, const std::string& what, int64_t lo, int64_t hi);
double parse_seconds(const std::string& text, const std::string& what);
bool is_integer(const std::string& text);

}  // namespace attendancectl
