#include "cli/cli.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <limits>

namespace attendancectl {

Db& Context::db() {
    if (!db_ || !db_->ok()) {
        db_.reset();
        Db db = Db::connect(conninfo);
        db.use_extension_schema();
        db_.emplace(std::move(db));
    }
    return *db_;
}

const std::vector<Command>& commands() {
    static const std::vector<Command> all = {
        debug_command(),  calculate_command(), reconcile_command(), explain_command(),
        events_command(), sessions_command(),  status_command(),    keys_command(),
        sign_command(),   replay_command(),    export_command(),    timeline_command(),
    };
    return all;
}

void print(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
}

int64_t session_arg(const std::string& text) {
    return parse_int(text, "SESSION", std::numeric_limits<int64_t>::min(),
                     std::numeric_limits<int64_t>::max());
}

void print_json_rows(Context& ctx, const std::string& sql, const std::vector<Param>& params) {
    // json (not jsonb) keeps the columns in the order the query names them.
    const std::string wrapped = "SELECT coalesce(json_agg(q), '[]'::json) FROM (" + sql + ") q";
    Result r = ctx.db().exec(wrapped.c_str(), params);
    print_json_value(r.get(0, 0));
}

void print_json_value(const std::string& json_text) {
    print(nlohmann::ordered_json::parse(json_text).dump(2) + "\n");
}

}  // namespace attendancectl
