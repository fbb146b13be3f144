// attendancectl: the operator's command line for the attendance extension.
// See docs/attendancectl.md; every command answers --help.
#include "cli/cli.hpp"
#include "core/version.hpp"

#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

namespace attendancectl {
namespace {

constexpr const char* kVersion = attendance::kVersion;

const std::vector<OptionSpec>& global_options() {
    static const std::vector<OptionSpec> opts = {
        {"dbname", 'd', ArgKind::Required, "CONNINFO",
         "database name, connection string or URI, as psql -d"},
        {"json", 0, ArgKind::None, "", "machine-readable JSON output (commands marked [json])"},
        {"no-color", 0, ArgKind::None, "", "never use colours (also: NO_COLOR=1)"},
        {"color", 0, ArgKind::None, "", "use colours even when not writing to a terminal"},
        {"help", 'h', ArgKind::None, "", "show help (for a command: attendancectl COMMAND --help)"},
        {"version", 0, ArgKind::None, "", "print the version"},
    };
    return opts;
}

std::string option_lines(const std::vector<OptionSpec>& opts) {
    std::string out;
    for (const auto& o : opts) {
        std::string left = "  ";
        left += o.short_name ? std::string("-") + o.short_name + ", " : "    ";
        left += std::string("--") + o.name;
        if (o.kind == ArgKind::Required) left += std::string(" ") + o.metavar;
        if (o.kind == ArgKind::Number) left += std::string(" [") + o.metavar + "]";
        if (left.size() < 28) {
            left += std::string(28 - left.size(), ' ');
        } else {
            left += "\n" + std::string(28, ' ');
        }
        out += left + o.help + "\n";
    }
    return out;
}

constexpr const char* kEnvironment =
    "Environment:\n"
    "  PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSERVICE, PGSSLMODE,\n"
    "  PGOPTIONS, PGTZ, ... as for psql; -d/--dbname overrides them.\n"
    "  NO_COLOR    any non-empty value turns colours off\n";

constexpr const char* kExitCodes =
    "Exit codes:\n"
    "  0  success\n"
    "  1  the operation ran but reported failures (calculate: failed > 0; replay: rejected\n"
    "     webhooks; keys retire: no such key)\n"
    "  2  usage error (unknown command or option, bad argument)\n"
    "  3  cannot connect to PostgreSQL (or the connection was lost)\n"
    "  4  a statement failed (SQL error; also: extension not installed)\n"
    "  5  input error: a file could not be read or parsed, or the HTTP endpoint failed\n";

std::string global_help() {
    std::string out =
        "attendancectl " + std::string(kVersion) +
        " - operate the attendance extension (LiveKit webhooks -> meeting attendance)\n\n"
        "Usage: attendancectl [OPTION]... COMMAND [ARG]...\n\nCommands:\n";
    for (const auto& c : commands()) {
        std::string left = std::string("  ") + c.name;
        if (left.size() < 14) left += std::string(14 - left.size(), ' ');
        out += left + c.summary + (c.json ? " [json]" : "") + "\n";
    }
    out += "\nOptions (before or after the command):\n" + option_lines(global_options()) + "\n" +
           kEnvironment + "\n" + kExitCodes +
           "\nRun 'attendancectl COMMAND --help' for a command's arguments and options.\n";
    return out;
}

std::string command_help(const Command& c) {
    std::string out = "Usage: attendancectl " + std::string(c.name) + " " + c.synopsis + "\n\n" +
                      c.description + "\n";
    if (!c.options.empty()) out += "\nOptions:\n" + option_lines(c.options);
    out += "\nGlobal options: -d/--dbname CONNINFO, --no-color, --color";
    out += c.json ? ", --json\n" : "\n";
    out += "Exit codes: 0 ok, 1 failures reported, 2 usage, 3 connection, 4 SQL error, 5 input.\n";
    return out;
}

const Command* find_command(const std::string& name) {
    for (const auto& c : commands()) {
        if (name == c.name) return &c;
    }
    return nullptr;
}

// Index of the command word: the first word that is neither an option nor the value of
// a global option that takes one.
std::optional<std::size_t> command_index(const std::vector<std::string>& words) {
    for (std::size_t i = 0; i < words.size(); ++i) {
        const std::string& w = words[i];
        if (w == "-d" || w == "--dbname") {
            ++i;
            continue;
        }
        if (w == "--") return std::nullopt;
        if (w.size() > 1 && w[0] == '-') continue;
        return i;
    }
    return std::nullopt;
}

void complain(const Style& err, const std::string& what, const std::string& text) {
    std::fprintf(stderr, "attendancectl: %s %s\n", err.paint(what, Color::Red).c_str(),
                 text.c_str());
}

int run(const std::vector<std::string>& argv_words) {
    std::vector<std::string> words = argv_words;
    auto idx = command_index(words);
    const Command* cmd = nullptr;
    if (idx) {
        std::string name = words[*idx];
        words.erase(words.begin() + static_cast<long>(*idx));
        if (name == "help") {  // attendancectl help [COMMAND]
            auto rest = command_index(words);
            if (!rest) {
                print(global_help());
                return kOk;
            }
            name = words[*rest];
            words = {"--help"};
        }
        cmd = find_command(name);
        if (cmd == nullptr) throw UsageError("unknown command \"" + name + "\"");
    }
    std::vector<OptionSpec> specs = global_options();
    if (cmd) specs.insert(specs.end(), cmd->options.begin(), cmd->options.end());
    Args args = parse_args(words, specs);

    if (cmd == nullptr) {
        if (args.has("version")) {
            print("attendancectl " + std::string(kVersion) + "\n");
            return kOk;
        }
        if (args.has("help")) {
            print(global_help());
            return kOk;
        }
        throw UsageError("no command given");
    }
    if (args.has("help")) {
        print(command_help(*cmd));
        return kOk;
    }
    if (args.has("version")) throw UsageError("--version takes no command");
    if (args.has("json") && !cmd->json) {
        throw UsageError("--json is not supported by " + std::string(cmd->name));
    }

    Context ctx;
    ctx.conninfo = args.value("dbname").value_or("");
    ctx.json = args.has("json");
    int force = args.has("no-color") ? -1 : args.has("color") ? 1 : 0;
    ctx.out = Style(want_color(STDOUT_FILENO, force));
    ctx.err = Style(want_color(STDERR_FILENO, force));
    ctx.stdout_tty = isatty(STDOUT_FILENO) != 0;
    ctx.stderr_tty = isatty(STDERR_FILENO) != 0;
    return cmd->run(ctx, args);
}

// "attendancectl calculate --help" when the command word is known, for error messages.
std::string help_hint(const std::vector<std::string>& words) {
    auto idx = command_index(words);
    if (idx && find_command(words[*idx])) return "attendancectl " + words[*idx] + " --help";
    return "attendancectl --help";
}

}  // namespace
}  // namespace attendancectl

