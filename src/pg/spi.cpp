#include "pg/spi.hpp"

#include <limits>
#include <unordered_map>

namespace attendance::pg {

namespace {

Oid type_oid(Arg::Kind kind) {
    switch (kind) {
        case Arg::Kind::Int8:
            return INT8OID;
        case Arg::Kind::Int4:
            return INT4OID;
        case Arg::Kind::Text:
            return TEXTOID;
        case Arg::Kind::Timestamptz:
            return TIMESTAMPTZOID;
        case Arg::Kind::Bool:
            return BOOLOID;
        case Arg::Kind::Int8Array:
            return INT8ARRAYOID;
        case Arg::Kind::TextArray:
            return TEXTARRAYOID;
        case Arg::Kind::BoolArray:
            return BOOLARRAYOID;
        case Arg::Kind::TimestamptzArray:
            return TIMESTAMPTZARRAYOID;
        case Arg::Kind::JsonbArray:
            return JSONBARRAYOID;
        case Arg::Kind::NumericArray:
            return NUMERICARRAYOID;
        case Arg::Kind::Jsonb:
            return JSONBOID;
        case Arg::Kind::Null:
            return TEXTOID;
    }
    return TEXTOID;
}

bool is_array(Arg::Kind kind) {
    return kind == Arg::Kind::Int8Array || kind == Arg::Kind::TextArray ||
           kind == Arg::Kind::BoolArray || kind == Arg::Kind::TimestamptzArray ||
           kind == Arg::Kind::JsonbArray || kind == Arg::Kind::NumericArray;
}

// numeric(5,2)'s type modifier (a percentage with two decimals).
constexpr int32 kPercentageTypmod = ((5 << 16) | 2) + VARHDRSZ;

// The elements of a jsonb[] or numeric[] argument, each read by its type's input function
// in a context reset after each one (the parser's working memory goes with it; the value
// is copied out).
void read_elements(const Arg& p, Datum* elems, const bool* nulls) {
    MemoryContext scratch = AllocSetContextCreate(CurrentMemoryContext, "attendance array element",
                                                  ALLOCSET_SMALL_SIZES);
    for (size_t k = 0; k < p.texts.size(); ++k) {
        if (nulls[k]) {
            elems[k] = 0;
            continue;
        }
        MemoryContext outer = MemoryContextSwitchTo(scratch);
        Datum v = p.kind == Arg::Kind::JsonbArray
                      ? DirectFunctionCall1(jsonb_in, CStringGetDatum(p.texts[k].c_str()))
                      : DirectFunctionCall3(numeric_in, CStringGetDatum(p.texts[k].c_str()),
                                            ObjectIdGetDatum(InvalidOid),
                                            Int32GetDatum(kPercentageTypmod));
        MemoryContextSwitchTo(outer);
        elems[k] = datumCopy(v, false, -1);
        MemoryContextReset(scratch);
    }
    MemoryContextDelete(scratch);
}

// A one-dimensional array Datum, palloc'd in the current memory context (call inside
// pg_call).
Datum array_datum(const Arg& p) {
    const bool text = p.kind == Arg::Kind::TextArray;
    const bool typed = p.kind == Arg::Kind::JsonbArray || p.kind == Arg::Kind::NumericArray;
    const size_t n = p.reads_texts() ? p.texts.size() : p.ints.size();
    const bool ts = p.kind == Arg::Kind::TimestamptzArray;
    Oid element = p.kind == Arg::Kind::Int8Array      ? INT8OID
                  : ts                                ? TIMESTAMPTZOID
                  : text                              ? TEXTOID
                  : p.kind == Arg::Kind::JsonbArray   ? JSONBOID
                  : p.kind == Arg::Kind::NumericArray ? NUMERICOID
                                                      : BOOLOID;
    if (!p.nulls.empty() && p.nulls.size() != n)
        elog(ERROR, "attendance: array argument has %zu elements but %zu null flags", n,
             p.nulls.size());
    if (n == 0) return PointerGetDatum(construct_empty_array(element));
    Datum* elems = static_cast<Datum*>(palloc(n * sizeof(Datum)));
    bool* nulls = static_cast<bool*>(palloc(n * sizeof(bool)));
    for (size_t k = 0; k < n; ++k) nulls[k] = !p.nulls.empty() && p.nulls[k];
    if (typed) read_elements(p, elems, nulls);
    for (size_t k = 0; k < n && !typed; ++k) {
        if (nulls[k])
            elems[k] = 0;
        else if (text)
            elems[k] = PointerGetDatum(
                cstring_to_text_with_len(p.texts[k].data(), int(p.texts[k].size())));
        else if (p.kind == Arg::Kind::Int8Array)
            elems[k] = Int64GetDatum(p.ints[k]);
        else if (ts)
            elems[k] = TimestampTzGetDatum(ms_to_timestamptz(p.ints[k]));
        else
            elems[k] = BoolGetDatum(p.ints[k] != 0);
    }
    int dims[1] = {int(n)};
    int lower[1] = {1};
    ArrayType* array =
        text || typed
            ? construct_md_array(elems, nulls, 1, dims, lower, element, -1, false, TYPALIGN_INT)
        : p.kind == Arg::Kind::Int8Array || ts
            ? construct_md_array(elems, nulls, 1, dims, lower, element, 8, FLOAT8PASSBYVAL,
                                 TYPALIGN_DOUBLE)
            : construct_md_array(elems, nulls, 1, dims, lower, BOOLOID, 1, true, TYPALIGN_CHAR);
    if (text || typed)
        for (size_t k = 0; k < n; ++k)
            if (!nulls[k]) pfree(DatumGetPointer(elems[k]));
    pfree(elems);
    pfree(nulls);
    return PointerGetDatum(array);
}

// Plans live for the backend's lifetime (SPI_keepplan); PostgreSQL's plan cache
// revalidates them after DDL. They are kept per schema, then by the statement's text
// before expansion, so a call that finds its plan builds no string.
using PlanCache = std::unordered_map<std::string, std::unordered_map<std::string, SPIPlanPtr>>;
PlanCache& plan_cache() {
    static PlanCache cache;
    return cache;
}

std::string expand(const std::string& sql, const std::string& schema) {
    // "@s." stands for the extension's schema.
    std::string out;
    out.reserve(sql.size() + 64);
    for (size_t i = 0; i < sql.size(); ++i) {
        if (sql.compare(i, 3, "@s.") == 0) {
            out += schema;
            out += '.';
            i += 2;
        } else {
            out += sql[i];
        }
    }
    return out;
}

}  // namespace

std::string extension_schema(Oid function_oid) {
    const char* quoted = pg_call([&] {
        Oid ns = get_func_namespace(function_oid);
        char* name = get_namespace_name(ns);
        if (!name) elog(ERROR, "attendance: the extension's schema was not found");
        return quote_identifier(name);
    });
    return quoted;
}

SpiSession::SpiSession(std::string schema) : schema_(std::move(schema)) {
    pg_call([] {
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "attendance: SPI_connect failed");
    });
    connected_ = true;
}

