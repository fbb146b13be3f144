#include "proxy/keys.hpp"

#include "core/token.hpp"
#include "proxy/db.hpp"

#include <cstdlib>
#include <variant>

namespace attendance::proxy {

std::shared_ptr<const Verification> KeyWatch::current() const {
    std::lock_guard lock(mu_);
    return current_;
}

bool KeyWatch::must_recheck(Clock::time_point arrived) {
    const auto known = current();
    return (!known || known->read_at < arrived) && !demand_.over("", Clock::now());
}

void KeyWatch::refresh() {
    std::lock_guard once(refresh_mu_);
    read();
}

void KeyWatch::refresh_for(Clock::time_point arrived) {
    std::lock_guard once(refresh_mu_);
    const auto known = current();
    if (known && known->read_at >= arrived) return;  // began after the request came
    const auto now = Clock::now();
    if (demand_.over("", now)) return;
    demand_.charge("", now);
    read();
}

void KeyWatch::read() {
    const auto started = Clock::now();

    auto failed = [&](const std::string& why) {
        // The previous reading stays: it is still the best knowledge of the keys.
        if (!failing_) log_.warn("could not read the webhook key names: " + why);
        failing_ = true;
    };
    auto leased = pool_.acquire(std::chrono::milliseconds(1000), true);
    if (auto* failure = std::get_if<Pool::Failure>(&leased)) return failed(failure->message);
    auto& lease = std::get<Pool::Lease>(leased);

    DbRows settings = query_rows(lease.conn(), kVerificationSql);
    if (settings.broken) lease.discard();
    if (!settings.ok || settings.rows.size() != 1 || settings.rows[0].size() != 4)
        return failed(settings.message +
                      (settings.sqlstate.empty() ? "" : " [" + settings.sqlstate + "]"));
    const auto& row = settings.rows[0];
    auto v = std::make_shared<Verification>();
    // NULL: not set anywhere, so the extension's own default applies.
    v->development_mode = row[0] && *row[0] == "t";
    v->replay_mode = row[1] && *row[1] == "t";
    v->leeway_s = row[2] ? std::strtoll(row[2]->c_str(), nullptr, 10) : core::kDefaultTokenLeewayS;
    if (row[3] && *row[3] == "t") {
        DbRows names = query_rows(lease.conn(), kKeyNamesSql);
        if (names.broken) lease.discard();
        if (!names.ok)
            return failed(names.message +
                          (names.sqlstate.empty() ? "" : " [" + names.sqlstate + "]"));
        v->key_names.emplace();
        for (const auto& r : names.rows)
            if (!r.empty() && r[0]) v->key_names->insert(*r[0]);
    }
    v->read_at = started;
    metrics_.key_names_read();
    metrics_.set_key_names(v->key_names ? static_cast<std::int64_t>(v->key_names->size()) : -1);

    std::string state = v->key_names
                            ? std::to_string(v->key_names->size()) + " active API key name(s)"
                            : std::string(
                                  "no key names (attendance_webhook_key_names() is missing or "
                                  "not granted: tokens naming any key go to the database)");
    if (v->development_mode) state += ", development mode (unsigned webhooks go to the database)";
    if (v->replay_mode) state += ", replay mode (token expiry left to the database)";
    state += ", leeway " + std::to_string(v->leeway_s) + " s";
    if (failing_ || state != said_) log_.info("token precheck: " + state);
    failing_ = false;
    said_ = state;
    std::lock_guard lock(mu_);
    current_ = std::move(v);
}

}  // namespace attendance::proxy
