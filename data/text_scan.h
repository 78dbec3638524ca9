// text_scan.h: line and word scanning over a byte buffer, for the text mesh
// parsers. Nothing here reads past the end of the buffer (the parsers are fuzzed),
// and number parsing is locale-independent (std::from_chars).
#pragma once
#include <charconv>
#include <cstdio>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace iflame::scan {

inline bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }

// Walks a buffer line by line; line numbers start at 1.
struct LineReader {
  std::string_view data;
  size_t pos = 0;
  int64_t line_no = 0;
  bool next(std::string_view& line) {
    if (pos >= data.size()) return false;
    size_t end = data.find('\n', pos);
    if (end == std::string_view::npos) end = data.size();
    line = data.substr(pos, end - pos);
    pos = end + 1;
    line_no++;
    return true;
  }
};

// Splits a line into whitespace-separated words (reuses `out`).
inline void split_words(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  size_t i = 0, n = line.size();
  while (i < n) {
    while (i < n && is_space(line[i])) i++;
    size_t start = i;
    while (i < n && !is_space(line[i])) i++;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
}

// The whole word must be a number (a leading '+' is accepted).
inline bool parse_double(std::string_view w, double& v) {
  if (!w.empty() && w[0] == '+') w.remove_prefix(1);
  if (w.empty()) return false;
  auto r = std::from_chars(w.data(), w.data() + w.size(), v);
  return r.ec == std::errc() && r.ptr == w.data() + w.size();
}

inline bool parse_int(std::string_view w, int64_t& v) {
  if (!w.empty() && w[0] == '+') w.remove_prefix(1);
  if (w.empty()) return false;
  auto r = std::from_chars(w.data(), w.data() + w.size(), v);
  return r.ec == std::errc() && r.ptr == w.data() + w.size();
}

inline bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); i++) {
    char a = s[i], b = prefix[i];
    if (a >= 'A' && a <= 'Z') a = char(a - 'A' + 'a');
    if (b >= 'A' && b <= 'Z') b = char(b - 'A' + 'a');
    if (a != b) return false;
  }
  return true;
}

// "0x1f": a byte shown in a message, never echoed raw to a terminal.
inline std::string hex_byte(char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
  return buf;
}

// The offset of the first byte that no text file holds (NUL and the control
// bytes other than tab, line feed, carriage return, form feed and vertical tab),
// or npos when `data` reads as text. UTF-8 bytes are text.
inline size_t first_binary_byte(std::string_view data) {
  for (size_t i = 0; i < data.size(); i++) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7f) return i;
  }
  return std::string_view::npos;
}

}  // namespace iflame::scan
