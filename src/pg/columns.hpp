// Rows written by one statement as typed arrays, one array per column, declared once
// (docs/architecture.md, "The C++/PostgreSQL boundary"): the declaration gives the
// statement's unnest(...) list, its column names and its arguments in the same order, so
// the three can never disagree, and the write is one statement whatever the number of rows.
//
//   struct Connections : Columns {
//       Column<int64_t> session_id{*this, "session_id"};
//       Column<Time> join_time{*this, "join_time"};
//   } rows;
//   rows.session_id.add(1); rows.join_time.add(std::nullopt);
//   spi.exec("INSERT INTO t (" + rows.names() + ") SELECT " + rows.names("x.") +
//            " FROM " + rows.unnest("x"), rows.args());
#pragma once

#include "pg/spi.hpp"

#include <optional>
#include <string>
#include <vector>

namespace attendance::pg {

// A statement with each {name} in it replaced by `text` (the parts a statement is built
// from: an unnest list, a parameter, a clause that depends on the schema).
inline std::string fill_in(std::string sql, const std::string& name, const std::string& text) {
    const std::string mark = "{" + name + "}";
    for (size_t at = sql.find(mark); at != std::string::npos; at = sql.find(mark, at + text.size()))
        sql.replace(at, mark.size(), text);
    return sql;
}

// Column value types beside int64_t, bool and std::string (text, never NULL):
struct Time {};      // timestamptz, from Unix ms; std::nullopt is NULL
struct OptInt8 {};   // bigint; std::nullopt is NULL
struct OptText {};   // text; "" is NULL
struct JsonText {};  // jsonb, from its text (read by jsonb's input function, args in spi.hpp)
struct Numeric {};   // numeric(5,2), from its exact text (e.g. "94.99"); "" is NULL

class Columns {
  public:
    Columns() = default;
    Columns(const Columns&) = delete;
    Columns& operator=(const Columns&) = delete;

    // "a, b, c", each name after `prefix` ("x." for the unnest's alias).
    std::string names(const std::string& prefix = "") const {
        std::string out;
        for (const auto& c : columns_) out += (out.empty() ? "" : ", ") + prefix + c.name;
        return out;
    }
    // "unnest($first::bigint[], ...) AS alias(a, b, c)": parameters from $first on.
    std::string unnest(const std::string& alias, int first = 1) const {
        std::string out = "unnest(";
        for (size_t k = 0; k < columns_.size(); ++k)
            out +=
                (k ? ", $" : "$") + std::to_string(first + int(k)) + "::" + columns_[k].type + "[]";
        return out + ") AS " + alias + "(" + names() + ")";
    }
    // The arguments, in the order of unnest(): a copy, or (take) moved out, which leaves the
    // columns empty (for the one statement that writes them: a batch's rows are large).
    std::vector<Arg> args() const {
        std::vector<Arg> out;
        for (const auto& c : columns_) out.push_back(c.arg);
        return out;
    }
    std::vector<Arg> take() {
        std::vector<Arg> out;
        out.reserve(columns_.size());
        for (auto& c : columns_) out.push_back(std::move(c.arg));
        return out;
    }
    size_t width() const { return columns_.size(); }
    // Room for n rows in every column (a batch's rows are many: no reallocation on the way).
    void reserve(size_t n) {
        for (auto& c : columns_) {
            if (c.arg.reads_texts())
                c.arg.texts.reserve(n);
            else
                c.arg.ints.reserve(n);
        }
    }
    size_t rows() const { return columns_.empty() ? 0 : length(columns_.front().arg); }
    bool empty() const { return rows() == 0; }

  protected:
    template <typename T>
    friend class Column;
    friend class NullableColumn;
    struct Declared {
        std::string name;
        std::string type;  // the SQL type of an element
        Arg arg;
    };
    size_t declare(std::string name, std::string type, Arg arg) {
        columns_.push_back({std::move(name), std::move(type), std::move(arg)});
        return columns_.size() - 1;
    }
    Arg& arg(size_t at) { return columns_[at].arg; }
    static size_t length(const Arg& a) { return a.texts.size() + a.ints.size(); }

  private:
    std::vector<Declared> columns_;
};

template <typename T>
class Column;

template <>
class Column<int64_t> {
  public:
    Column(Columns& rows, std::string name)
        : rows_(rows), at_(rows.declare(std::move(name), "bigint", Arg::int8_array({}))) {}
    void add(int64_t v) { rows_.arg(at_).ints.push_back(v); }

  private:
    Columns& rows_;
    size_t at_;
};

template <>
class Column<bool> {
  public:
    Column(Columns& rows, std::string name)
        : rows_(rows), at_(rows.declare(std::move(name), "boolean", Arg::bool_array({}))) {}
    void add(bool v) { rows_.arg(at_).ints.push_back(v ? 1 : 0); }

  private:
    Columns& rows_;
    size_t at_;
};

// Columns whose elements may be NULL keep one flag per element.
class NullableColumn {
  protected:
    // The SQL type of a text-read array's elements: the type of its parameter, so that the
    // statement casts nothing (a cast of a parameter is folded into a custom plan, element
    // by element, in the planner's memory).
    static std::string element_type(Arg::Kind kind) {
        return kind == Arg::Kind::JsonbArray     ? "jsonb"
               : kind == Arg::Kind::NumericArray ? "numeric"
                                                 : "text";
    }
    NullableColumn(Columns& rows, size_t at) : rows_(rows), at_(at) {}
    Arg& arg() { return rows_.arg(at_); }
    Columns& rows_;
    size_t at_;
};

template <>
class Column<std::string> : NullableColumn {
  public:
    Column(Columns& rows, std::string name, Arg::Kind kind = Arg::Kind::TextArray)
        : NullableColumn(rows, rows.declare(std::move(name), element_type(kind),
                                            Arg::text_array({}, {}, kind))) {}
    void add(std::string v) {
        arg().texts.push_back(std::move(v));
        arg().nulls.push_back(false);
    }
};

template <>
class Column<OptText> : NullableColumn {
  public:
    Column(Columns& rows, std::string name, Arg::Kind kind = Arg::Kind::TextArray)
        : NullableColumn(rows, rows.declare(std::move(name), element_type(kind),
                                            Arg::text_array({}, {}, kind))) {}
    void add(std::string v) {
        arg().nulls.push_back(v.empty());
        arg().texts.push_back(std::move(v));
    }
};

template <>
class Column<JsonText> : public Column<std::string> {
  public:
    Column(Columns& rows, std::string name)
        : Column<std::string>(rows, std::move(name), Arg::Kind::JsonbArray) {}
};

template <>
class Column<Numeric> : public Column<OptText> {
  public:
    Column(Columns& rows, std::string name)
        : Column<OptText>(rows, std::move(name), Arg::Kind::NumericArray) {}
};

template <>
class Column<OptInt8> : NullableColumn {
  public:
    Column(Columns& rows, std::string name)
        : NullableColumn(rows, rows.declare(std::move(name), "bigint", Arg::int8_array({}))) {}
    void add(std::optional<int64_t> v) {
        arg().ints.push_back(v.value_or(0));
        arg().nulls.push_back(!v);
    }
};

template <>
class Column<Time> : NullableColumn {
  public:
    Column(Columns& rows, std::string name)
        : NullableColumn(rows, rows.declare(std::move(name), "timestamptz", Arg::ts_array({}))) {}
    void add(std::optional<int64_t> ms) {
        arg().ints.push_back(ms.value_or(0));
        arg().nulls.push_back(!ms);
    }
};

}  // namespace attendance::pg
