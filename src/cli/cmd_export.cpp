// export: a session's attendance, or a course's report over a date range, as CSV (RFC 4180)
// or JSON. The rows come from the extension's own report (attendance_session_report,
// attendance_course_report): nothing here decides a status or a rate.
#include "cli/cli.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace attendancectl {

namespace {

// One session's rows: the per-session report with the session's course.
constexpr const char* kSessionRows =
    "SELECT r.session_id, s.course, r.room_name, r.starts_at, r.ends_at, r.user_id, r.user_key, "
    "r.participant_name, r.role, r.enter_time, r.leave_time, r.minutes, r.status, r.percentage, "
    "r.status_rule, r.policy_name, r.is_calculated, r.calculated_at, r.override_reason "
    "FROM attendance_session_report r "
    "LEFT JOIN attendance_session_schedule s ON s.session_id = r.session_id "
    "WHERE r.session_id = $1::bigint ORDER BY r.user_id NULLS LAST, r.user_key";

// A course's rows: its report (counts and the attendance rate) per person.
constexpr const char* kCourseRows =
    "SELECT $1::text AS course, $2::date AS from_date, $3::date AS to_date, r.* "
    "FROM attendance_course_report($1::text, $2::date, $3::date) r";

// A spreadsheet program runs a cell that starts with = + - @ (or TAB or CR before one) as
// a formula; participant names come from LiveKit tokens, often chosen by the person. Such
// a text gets a leading apostrophe, which spreadsheets show as text (OWASP's advice on CSV
// injection); a number such as -12 or -0.5 is left as it is. --raw turns this off.
bool looks_like_formula(const std::string& v) {
    if (v.empty() || std::string_view("=+-@\t\r").find(v[0]) == std::string_view::npos)
        return false;
    size_t i = v[0] == '-' || v[0] == '+' ? 1 : 0;
    bool digits = false, dot = false;
    for (; i < v.size(); ++i) {
        if (v[i] >= '0' && v[i] <= '9') {
            digits = true;
        } else if (v[i] == '.' && !dot) {
            dot = true;
        } else {
            return true;
        }
    }
    return !digits;
}

// One CSV field (RFC 4180): quoted when it holds a comma, a double quote, CR or LF (a
// double quote doubled), and when it is the empty string, so that an empty string and a
// NULL (an empty unquoted field) stay apart, as COPY ... CSV writes them.
std::string csv_field(const std::optional<std::string>& value, bool raw) {
    if (!value) return "";
    const std::string v = !raw && looks_like_formula(*value) ? "'" + *value : *value;
    if (!v.empty() && v.find_first_of(",\"\r\n") == std::string::npos) return v;
    std::string out = "\"";
    for (char c : v) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + "\"";
}

// A header line and one line per row, each ended by CRLF (RFC 4180).
std::string to_csv(const Result& r, bool raw) {
    std::string out;
    for (int c = 0; c < r.cols(); ++c) {
        if (c) out += ',';
        out += csv_field(r.name(c), raw);
    }
    out += "\r\n";
    for (int i = 0; i < r.rows(); ++i) {
        for (int c = 0; c < r.cols(); ++c) {
            if (c) out += ',';
            out += csv_field(r.opt(i, c), raw);
        }
        out += "\r\n";
    }
    return out;
}

// Writes the whole text to FILE, or to stdout for "-": a file is written beside its final
// name and renamed into place, so that a failed export leaves no partial file.
void write_output(const std::string& file, const std::string& text) {
    if (file == "-") {
        print(text);
        return;
    }
    const std::string tmp = file + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) throw InputError("cannot write " + tmp + ": " + std::strerror(errno));
    const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    const bool closed = std::fclose(f) == 0;
    if (!written || !closed || std::rename(tmp.c_str(), file.c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw InputError("cannot write " + file + ": " + why);
    }
}

int run_export(Context& ctx, const Args& args) {
    if (!args.positional.empty())
        throw UsageError("export takes no arguments (see --session and --course)");
    const auto session = args.value("session");
    const auto course = args.value("course");
    const auto from = args.value("from");
    const auto to = args.value("to");
    if (session.has_value() == course.has_value())
        throw UsageError("export needs either --session ID or --course NAME --from DATE --to DATE");
    if (session && (from || to)) throw UsageError("--from and --to go with --course");
    if (course && (!from || !to)) throw UsageError("--course needs --from DATE and --to DATE");
    std::string format = args.value("format").value_or(ctx.json ? "json" : "csv");
    if (format != "csv" && format != "json")
        throw UsageError("--format must be csv or json, not \"" + format + "\"");
    if (ctx.json && format != "json") throw UsageError("--json contradicts --format csv");
    if (args.has("raw") && format != "csv") throw UsageError("--raw goes with CSV");

    Db& db = ctx.db();
    // Values as COPY writes them: ISO dates in the session's time zone (PGTZ).
    db.exec("SELECT pg_catalog.set_config('datestyle', 'ISO, YMD', false)");
    std::string sql;
    std::vector<Param> params;
    if (session) {
        const std::string id = std::to_string(session_arg(*session));
        Result known = db.exec(
            "SELECT count(*) FROM attendance_session_schedule WHERE session_id = $1::bigint", {id});
        if (known.get(0, 0) == "0")
            throw DbError("session " + id + " is not scheduled (see attendance_schedule_session)",
                          "42704");
        sql = kSessionRows;
        params = {id};
    } else {
        sql = kCourseRows;
        params = {*course, *from, *to};
    }
    std::string text;
    if (format == "json") {
        const std::string wrapped = "SELECT coalesce(json_agg(q), '[]'::json) FROM (" + sql + ") q";
        Result r = db.exec(wrapped.c_str(), params);
        text = nlohmann::ordered_json::parse(r.get(0, 0)).dump(2) + "\n";
    } else {
        text = to_csv(db.exec(sql.c_str(), params), args.has("raw"));
    }
    write_output(args.value("output").value_or("-"), text);
    return kOk;
}

}  // namespace

