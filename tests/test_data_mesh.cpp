// test_data_mesh.cpp: the mesh file readers and writers: every index form and
// encoding they accept, round trips, and errors that name the file and place.
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "data/mesh.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {


// A quad (0,1,2,3) in the z = 0 plane plus a triangle on vertex 4.
const std::vector<std::array<float, 3>> kVerts = {{0, 0, 0}, {1, 0, 0}, {1, 1, 0}, {0, 1, 0}, {0.5f, 0.5f, 2}};
const std::vector<std::array<int, 3>> kFaces = {{0, 1, 2}, {0, 2, 3}, {0, 1, 4}};

void check_reference_mesh(const Mesh& m) {
  CHECK(m.vertices == kVerts);
  CHECK(m.faces == kFaces);
}

}  // namespace

TEST_CASE("data: OBJ reads every face form, negative indices and polygons") {
  const std::string obj =
      "# comment\nmtllib x.mtl\no thing\nv 0 0 0\nv 1 0 0\nv 1.0 1e0 0   # trailing comment\r\nv 0 1 0 1.0\n"
      "vt 0 0\nvn 0 0 1\nusemtl m\ns off\n"
      "f 1/1/1 2//1 3/1 -1\n"  // quad, mixed forms, a negative index
      "v 0.5 0.5 2\n"
      "f -5 2 -1\nl 1 2\n";
  check_reference_mesh(parse_obj(obj, "t.obj"));
  std::string e = error_of([] { parse_obj("v 0 0 0\nv 1 0 0\nf 1 2 3\n", "bad.obj"); });
  CHECK(contains(e, "bad.obj:3"));
  CHECK(contains(error_of([] { parse_obj("v 0 0 x\n", "bad.obj"); }), "bad.obj:1: bad vertex coordinate 'x'"));
  CHECK(contains(error_of([] { parse_obj("v 0 0 0\nf 0 1 1\n", "b.obj"); }), "b.obj:2: face index 0"));
  CHECK(contains(error_of([] { parse_obj("v 0 0 0\nf -2 1 1\n", "b.obj"); }), "b.obj:2"));
  CHECK(contains(error_of([] { parse_obj("v nan 0 0\n", "b.obj"); }), "b.obj:1"));
  CHECK(contains(error_of([] { parse_obj("v 0 0 0\nf\n", "b.obj"); }), "b.obj:2: a face without vertices"));
  // Two-corner faces (they occur in real catalogs) are degenerate triangles, not errors.
  CHECK(parse_obj("v 0 0 0\nv 1 0 0\nf 1 2\n", "c.obj").faces == std::vector<std::array<int, 3>>{{0, 1, 1}});
}

TEST_CASE("data: PLY ascii and binary little-endian, float and double, several list types") {
  // ascii with an extra vertex property, an unknown element and a quad.
  std::string ascii =
      "ply\nformat ascii 1.0\ncomment made by hand\nelement vertex 5\nproperty float x\nproperty float y\n"
      "property float z\nproperty uchar red\nelement face 2\nproperty list uchar int vertex_indices\n"
      "element edge 1\nproperty int vertex1\nproperty int vertex2\nend_header\n"
      "0 0 0 1\n1 0 0 2\n1 1 0 3\n0 1 0 4\n0.5 0.5 2 5\n4 0 1 2 3\n3 0 1 4\n0 1\n";
  check_reference_mesh(parse_ply(ascii, "a.ply"));
  // binary: double coordinates, an int-counted uint list, an extra list property per face.
  std::string bin =
      "ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty double x\nproperty double y\n"
      "property double z\nelement face 2\nproperty list int uint vertex_index\nproperty list uchar float uv\n"
      "end_header\n";
  for (const auto& v : kVerts)
    for (float c : v) put<double>(bin, c);
  put<int32_t>(bin, 4);
  for (uint32_t i : {0u, 1u, 2u, 3u}) put<uint32_t>(bin, i);
  put<uint8_t>(bin, 2);
  put<float>(bin, 0.f);
  put<float>(bin, 1.f);
  put<int32_t>(bin, 3);
  for (uint32_t i : {0u, 1u, 4u}) put<uint32_t>(bin, i);
  put<uint8_t>(bin, 0);
  check_reference_mesh(parse_ply(bin, "b.ply"));
  // Truncation names the byte offset; big-endian is refused; bad indices are caught.
  std::string cut = bin.substr(0, bin.size() - 7);
  CHECK(contains(error_of([&] { parse_ply(cut, "cut.ply"); }), "cut.ply: file ends at byte"));
  CHECK(contains(error_of([] { parse_ply("ply\nformat binary_big_endian 1.0\nend_header\n", "be.ply"); }),
                 "be.ply:2: big-endian"));
  std::string badidx = "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
                       "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                       "0 0 0\n3 0 0 7\n";
  CHECK(contains(error_of([&] { parse_ply(badidx, "i.ply"); }), "i.ply: face 0 uses vertex 7"));
  CHECK(contains(error_of([] { parse_ply("ply\nformat ascii 1.0\nelement vertex 99999\nproperty float x\n"
                                         "property float y\nproperty float z\nend_header\n0 0 0\n",
                                         "big.ply"); }),
                 "big.ply"));
}

