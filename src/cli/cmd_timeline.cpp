// timeline: one session as a self-contained HTML page with an inline SVG picture: one
// lane per person, each connection a bar, the scheduled window shaded, status and
// percentage beside the name, a connection closed by reconciliation hatched.
// Everything is read through SQL (meeting_attendances, attendance_sessions, the schedule);
// the derivation is never re-done here.
#include "cli/cli.hpp"

#include "core/timefmt.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace attendancectl {

namespace {

// One row: the session, its persons and their connections as JSON (times in Unix ms),
// and the session's TimeZone offset at its start (the page labels times in it).
constexpr const char* kTimeline =
    "SELECT json_build_object("
    " 'session_id', s.session_id, 'room_name', s.room_name,"
    " 'starts_ms', (extract(epoch FROM s.starts_at) * 1000)::bigint,"
    " 'ends_ms', (extract(epoch FROM s.ends_at) * 1000)::bigint,"
    " 'now_ms', (extract(epoch FROM now()) * 1000)::bigint,"
    " 'timezone', current_setting('TimeZone'),"
    " 'utc_offset_s', extract(timezone FROM s.starts_at)::bigint,"
    " 'starts_text', " ATTENDANCECTL_TS("s.starts_at") ","
    " 'ends_text', " ATTENDANCECTL_TS("s.ends_at") ","
    " 'calculated', NOT s.needs_calculation,"
    " 'calculated_at', " ATTENDANCECTL_TS("s.calculated_at") ","
    " 'policy', s.policy_name,"
    " 'persons', (SELECT coalesce(json_agg(json_build_object("
    "     'user_key', m.user_key, 'user_id', m.user_id, 'name', m.participant_name,"
    "     'identity', m.participant_identity, 'role', m.role, 'status', m.attendance_status,"
    "     'percentage', m.attendance_percentage::text, 'minutes', m.total_duration_minutes,"
    "     'calculated', m.is_calculated)"
    "   ORDER BY m.role <> 'teacher', coalesce(m.participant_name, m.user_key), m.user_key), '[]')"
    "   FROM meeting_attendances m WHERE m.session_id = s.session_id),"
    " 'connections', (SELECT coalesce(json_agg(json_build_object("
    "     'user_key', c.user_key, 'sid', c.participant_sid,"
    "     'join_ms', (extract(epoch FROM c.join_time) * 1000)::bigint,"
    "     'leave_ms', (extract(epoch FROM c.leave_time) * 1000)::bigint,"
    "     'join_source', c.join_source, 'end_reason', c.end_reason,"
    "     'synthetic', c.leave_is_synthetic) ORDER BY c.join_time, c.participant_sid), '[]')"
    "   FROM attendance_sessions c WHERE c.session_id = s.session_id)"
    ")::text FROM attendance_session_schedule s WHERE s.session_id = $1";

// Text for HTML content and attribute values (both quote kinds escaped).
std::string esc(const std::string& s) {
    std::string out;
    out.reserve(s.size() + 16);
    for (char c : s) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

// At most `n` characters (code points) of a UTF-8 text, with an ellipsis when cut: a long
// name must not run into the status beside it (the whole name is the lane's tooltip).
std::string clip(const std::string& s, size_t n) {
    size_t chars = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) continue;
        if (chars++ == n) return s.substr(0, i) + "\u2026";
    }
    return s;
}

std::string str(const nlohmann::json& j, const char* key, const std::string& fallback = "") {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) return fallback;
    return it->get<std::string>();
}

std::optional<int64_t> ms(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
}

