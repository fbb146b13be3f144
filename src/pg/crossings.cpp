#include "pg/crossings.hpp"

extern "C" {
#include "catalog/dependency.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "pgstat.h"
#include "storage/lock.h"
#include "utils/snapmgr.h"
}

#include <nlohmann/json.hpp>

#include <cinttypes>
#include <cstdio>
#include <exception>
#include <set>

namespace attendance::pg {

void log_message(int level, const std::string& message, const std::string& hint,
                 bool hide_statement) {
    pg_call([&] {
        if (!hint.empty())
            ereport(level, (errmsg("%s", message.c_str()), errhint("%s", hint.c_str()),
                            errhidestmt(hide_statement)));
        else
            ereport(level, (errmsg("%s", message.c_str()), errhidestmt(hide_statement)));
    });
}

void report_activity(const std::string& what) {
    pg_call([&] {
        if (what.empty())
            pgstat_report_activity(STATE_IDLE, nullptr);
        else
            pgstat_report_activity(STATE_RUNNING, what.c_str());
    });
}

Datum text_datum(std::string_view text) {
    return pg_call(
        [&] { return PointerGetDatum(cstring_to_text_with_len(text.data(), int(text.size()))); });
}

Datum interval_datum(int64_t microseconds) {
    return pg_call([&] {
        auto* i = static_cast<::Interval*>(palloc0(sizeof(::Interval)));
        i->time = microseconds;
        return IntervalPGetDatum(i);
    });
}

Datum int4_row_datum(FunctionCallInfo fcinfo, const std::vector<int32_t>& values) {
    return pg_call([&] {
        TupleDesc desc;
        if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
            elog(ERROR, "attendance: the return type must be a row type");
        desc = BlessTupleDesc(desc);
        if (desc->natts != int(values.size()))
            elog(ERROR, "attendance: the row type has %d columns, not %d", desc->natts,
                 int(values.size()));
        Datum* datums = static_cast<Datum*>(palloc(sizeof(Datum) * values.size()));
        bool* nulls = static_cast<bool*>(palloc0(sizeof(bool) * values.size()));
        for (size_t k = 0; k < values.size(); ++k) datums[k] = Int32GetDatum(values[k]);
        return HeapTupleGetDatum(heap_form_tuple(desc, datums, nulls));
    });
}

// ---- jsonb ----------------------------------------------------------------------------

Datum jsonb_from_text(const std::string& json_text) {
    return pg_call(
        [&] { return DirectFunctionCall1(jsonb_in, CStringGetDatum(json_text.c_str())); });
}

namespace {

// Inside pg_call: pushJsonbValue may ereport, so no frame here holds an object with a
// destructor (iterators and references into the document only; no std::string, nor the
// proxies of items()). Returns what the last push returned: for the outermost object, the
// finished value.
JsonbValue* push_jsonb(JsonbParseState** state, const nlohmann::json& j,
                       JsonbIteratorToken scalar) {
    JsonbValue v;
    switch (j.type()) {
        case nlohmann::json::value_t::object:
            pushJsonbValue(state, WJB_BEGIN_OBJECT, nullptr);
            for (auto it = j.cbegin(); it != j.cend(); ++it) {
                const std::string& key = it.key();
                JsonbValue k;
                k.type = jbvString;
                k.val.string.val = const_cast<char*>(key.data());
                k.val.string.len = int(key.size());
                pushJsonbValue(state, WJB_KEY, &k);
                push_jsonb(state, *it, WJB_VALUE);
            }
            return pushJsonbValue(state, WJB_END_OBJECT, nullptr);
        case nlohmann::json::value_t::array:
            pushJsonbValue(state, WJB_BEGIN_ARRAY, nullptr);
            for (const auto& value : j) push_jsonb(state, value, WJB_ELEM);
            return pushJsonbValue(state, WJB_END_ARRAY, nullptr);
        case nlohmann::json::value_t::string: {
            const std::string& s = j.get_ref<const std::string&>();
            v.type = jbvString;
            v.val.string.val = const_cast<char*>(s.data());
            v.val.string.len = int(s.size());
            break;
        }
        case nlohmann::json::value_t::boolean:
            v.type = jbvBool;
            v.val.boolean = j.get<bool>();
            break;
        case nlohmann::json::value_t::number_integer:
            v.type = jbvNumeric;
            v.val.numeric = int64_to_numeric(j.get<int64_t>());
            break;
        case nlohmann::json::value_t::number_unsigned: {
            char digits[24];
            std::snprintf(digits, sizeof digits, "%" PRIu64, j.get<uint64_t>());
            v.type = jbvNumeric;
            v.val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in, CStringGetDatum(digits),
                                                                ObjectIdGetDatum(InvalidOid),
                                                                Int32GetDatum(-1)));
            break;
        }
        default:  // null; a fraction is the caller's to avoid (see jsonb_from_json)
            v.type = jbvNull;
            break;
    }
    return pushJsonbValue(state, scalar, &v);
}

}  // namespace

