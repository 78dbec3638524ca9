// json.h: the small JSON subset the dataset sidecar needs: a value tree
// (null, bool, number, string, array, object) parsed from text, and string
// escaping for writers. Objects keep their keys in file order. Errors name the
// source and the byte offset. Nesting is limited (the parser is fuzzed).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace iflame {

struct JsonValue {
  enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<JsonValue> items;                              // Array
  std::vector<std::pair<std::string, JsonValue>> members;    // Object

  bool is_object() const { return kind == Kind::Object; }
  bool is_array() const { return kind == Kind::Array; }
  // Member lookup (nullptr when absent or not an object).
  const JsonValue* find(const std::string& key) const;
};

JsonValue parse_json(std::string_view text, const std::string& name);
JsonValue read_json_file(const std::string& path);

// "text" with quotes and escapes, ready to write.
std::string json_quote(const std::string& s);

}  // namespace iflame
