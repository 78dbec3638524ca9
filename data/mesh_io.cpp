// mesh_io.cpp: format dispatch by extension, whole-file reading, the OBJ writer
// and the index check shared by the readers and writers.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/paths.h"
#include "data/mesh.h"

namespace iflame {

std::string read_file_bytes(const std::string& path) {
  require_readable_file(path);
  std::ifstream in(path, std::ios::binary);
  IFLAME_REQUIRE(in, "cannot open ", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  IFLAME_REQUIRE(!in.bad(), "error reading ", path);
  return ss.str();
}

static std::string lower_extension(const std::string& path) {
  size_t dot = path.find_last_of('.');
  size_t slash = path.find_last_of('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext;
}

Mesh read_mesh(const std::string& path, MeshTraits* traits) {
  std::string ext = lower_extension(path);
  if (ext == "obj") return read_obj(path);
  if (ext == "ply") return read_ply(path);
  if (ext == "stl") return read_stl(path);
  if (ext == "off") return read_off(path);
  if (ext == "wrl") return parse_vrml(read_file_bytes(path), path, traits);
  if (ext == "pmd") return parse_pmd(read_file_bytes(path), path, traits);
  if (ext == "spm") return parse_spm(read_file_bytes(path), path, traits);
  if (ext == "md2") return parse_md2(read_file_bytes(path), path, traits);
  IFLAME_REJECT(path, ": unknown mesh extension '", ext,
              "' (expected .obj, .ply, .stl, .off, .wrl, .pmd, .spm or .md2)");
}

bool is_mesh_extension(const std::string& path) {
  const std::string ext = lower_extension(path);
  for (const char* known : {"obj", "ply", "stl", "off", "wrl", "pmd", "spm", "md2"})
    if (ext == known) return true;
  return false;
}

void check_mesh_finite(const Mesh& mesh, const std::string& name) {
  for (size_t i = 0; i < mesh.vertices.size(); i++)
    for (float c : mesh.vertices[i])
      IFLAME_REQUIRE(std::isfinite(c) && std::fabs(c) <= 3.0e38f, name, ": vertex ", i, " has coordinate ", c);
}

void check_mesh_indices(const Mesh& mesh, const std::string& name) {
  const int64_t nv = static_cast<int64_t>(mesh.vertices.size());
  for (size_t f = 0; f < mesh.faces.size(); f++)
    for (int k = 0; k < 3; k++)
      IFLAME_REQUIRE(mesh.faces[f][k] >= 0 && mesh.faces[f][k] < nv, name, ": face ", f, " uses vertex ",
                   mesh.faces[f][k], " but there are ", nv, " vertices");
}

void write_obj(const std::string& path, const Mesh& mesh) {
  check_mesh_indices(mesh, path);
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  IFLAME_REQUIRE(f, "cannot write ", tmp);
  std::fprintf(f, "# iflame.cpp: %zu vertices, %zu triangles\n", mesh.vertices.size(), mesh.faces.size());
  for (const auto& v : mesh.vertices) std::fprintf(f, "v %.9g %.9g %.9g\n", v[0], v[1], v[2]);
  for (const auto& t : mesh.faces) std::fprintf(f, "f %d %d %d\n", t[0] + 1, t[1] + 1, t[2] + 1);
  bool ok = std::ferror(f) == 0;
  ok = (std::fclose(f) == 0) && ok;
  IFLAME_REQUIRE(ok, "error writing ", tmp);
  IFLAME_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

void write_mesh(const std::string& path, const Mesh& mesh) {
  std::string ext = lower_extension(path);
  if (ext == "obj") return write_obj(path, mesh);
  if (ext == "ply") return write_ply(path, mesh);
  IFLAME_REJECT(path, ": cannot write mesh extension '", ext, "' (expected .obj or .ply)");
}

}  // namespace iflame
