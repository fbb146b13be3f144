#include "cli/args.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace attendancectl {

namespace {

const OptionSpec* find_long(const std::vector<OptionSpec>& specs, const std::string& name) {
    for (const auto& s : specs) {
        if (name == s.name) return &s;
    }
    return nullptr;
}

const OptionSpec* find_short(const std::vector<OptionSpec>& specs, char c) {
    for (const auto& s : specs) {
        if (s.short_name != 0 && s.short_name == c) return &s;
    }
    return nullptr;
}

bool looks_numeric(const std::string& s) {
    if (s.empty()) return false;
    char* end = nullptr;
    std::strtod(s.c_str(), &end);
    return end != nullptr && *end == '\0' && s[0] != '-' && s[0] != '+';
}

}  // namespace

std::optional<std::string> Args::value(const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end()) return std::nullopt;
    return it->second;
}

Args parse_args(const std::vector<std::string>& words, const std::vector<OptionSpec>& specs) {
    Args out;
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "--") {
            for (++i; i < words.size(); ++i) out.positional.push_back(words[i]);
            break;
        }
        if (w.size() < 2 || w[0] != '-') {
            out.positional.push_back(w);
            continue;
        }
        const OptionSpec* spec = nullptr;
        std::optional<std::string> inline_value;
        std::string shown;
        if (w[1] == '-') {
            std::string name = w.substr(2);
            if (auto eq = name.find('='); eq != std::string::npos) {
                inline_value = name.substr(eq + 1);
                name.resize(eq);
            }
            spec = find_long(specs, name);
            shown = "--" + name;
        } else {
            spec = find_short(specs, w[1]);
            shown = w.substr(0, 2);
            if (w.size() > 2) inline_value = w.substr(2);  // -dCONNINFO
        }
        if (spec == nullptr) throw UsageError("unknown option " + shown);
        std::optional<std::string> value;
        switch (spec->kind) {
            case ArgKind::None:
                if (inline_value) throw UsageError("option " + shown + " takes no value");
                break;
            case ArgKind::Required:
                if (inline_value) {
                    value = inline_value;
                } else if (i + 1 < words.size()) {
                    value = words[++i];
                } else {
                    throw UsageError("option " + shown + " needs a value (" + spec->metavar + ")");
                }
                break;
            case ArgKind::Number:
                if (inline_value) {
                    value = inline_value;
                } else if (i + 1 < words.size() && looks_numeric(words[i + 1])) {
                    value = words[++i];
                }
                break;
        }
        out.options[spec->name] = value;
    }
    return out;
}

bool is_integer(const std::string& text) {
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    return !text.empty() && ec == std::errc() && ptr == text.data() + text.size();
}

int64_t parse_int(const std::string& text, const std::string& what, int64_t lo, int64_t hi) {
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (text.empty() || ec != std::errc() || ptr != text.data() + text.size()) {
        throw UsageError(what + " must be an integer, not \"" + text + "\"");
    }
    if (v < lo || v > hi) {
        throw UsageError(what + " must be between " + std::to_string(lo) + " and " +
                         std::to_string(hi) + ", not " + text);
    }
    return v;
}

double parse_seconds(const std::string& text, const std::string& what) {
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || end == nullptr || *end != '\0' || !std::isfinite(v)) {
        throw UsageError(what + " must be a number of seconds, not \"" + text + "\"");
    }
    if (v < 0.1 || v > 86400) throw UsageError(what + " must be between 0.1 and 86400 seconds");
    return v;
}

}  // namespace attendancectl
