// mesh_md2.cpp: Quake-2 MD2 reader (UFO:AI's models). The file is a header of
// 17 little-endian int32 (magic "IDP2", version 8, skin size, frame size, the
// counts of skins, vertices, texture coordinates, triangles, GL commands and
// frames, then the offsets of those tables and of the end), a triangle table of
// 12-byte records (three int16 vertex indices, three int16 texture indices) and
// frames: scale[3] and translate[3] floats, a 16-byte name, then one 4-byte
// record per vertex (three uint8 packed coordinates and a normal index). The
// mesh is the first frame: position = packed * scale + translate, in the
// file's Z-up axes.
#include "core/error.h"
#include "data/binary_scan.h"
#include "data/mesh.h"

namespace iflame {

Mesh parse_md2(std::string_view data, const std::string& name, MeshTraits* traits) {
  scan::ByteReader in{data, name};
  in.expect_magic("IDP2", "an MD2 file");
  const int32_t version = in.i32("the header");
  IFLAME_REQUIRE(version == 8, name, ": MD2 version ", version, " (only 8 is known)");
  int32_t h[15];
  for (int32_t& v : h) v = in.i32("the header");
  const int32_t frame_size = h[2], num_vertices = h[4], num_triangles = h[6], num_frames = h[8];
  const int32_t ofs_triangles = h[11], ofs_frames = h[12];
  IFLAME_REQUIRE(num_vertices >= 0 && num_triangles >= 0 && num_frames >= 1, name, ": bad MD2 counts (vertices ",
               num_vertices, ", triangles ", num_triangles, ", frames ", num_frames, ")");
  IFLAME_REQUIRE(frame_size >= 0 && static_cast<int64_t>(frame_size) >= 40 + 4 * int64_t(num_vertices), name,
               ": MD2 frame size ", frame_size, " is too small for ", num_vertices, " vertices");
  auto check_table = [&](int32_t offset, int64_t bytes, const char* what) {
    IFLAME_REQUIRE(offset >= 0 && static_cast<uint64_t>(offset) + static_cast<uint64_t>(bytes) <= data.size(), name,
                 ": MD2 ", what, " (", bytes, " bytes at offset ", offset, ") is outside the ", data.size(),
                 "-byte file");
  };
  check_table(ofs_triangles, 12 * int64_t(num_triangles), "triangle table");
  check_table(ofs_frames, 40 + 4 * int64_t(num_vertices), "first frame");

  Mesh mesh;
  in.pos = static_cast<size_t>(ofs_frames);
  float scale[3], translate[3];
  for (float& s : scale) s = in.f32("the frame scale");
  for (float& t : translate) t = in.f32("the frame translation");
  in.skip(16, "the frame name");
  mesh.vertices.resize(static_cast<size_t>(num_vertices));
  for (auto& v : mesh.vertices) {
    for (int c = 0; c < 3; c++) v[c] = in.u8("a packed vertex") * scale[c] + translate[c];
    in.skip(1, "a vertex normal index");
  }
  in.pos = static_cast<size_t>(ofs_triangles);
  mesh.faces.resize(static_cast<size_t>(num_triangles));
  for (size_t t = 0; t < mesh.faces.size(); t++) {
    for (int k = 0; k < 3; k++) {
      const int16_t idx = in.get<int16_t>("a triangle");
      IFLAME_REQUIRE(idx >= 0 && idx < num_vertices, name, ": MD2 triangle ", t, " uses vertex ", idx, " of ",
                   num_vertices);
      mesh.faces[t][k] = idx;
    }
    in.skip(6, "a triangle's texture indices");
  }
  check_mesh_finite(mesh, name);
  if (traits) *traits = MeshTraits{false, 1};
  return mesh;
}

}  // namespace iflame
