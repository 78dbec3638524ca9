// json.cpp: recursive-descent JSON parser (RFC 8259, \u escapes to UTF-8).
#include "data/json.h"

#include <cctype>
#include <charconv>
#include <cstdio>

#include "core/error.h"
#include "data/mesh.h"  // read_file_bytes

namespace iflame {
namespace {

struct JsonParser {
  std::string_view s;
  const std::string& name;
  size_t i = 0;
  int depth = 0;

  [[noreturn]] void fail(const std::string& what) { IFLAME_REJECT(name, ": byte ", i, ": ", what); }
  void skip_ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  }
  bool eat(char c) {
    skip_ws();
    if (i < s.size() && s[i] == c) {
      i++;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(str("expected '", c, "'"));
  }
  void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) out += char(cp);
    else if (cp < 0x800) { out += char(0xC0 | (cp >> 6)); out += char(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) { out += char(0xE0 | (cp >> 12)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
    else { out += char(0xF0 | (cp >> 18)); out += char(0x80 | ((cp >> 12) & 0x3F)); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F)); }
  }
  uint32_t hex4() {
    if (i + 4 > s.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
      char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else fail("bad \\u escape");
    }
    return v;
  }
  std::string parse_string() {
    skip_ws();
    if (i >= s.size() || s[i] != '"') fail("expected a string");
    i++;
    std::string out;
    while (true) {
      if (i >= s.size()) fail("unterminated string");
      char c = s[i++];
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i >= s.size()) fail("unterminated escape");
      char e = s[i++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            i += 2;
            uint32_t lo = hex4();
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else fail("bad surrogate pair");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail(str("bad escape '\\", e, "'"));
      }
    }
    return out;
  }
  JsonValue parse_value() {
    if (++depth > 64) fail("nesting deeper than 64");
    skip_ws();
    if (i >= s.size()) fail("unexpected end of input");
    JsonValue v;
    char c = s[i];
    if (c == '{') {
      i++;
      v.kind = JsonValue::Kind::Object;
      if (!eat('}')) {
        do {
          std::string key = parse_string();
          expect(':');
          v.members.emplace_back(std::move(key), parse_value());
        } while (eat(','));
        expect('}');
      }
    } else if (c == '[') {
      i++;
      v.kind = JsonValue::Kind::Array;
      if (!eat(']')) {
        do v.items.push_back(parse_value());
        while (eat(','));
        expect(']');
      }
    } else if (c == '"') {
      v.kind = JsonValue::Kind::String;
      v.string = parse_string();
    } else if (s.substr(i, 4) == "true") {
      i += 4;
      v.kind = JsonValue::Kind::Bool;
      v.boolean = true;
    } else if (s.substr(i, 5) == "false") {
      i += 5;
      v.kind = JsonValue::Kind::Bool;
    } else if (s.substr(i, 4) == "null") {
      i += 4;
    } else {
      size_t start = i;
      while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '-' || s[i] == '+' ||
                              s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
        i++;
      auto r = std::from_chars(s.data() + start, s.data() + i, v.number);
      if (start == i || r.ec != std::errc() || r.ptr != s.data() + i) {
        i = start;
        fail("expected a value");
      }
      v.kind = JsonValue::Kind::Number;
    }
    depth--;
    return v;
  }
};

}  // namespace

const JsonValue* JsonValue::find(const std::string& key) const {
  if (kind != Kind::Object) return nullptr;
  for (const auto& m : members)
    if (m.first == key) return &m.second;
  return nullptr;
}

JsonValue parse_json(std::string_view text, const std::string& name) {
  JsonParser p{text, name};
  JsonValue v = p.parse_value();
  p.skip_ws();
  if (p.i != text.size()) p.fail("trailing characters after the value");
  return v;
}

JsonValue read_json_file(const std::string& path) { return parse_json(read_file_bytes(path), path); }

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

}  // namespace iflame