TEST_CASE("data: STL ascii and binary are triangle soups") {
  std::string ascii =
      "solid x\nfacet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 0 0\n  vertex 1 1 0\n endloop\n"
      "endfacet\nfacet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 1 0\n  vertex 0 1 0\n endloop\n"
      "endfacet\nendsolid x\n";
  Mesh a = parse_stl(ascii, "a.stl");
  CHECK(a.faces.size() == 2);
  CHECK(a.vertices.size() == 6);
  CHECK(a.vertices[5] == std::array<float, 3>{0, 1, 0});
  // Binary whose header starts with "solid" (common in the wild) is still read as binary.
  std::string bin = "solid but actually binary";
  bin.resize(80, ' ');
  put<uint32_t>(bin, 2);
  for (int t = 0; t < 2; t++) {
    for (int k = 0; k < 3; k++) put<float>(bin, 0.f);
    for (int k = 0; k < 3; k++)
      for (float c : a.vertices[3 * t + k]) put<float>(bin, c);
    put<uint16_t>(bin, 0);
  }
  Mesh b = parse_stl(bin, "b.stl");
  CHECK(b.vertices == a.vertices);
  CHECK(b.faces == a.faces);
  CHECK(contains(error_of([&] { parse_stl(bin.substr(0, 100), "c.stl"); }), "c.stl: binary STL declares 2"));
}

TEST_CASE("data: OFF with comments, counts on the keyword line and polygons") {
  std::string off = "OFF\n# a comment\n5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 0.5 2\n4 0 1 2 3\n3 0 1 4 255 0 0\n";
  check_reference_mesh(parse_off(off, "a.off"));
  check_reference_mesh(parse_off("OFF 5 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n0.5 0.5 2\n4 0 1 2 3\n3 0 1 4\n", "b.off"));
  CHECK(contains(error_of([] { parse_off("OFF\n3 1 0\n0 0 0\n1 0 0\n1 1 0\n3 0 1 5\n", "c.off"); }), "c.off:6"));
  CHECK(contains(error_of([] { parse_off("OFF\n3 1 0\n0 0 0\n1 0 0\n", "d.off"); }), "d.off: file ends"));
}

TEST_CASE("data: OBJ and PLY writers round-trip through the readers") {
  Mesh m;
  m.vertices = {{0.1f, -0.2f, 0.3f}, {1.0f / 3, 2e-7f, -0.5f}, {0.25f, 0.5f, 0.125f}, {-0.4f, 0.4f, 0.0f}};
  m.faces = {{0, 1, 2}, {0, 2, 3}};
  for (const char* path : {"build/test_rt_mesh.obj", "build/test_rt_mesh.ply"}) {
    write_mesh(path, m);
    Mesh r = read_mesh(path);
    CHECK(r.vertices == m.vertices);
    CHECK(r.faces == m.faces);
  }
  write_ply("build/test_rt_mesh_bin.ply", m, true);
  Mesh r = read_mesh("build/test_rt_mesh_bin.ply");
  CHECK(r.vertices == m.vertices);
  CHECK(r.faces == m.faces);
  CHECK(contains(error_of([] { read_mesh("build/does_not_exist.obj"); }), "build/does_not_exist.obj"));
  CHECK(contains(error_of([] { read_mesh("build/x.fbx"); }), "unknown mesh extension"));
}