std::string fmt(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

// Clock texts (HH:MM, HH:MM:SS) in the session's UTC offset: the core's, like every
// timestamp text of the project.
using attendance::core::format_clock_hm;
using attendance::core::format_clock_hms;

constexpr const char* kStyle = R"(
body{font-family:"DejaVu Sans","Noto Sans","Noto Sans Arabic",Arial,sans-serif;margin:24px;color:#1d2733;background:#fff}
h1{font-size:20px;margin:0 0 4px}
p.meta{margin:0 0 16px;color:#4b5a6a;font-size:13px}
svg text{font-size:12px;fill:#1d2733}
svg text.status{font-size:11px}
svg text.tick{fill:#4b5a6a;font-size:11px}
.window{fill:#dbeafe}
.window-edge{stroke:#3b82f6;stroke-width:1;stroke-dasharray:4 3}
.lane-bg{fill:#f8fafc}
.bar-left{fill:#16a34a}
.bar-open{fill:#f59e0b}
.bar-reconciled{fill:url(#hatch);stroke:#b91c1c;stroke-width:1.5;stroke-dasharray:5 3}
.bar-aborted{fill:#9ca3af}
.s-present{fill:#15803d}.s-late{fill:#b45309}.s-partial{fill:#b45309}.s-absent{fill:#b91c1c}.s-excused{fill:#1d4ed8}
.grid{stroke:#e2e8f0;stroke-width:1}
)";

int run_timeline(Context& ctx, const Args& args) {
    if (args.positional.size() != 1) throw UsageError("timeline takes exactly one SESSION");
    const int64_t session = session_arg(args.positional[0]);
    auto file = args.value("html");
    if (!file || file->empty()) throw UsageError("timeline needs --html FILE (\"-\": stdout)");

    Result r = ctx.db().exec(kTimeline, {std::to_string(session)});
    if (r.rows() == 0)
        throw DbError("session " + std::to_string(session) +
                          " is not scheduled (see attendance_schedule_session)",
                      "42704");
    const nlohmann::json t = nlohmann::json::parse(r.get(0, 0));
    const int64_t offset_s = t.value("utc_offset_s", int64_t(0));
    const int64_t starts = t.at("starts_ms").get<int64_t>();
    const int64_t ends = t.at("ends_ms").get<int64_t>();
    const int64_t now = t.at("now_ms").get<int64_t>();

    // The time axis: the scheduled window, widened to every connection.
    int64_t lo = starts, hi = ends;
    for (const auto& c : t.at("connections")) {
        if (auto j = ms(c, "join_ms")) lo = std::min(lo, *j);
        if (auto l = ms(c, "leave_ms"))
            hi = std::max(hi, *l);
        else if (ms(c, "join_ms"))
            hi = std::max(hi, std::min(now, ends + 3600000));
    }
    const int64_t pad = std::max<int64_t>((hi - lo) / 40, 60000);
    lo -= pad;
    hi += pad;

    const double label_w = 400, chart_w = 800, lane_h = 30, top = 40, right = 20;
    const auto& persons = t.at("persons");
    const double height = top + lane_h * double(std::max<size_t>(persons.size(), 1)) + 70;
    const double width = label_w + chart_w + right;
    auto x_of = [&](int64_t at) {
        return label_w + chart_w * double(at - lo) / double(std::max<int64_t>(hi - lo, 1));
    };

    std::string svg;
    svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" width=\"" + fmt(width) +
           "\" height=\"" + fmt(height) + "\" viewBox=\"0 0 " + fmt(width) + " " + fmt(height) +
           "\" aria-label=\"attendance timeline of session " + std::to_string(session) + "\">\n";
    svg +=
        "<defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" "
        "patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#fecaca\"/>"
        "<line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#b91c1c\" stroke-width=\"3\"/>"
        "</pattern></defs>\n";
    // ticks: a round step that gives at most about 12 of them
    const int64_t span = hi - lo;
    int64_t step = 86400000;
    for (int64_t s : {60000LL, 120000LL, 300000LL, 600000LL, 900000LL, 1800000LL, 3600000LL,
                      7200000LL, 21600000LL, 86400000LL})
        if (span / s <= 12) {
            step = s;
            break;
        }
    const double chart_bottom = top + lane_h * double(std::max<size_t>(persons.size(), 1));
    for (int64_t at = ((lo + offset_s * 1000) / step + 1) * step - offset_s * 1000; at < hi;
         at += step) {
        const std::string x = fmt(x_of(at));
        svg += "<line class=\"grid\" x1=\"" + x + "\" y1=\"" + fmt(top - 6) + "\" x2=\"" + x +
               "\" y2=\"" + fmt(chart_bottom) + "\"/>";
        svg += "<text class=\"tick\" x=\"" + x + "\" y=\"" + fmt(top - 12) +
               "\" text-anchor=\"middle\">" + format_clock_hm(at, offset_s) + "</text>\n";
    }
    // every other lane tinted, under the window and the bars
    for (size_t i = 0; i < persons.size(); i += 2)
        svg += "<rect class=\"lane-bg\" x=\"0\" y=\"" + fmt(top + lane_h * double(i) + 2) +
               "\" width=\"" + fmt(width) + "\" height=\"" + fmt(lane_h - 4) + "\"/>";
    svg += "\n";
    // the scheduled window, shaded across every lane
    svg += "<rect class=\"window\" data-window=\"scheduled\" x=\"" + fmt(x_of(starts)) + "\" y=\"" +
           fmt(top - 4) + "\" width=\"" + fmt(x_of(ends) - x_of(starts)) + "\" height=\"" +
           fmt(chart_bottom - top + 8) + "\"><title>scheduled " + esc(str(t, "starts_text")) +
           " – " + esc(str(t, "ends_text")) + "</title></rect>\n";
    for (int64_t edge : {starts, ends})
        svg += "<line class=\"window-edge\" x1=\"" + fmt(x_of(edge)) + "\" y1=\"" + fmt(top - 4) +
               "\" x2=\"" + fmt(x_of(edge)) + "\" y2=\"" + fmt(chart_bottom + 4) + "\"/>";
    svg += "\n";

    int lane = 0;
    for (const auto& p : persons) {
        const std::string key = str(p, "user_key");
        const std::string name = str(p, "name", str(p, "identity", key));
        const std::string role = str(p, "role", "student");
        const std::string status = str(p, "status");
        const std::string pct = str(p, "percentage");
        const bool calculated = p.value("calculated", false);
        const double y = top + lane_h * lane;
        std::string status_text;
        if (!status.empty()) {
            status_text = status + (pct.empty() ? "" : " " + pct + " %");
            if (!calculated) status_text += " (provisional)";
        } else {
            status_text = "not calculated, " + std::to_string(p.value("minutes", 0)) + " min";
        }
        svg += "<g class=\"lane\" data-lane=\"" + std::to_string(lane) + "\" data-user-key=\"" +
               esc(key) + "\" data-status=\"" + esc(status) + "\">\n";
        svg += "<text class=\"name\" x=\"8\" y=\"" + fmt(y + lane_h / 2 + 4) + "\"><title>" +
               esc(name) + "</title>" + esc(clip(name, role != "student" ? 18 : 28)) +
               (role != "student" ? " (" + esc(role) + ")" : "") + "</text>\n";
        svg += "<text class=\"status s-" + esc(status) + "\" x=\"" + fmt(label_w - 10) + "\" y=\"" +
               fmt(y + lane_h / 2 + 4) + "\" text-anchor=\"end\">" + esc(status_text) + "</text>\n";
        for (const auto& c : t.at("connections")) {
            if (str(c, "user_key") != key) continue;
            auto join = ms(c, "join_ms");
            if (!join) continue;
            const std::string end = str(c, "end_reason");
            auto leave = ms(c, "leave_ms");
            std::string kind = end == "reconciled" ? "reconciled"
                               : end == "aborted"  ? "aborted"
                               : leave             ? "left"
                                                   : "open";
            const int64_t until = leave ? *leave : std::max(now, *join);
            const double x0 = x_of(*join), x1 = std::max(x_of(until), x0 + 2);
            const std::string tip =
                str(c, "sid") + ": " + format_clock_hms(*join, offset_s) + " – " +
                (leave ? format_clock_hms(*leave, offset_s) : std::string("still connected")) +
                (kind == "reconciled" ? " (leave lost, closed by reconciliation)" : "") +
                (kind == "aborted" ? " (aborted, never counts)" : "") +
                (str(c, "join_source") == "rebuilt_from_leave" ? " (join rebuilt from leave)" : "");
            svg += "<rect class=\"bar bar-" + kind + "\" data-connection=\"" + esc(str(c, "sid")) +
                   "\" data-end=\"" + kind + "\" x=\"" + fmt(x0) + "\" y=\"" + fmt(y + 7) +
                   "\" width=\"" + fmt(x1 - x0) + "\" height=\"" + fmt(lane_h - 14) +
                   "\" rx=\"3\"><title>" + esc(tip) + "</title></rect>\n";
        }
        svg += "</g>\n";
        ++lane;
    }
    // legend
    const double ly = chart_bottom + 30;
    struct Item {
        const char* cls;
        const char* text;
    };
    double lx = 8;
    for (const Item& it :
         {Item{"window", "scheduled window"}, Item{"bar-left", "connected"},
          Item{"bar-reconciled", "leave lost: closed by reconciliation"},
          Item{"bar-open", "still connected"}, Item{"bar-aborted", "aborted (never counts)"}}) {
        svg += "<g class=\"legend\"><rect class=\"" + std::string(it.cls) + "\" x=\"" + fmt(lx) +
               "\" y=\"" + fmt(ly - 10) + "\" width=\"28\" height=\"12\" rx=\"2\"/><text x=\"" +
               fmt(lx + 34) + "\" y=\"" + fmt(ly) + "\">" + it.text + "</text></g>";
        lx += 40 + 7.0 * double(std::strlen(it.text));
    }
    svg += "\n</svg>\n";

    const std::string title = "Attendance timeline: session " + std::to_string(session) + " (" +
                              str(t, "room_name") + ")";
    std::string meta = "Scheduled " + str(t, "starts_text") + " – " + str(t, "ends_text") + " (" +
                       str(t, "timezone") + "), policy " + str(t, "policy") + ", " +
                       std::to_string(persons.size()) + " persons. ";
    meta += t.value("calculated", false) ? "Calculated " + str(t, "calculated_at") + "."
                                         : "Not calculated yet: statuses are provisional.";
    std::string html =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
        "'unsafe-inline'\">\n<title>" +
        esc(title) + "</title>\n<style>" + kStyle + "</style>\n</head>\n<body>\n<h1>" + esc(title) +
        "</h1>\n<p class=\"meta\">" + esc(meta) + "</p>\n" + svg + "</body>\n</html>\n";

    if (*file == "-") {
        print(html);
        return kOk;
    }
    // Written to a temporary file beside it and renamed: never a half-written page.
    const std::string tmp = *file + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw InputError("cannot write " + tmp + ": " + std::strerror(errno));
    const bool ok = std::fwrite(html.data(), 1, html.size(), f) == html.size();
    if (std::fclose(f) != 0 || !ok) {
        std::remove(tmp.c_str());
        throw InputError("cannot write " + tmp + ": " + std::strerror(errno));
    }
    if (std::rename(tmp.c_str(), file->c_str()) != 0) {
        const std::string why = std::strerror(errno);
        std::remove(tmp.c_str());
        throw InputError("cannot write " + *file + ": " + why);
    }
    std::fprintf(stderr, "wrote %s: %zu persons, %zu connections\n", file->c_str(), persons.size(),
                 t.at("connections").size());
    return kOk;
}

}  // namespace

Command timeline_command() {
    return {"timeline",
            "SESSION --html FILE",
            "one session as an HTML page: a lane per person, a bar per connection",
            "Writes one self-contained HTML file (inline SVG and styles; no script, font, image\n"
            "or other network resource; a Content-Security-Policy forbids any) that draws the\n"
            "session: one lane per person of meeting_attendances, each connection of\n"
            "attendance_sessions a bar, the scheduled window shaded, the status and percentage\n"
            "beside the name (\"provisional\" before calculation). A connection whose leave was\n"
            "lost and that reconciliation closed is hatched with a dashed red outline; an open\n"
            "one is amber; the legend says so. Hovering a bar shows its participant sid and\n"
            "times. Times are in the connection's TimeZone (PGTZ). The data are the derived rows\n"
            "as the worker's fold last wrote them.\n"
            "\n"
            "FILE \"-\" writes the page to stdout; otherwise it is written to FILE.tmp and\n"
            "renamed, so FILE is never left half-written.",
            {{"html", 0, ArgKind::Required, "FILE", "write the HTML page to FILE (\"-\": stdout)"}},
            false,
            &run_timeline};
}

}  // namespace attendancectl
