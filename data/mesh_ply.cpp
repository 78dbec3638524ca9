// mesh_ply.cpp: Stanford PLY reader (ascii and binary little-endian) and writer.
// The header declares elements and their properties; every element is read (so
// unknown elements such as edges or materials are skipped correctly in binary
// files), and only vertex x/y/z and the face index list are kept. Big-endian
// files are refused with a clear error rather than misread.
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "data/mesh.h"
#include "data/text_scan.h"

namespace iflame {
namespace {

enum class PlyType { I8, U8, I16, U16, I32, U32, F32, F64 };

bool ply_type_from(std::string_view s, PlyType& t) {
  if (s == "char" || s == "int8") t = PlyType::I8;
  else if (s == "uchar" || s == "uint8") t = PlyType::U8;
  else if (s == "short" || s == "int16") t = PlyType::I16;
  else if (s == "ushort" || s == "uint16") t = PlyType::U16;
  else if (s == "int" || s == "int32") t = PlyType::I32;
  else if (s == "uint" || s == "uint32") t = PlyType::U32;
  else if (s == "float" || s == "float32") t = PlyType::F32;
  else if (s == "double" || s == "float64") t = PlyType::F64;
  else return false;
  return true;
}

size_t ply_type_size(PlyType t) {
  switch (t) {
    case PlyType::I8: case PlyType::U8: return 1;
    case PlyType::I16: case PlyType::U16: return 2;
    case PlyType::I32: case PlyType::U32: case PlyType::F32: return 4;
    case PlyType::F64: return 8;
  }
  return 1;
}

bool ply_type_is_integer(PlyType t) { return t != PlyType::F32 && t != PlyType::F64; }

struct PlyProperty {
  std::string name;
  PlyType type = PlyType::F32;
  bool is_list = false;
  PlyType count_type = PlyType::U8;
};

struct PlyElement {
  std::string name;
  int64_t count = 0;
  std::vector<PlyProperty> props;
};

// Reads values one at a time from the body, ascii or binary.
struct PlyBody {
  std::string_view data;
  size_t pos;
  bool binary;
  const std::string& name;
  scan::LineReader lines;
  std::vector<std::string_view> words;
  size_t word = 0;

  PlyBody(std::string_view d, size_t start, int64_t header_lines, bool bin, const std::string& nm)
      : data(d), pos(start), binary(bin), name(nm), lines{d, start, header_lines} {}

  std::string where() const {
    return binary ? str(name, ": byte ", pos) : str(name, ":", lines.line_no);
  }

