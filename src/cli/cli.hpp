// What every command shares: exit codes, the context (connection, styles, --json) and
// the command table.
#pragma once

#include "cli/args.hpp"
#include "cli/db.hpp"
#include "cli/render.hpp"

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace attendancectl {

// Exit codes scripts can rely on (docs/attendancectl.md).
enum Exit : int {
    kOk = 0,          // success
    kFailures = 1,    // the operation ran and reported failures or rejections
    kUsage = 2,       // bad command line
    kConnect = 3,     // could not connect to PostgreSQL
    kSqlError = 4,    // a statement failed (or the extension is not installed)
    kInputError = 5,  // an input file could not be read or parsed, or the HTTP endpoint failed
};

// An input file that cannot be read or parsed, or an HTTP endpoint that cannot be
// reached (exit code 5).
struct InputError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Context {
    std::string conninfo;  // -d/--dbname; "" = libpq environment only
    bool json = false;
    Style out;  // stdout
    Style err;  // stderr
    bool stdout_tty = false;
    bool stderr_tty = false;

    // The connection, made on first use, with the extension's schema on the search_path.
    Db& db();
    // Drops the connection (the next db() reconnects), e.g. after it was lost.
    void disconnect() { db_.reset(); }

private:
    std::optional<Db> db_;
};

struct Command {
    const char* name;
    const char* synopsis;     // after "attendancectl NAME "
    const char* summary;      // one line for the global help
    const char* description;  // the paragraph(s) of "NAME --help"
    std::vector<OptionSpec> options;
    bool json;  // supports --json
    int (*run)(Context&, const Args&);
};

// The commands, in the order the help lists them.
const std::vector<Command>& commands();

// Writes text to stdout in one go.
void print(const std::string& text);

// Each file contributes its commands.
Command debug_command();
Command calculate_command();
Command reconcile_command();
Command explain_command();
Command events_command();
Command sessions_command();
Command keys_command();
Command sign_command();
Command status_command();
Command replay_command();

// Shared helpers for the commands.
int64_t session_arg(const std::string& text);
// Runs `sql` wrapped as jsonb_pretty(coalesce(jsonb_agg(to_jsonb(q)), '[]')) and prints it.
void print_json_rows(Context& ctx, const std::string& sql, const std::vector<Param>& params);
// Prints one jsonb value (already text) pretty-printed by the server.
void print_json_value(Context& ctx, const std::string& jsonb_text);

}  // namespace attendancectl
