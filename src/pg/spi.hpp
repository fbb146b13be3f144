// SPI with cached plans and the extension's own schema. Every statement names its
// tables through schema(), never through the caller's search_path.
#pragma once

#include "pg/pg.hpp"

#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <unordered_map>
#include <vector>

namespace attendance::pg {

// A query parameter as plain data; converted to a Datum inside pg_call.
struct Arg {
    enum class Kind {
        Null,
        Int8,
        Int4,
        Text,
        Timestamptz,
        Bool,
        Int8Array,
        TextArray,
        BoolArray,
        TimestamptzArray,  // `ints` in Unix milliseconds
        JsonbArray,        // `texts`, each read by jsonb's input function
        NumericArray,      // `texts`, each read as a numeric(5,2) by numeric's input function
        Jsonb              // a jsonb Datum the caller built (palloc'd in its memory context)
    } kind = Kind::Null;
    int64_t i = 0;
    std::string s;
    bool b = false;
    bool is_null = false;
    // One-dimensional arrays: int8[] and bool[] read `ints` (bool as 0/1), text[], jsonb[]
    // and numeric[] read `texts`; `nulls` is empty (no NULL element) or one flag per element.
    // jsonb and numeric elements are converted here, not by a cast in the statement: the
    // planner folds a cast of a parameter into its plan, which parsed every element of a
    // batch's array in one memory context that is freed only with the plan.
    std::vector<int64_t> ints;
    std::vector<std::string> texts;
    std::vector<bool> nulls;
    Datum datum = 0;  // Jsonb

    static Arg make(Kind k, int64_t i = 0, std::string s = {}, bool b = false, bool null = false) {
        Arg p;
        p.kind = k;
        p.i = i;
        p.s = std::move(s);
        p.b = b;
        p.is_null = null;
        return p;
    }
    static Arg null_of(Kind k) { return make(k, 0, {}, false, true); }
    static Arg int8(int64_t v) { return make(Kind::Int8, v); }
    static Arg int4(int32_t v) { return make(Kind::Int4, v); }
    static Arg text(std::string v) { return make(Kind::Text, 0, std::move(v)); }
    static Arg ts_ms(int64_t ms) { return make(Kind::Timestamptz, ms); }
    static Arg boolean(bool v) { return make(Kind::Bool, 0, {}, v); }
    template <typename T>
    static Arg opt_int8(const std::optional<T>& v) {
        return v ? int8(int64_t(*v)) : null_of(Kind::Int8);
    }
    template <typename T>
    static Arg opt_int4(const std::optional<T>& v) {
        return v ? int4(int32_t(*v)) : null_of(Kind::Int4);
    }
    static Arg opt_text(const std::string& v) { return v.empty() ? null_of(Kind::Text) : text(v); }
    static Arg opt_ts_ms(const std::optional<int64_t>& v) {
        return v ? ts_ms(*v) : null_of(Kind::Timestamptz);
    }
    static Arg int8_array(std::vector<int64_t> v, std::vector<bool> nulls = {}) {
        Arg p = make(Kind::Int8Array);
        p.ints = std::move(v);
        p.nulls = std::move(nulls);
        return p;
    }
    static Arg bool_array(const std::vector<bool>& v) {
        Arg p = make(Kind::BoolArray);
        p.ints.assign(v.begin(), v.end());
        return p;
    }
    static Arg jsonb(Datum d) {
        Arg p = make(Kind::Jsonb);
        p.datum = d;
        return p;
    }
    static Arg ts_array(std::vector<int64_t> ms, std::vector<bool> nulls = {}) {
        Arg p = make(Kind::TimestamptzArray);
        p.ints = std::move(ms);
        p.nulls = std::move(nulls);
        return p;
    }
    static Arg text_array(std::vector<std::string> v, std::vector<bool> nulls = {},
                          Kind kind = Kind::TextArray) {
        Arg p = make(kind);
        p.texts = std::move(v);
        p.nulls = std::move(nulls);
        return p;
    }
    bool reads_texts() const {
        return kind == Kind::TextArray || kind == Kind::JsonbArray || kind == Kind::NumericArray;
    }
};

// One value of a result, read as its type: integers (int2, int4, int8), booleans and
// timestamptz straight from their Datum, everything else (numeric, jsonb, text ...) as its
// text form, which for those types is exact. Nothing is parsed back from text.
class Value {
  public:
    static Value null() { return Value(); }
    static Value integer(int64_t v) {
        Value x;
        x.kind_ = Kind::Integer;
        x.i_ = v;
        return x;
    }
    static Value boolean(bool v) {
        Value x;
        x.kind_ = Kind::Boolean;
        x.i_ = v;
        return x;
    }
    // A timestamptz, in microseconds since the Unix epoch.
    static Value time_us(int64_t us) {
        Value x;
        x.kind_ = Kind::Time;
        x.i_ = us;
        return x;
    }
    static Value text(std::string v) {
        Value x;
        x.kind_ = Kind::Text;
        x.s_ = std::move(v);
        return x;
    }

