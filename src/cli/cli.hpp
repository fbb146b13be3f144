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
Command export_command();
Command timeline_command();

// The scheduler, job and due-session summary shown by `status` and `debug`;
// `runs`: also the latest job runs.
std::string render_system_status(Context& ctx, bool runs);

// SQL that formats a timestamptz column for people (in the session's TimeZone).
#define ATTENDANCECTL_TS(col) "to_char(" col ", 'YYYY-MM-DD HH24:MI:SS')"
// ... and an interval as H:MM:SS (hours not wrapped at a day).
#define ATTENDANCECTL_DURATION(col)                                         \
    "(CASE WHEN " col " IS NULL THEN '' ELSE lpad((extract(epoch FROM " col \
    ")::bigint / 3600)::text, 2, '0') || to_char(" col ", ':MI:SS') END)"

// Shared helpers for the commands.
int64_t session_arg(const std::string& text);
// Prints the rows of `sql` (a constant of this program) as a JSON array of objects.
void print_json_rows(Context& ctx, const std::string& sql, const std::vector<Param>& params);
// Pretty-prints one JSON value given as text.
void print_json_value(const std::string& json_text);

}  // namespace attendancectl
