#include "core/outcome.hpp"

#include "core/errors.hpp"

namespace attendance::core {

std::optional<std::string> SessionInput::override_status(const std::string& user_key) const {
    auto it = overrides.find(user_key);
    if (it == overrides.end()) return std::nullopt;
    return it->second.first;
}

const PersonOutcome* SessionOutcome::result_of(const std::string& user_key) const {
    if (results.empty()) return nullptr;
    size_t k = 0;
    for (const auto& [key, person] : derivation.persons) {
        if (key == user_key) return k < results.size() ? &results[k] : nullptr;
        ++k;
    }
    return nullptr;
}

std::string audit_cause(const SessionInput& in, const std::string& given) {
    if (given != "manual" && given != "scheduled") return given;
    if (!in.calculated) return given;
    const auto pending = prevailing_cause(in.pending_cause, given);
    return *prevailing_cause(
        pending, in.unseen_events ? std::optional<std::string>(kLateWebhookCause) : std::nullopt);
}

SessionOutcome outcome_of(SessionInput& in, const std::optional<std::string>& calculate_as,
                          bool verify) {
    SessionOutcome out;
    if (in.from_store) {
        out.derivation = assemble(std::move(in.stored_persons), in.stored_roles, in.context);
        in.stored_persons.clear();
        out.derivation.room_finished_ms = in.room_finished_ms;
        if (verify) {
            const SessionDerivation logged = derive(in.events, in.context);
            if (!(logged == out.derivation))
                throw Error(sqlstate::kInternal,
                            "session " + std::to_string(in.session_id) +
                                ": what the fold stored gives another derivation than the log "
                                "(attendance.verify_calculation): " +
                                first_difference(logged, out.derivation));
        }
    } else {
        out.derivation = in.only ? derive_persons(in.events, in.context, *in.only)
                                 : derive(in.events, in.context);
    }
    if (!calculate_as) return out;
    if (!in.scheduled || !in.policy)
        throw Error(sqlstate::kInternal, "session " + std::to_string(in.session_id) +
                                             " has no window or policy to calculate with");
    // Connections still open are closed by the derivation where its rule says so; the
    // calculation closes the rest at the scheduled end or now.
    SessionWindow window = in.window;
    window.room_finished_ms.reset();
    out.results.reserve(out.derivation.persons.size());
    for (const auto& [key, person] : out.derivation.persons) {
        PersonResult r =
            calculate_person(window, *in.policy, person.calc_input(in.override_status(key)));
        out.results.push_back({std::move(r.status), std::move(r.rule), r.presence_ms,
                               r.percentage_hundredths, r.total_duration_minutes});
    }
    out.cause = audit_cause(in, *calculate_as);
    return out;
}

}  // namespace attendance::core
