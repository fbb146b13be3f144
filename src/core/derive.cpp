#include "core/derive.hpp"

#include "core/reconcile.hpp"
#include "core/timefmt.hpp"

#include <algorithm>
#include <set>
#include <tuple>

namespace attendance::core {

namespace {

int kind_rank(EventKind k) {
    switch (k) {
        case EventKind::RoomStarted:
            return 0;
        case EventKind::ParticipantJoined:
            return 1;
        case EventKind::ParticipantConnectionAborted:
            return 2;
        case EventKind::ParticipantLeft:
            return 3;
        case EventKind::RoomFinished:
            return 4;
        case EventKind::Other:
            return 5;
    }
    return 5;
}

// Reconciliation's close of a connection with a join and no leave, at `context.as_of_ms`
// (room_finished_ms: the first room_finished of its room after the join, if logged).
void close_by_rule(DerivedConnection& c, std::optional<int64_t> room_finished_ms,
                   const DeriveContext& context) {
    const OpenConnection open{*c.join_ms, room_finished_ms, context.scheduled_end_ms};
    if (auto closing = reconcile_close(open, context.as_of_ms, context.max_connection_age_ms)) {
        c.leave_ms = closing->leave_ms;
        c.end_reason = kEndReconciled;
        c.synthetic_leave = true;
        c.disconnect_reason = "reconciled: " + closing->because;
    }
}

// The events of one connection (participant sid), in event order.
DerivedConnection derive_connection(const std::vector<const LoggedEvent*>& events,
                                    const std::vector<int64_t>& room_finished,
                                    const DeriveContext& context) {
    DerivedConnection c;
    c.room = events.front()->room;
    c.sid = events.front()->sid;
    const LoggedEvent* join = nullptr;     // the earliest join
    const LoggedEvent* leave = nullptr;    // the latest leave
    const LoggedEvent* abort = nullptr;    // the latest abort
    std::optional<int64_t> repeated_join;  // the earliest joinedAtMs a leave or abort repeats
    for (const LoggedEvent* e : events) {
        auto join_time = [&] { return e->joined_ms.value_or(e->time_ms); };
        switch (e->kind) {
            case EventKind::ParticipantJoined:
                if (!join || join_time() < join->joined_ms.value_or(join->time_ms)) join = e;
                break;
            case EventKind::ParticipantLeft:
                leave = e;  // events are in order: the last one is the latest
                break;
            case EventKind::ParticipantConnectionAborted:
                abort = e;
                break;
            default:
                break;
        }
        if (e->kind != EventKind::ParticipantJoined && e->joined_ms &&
            (!repeated_join || *e->joined_ms < *repeated_join))
            repeated_join = e->joined_ms;
    }
    c.user_key = (join ? join : events.front())->user_key;

    if (join) {
        // A join proves the connection became active: an abort of the same sid, in
        // whatever order it was logged, never ends it.
        c.join_ms = join->joined_ms.value_or(join->time_ms);
        c.join_source = kJoinJoined;
        c.join_event_id = join->event_id;
    } else if (abort) {
        // Never active: an abort without a join stays an abort, even with a leave.
        const LoggedEvent* last = leave && event_before(*abort, *leave) ? leave : abort;
        c.join_ms = repeated_join;
        c.leave_ms = last->time_ms;
        c.join_source = kJoinAborted;
        c.end_reason = kEndAborted;
        c.disconnect_reason = last->disconnect_reason;
        c.leave_event_id = last->event_id;
        return c;
    } else if (repeated_join) {
        c.join_ms = repeated_join;  // a lost join, rebuilt from its leave
        c.join_source = kJoinRebuilt;
    }
    if (leave) {
        c.leave_ms = leave->time_ms;
        c.end_reason = kEndLeft;
        c.disconnect_reason = leave->disconnect_reason;
        c.leave_event_id = leave->event_id;
        return c;
    }
    if (!c.join_ms) return c;
    // No leave (yet): reconciliation's rule closes it at the first room_finished after
    // the join, else at the scheduled end once the session is over, else after the
    // maximum age; a real leave, whenever it is logged, supersedes this.
    auto rf = std::lower_bound(room_finished.begin(), room_finished.end(), *c.join_ms);
    close_by_rule(c, rf != room_finished.end() ? std::optional<int64_t>(*rf) : std::nullopt,
                  context);
    return c;
}

// Whether a connection meets the session's window (always, for an unscheduled session):
// it began before the end and had not ended by the start. An aborted connection meets it
// when its abort lies inside the window.
bool in_window(const DerivedConnection& c, const DeriveContext& context) {
    if (!context.scheduled_start_ms || !context.scheduled_end_ms) return true;
    const int64_t start = *context.scheduled_start_ms, end = *context.scheduled_end_ms;
    if (c.end_reason == kEndAborted) return c.leave_ms && *c.leave_ms >= start && *c.leave_ms < end;
    if (!c.join_ms) return false;
    return *c.join_ms < end && (!c.leave_ms || *c.leave_ms > start);
}

void summarise(DerivedPerson& p) {
    std::sort(p.connections.begin(), p.connections.end(),
              [](const DerivedConnection& a, const DerivedConnection& b) {
                  // join time, connections without one last, then sid
                  return std::make_tuple(!a.join_ms, a.join_ms.value_or(0), a.sid) <
                         std::make_tuple(!b.join_ms, b.join_ms.value_or(0), b.sid);
              });
    bool open = false;
    int64_t connected_ms = 0;
    for (const DerivedConnection& c : p.connections) {
        if (c.end_reason == kEndLeft) ++p.leave_count;
        if (c.end_reason == kEndAborted) continue;
        if (c.join_ms) {
            ++p.join_count;
            if (!p.first_join_ms || *c.join_ms < *p.first_join_ms) p.first_join_ms = c.join_ms;
            if (!c.leave_ms) open = true;
        }
        if (c.leave_ms && (!p.last_leave_ms || *c.leave_ms > *p.last_leave_ms))
            p.last_leave_ms = c.leave_ms;
        if (c.join_ms && c.leave_ms && *c.leave_ms > *c.join_ms)
            connected_ms += *c.leave_ms - *c.join_ms;
    }
    if (open) p.last_leave_ms.reset();
    p.connected_minutes = round_minutes(connected_ms);
}

}  // namespace

bool is_participant_event(EventKind k) {
    return k == EventKind::ParticipantJoined || k == EventKind::ParticipantLeft ||
           k == EventKind::ParticipantConnectionAborted;
}

EventReach reach_of(EventKind k) {
    if (is_participant_event(k)) return EventReach::Person;
    if (k == EventKind::RoomStarted) return EventReach::Nobody;
    return EventReach::Session;
}

bool event_before(const LoggedEvent& a, const LoggedEvent& b) {
    return std::make_tuple(a.time_ms, kind_rank(a.kind), std::cref(a.event_id)) <
           std::make_tuple(b.time_ms, kind_rank(b.kind), std::cref(b.event_id));
}

PersonInput DerivedPerson::calc_input(const std::optional<std::string>& override_status) const {
    PersonInput in;
    in.user_key = user_key;
    in.role = role;
    in.override_status = override_status;
    for (const DerivedConnection& c : connections) {
        Connection k;
        k.sid = c.sid;
        k.join_ms = c.join_ms;
        k.leave_ms = c.leave_ms;
        k.aborted = c.end_reason == kEndAborted;
        k.synthetic_leave = c.synthetic_leave;
        k.room = c.room;
        if (c.end_reason == kEndLeft) k.disconnect_reason = c.disconnect_reason;
        in.connections.push_back(std::move(k));
    }
    return in;
}

SessionDerivation derive(const std::vector<LoggedEvent>& input, const DeriveContext& context) {
    // One total order; byte-identical redeliveries (same event id) count once.
    std::vector<const LoggedEvent*> events;
    events.reserve(input.size());
    for (const LoggedEvent& e : input) events.push_back(&e);
    std::sort(events.begin(), events.end(),
              [](const LoggedEvent* a, const LoggedEvent* b) { return event_before(*a, *b); });
    events.erase(std::unique(events.begin(), events.end(),
                             [](const LoggedEvent* a, const LoggedEvent* b) {
                                 return a->event_id == b->event_id;
                             }),
                 events.end());

    SessionDerivation out;
    // Per room: its room_finished times, and its connections by participant sid.
    std::map<std::string, std::vector<int64_t>> room_finished;
    std::map<std::pair<std::string, std::string>, std::vector<const LoggedEvent*>> by_sid;
    for (const LoggedEvent* e : events) {
        if (e->kind == EventKind::RoomFinished) {
            room_finished[e->room].push_back(e->time_ms);
            out.room_finished_ms = e->time_ms;  // in order: the last is the latest
        } else if (is_participant_event(e->kind) && !e->sid.empty()) {
            by_sid[{e->room, e->sid}].push_back(e);
        }
    }
    for (auto& [room, times] : room_finished) std::sort(times.begin(), times.end());
    const std::vector<int64_t> no_room_finished;

    // Persons: what the events say of them, the latest non-empty value winning.
    std::map<std::string, DerivedPerson> persons;
    std::map<std::string, std::string> event_role;
    for (const LoggedEvent* e : events) {
        if (!is_participant_event(e->kind) || e->sid.empty()) continue;
        DerivedPerson& p = persons[e->user_key];
        p.user_key = e->user_key;
        if (e->user_id) p.user_id = e->user_id;
        if (!e->identity.empty()) p.identity = e->identity;
        if (!e->name.empty()) p.name = e->name;
        if (!e->role.empty()) event_role[e->user_key] = e->role;
    }
    for (const auto& [room_sid, list] : by_sid) {
        auto rf = room_finished.find(room_sid.first);
        DerivedConnection c = derive_connection(
            list, rf == room_finished.end() ? no_room_finished : rf->second, context);
        persons[c.user_key].connections.push_back(std::move(c));
    }
    SessionDerivation assembled = assemble(std::move(persons), event_role, context);
    assembled.room_finished_ms = out.room_finished_ms;
    return assembled;
}

void reconcile_again(DerivedConnection& c, const DeriveContext& context) {
    if (!c.join_ms || c.end_reason == kEndLeft || c.end_reason == kEndAborted) return;
    if (c.end_reason == kEndReconciled && c.disconnect_reason == "reconciled: room_finished")
        return;
    // Open, or closed by a rule that depends on the time (the scheduled end once the session
    // is over, the maximum age): the same rule at context.as_of_ms.
    c.leave_ms.reset();
    c.end_reason.clear();
    c.synthetic_leave = false;
    c.disconnect_reason.clear();
    close_by_rule(c, std::nullopt, context);
}

SessionDerivation assemble(std::map<std::string, DerivedPerson> persons,
                           const std::map<std::string, std::string>& event_role,
                           const DeriveContext& context) {
    SessionDerivation out;
    for (auto& [key, p] : persons)
        std::erase_if(p.connections,
                      [&](const DerivedConnection& c) { return !in_window(c, context); });
    // Expected attendees and persons with a manual status are persons even without events.
    for (const auto& [user_id, role] : context.roster) {
        DerivedPerson& p = persons[std::to_string(user_id)];
        p.user_key = std::to_string(user_id);
        p.user_id = user_id;
    }
    for (const std::string& key : context.overridden) persons[key].user_key = key;

    std::set<std::string> expected;
    for (const auto& [user_id, role] : context.roster) expected.insert(std::to_string(user_id));
    expected.insert(context.overridden.begin(), context.overridden.end());
    for (auto& [key, p] : persons) {
        // A scheduled session's persons: its roster, its manual statuses, and whoever has a
        // connection inside its window; nobody else (an event of the room outside the
        // window belongs to another session, or to none).
        // An aborted connection is no presence: alone, it makes nobody a person of the session.
        const bool connected =
            std::any_of(p.connections.begin(), p.connections.end(),
                        [](const DerivedConnection& c) { return c.end_reason != kEndAborted; });
        if (context.scheduled_start_ms && !connected && !expected.count(key)) {
            for (DerivedConnection& c : p.connections) out.rowless.push_back(std::move(c));
            continue;
        }
        if (p.connections.empty() && !expected.count(key)) continue;
        p.role = "student";
        if (auto r = event_role.find(key); r != event_role.end()) p.role = r->second;
        if (p.user_id)
            if (auto r = context.roster.find(*p.user_id); r != context.roster.end())
                p.role = r->second;
        if (p.role == "observer") continue;  // observers are not attendance
        summarise(p);
        out.persons.emplace(key, std::move(p));
    }
    return out;
}

SessionDerivation derive_persons(const std::vector<LoggedEvent>& events,
                                 const DeriveContext& context,
                                 const std::set<std::string>& user_keys) {
    // A person's connections depend only on their own participant events and on their rooms'
    // room events; roster and manual statuses come with the context.
    std::vector<LoggedEvent> theirs;
    for (const LoggedEvent& e : events)
        if (!is_participant_event(e.kind) || user_keys.count(e.user_key)) theirs.push_back(e);
    SessionDerivation out = derive(theirs, context);
    std::erase_if(out.persons, [&](const auto& p) { return !user_keys.count(p.first); });
    std::erase_if(out.rowless,
                  [&](const DerivedConnection& c) { return !user_keys.count(c.user_key); });
    return out;
}

std::string first_difference(const SessionDerivation& a, const SessionDerivation& b) {
    auto ms = [](const std::optional<int64_t>& t) {
        return t ? format_timestamp_ms(*t) : std::string("none");
    };
    if (a.room_finished_ms != b.room_finished_ms)
        return "room_finished " + ms(a.room_finished_ms) + " against " + ms(b.room_finished_ms);
    for (const auto& [key, p] : a.persons) {
        auto it = b.persons.find(key);
        if (it == b.persons.end()) return "person " + key + " only in the first";
        const DerivedPerson& q = it->second;
        if (p == q) continue;
        if (p.role != q.role) return "person " + key + ": role " + p.role + " against " + q.role;
        if (p.user_id != q.user_id || p.identity != q.identity || p.name != q.name)
            return "person " + key + ": user id, identity or name";
        if (p.connections.size() != q.connections.size())
            return "person " + key + ": " + std::to_string(p.connections.size()) +
                   " connections against " + std::to_string(q.connections.size());
        for (size_t i = 0; i < p.connections.size(); ++i) {
            const DerivedConnection &c = p.connections[i], &d = q.connections[i];
            if (c == d) continue;
            return "person " + key + ", connection " + c.room + "/" + c.sid + ": " + ms(c.join_ms) +
                   "-" + ms(c.leave_ms) + " " + c.end_reason + " (" + c.disconnect_reason +
                   ") against " + d.room + "/" + d.sid + ": " + ms(d.join_ms) + "-" +
                   ms(d.leave_ms) + " " + d.end_reason + " (" + d.disconnect_reason + ")";
        }
        return "person " + key + ": the live summary";
    }
    for (const auto& [key, q] : b.persons)
        if (!a.persons.count(key)) return "person " + key + " only in the second";
    if (a.rowless != b.rowless) return "the connections of persons without a row";
    return "";
}

nlohmann::json cycles_json(const DerivedPerson& person) {
    auto ts = [](const std::optional<int64_t>& ms) {
        return ms ? nlohmann::json(format_timestamp_ms(*ms)) : nlohmann::json();
    };
    nlohmann::json cycles = nlohmann::json::array();
    for (const DerivedConnection& c : person.connections)
        cycles.push_back(
            {{"participant_sid", c.sid},
             {"joined_at", ts(c.join_ms)},
             {"left_at", ts(c.leave_ms)},
             {"end", c.end_reason.empty() ? nlohmann::json() : nlohmann::json(c.end_reason)},
             {"synthetic_leave", c.synthetic_leave}});
    return cycles;
}

}  // namespace attendance::core
