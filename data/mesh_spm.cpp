// mesh_spm.cpp: SuperTuxKart SPM reader (format version 1). Layout, little-
// endian: "SP"; a byte with the version in its top five bits and the kind in
// the low three (0 space-partitioned, refused; 1 animated "SPMA"; 2 static
// "SPMN"); a flags byte (1 normals, 2 vertex colours, 4 tangents); a bounding
// box (6 floats); uint16 material count, each two texture names (uint8 length
// + bytes); uint16 section count, each a uint16 buffer count, each buffer
// uint32 vertex count, uint32 index count, uint16 material. A vertex is a float
// position[3], then 4 bytes of packed normal (flag 1), a colour (flag 2: one
// byte, 128 = white, else three more), 4 bytes of half-float UV when the
// material has a first texture, 4 more for a second, 4 of tangent (flag 4, with
// a first texture), 16 bytes of joints and weights in an animated file. Indices
// are uint8 when the buffer has at most 255 vertices, else uint16; triangles.
// The buffers are welded into one mesh; what follows them (armatures) is not read.
#include <vector>

#include "core/error.h"
#include "data/binary_scan.h"
#include "data/mesh.h"

namespace iflame {

Mesh parse_spm(std::string_view data, const std::string& name, MeshTraits* traits) {
  scan::ByteReader in{data, name};
  in.expect_magic("SP", "an SPM file");
  const uint8_t kind_byte = in.u8("the header");
  IFLAME_REQUIRE((kind_byte >> 3) == 1, name, ": SPM version ", kind_byte >> 3, " (only 1 is known)");
  const int kind = kind_byte & 7;
  IFLAME_REQUIRE(kind == 1 || kind == 2, name, ": SPM kind ", kind,
               kind == 0 ? " (space-partitioned) is not supported" : " is unknown");
  const uint8_t flags = in.u8("the header");
  const bool normals = flags & 1, colours = flags & 2, tangents = flags & 4, skinned = kind == 1;
  in.skip(24, "the bounding box");
  const uint16_t num_materials = in.u16("the material count");
  std::vector<std::array<bool, 2>> textured(num_materials);
  for (auto& t : textured)
    for (int k = 0; k < 2; k++) {
      const uint8_t len = in.u8("a texture name");
      in.skip(len, "a texture name");
      t[k] = len > 0;
    }
  Mesh mesh;
  int parts = 0;
  const uint16_t sections = in.u16("the section count");
  for (int s = 0; s < sections; s++) {
    const uint16_t buffers = in.u16("a buffer count");
    for (int b = 0; b < buffers; b++, parts++) {
      const uint32_t nv = in.u32("a vertex count");
      const uint32_t ni = in.u32("an index count");
      const uint16_t material = in.u16("a material index");
      IFLAME_REQUIRE(material < num_materials, name, ": buffer ", parts, " uses material ", material, " of ",
                   num_materials);
      IFLAME_REQUIRE(nv <= 65535, name, ": buffer ", parts, " has ", nv, " vertices (at most 65535)");
      IFLAME_REQUIRE(ni % 3 == 0, name, ": buffer ", parts, " has ", ni, " indices, not a multiple of 3");
      const bool uv1 = textured[material][0], uv2 = uv1 && textured[material][1];
      const size_t base = mesh.vertices.size();
      in.need_items(nv, 12, "vertices");
      for (uint32_t v = 0; v < nv; v++) {
        std::array<float, 3> p;
        for (float& c : p) c = in.f32("a vertex position");
        mesh.vertices.push_back(p);
        if (normals) in.skip(4, "a vertex normal");
        if (colours && in.u8("a vertex colour") != 128) in.skip(3, "a vertex colour");
        if (uv1) in.skip(4, "a vertex UV");
        if (uv2) in.skip(4, "a vertex UV");
        if (uv1 && tangents) in.skip(4, "a vertex tangent");
        if (skinned) in.skip(16, "vertex joints");
      }
      const int index_bytes = nv > 255 ? 2 : 1;
      in.need_items(ni, index_bytes, "indices");
      for (uint32_t t = 0; t < ni / 3; t++) {
        std::array<int, 3> f;
        for (int& k : f) {
          const uint32_t idx = index_bytes == 2 ? in.u16("an index") : in.u8("an index");
          IFLAME_REQUIRE(idx < nv, name, ": buffer ", parts, " index ", idx, " of ", nv, " vertices");
          k = static_cast<int>(base + idx);
        }
        mesh.faces.push_back(f);
      }
    }
  }
  check_mesh_finite(mesh, name);
  if (traits) *traits = MeshTraits{skinned, parts};
  return mesh;
}

}  // namespace iflame
