// mesh_stl.cpp: STL reader, binary and ascii. STL is a triangle soup: every
// facet brings its own three vertices (the tokenizer merges equal positions).
// A file is binary when its size is exactly 84 + 50 * (count in bytes 80..83),
// which also catches binary files whose 80-byte header starts with "solid".
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "data/mesh.h"
#include "data/text_scan.h"

namespace iflame {
namespace {

Mesh parse_stl_binary(std::string_view data, const std::string& name) {
  IFLAME_REQUIRE(data.size() >= 84, name, ": binary STL shorter than its 84-byte header (", data.size(), " bytes)");
  uint32_t count;
  std::memcpy(&count, data.data() + 80, 4);
  const uint64_t need = 84 + 50ull * count;
  IFLAME_REQUIRE(data.size() >= need, name, ": binary STL declares ", count, " triangles (", need,
               " bytes) but has ", data.size(), " bytes");
  IFLAME_REQUIRE(count <= 700000000u, name, ": binary STL with ", count, " triangles is too large");
  Mesh mesh;
  mesh.vertices.reserve(3ull * count);
  mesh.faces.reserve(count);
  for (uint32_t t = 0; t < count; t++) {
    const char* p = data.data() + 84 + 50ull * t + 12;  // skip the normal
    for (int k = 0; k < 3; k++) {
      std::array<float, 3> v;
      std::memcpy(v.data(), p + 12 * k, 12);
      for (float c : v)
        IFLAME_REQUIRE(std::isfinite(c), name, ": byte ", 84 + 50ull * t + 12 + 12 * k,
                     ": non-finite vertex coordinate in triangle ", t);
      mesh.vertices.push_back(v);
    }
    int b = static_cast<int>(3 * t);
    mesh.faces.push_back({b, b + 1, b + 2});
  }
  return mesh;
}

Mesh parse_stl_ascii(std::string_view data, const std::string& name) {
  Mesh mesh;
  scan::LineReader lines{data};
  std::string_view line;
  std::vector<std::string_view> words;
  std::vector<int> loop;
  bool in_loop = false;
  while (lines.next(line)) {
    scan::split_words(line, words);
    if (words.empty()) continue;
    if (words[0] == "outer") {
      IFLAME_REQUIRE(!in_loop, name, ":", lines.line_no, ": 'outer loop' inside a loop");
      in_loop = true;
      loop.clear();
    } else if (words[0] == "vertex") {
      IFLAME_REQUIRE(in_loop, name, ":", lines.line_no, ": vertex outside 'outer loop'");
      IFLAME_REQUIRE(words.size() == 4, name, ":", lines.line_no, ": a vertex needs 3 coordinates");
      std::array<float, 3> v;
      for (int k = 0; k < 3; k++) {
        double c;
        IFLAME_REQUIRE(scan::parse_double(words[1 + k], c) && std::isfinite(c) && std::fabs(c) <= 3.0e38, name, ":",
                     lines.line_no, ": bad vertex coordinate '", words[1 + k], "'");
        v[k] = static_cast<float>(c);
      }
      loop.push_back(static_cast<int>(mesh.vertices.size()));
      mesh.vertices.push_back(v);
    } else if (words[0] == "endloop") {
      IFLAME_REQUIRE(in_loop, name, ":", lines.line_no, ": endloop without 'outer loop'");
      IFLAME_REQUIRE(loop.size() >= 3, name, ":", lines.line_no, ": a facet needs at least 3 vertices");
      for (size_t k = 1; k + 1 < loop.size(); k++) mesh.faces.push_back({loop[0], loop[k], loop[k + 1]});
      in_loop = false;
    }
    // solid, facet normal, endfacet, endsolid: nothing to keep.
  }
  IFLAME_REQUIRE(!in_loop, name, ": file ends inside a facet");
  return mesh;
}

}  // namespace

Mesh parse_stl(std::string_view data, const std::string& name) {
  if (data.size() >= 84) {
    uint32_t count;
    std::memcpy(&count, data.data() + 80, 4);
    if (data.size() == 84 + 50ull * count) return parse_stl_binary(data, name);
  }
  size_t i = 0;
  while (i < data.size() && scan::is_space(data[i])) i++;
  // Ascii starts with "solid" and has no NUL byte (binary counts and floats nearly always do).
  bool text = data.substr(0, 4096).find('\0') == std::string_view::npos;
  if (text && scan::starts_with_ci(data.substr(i), "solid")) return parse_stl_ascii(data, name);
  return parse_stl_binary(data, name);
}

Mesh read_stl(const std::string& path) { return parse_stl(read_file_bytes(path), path); }

}  // namespace iflame