    bool is_null() const { return kind_ == Kind::Null; }
    // An integer column (0 when NULL); a text or boolean column is an error.
    int64_t int8() const;
    std::optional<int64_t> opt_int8() const {
        if (is_null()) return std::nullopt;
        return int8();
    }
    // A timestamptz column in Unix milliseconds, rounded down (exactly, as the derivation
    // reads times); nothing when NULL.
    std::optional<int64_t> opt_ms() const;
    int64_t ms() const { return opt_ms().value_or(0); }
    // A boolean column (false when NULL).
    bool truth() const;
    // The text form of a text-like column, `otherwise` when NULL.
    std::string str(const std::string& otherwise = "") const;
    std::optional<std::string> opt_str() const {
        if (is_null()) return std::nullopt;
        return str();
    }

  private:
    enum class Kind { Null, Integer, Boolean, Time, Text } kind_ = Kind::Null;
    int64_t i_ = 0;
    std::string s_;
};

// One row of a result; its values are read by column name (the statement's names).
class Row {
  public:
    Row() = default;
    Row(std::shared_ptr<const std::vector<std::string>> names, std::vector<Value> values)
        : names_(std::move(names)), values_(std::move(values)) {}
    // The column of that name; an error names it when the statement has none.
    const Value& operator[](std::string_view name) const;
    const Value& operator[](const char* name) const { return (*this)[std::string_view(name)]; }
    size_t size() const { return values_.size(); }

  private:
    std::shared_ptr<const std::vector<std::string>> names_;
    std::vector<Value> values_;
};

// The quoted name of the schema that holds the function being called.
std::string extension_schema(Oid function_oid);

// Connects to SPI for the duration of one entry point.
class SpiSession {
  public:
    explicit SpiSession(std::string schema);
    ~SpiSession();
    SpiSession(const SpiSession&) = delete;
    SpiSession& operator=(const SpiSession&) = delete;

    const std::string& schema() const { return schema_; }

    // Executes `sql` ("@s." is replaced by the quoted schema) with a kept plan; returns rows.
    std::vector<Row> query(const std::string& sql, const std::vector<Arg>& params = {},
                           bool read_only = false, long limit = 0);
    // Same, returning the number of rows processed.
    uint64_t exec(const std::string& sql, const std::vector<Arg>& params = {});

    void finish();  // SPI_finish on the success path

  private:
    uint64_t run(const std::string& sql, const std::vector<Arg>& params, bool read_only, long limit,
                 SPITupleTable** table);

    std::string schema_;
    bool connected_ = false;
    // This schema's kept plans, by statement text (see spi.cpp).
    std::unordered_map<std::string, SPIPlanPtr>* plans_ = nullptr;
};

}  // namespace attendance::pg