int main(int argc, char** argv) {
    using namespace attendancectl;
    const std::vector<std::string> words(argv + 1, argv + argc);
    const Style err(want_color(STDERR_FILENO, 0));
    try {
        return run(words);
    } catch (const UsageError& e) {
        complain(err, "usage error:", e.what());
        std::fprintf(stderr, "Try '%s'.\n", help_hint(words).c_str());
        return kUsage;
    } catch (const ConnectError& e) {
        complain(err, "cannot connect:", e.what());
        return kConnect;
    } catch (const DbError& e) {
        std::string text = e.what();
        if (!e.sqlstate.empty()) text += " (SQLSTATE " + e.sqlstate + ")";
        complain(err, "error:", text);
        if (!e.detail.empty()) std::fprintf(stderr, "DETAIL:  %s\n", e.detail.c_str());
        if (!e.hint.empty()) {
            std::fprintf(stderr, "HINT:  %s\n", e.hint.c_str());
        } else if (e.sqlstate == "25006") {
            // A standby (or a primary during a failover) accepts reads only.
            std::fprintf(stderr,
                         "HINT:  this command writes, and the server is read-only (a standby): "
                         "connect to the primary, e.g. with a multi-host connection string and "
                         "target_session_attrs=read-write (docs/scaling.md).\n");
        }
        // No SQLSTATE: libpq failed by itself, i.e. the connection was lost.
        return e.sqlstate.empty() ? kConnect : kSqlError;
    } catch (const InputError& e) {
        complain(err, "error:", e.what());
        return kInputError;
    } catch (const std::exception& e) {
        complain(err, "internal error:", e.what());
        return kSqlError;
    }
}
