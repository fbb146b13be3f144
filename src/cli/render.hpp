// Output: ANSI colours (only on a terminal), psql-like aligned tables, and text that
// came from webhooks made safe for a terminal.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace attendancectl {

enum class Color { None, Bold, Dim, Red, Green, Yellow, Blue, Magenta, Cyan };

class Style {
  public:
    explicit Style(bool enabled = false) : enabled_(enabled) {}
    bool enabled() const { return enabled_; }
    std::string paint(std::string_view text, Color c) const;
    std::string bold(std::string_view t) const { return paint(t, Color::Bold); }
    std::string dim(std::string_view t) const { return paint(t, Color::Dim); }

  private:
    bool enabled_;
};

// Should a stream (1 = stdout, 2 = stderr) get colours? `force`: from --color/--no-color.
// NO_COLOR (any non-empty value) and TERM=dumb turn them off.
bool want_color(int fd, int force /* -1 never, 0 auto, 1 always */);

// Replaces control characters (C0, DEL, C1) and invalid UTF-8 with U+FFFD so that a
// participant name can never move the cursor or recolour the terminal. Newlines are
// kept when `keep_newlines`.
std::string sanitize(std::string_view text, bool keep_newlines = false);

// Columns a UTF-8 string occupies on a terminal (wide CJK = 2, combining marks = 0).
std::size_t display_width(std::string_view text);

// Colour for well-known values: attendance statuses, webhook results and events.
Color color_for(std::string_view value);

enum class Align { Left, Right };

struct Cell {
    std::string text;
    Color color = Color::None;
    Cell(std::string t = {}, Color c = Color::None) : text(std::move(t)), color(c) {}
    Cell(const char* t, Color c = Color::None) : text(t), color(c) {}
};

struct Table {
    std::vector<std::string> headers;
    std::vector<Align> align;  // per column; missing = Left
    std::vector<std::vector<Cell>> rows;
};

// psql's aligned format:  " a | b " header, "---+---" rule, rows, and "(N rows)".
std::string render_table(const Table& t, const Style& style, bool footer = true);

// "key: value" lines with the keys aligned.
std::string render_pairs(const std::vector<std::pair<std::string, Cell>>& pairs,
                         const Style& style);

}  // namespace attendancectl