Datum jsonb_from_json(const nlohmann::json& document) {
    return pg_call([&] {
        JsonbParseState* state = nullptr;
        return JsonbPGetDatum(JsonbValueToJsonb(push_jsonb(&state, document, WJB_VALUE)));
    });
}

std::string jsonb_to_text(Datum jsonb) {
    char* cstring = pg_call([&] {
        Jsonb* jb = DatumGetJsonbP(jsonb);
        return JsonbToCString(nullptr, &jb->root, int(VARSIZE(jb)));
    });
    std::string text(cstring);
    pg_call([&] { pfree(cstring); });
    return text;
}

Datum jsonb_replace_paths(Datum jsonb, const std::vector<std::vector<std::string>>& paths,
                          const std::string& replacement_json) {
    if (paths.empty()) return jsonb;
    return pg_call([&] {
        // Only palloc'd memory is held across the PostgreSQL calls.
        Datum value = jsonb;
        Datum replacement =
            DirectFunctionCall1(jsonb_in, CStringGetDatum(replacement_json.c_str()));
        for (const auto& path : paths) {
            Datum* elems = static_cast<Datum*>(palloc(sizeof(Datum) * path.size()));
            for (size_t i = 0; i < path.size(); ++i)
                elems[i] =
                    PointerGetDatum(cstring_to_text_with_len(path[i].data(), int(path[i].size())));
            ArrayType* array =
                construct_array(elems, int(path.size()), TEXTOID, -1, false, TYPALIGN_INT);
            value = DirectFunctionCall4(jsonb_set, value, PointerGetDatum(array), replacement,
                                        BoolGetDatum(false));
        }
        return value;
    });
}

// ---- arguments and the calling context ------------------------------------------------

Oid argument_type(FunctionCallInfo fcinfo, int n) {
    return pg_call([&] { return get_fn_expr_argtype(fcinfo->flinfo, n); });
}

Int8Elements int8_array_arg(FunctionCallInfo fcinfo, int n) {
    struct Raw {
        Datum* values = nullptr;
        bool* nulls = nullptr;
        int count = 0;
        int ndim = 0;
    };
    Raw raw = pg_call([&] {
        ArrayType* array = PG_GETARG_ARRAYTYPE_P(n);
        Raw out;
        out.ndim = ARR_NDIM(array);
        deconstruct_array(array, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &out.values,
                          &out.nulls, &out.count);
        return out;
    });
    Int8Elements e;
    e.dimensions = raw.ndim;
    for (int k = 0; k < raw.count; ++k) {
        e.nulls.push_back(raw.nulls[k]);
        e.values.push_back(raw.nulls[k] ? 0 : int64_t(DatumGetInt64(raw.values[k])));
    }
    return e;
}

bool in_extension_script_of(Oid function) {
    return pg_call([function] {
        return creating_extension &&
               CurrentExtensionObject == getExtensionOfObject(ProcedureRelationId, function);
    });
}

// ---- callbacks and caches -------------------------------------------------------------

void at_transaction_end(XactCallback callback) {
    static std::set<XactCallback> registered;
    if (registered.count(callback)) return;
    pg_call([callback] { RegisterXactCallback(callback, nullptr); });
    registered.insert(callback);
}

void on_relation_invalidation(RelcacheCallbackFunction callback) {
    static std::set<RelcacheCallbackFunction> registered;
    if (registered.count(callback)) return;
    pg_call([callback] { CacheRegisterRelcacheCallback(callback, 0); });
    registered.insert(callback);
}

void accept_invalidations() {
    pg_call([] { AcceptInvalidationMessages(); });
}

void invalidate_trigger_relation(FunctionCallInfo fcinfo, const char* name) {
    pg_call([&] {
        if (!CALLED_AS_TRIGGER(fcinfo))
            ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
                            errmsg("%s must be called as a trigger", name)));
        CacheInvalidateRelcache(reinterpret_cast<TriggerData*>(fcinfo->context)->tg_relation);
    });
}

// ---- locks ----------------------------------------------------------------------------

bool wait_for_share_conflicts(Oid relation, bool wait) {
    return pg_call([&] {
        LOCKTAG tag;
        SET_LOCKTAG_RELATION(tag, MyDatabaseId, relation);
        int count = 0;
        // The array is palloc'd in the current (sub)transaction's memory.
        VirtualTransactionId* open = GetLockConflicts(&tag, ShareLock, &count);
        for (int k = 0; k < count; ++k)
            if (!VirtualXactLock(open[k], wait)) return false;
        return true;
    });
}

LatestSnapshot::LatestSnapshot() : exceptions_(std::uncaught_exceptions()) {
    pg_call([] { PushActiveSnapshot(GetLatestSnapshot()); });
    active_ = true;
}

LatestSnapshot::~LatestSnapshot() {
    if (!active_ || std::uncaught_exceptions() != exceptions_) return;
    try {
        pg_call([] { PopActiveSnapshot(); });
    } catch (...) {
        // Nothing to pop it from but the abort that this error leads to.
    }
}

}  // namespace attendance::pg