SpiSession::~SpiSession() = default;  // on error the transaction abort cleans SPI up

void SpiSession::finish() {
    if (!connected_) return;
    pg_call([] { SPI_finish(); });
    connected_ = false;
}

uint64_t SpiSession::run(const std::string& sql, const std::vector<Arg>& params, bool read_only,
                         long limit, SPITupleTable** table) {
    if (!plans_) plans_ = &plan_cache()[schema_];
    auto it = plans_->find(sql);
    SPIPlanPtr plan = it == plans_->end() ? nullptr : it->second;
    if (!plan) {
        std::string full = expand(sql, schema_);
        std::vector<Oid> types;
        types.reserve(params.size());
        for (const auto& p : params) types.push_back(type_oid(p.kind));
        plan = pg_call([&] {
            SPIPlanPtr p = SPI_prepare(full.c_str(), int(types.size()), types.data());
            if (!p)
                elog(ERROR, "attendance: SPI_prepare failed (%s) for: %s",
                     SPI_result_code_string(SPI_result), full.c_str());
            SPI_keepplan(p);
            return p;
        });
        plans_->emplace(sql, plan);
    }

    std::vector<Datum> values(params.size());
    std::string nulls(params.size(), ' ');
    uint64_t processed = 0;
    pg_call([&] {
        for (size_t i = 0; i < params.size(); ++i) {
            const Arg& p = params[i];
            if (p.is_null || p.kind == Arg::Kind::Null) {
                nulls[i] = 'n';
                values[i] = 0;
                continue;
            }
            switch (p.kind) {
                case Arg::Kind::Int8:
                    values[i] = Int64GetDatum(p.i);
                    break;
                case Arg::Kind::Int4:
                    values[i] = Int32GetDatum(int32(p.i));
                    break;
                case Arg::Kind::Text:
                    values[i] =
                        PointerGetDatum(cstring_to_text_with_len(p.s.data(), int(p.s.size())));
                    break;
                case Arg::Kind::Timestamptz:
                    values[i] = TimestampTzGetDatum(ms_to_timestamptz(p.i));
                    break;
                case Arg::Kind::Bool:
                    values[i] = BoolGetDatum(p.b);
                    break;
                case Arg::Kind::Int8Array:
                case Arg::Kind::TextArray:
                case Arg::Kind::BoolArray:
                case Arg::Kind::TimestamptzArray:
                case Arg::Kind::JsonbArray:
                case Arg::Kind::NumericArray:
                    values[i] = array_datum(p);
                    break;
                case Arg::Kind::Jsonb:
                    values[i] = p.datum;
                    break;
                case Arg::Kind::Null:
                    break;
            }
        }
        int rc = SPI_execute_plan(plan, values.data(), nulls.c_str(), read_only, limit);
        if (rc < 0)
            elog(ERROR, "attendance: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
        processed = SPI_processed;
        // Free what this call allocated in the SPI procedure context at once: a run of the
        // scheduler keeps one SPI connection for thousands of statements.
        for (size_t i = 0; i < params.size(); ++i)
            if ((params[i].kind == Arg::Kind::Text || is_array(params[i].kind)) && nulls[i] != 'n')
                pfree(DatumGetPointer(values[i]));
        if (table)
            *table = SPI_tuptable;
        else
            SPI_freetuptable(SPI_tuptable);
    });
    return processed;
}

int64_t Value::int8() const {
    if (kind_ == Kind::Null) return 0;
    if (kind_ != Kind::Integer)
        throw core::Error(core::sqlstate::kInternal, "attendance: an integer column was expected");
    return i_;
}

std::optional<int64_t> Value::opt_ms() const {
    if (kind_ == Kind::Null) return std::nullopt;
    if (kind_ == Kind::Text)
        throw core::Error("22008", "timestamp out of range for attendance: " + s_);
    if (kind_ != Kind::Time)
        throw core::Error(core::sqlstate::kInternal,
                          "attendance: a timestamptz column was expected");
    // floor division: a time before 1970 rounds towards -infinity
    int64_t ms = i_ / 1000;
    if (i_ % 1000 < 0) --ms;
    return ms;
}

const Value& Row::operator[](std::string_view name) const {
    if (names_)
        for (size_t k = 0; k < names_->size(); ++k)
            if ((*names_)[k] == name) return values_.at(k);
    throw core::Error(core::sqlstate::kInternal,
                      "attendance: the statement has no column \"" + std::string(name) + "\"");
}

bool Value::truth() const {
    if (kind_ == Kind::Null) return false;
    if (kind_ != Kind::Boolean)
        throw core::Error(core::sqlstate::kInternal, "attendance: a boolean column was expected");
    return i_ != 0;
}

std::string Value::str(const std::string& otherwise) const {
    if (kind_ == Kind::Null) return otherwise;
    if (kind_ != Kind::Text)
        throw core::Error(core::sqlstate::kInternal, "attendance: a text column was expected");
    return s_;
}

std::vector<Row> SpiSession::query(const std::string& sql, const std::vector<Arg>& params,
                                   bool read_only, long limit) {
    SPITupleTable* table = nullptr;
    uint64_t processed = run(sql, params, read_only, limit, &table);
    std::vector<Row> rows;
    if (!table) return rows;
    rows.reserve(processed);
    const int ncols = table->tupdesc->natts;
    std::vector<Oid> types(static_cast<size_t>(ncols));
    auto names = std::make_shared<std::vector<std::string>>();
    for (int c = 0; c < ncols; ++c) {
        types[size_t(c)] = SPI_gettypeid(table->tupdesc, c + 1);
        names->emplace_back(NameStr(TupleDescAttr(table->tupdesc, c)->attname));
    }
    for (uint64_t r = 0; r < processed; ++r) {
        std::vector<Value> row(static_cast<size_t>(ncols));
        for (int c = 0; c < ncols; ++c) {
            bool isnull = true;
            const Oid type = types[size_t(c)];
            Datum d = pg_call(
                [&] { return SPI_getbinval(table->vals[r], table->tupdesc, c + 1, &isnull); });
            if (isnull) continue;
            switch (type) {
                case INT8OID:
                    row[size_t(c)] = Value::integer(DatumGetInt64(d));
                    break;
                case INT4OID:
                    row[size_t(c)] = Value::integer(DatumGetInt32(d));
                    break;
                case INT2OID:
                    row[size_t(c)] = Value::integer(DatumGetInt16(d));
                    break;
                case OIDOID:
                    row[size_t(c)] = Value::integer(DatumGetObjectId(d));
                    break;
                case BOOLOID:
                    row[size_t(c)] = Value::boolean(DatumGetBool(d));
                    break;
                case TIMESTAMPTZOID:
                    // microseconds since 2000-01-01, to microseconds since 1970-01-01;
                    // +/-infinity (and a time past the year 294246) keeps its text: reading it
                    // as a time is then an error that says so
                    if (!TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(d)) &&
                        DatumGetTimestampTz(d) <=
                            std::numeric_limits<int64_t>::max() - kPgEpochOffsetMs * 1000) {
                        row[size_t(c)] = Value::time_us(int64_t(DatumGetTimestampTz(d)) +
                                                        kPgEpochOffsetMs * 1000);
                        break;
                    }
                    [[fallthrough]];
                default: {
                    char* v = pg_call(
                        [&] { return SPI_getvalue(table->vals[r], table->tupdesc, c + 1); });
                    row[size_t(c)] = Value::text(v ? std::string(v) : std::string());
                    if (v) pfree(v);  // a palloc'd copy made just above: cannot fail
                }
            }
        }
        rows.emplace_back(names, std::move(row));
    }
    pg_call([&] { SPI_freetuptable(table); });
    return rows;
}

uint64_t SpiSession::exec(const std::string& sql, const std::vector<Arg>& params) {
    return run(sql, params, false, 0, nullptr);
}

}  // namespace attendance::pg
