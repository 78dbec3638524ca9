// mesh_obj.cpp: Wavefront OBJ reader and writer.
// Reads `v x y z [w ...]` and `f i j k ...` lines (every other statement: vt,
// vn, o, g, s, usemtl, mtllib, l, comments, is ignored). A face corner is
// `a`, `a/b`, `a//c` or `a/b/c`; only the vertex index `a` is used. Positive
// indices are 1-based, negative ones count back from the last vertex read so
// far. Polygons are fan-triangulated: (0,1,2), (0,2,3), ... A face of 1 or 2
// corners (seen in the wild) becomes a degenerate triangle (a, b, b), which the
// tokenizer drops and counts, rather than an error.
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "data/mesh.h"
#include "data/text_scan.h"

namespace iflame {

Mesh parse_obj(std::string_view data, const std::string& name) {
  const size_t binary = scan::first_binary_byte(data);
  IFLAME_REQUIRE(binary == std::string_view::npos, name, ": not an OBJ file (a text format), but byte ",
                 scan::hex_byte(data[binary]), " at offset ", binary, " is binary");
  Mesh mesh;
  scan::LineReader lines{data};
  std::string_view line;
  std::vector<std::string_view> words;
  std::vector<int64_t> corners;
  std::vector<int64_t> face_lines;  // line of each triangle, for the final range check
  while (lines.next(line)) {
    size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    scan::split_words(line, words);
    if (words.empty()) continue;
    if (words[0] == "v") {
      IFLAME_REQUIRE(words.size() >= 4, name, ":", lines.line_no, ": a vertex needs 3 coordinates");
      std::array<float, 3> p;
      for (int k = 0; k < 3; k++) {
        double v;
        IFLAME_REQUIRE(scan::parse_double(words[1 + k], v), name, ":", lines.line_no,
                     ": bad vertex coordinate '", words[1 + k], "'");
        IFLAME_REQUIRE(std::isfinite(v) && std::fabs(v) <= 3.0e38, name, ":", lines.line_no,
                     ": vertex coordinate is not a finite float: '", words[1 + k], "'");
        p[k] = static_cast<float>(v);
      }
      mesh.vertices.push_back(p);
    } else if (words[0] == "f") {
      IFLAME_REQUIRE(words.size() >= 2, name, ":", lines.line_no, ": a face without vertices");
      corners.clear();
      const int64_t nv = static_cast<int64_t>(mesh.vertices.size());
      for (size_t k = 1; k < words.size(); k++) {
        std::string_view w = words[k];
        size_t slash = w.find('/');
        std::string_view first = slash == std::string_view::npos ? w : w.substr(0, slash);
        int64_t idx;
        IFLAME_REQUIRE(scan::parse_int(first, idx), name, ":", lines.line_no, ": bad face index '", w, "'");
        IFLAME_REQUIRE(idx != 0, name, ":", lines.line_no, ": face index 0 (OBJ indices start at 1)");
        if (idx < 0) {
          IFLAME_REQUIRE(idx >= -nv, name, ":", lines.line_no, ": relative face index ", idx, " but only ",
                       nv, " vertices so far");
          idx = nv + idx;
        } else {
          IFLAME_REQUIRE(idx <= (int64_t(1) << 31) - 1, name, ":", lines.line_no, ": face index ", idx,
                       " too large");
          idx = idx - 1;
        }
        corners.push_back(idx);
      }
      while (corners.size() < 3) corners.push_back(corners.back());  // 1 or 2 corners: a degenerate triangle
      for (size_t k = 1; k + 1 < corners.size(); k++) {
        mesh.faces.push_back({int(corners[0]), int(corners[k]), int(corners[k + 1])});
        face_lines.push_back(lines.line_no);
      }
    }
  }
  // Positive indices may in principle refer to vertices defined further down.
  for (size_t f = 0; f < mesh.faces.size(); f++)
    for (int k = 0; k < 3; k++)
      IFLAME_REQUIRE(mesh.faces[f][k] < static_cast<int64_t>(mesh.vertices.size()), name, ":", face_lines[f],
                   ": face index ", mesh.faces[f][k] + 1, " but the file has ", mesh.vertices.size(),
                   " vertices");
  return mesh;
}

Mesh read_obj(const std::string& path) { return parse_obj(read_file_bytes(path), path); }

}  // namespace iflame