Command export_command() {
    return {"export",
            "--session ID | --course NAME --from DATE --to DATE [--format csv|json] [-o FILE]",
            "write a session's attendance or a course's report as CSV or JSON",
            "Writes one session's attendance (the rows of attendance_session_report, with the\n"
            "session's course), or the report of a course over the sessions that start between\n"
            "--from and --to (dates, both inclusive; the rows of attendance_course_report: per\n"
            "person the sessions expected, the counts per status, the attended minutes and the\n"
            "attendance rate), as CSV or JSON.\n"
            "CSV follows RFC 4180: UTF-8 without a byte order mark, a header line, CRLF line\n"
            "ends, fields quoted when they hold a comma, a double quote or a line break; a NULL\n"
            "is an empty field and an empty string is \"\". Values are written as PostgreSQL's\n"
            "COPY writes them (ISO timestamps in the session's time zone, t/f for booleans),\n"
            "except that a text a spreadsheet would run as a formula (starting with = + - @,\n"
            "TAB or CR; not a number) gets a leading apostrophe, unless --raw.\n"
            "JSON is an array of objects, one per row.\n"
            "The file is written in full or not at all (beside FILE, then renamed).",
            {{"session", 0, ArgKind::Required, "ID", "export this session"},
             {"course", 0, ArgKind::Required, "NAME", "export this course's report"},
             {"from", 0, ArgKind::Required, "DATE", "--course: the first day (YYYY-MM-DD)"},
             {"to", 0, ArgKind::Required, "DATE", "--course: the last day (YYYY-MM-DD)"},
             {"format", 'f', ArgKind::Required, "FORMAT", "csv (default) or json (also: --json)"},
             {"output", 'o', ArgKind::Required, "FILE", "write to FILE (default: stdout)"},
             {"raw", 0, ArgKind::None, "",
              "CSV: write texts that start like a formula as they are (no apostrophe)"}},
            true,
            &run_export};
}

}  // namespace attendancectl
