// mesh_off.cpp: OFF reader (Object File Format, as used by ModelNet and
// Princeton's shape benchmark). Header keyword OFF (also COFF, NOFF, CNOFF,
// STOFF: extra per-vertex values are ignored), then "nv nf ne" (possibly on
// the keyword's line), nv vertex lines, nf face lines "n i_1 ... i_n [colour]".
// Comments start with '#'. Polygons are fan-triangulated.
#include <cmath>

#include "core/error.h"
#include "data/mesh.h"
#include "data/text_scan.h"

namespace iflame {

Mesh parse_off(std::string_view data, const std::string& name) {
  const size_t binary = scan::first_binary_byte(data);
  IFLAME_REQUIRE(binary == std::string_view::npos, name, ": not an OFF file (a text format), but byte ",
                 scan::hex_byte(data[binary]), " at offset ", binary, " is binary");
  scan::LineReader lines{data};
  std::string_view line;
  std::vector<std::string_view> words;
  // Next non-empty line (comments removed) split into words; false at the end.
  auto next_words = [&]() {
    while (lines.next(line)) {
      size_t hash = line.find('#');
      if (hash != std::string_view::npos) line = line.substr(0, hash);
      scan::split_words(line, words);
      if (!words.empty()) return true;
    }
    return false;
  };
  IFLAME_REQUIRE(next_words(), name, ": empty file");
  std::string_view key = words[0];
  IFLAME_REQUIRE(key.size() >= 3 && key.substr(key.size() - 3) == "OFF", name, ":", lines.line_no,
               ": not an OFF file (first word '", key, "')");
  IFLAME_REQUIRE(key.find("4") == std::string_view::npos && key.find("n") == std::string_view::npos, name, ":",
               lines.line_no, ": OFF variant '", key, "' is not supported");
  // The counts may follow the keyword on the same line (e.g. "OFF8 6 0" is not
  // valid, but "OFF 8 6 0" is).
  std::vector<std::string_view> counts(words.begin() + 1, words.end());
  if (counts.empty()) {
    IFLAME_REQUIRE(next_words(), name, ": file ends before the vertex and face counts");
    counts = words;
  }
  int64_t nv = 0, nf = 0;
  IFLAME_REQUIRE(counts.size() >= 2 && scan::parse_int(counts[0], nv) && scan::parse_int(counts[1], nf) && nv >= 0 &&
                   nf >= 0,
               name, ":", lines.line_no, ": expected 'vertex_count face_count edge_count'");
  const size_t left = data.size() - std::min(data.size(), lines.pos);
  IFLAME_REQUIRE(static_cast<uint64_t>(nv) <= left && static_cast<uint64_t>(nf) <= left, name, ":", lines.line_no,
               ": counts ", nv, " and ", nf, " are more than the file can hold");
  Mesh mesh;
  mesh.vertices.reserve(static_cast<size_t>(nv));
  for (int64_t i = 0; i < nv; i++) {
    IFLAME_REQUIRE(next_words(), name, ": file ends after ", i, " of ", nv, " vertices");
    IFLAME_REQUIRE(words.size() >= 3, name, ":", lines.line_no, ": a vertex needs 3 coordinates");
    std::array<float, 3> v;
    for (int k = 0; k < 3; k++) {
      double c;
      IFLAME_REQUIRE(scan::parse_double(words[k], c) && std::isfinite(c) && std::fabs(c) <= 3.0e38, name, ":",
                   lines.line_no, ": bad vertex coordinate '", words[k], "'");
      v[k] = static_cast<float>(c);
    }
    mesh.vertices.push_back(v);
  }
  for (int64_t i = 0; i < nf; i++) {
    IFLAME_REQUIRE(next_words(), name, ": file ends after ", i, " of ", nf, " faces");
    int64_t n;
    IFLAME_REQUIRE(scan::parse_int(words[0], n) && n >= 1, name, ":", lines.line_no,
                 ": a face starts with its vertex count (at least 1), got '", words[0], "'");
    IFLAME_REQUIRE(static_cast<int64_t>(words.size()) >= n + 1, name, ":", lines.line_no, ": face lists ",
                 words.size() - 1, " indices, expected ", n);
    std::vector<int> poly(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; k++) {
      int64_t idx;
      IFLAME_REQUIRE(scan::parse_int(words[1 + k], idx) && idx >= 0 && idx < nv, name, ":", lines.line_no,
                   ": bad vertex index '", words[1 + k], "' (", nv, " vertices)");
      poly[k] = static_cast<int>(idx);
    }
    while (poly.size() < 3) poly.push_back(poly.back());  // 1 or 2 corners: degenerate
    for (size_t k = 1; k + 1 < poly.size(); k++) mesh.faces.push_back({poly[0], poly[k], poly[k + 1]});
  }
  return mesh;
}

Mesh read_off(const std::string& path) { return parse_off(read_file_bytes(path), path); }

}  // namespace iflame
