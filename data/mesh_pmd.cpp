// mesh_pmd.cpp: 0 A.D. PMD reader (versions 1 to 4). Layout, little-endian:
// magic "PSMD", uint32 version, uint32 size of the rest; uint32 vertex count,
// (version 4: uint32 UV sets per vertex); per vertex position[3], normal[3],
// the UV pairs (one set before version 4), four uint8 bone indices and four
// float weights; uint32 face count, three uint16 indices per face; uint32 bone
// count, 28 bytes of rest state per bone; (version 2 and later) prop points.
// Positions are stored in the rest pose, so a skinned model is readable; its
// bones are reported in MeshTraits. Axes as in the file (Y up).
#include "core/error.h"
#include "data/binary_scan.h"
#include "data/mesh.h"

namespace iflame {

Mesh parse_pmd(std::string_view data, const std::string& name, MeshTraits* traits) {
  scan::ByteReader in{data, name};
  in.expect_magic("PSMD", "a PMD file");
  const uint32_t version = in.u32("the header");
  IFLAME_REQUIRE(version >= 1 && version <= 4, name, ": PMD version ", version, " (1 to 4 are known)");
  const uint32_t rest = in.u32("the header");
  IFLAME_REQUIRE(rest <= in.left(), name, ": the header promises ", rest, " bytes after byte 12, the file has ",
               in.left());
  const uint32_t num_vertices = in.u32("the vertex count");
  const uint32_t uv_sets = version >= 4 ? in.u32("the UV set count") : 1;
  IFLAME_REQUIRE(uv_sets <= 16, name, ": ", uv_sets, " UV sets per vertex");
  const uint64_t vertex_bytes = 24 + 8 * uint64_t(uv_sets) + 20;
  in.need_items(num_vertices, vertex_bytes, "vertices");
  Mesh mesh;
  mesh.vertices.resize(num_vertices);
  for (auto& v : mesh.vertices) {
    for (float& c : v) c = in.f32("a vertex position");
    in.skip(vertex_bytes - 12, "a vertex");
  }
  const uint32_t num_faces = in.u32("the face count");
  in.need_items(num_faces, 6, "faces");
  mesh.faces.resize(num_faces);
  for (size_t f = 0; f < mesh.faces.size(); f++)
    for (int k = 0; k < 3; k++) {
      const uint16_t idx = in.u16("a face");
      IFLAME_REQUIRE(idx < num_vertices, name, ": face ", f, " uses vertex ", idx, " of ", num_vertices);
      mesh.faces[f][k] = idx;
    }
  const uint32_t num_bones = in.u32("the bone count");
  in.need_items(num_bones, 28, "bones");
  check_mesh_finite(mesh, name);
  if (traits) *traits = MeshTraits{num_bones > 0, 1};
  return mesh;
}

}  // namespace iflame