  double read(PlyType t) {
    if (binary) {
      size_t n = ply_type_size(t);
      IFLAME_REQUIRE(pos + n <= data.size(), name, ": file ends at byte ", data.size(), " inside the data (needed ",
                   n, " bytes at byte ", pos, ")");
      const char* p = data.data() + pos;
      pos += n;
      switch (t) {
        case PlyType::I8: { int8_t v; std::memcpy(&v, p, 1); return v; }
        case PlyType::U8: { uint8_t v; std::memcpy(&v, p, 1); return v; }
        case PlyType::I16: { int16_t v; std::memcpy(&v, p, 2); return v; }
        case PlyType::U16: { uint16_t v; std::memcpy(&v, p, 2); return v; }
        case PlyType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
        case PlyType::U32: { uint32_t v; std::memcpy(&v, p, 4); return v; }
        case PlyType::F32: { float v; std::memcpy(&v, p, 4); return v; }
        case PlyType::F64: { double v; std::memcpy(&v, p, 8); return v; }
      }
      return 0;
    }
    while (word >= words.size()) {
      std::string_view line;
      IFLAME_REQUIRE(lines.next(line), name, ": file ends inside the data (after line ", lines.line_no, ")");
      scan::split_words(line, words);
      word = 0;
    }
    std::string_view w = words[word++];
    double v;
    if (ply_type_is_integer(t)) {
      int64_t i;
      IFLAME_REQUIRE(scan::parse_int(w, i), where(), ": expected an integer, got '", w, "'");
      v = static_cast<double>(i);
    } else {
      IFLAME_REQUIRE(scan::parse_double(w, v), where(), ": expected a number, got '", w, "'");
    }
    return v;
  }
  // Bytes (binary) or characters (ascii) left: bounds element counts from the header.
  size_t remaining() const {
    size_t at = binary ? pos : lines.pos;
    return data.size() > at ? data.size() - at : 0;
  }
};

}  // namespace

Mesh parse_ply(std::string_view data, const std::string& name) {
  scan::LineReader lines{data};
  std::string_view line;
  std::vector<std::string_view> words;
  IFLAME_REQUIRE(lines.next(line) && (line == "ply" || line == "ply\r"), name,
               ": not a PLY file (first line is not 'ply')");
  int format = -1;  // 0 ascii, 1 binary little-endian
  std::vector<PlyElement> elements;
  bool ended = false;
  while (lines.next(line)) {
    scan::split_words(line, words);
    if (words.empty()) continue;
    if (words[0] == "format") {
      IFLAME_REQUIRE(words.size() >= 2, name, ":", lines.line_no, ": bad format line");
      if (words[1] == "ascii") format = 0;
      else if (words[1] == "binary_little_endian") format = 1;
      else if (words[1] == "binary_big_endian") IFLAME_REJECT(name, ":", lines.line_no, ": big-endian PLY is not supported");
      else IFLAME_REJECT(name, ":", lines.line_no, ": unknown PLY format '", words[1], "'");
    } else if (words[0] == "element") {
      IFLAME_REQUIRE(words.size() == 3, name, ":", lines.line_no, ": expected 'element <name> <count>'");
      PlyElement e;
      e.name = std::string(words[1]);
      IFLAME_REQUIRE(scan::parse_int(words[2], e.count) && e.count >= 0, name, ":", lines.line_no,
                   ": bad element count '", words[2], "'");
      elements.push_back(e);
    } else if (words[0] == "property") {
      IFLAME_REQUIRE(!elements.empty(), name, ":", lines.line_no, ": property before any element");
      PlyProperty p;
      if (words.size() == 5 && words[1] == "list") {
        p.is_list = true;
        IFLAME_REQUIRE(ply_type_from(words[2], p.count_type) && ply_type_is_integer(p.count_type), name, ":",
                     lines.line_no, ": bad list count type '", words[2], "'");
        IFLAME_REQUIRE(ply_type_from(words[3], p.type), name, ":", lines.line_no, ": bad list item type '",
                     words[3], "'");
        p.name = std::string(words[4]);
      } else {
        IFLAME_REQUIRE(words.size() == 3, name, ":", lines.line_no, ": expected 'property <type> <name>'");
        IFLAME_REQUIRE(ply_type_from(words[1], p.type), name, ":", lines.line_no, ": bad property type '",
                     words[1], "'");
        p.name = std::string(words[2]);
      }
      elements.back().props.push_back(p);
    } else if (words[0] == "end_header") {
      ended = true;
      break;
    } else if (words[0] == "comment" || words[0] == "obj_info") {
      continue;
    } else {
      IFLAME_REJECT(name, ":", lines.line_no, ": unknown header line '", line, "'");
    }
  }
  IFLAME_REQUIRE(ended, name, ": no end_header");
  IFLAME_REQUIRE(format >= 0, name, ": no format line in the header");

  Mesh mesh;
  PlyBody body(data, lines.pos, lines.line_no, format == 1, name);
  bool have_vertices = false;
  for (const PlyElement& e : elements) {
    const bool is_vertex = e.name == "vertex";
    const bool is_face = e.name == "face";
    int coord[3] = {-1, -1, -1};
    int list_prop = -1;
    for (size_t k = 0; k < e.props.size(); k++) {
      const PlyProperty& p = e.props[k];
      if (is_vertex && !p.is_list) {
        if (p.name == "x") coord[0] = int(k);
        if (p.name == "y") coord[1] = int(k);
        if (p.name == "z") coord[2] = int(k);
      }
      if (is_face && p.is_list && (p.name == "vertex_indices" || p.name == "vertex_index")) list_prop = int(k);
    }
    if (is_vertex) {
      IFLAME_REQUIRE(coord[0] >= 0 && coord[1] >= 0 && coord[2] >= 0, name,
                   ": the vertex element has no x, y, z properties");
      have_vertices = true;
    }
    if (is_face) IFLAME_REQUIRE(list_prop >= 0, name, ": the face element has no vertex_indices list");
    // Every instance takes at least one byte (binary) or two characters (ascii).
    IFLAME_REQUIRE(e.props.empty() || static_cast<uint64_t>(e.count) <= body.remaining(), name, ": element '",
                 e.name, "' claims ", e.count, " entries, more than the file can hold");
    if (is_vertex) mesh.vertices.reserve(static_cast<size_t>(e.count));
    std::vector<int64_t> poly;
    for (int64_t i = 0; i < e.count; i++) {
      std::array<float, 3> v{0, 0, 0};
      for (size_t k = 0; k < e.props.size(); k++) {
        const PlyProperty& p = e.props[k];
        if (p.is_list) {
          double c = body.read(p.count_type);
          IFLAME_REQUIRE(c >= 0 && c <= 1e6, body.where(), ": bad list length ", c);
          int64_t n = static_cast<int64_t>(c);
          if (int(k) == list_prop) {
            IFLAME_REQUIRE(n >= 1, body.where(), ": face ", i, " has no vertices");
            poly.clear();
            for (int64_t j = 0; j < n; j++) {
              double idx = body.read(p.type);
              IFLAME_REQUIRE(idx >= 0 && idx < 2147483647.0 && idx == std::floor(idx), body.where(),
                           ": bad vertex index ", idx, " in face ", i);
              poly.push_back(static_cast<int64_t>(idx));
            }
            while (poly.size() < 3) poly.push_back(poly.back());  // 1 or 2 corners: degenerate
            for (size_t j = 1; j + 1 < poly.size(); j++)
              mesh.faces.push_back({int(poly[0]), int(poly[j]), int(poly[j + 1])});
          } else {
            for (int64_t j = 0; j < n; j++) body.read(p.type);
          }
        } else {
          double x = body.read(p.type);
          for (int a = 0; a < 3; a++)
            if (is_vertex && int(k) == coord[a]) {
              IFLAME_REQUIRE(std::isfinite(x) && std::fabs(x) <= 3.0e38, body.where(), ": vertex ", i,
                           " has a non-finite coordinate");
              v[a] = static_cast<float>(x);
            }
        }
      }
      if (is_vertex) mesh.vertices.push_back(v);
    }
  }
  IFLAME_REQUIRE(have_vertices, name, ": no vertex element");
  check_mesh_indices(mesh, name);
  return mesh;
}

Mesh read_ply(const std::string& path) { return parse_ply(read_file_bytes(path), path); }

void write_ply(const std::string& path, const Mesh& mesh, bool binary) {
  check_mesh_indices(mesh, path);
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  IFLAME_REQUIRE(f, "cannot write ", tmp);
  std::fprintf(f, "ply\nformat %s 1.0\nelement vertex %zu\nproperty float x\nproperty float y\n"
               "property float z\nelement face %zu\nproperty list uchar int vertex_indices\nend_header\n",
               binary ? "binary_little_endian" : "ascii", mesh.vertices.size(), mesh.faces.size());
  if (binary) {
    for (const auto& v : mesh.vertices) std::fwrite(v.data(), sizeof(float), 3, f);
    for (const auto& t : mesh.faces) {
      uint8_t three = 3;
      int32_t idx[3] = {t[0], t[1], t[2]};
      std::fwrite(&three, 1, 1, f);
      std::fwrite(idx, sizeof(int32_t), 3, f);
    }
  } else {
    for (const auto& v : mesh.vertices) std::fprintf(f, "%.9g %.9g %.9g\n", v[0], v[1], v[2]);
    for (const auto& t : mesh.faces) std::fprintf(f, "3 %d %d %d\n", t[0], t[1], t[2]);
  }
  bool ok = std::ferror(f) == 0;
  ok = (std::fclose(f) == 0) && ok;
  IFLAME_REQUIRE(ok, "error writing ", tmp);
  IFLAME_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

}  // namespace iflame
