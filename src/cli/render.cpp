#include "cli/render.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace attendancectl {

namespace {

const char* sgr(Color c) {
    switch (c) {
        case Color::Bold:
            return "1";
        case Color::Dim:
            return "2";
        case Color::Red:
            return "31";
        case Color::Green:
            return "32";
        case Color::Yellow:
            return "33";
        case Color::Blue:
            return "34";
        case Color::Magenta:
            return "35";
        case Color::Cyan:
            return "36";
        case Color::None:
            break;
    }
    return nullptr;
}

// Decodes one UTF-8 sequence at s[i]; returns the code point or -1 (then len = 1).
int32_t decode(std::string_view s, std::size_t i, std::size_t& len) {
    auto b = static_cast<unsigned char>(s[i]);
    int32_t cp;
    std::size_t n;
    if (b < 0x80) {
        len = 1;
        return b;
    } else if ((b & 0xE0) == 0xC0) {
        cp = b & 0x1F;
        n = 2;
    } else if ((b & 0xF0) == 0xE0) {
        cp = b & 0x0F;
        n = 3;
    } else if ((b & 0xF8) == 0xF0) {
        cp = b & 0x07;
        n = 4;
    } else {
        len = 1;
        return -1;
    }
    if (i + n > s.size()) {
        len = 1;
        return -1;
    }
    for (std::size_t k = 1; k < n; ++k) {
        auto c = static_cast<unsigned char>(s[i + k]);
        if ((c & 0xC0) != 0x80) {
            len = 1;
            return -1;
        }
        cp = (cp << 6) | (c & 0x3F);
    }
    static const int32_t min_for_len[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        len = 1;
        return -1;
    }
    len = n;
    return cp;
}

bool is_combining(int32_t cp) {
    return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x0483 && cp <= 0x0489) ||
           (cp >= 0x0591 && cp <= 0x05BD) || (cp >= 0x0610 && cp <= 0x061A) ||
           (cp >= 0x064B && cp <= 0x065F) || cp == 0x0670 || (cp >= 0x06D6 && cp <= 0x06ED) ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0xFE00 && cp <= 0xFE0F) || cp == 0xFEFF;
}

bool is_wide(int32_t cp) {
    return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF && cp != 0x303F) ||
           (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
           (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
           (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
           (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD);
}

std::string pad(const std::string& text, std::size_t width, Align a) {
    std::size_t w = display_width(text);
    std::string fill(width > w ? width - w : 0, ' ');
    return a == Align::Right ? fill + text : text + fill;
}

}  // namespace

std::string Style::paint(std::string_view text, Color c) const {
    const char* code = sgr(c);
    if (!enabled_ || code == nullptr || text.empty()) return std::string(text);
    return std::string("\x1b[") + code + "m" + std::string(text) + "\x1b[0m";
}

bool want_color(int fd, int force) {
    if (force < 0) return false;
    if (force > 0) return true;
    const char* no_color = std::getenv("NO_COLOR");
    if (no_color != nullptr && *no_color != '\0') return false;
    const char* term = std::getenv("TERM");
    if (term != nullptr && std::strcmp(term, "dumb") == 0) return false;
    return isatty(fd) != 0;
}

std::string sanitize(std::string_view text, bool keep_newlines) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size();) {
        std::size_t len = 1;
        int32_t cp = decode(text, i, len);
        if (cp == '\n' && keep_newlines) {
            out += '\n';
        } else if (cp < 0 || cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            out += "\xEF\xBF\xBD";  // U+FFFD
        } else {
            out.append(text.substr(i, len));
        }
        i += len;
    }
    return out;
}

std::size_t display_width(std::string_view text) {
    std::size_t width = 0;
    bool in_escape = false;  // our own SGR sequences do not take space
    for (std::size_t i = 0; i < text.size();) {
        std::size_t len = 1;
        int32_t cp = decode(text, i, len);
        i += len;
        if (in_escape) {
            if (cp == 'm') in_escape = false;
            continue;
        }
        if (cp == 0x1B) {
            in_escape = true;
            continue;
        }
        if (cp < 0) {
            width += 1;
        } else if (!is_combining(cp)) {
            width += is_wide(cp) ? 2 : 1;
        }
    }
    return width;
}

Color color_for(std::string_view v) {
    if (v == "present" || v == "recorded" || v == "participant_joined" || v == "calculated" ||
        v == "In meeting" || v == "succeeded" || v == "running" || v == "active")
        return Color::Green;
    if (v == "late" || v == "due" || v == "participant_left" || v == "duplicate")
        return Color::Yellow;
    if (v == "partial" || v == "excused" || v == "provisional") return Color::Cyan;
    if (v == "absent" || v == "rejected" || v == "failed" || v == "retired" ||
        v == "participant_connection_aborted" || v == "not running")
        return Color::Red;
    if (v == "ignored") return Color::Dim;
    return Color::None;
}

std::string render_table(const Table& t, const Style& style, bool footer) {
    const std::size_t n = t.headers.size();
    std::vector<std::size_t> width(n, 0);
    std::vector<std::vector<std::string>> text(t.rows.size(), std::vector<std::string>(n));
    for (std::size_t c = 0; c < n; ++c) width[c] = display_width(t.headers[c]);
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
        for (std::size_t c = 0; c < n && c < t.rows[r].size(); ++c) {
            text[r][c] = sanitize(t.rows[r][c].text);
            width[c] = std::max(width[c], display_width(text[r][c]));
        }
    }
    auto align = [&](std::size_t c) { return c < t.align.size() ? t.align[c] : Align::Left; };
    std::string out;
    for (std::size_t c = 0; c < n; ++c) {
        // psql centres headers; left-aligned headers read as well and are simpler.
        std::string h = c + 1 < n ? pad(t.headers[c], width[c], Align::Left) : t.headers[c];
        out += (c ? " | " : " ") + style.bold(h);
    }
    out += "\n";
    for (std::size_t c = 0; c < n; ++c) out += (c ? "-+-" : "-") + std::string(width[c], '-');
    out += "-\n";
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
        std::string line;
        for (std::size_t c = 0; c < n; ++c) {
            Color color = c < t.rows[r].size() ? t.rows[r][c].color : Color::None;
            line += (c ? " | " : " ") + style.paint(pad(text[r][c], width[c], align(c)), color);
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out += line + "\n";
    }
    if (footer) {
        out += "(" + std::to_string(t.rows.size()) + (t.rows.size() == 1 ? " row)\n" : " rows)\n");
    }
    return out;
}

std::string render_pairs(const std::vector<std::pair<std::string, Cell>>& pairs,
                         const Style& style) {
    std::size_t width = 0;
    for (const auto& [k, v] : pairs) width = std::max(width, display_width(k));
    std::string out;
    for (const auto& [k, v] : pairs) {
        out += "  " + style.bold(pad(k + ":", width + 1, Align::Left)) + " " +
               style.paint(sanitize(v.text), v.color) + "\n";
    }
    return out;
}

}  // namespace attendancectl
