// test_data_formats.cpp: the game and CAD mesh readers (VRML IndexedFaceSet,
// 0 A.D. PMD, SuperTuxKart SPM, Quake-2 MD2) on files the tests build byte by
// byte: geometry, transforms, welding of parts, the skinned flag, and errors
// that name the file on truncated or inconsistent input.
#include <cmath>
#include <fstream>
#include <string>

#include "core/error.h"
#include "data/mesh.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {


bool near3(const std::array<float, 3>& a, float x, float y, float z) {
  return std::fabs(a[0] - x) < 1e-5f && std::fabs(a[1] - y) < 1e-5f && std::fabs(a[2] - z) < 1e-5f;
}

// Every truncation of a valid file is an iflame::Error, never a crash.
template <typename Parse>
void check_truncations(const std::string& bytes, Parse parse) {
  for (size_t n = 0; n < bytes.size(); n++) {
    std::string cut = bytes.substr(0, n);
    try {
      parse(cut);
    } catch (const Error&) {
    }
  }
}

}  // namespace

TEST_CASE("data: VRML IndexedFaceSet with Transform nesting, DEF/USE, polygons and ccw FALSE") {
  const std::string wrl =
      "#VRML V2.0 utf8\n# a comment\n"
      "DEF Tri Shape { appearance Appearance { material DEF M Material { diffuseColor 1 0 0 } }\n"
      "  geometry IndexedFaceSet { coord Coordinate { point [ 0 0 0, 1 0 0, 0 1 0 ] } coordIndex [ 0, 1, 2, -1 ] } }\n"
      "Transform { translation 10 0 0 scale 2 2 2 children [\n"
      "  Transform { rotation 0 0 1 1.5707963267948966 children [ USE Tri ] }\n"
      "  Shape { appearance Appearance { material USE M }\n"
      "    geometry IndexedFaceSet { ccw FALSE creaseAngle 0.5 solid TRUE\n"
      "      coord Coordinate { point [ 0 0 1, 1 0 1, 1 1 1, 0 1 1 ] } coordIndex [ 0 1 2 3 ] } }\n"
      "] }\n"
      "Shape { geometry Box { size 1 1 1 } }\n"
      "ROUTE a.b TO c.d\n";
  MeshTraits traits;
  Mesh m = parse_vrml(wrl, "part.wrl", &traits);
  CHECK(traits.parts == 3);
  CHECK(!traits.skinned);
  REQUIRE(m.vertices.size() == 10);
  REQUIRE(m.faces.size() == 4);
  // The plain triangle.
  CHECK(near3(m.vertices[1], 1, 0, 0));
  // The same triangle turned 90 degrees about z, scaled by 2, moved by 10 on x.
  CHECK(near3(m.vertices[3], 10, 0, 0));
  CHECK(near3(m.vertices[4], 10, 2, 0));
  CHECK(near3(m.vertices[5], 8, 0, 0));
  // The quad, scaled and moved, fan-triangulated with the winding reversed (ccw FALSE).
  CHECK(near3(m.vertices[8], 12, 2, 2));
  CHECK(m.faces[2] == std::array<int, 3>{6, 8, 7});
  CHECK(m.faces[3] == std::array<int, 3>{6, 9, 8});

  CHECK(contains(error_of([] { parse_vrml("#VRML V1.0 ascii\nSeparator {}", "old.wrl"); }), "old.wrl: not a VRML 2.0"));
  CHECK(contains(error_of([] { parse_vrml("#VRML V2.0 utf8\nShape { geometry USE Nothing }", "use.wrl"); }),
                 "USE of 'Nothing'"));
  CHECK(contains(error_of([] {
                   parse_vrml("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0] }"
                              " coordIndex [0 0 5 -1] } }",
                              "idx.wrl");
                 }),
                 "idx.wrl: coordIndex 5 with 1 points"));
  CHECK(contains(error_of([] { parse_vrml("#VRML V2.0 utf8\nGroup { children [ Shape {", "cut.wrl"); }), "cut.wrl"));
  std::string deep = "#VRML V2.0 utf8\n";
  for (int i = 0; i < 200; i++) deep += "Group { children [ ";
  CHECK(contains(error_of([&] { parse_vrml(deep, "deep.wrl"); }), "nested too deeply"));
  check_truncations(wrl, [](const std::string& s) { parse_vrml(s, "t.wrl"); });
}

namespace {

// A PMD file: 4 vertices, 2 faces, `bones` bones, version 3 (one UV set) or 4 (two).
std::string pmd_bytes(uint32_t version, uint32_t bones) {
  std::string body;
  put<uint32_t>(body, 4);
  const uint32_t uv_sets = version >= 4 ? 2 : 1;
  if (version >= 4) put<uint32_t>(body, uv_sets);
  const float pos[4][3] = {{0, 0, 0}, {1, 0, 0}, {1, 2, 0}, {0, 2, 3}};
  for (const auto& p : pos) {
    for (float c : p) put<float>(body, c);
    for (int k = 0; k < 3; k++) put<float>(body, 0.5f);           // normal
    for (uint32_t k = 0; k < 2 * uv_sets; k++) put<float>(body, 0.25f);
    for (int k = 0; k < 4; k++) put<uint8_t>(body, 0xFF);       // bone indices
    for (int k = 0; k < 4; k++) put<float>(body, 0.0f);         // weights
  }
  put<uint32_t>(body, 2);
  for (uint16_t i : {0, 1, 2, 0, 2, 3}) put<uint16_t>(body, i);
  put<uint32_t>(body, bones);
  for (uint32_t b = 0; b < bones * 7; b++) put<float>(body, 0.0f);
  put<uint32_t>(body, 0);  // prop points
  std::string file = "PSMD";
  put<uint32_t>(file, version);
  put<uint32_t>(file, static_cast<uint32_t>(body.size()));
  return file + body;
}

}  // namespace

TEST_CASE("data: 0 A.D. PMD versions 3 and 4, the skinned flag, bad indices and truncation") {
  for (uint32_t version : {3u, 4u}) {
    MeshTraits traits;
    Mesh m = parse_pmd(pmd_bytes(version, 0), "prop.pmd", &traits);
    REQUIRE(m.vertices.size() == 4);
    CHECK(near3(m.vertices[3], 0, 2, 3));
    CHECK(m.faces == std::vector<std::array<int, 3>>{{0, 1, 2}, {0, 2, 3}});
    CHECK(!traits.skinned);
  }
  MeshTraits traits;
  parse_pmd(pmd_bytes(4, 2), "horse.pmd", &traits);
  CHECK(traits.skinned);
  std::string bad = pmd_bytes(3, 0);
  const size_t faces_at = 12 + 4 + 4 * (24 + 8 + 20) + 4;
  bad[faces_at + 4] = 9;  // second index of the first face: 9 of 4
  CHECK(contains(error_of([&] { parse_pmd(bad, "bad.pmd"); }), "bad.pmd: face 0 uses vertex 9 of 4"));
  CHECK(contains(error_of([] { parse_pmd(std::string("PSMD\x07\0\0\0", 8), "v7.pmd"); }), "PMD version 7"));
  CHECK(contains(error_of([] { parse_pmd("OBJ!", "x.pmd"); }), "x.pmd: not a PMD file"));
  const std::string good = pmd_bytes(4, 1);
  CHECK(contains(error_of([&] { parse_pmd(good.substr(0, 60), "cut.pmd"); }), "cut.pmd: the header promises"));
  check_truncations(good, [](const std::string& s) { parse_pmd(s, "t.pmd"); });
}

namespace {

// An SPM file: two materials (the first textured), two buffers of a triangle
// and a quad; `animated` makes it an SPMA with joints per vertex.
std::string spm_bytes(bool animated) {
  std::string f = "SP";
  put<uint8_t>(f, static_cast<uint8_t>((1 << 3) | (animated ? 1 : 2)));
  put<uint8_t>(f, 1 | 2);  // normals and colours
  for (int k = 0; k < 6; k++) put<float>(f, 0.0f);
  put<uint16_t>(f, 2);
  put<uint8_t>(f, 5);
  f += "a.png";
  put<uint8_t>(f, 0);
  put<uint8_t>(f, 0);
  put<uint8_t>(f, 0);
  put<uint16_t>(f, 1);  // one section
  put<uint16_t>(f, 2);  // two buffers
  auto vertex = [&](float x, float y, float z, bool textured, bool white) {
    put<float>(f, x), put<float>(f, y), put<float>(f, z);
    put<uint32_t>(f, 0);  // packed normal
    put<uint8_t>(f, white ? 128 : 7);
    if (!white) put<uint8_t>(f, 1), put<uint8_t>(f, 2), put<uint8_t>(f, 3);
    if (textured) put<uint32_t>(f, 0);
    if (animated) f.append(16, '\0');
  };
  put<uint32_t>(f, 3), put<uint32_t>(f, 3), put<uint16_t>(f, 0);
  vertex(0, 0, 0, true, true), vertex(1, 0, 0, true, false), vertex(0, 1, 0, true, true);
  for (uint8_t i : {0, 1, 2}) put<uint8_t>(f, i);
  put<uint32_t>(f, 4), put<uint32_t>(f, 6), put<uint16_t>(f, 1);
  vertex(0, 0, 5, false, false), vertex(1, 0, 5, false, true), vertex(1, 1, 5, false, true), vertex(0, 1, 5, false, true);
  for (uint8_t i : {0, 1, 2, 0, 2, 3}) put<uint8_t>(f, i);
  return f;
}

}  // namespace

TEST_CASE("data: SuperTuxKart SPM buffers are welded into one mesh; SPMA is skinned") {
  MeshTraits traits;
  Mesh m = parse_spm(spm_bytes(false), "prop.spm", &traits);
  CHECK(traits.parts == 2);
  CHECK(!traits.skinned);
  REQUIRE(m.vertices.size() == 7);
  CHECK(near3(m.vertices[1], 1, 0, 0));
  CHECK(near3(m.vertices[5], 1, 1, 5));
  CHECK(m.faces == std::vector<std::array<int, 3>>{{0, 1, 2}, {3, 4, 5}, {3, 5, 6}});
  Mesh a = parse_spm(spm_bytes(true), "kart.spm", &traits);
  CHECK(traits.skinned);
  CHECK(a.vertices == m.vertices);
  std::string bad = spm_bytes(false);
  bad[2] = static_cast<char>((1 << 3) | 0);
  CHECK(contains(error_of([&] { parse_spm(bad, "sp.spm"); }), "space-partitioned"));
  bad = spm_bytes(false);
  bad[bad.size() - 1] = 9;
  CHECK(contains(error_of([&] { parse_spm(bad, "idx.spm"); }), "idx.spm: buffer 1 index 9 of 4 vertices"));
  check_truncations(spm_bytes(true), [](const std::string& s) { parse_spm(s, "t.spm"); });
}

namespace {

// An MD2 file: 4 vertices, 2 triangles, 2 frames (the second is ignored).
std::string md2_bytes() {
  const int32_t nv = 4, nt = 2, frames = 2, frame_size = 40 + 4 * nv;
  const int32_t ofs_tris = 68, ofs_frames = ofs_tris + 12 * nt, ofs_end = ofs_frames + frames * frame_size;
  std::string f = "IDP2";
  for (int32_t v : {8, 64, 64, frame_size, 0, nv, 0, nt, 0, frames, 68, 68, ofs_tris, ofs_frames, ofs_end, ofs_end})
    put<int32_t>(f, v);
  for (int16_t v : {0, 1, 2, 0, 0, 0, 0, 2, 3, 0, 0, 0}) put<int16_t>(f, v);
  for (int fr = 0; fr < frames; fr++) {
    for (float s : {0.5f, 0.5f, 2.0f}) put<float>(f, s);
    for (float t : {-1.0f, 0.0f, 10.0f}) put<float>(f, t + fr);
    f.append(16, 'n');
    for (uint8_t v : {0, 0, 0, 0, 2, 0, 0, 0, 2, 4, 0, 0, 0, 4, 1, 0}) put<uint8_t>(f, v);
  }
  return f;
}

}  // namespace

TEST_CASE("data: Quake-2 MD2 first frame, unpacked with scale and translation") {
  Mesh m = parse_md2(md2_bytes(), "head.md2");
  REQUIRE(m.vertices.size() == 4);
  CHECK(near3(m.vertices[0], -1, 0, 10));
  CHECK(near3(m.vertices[2], 0, 2, 10));
  CHECK(near3(m.vertices[3], -1, 2, 12));
  CHECK(m.faces == std::vector<std::array<int, 3>>{{0, 1, 2}, {0, 2, 3}});
  std::string bad = md2_bytes();
  bad[68 + 2] = 7;  // first triangle's second vertex
  CHECK(contains(error_of([&] { parse_md2(bad, "bad.md2"); }), "bad.md2: MD2 triangle 0 uses vertex 7 of 4"));
  bad = md2_bytes();
  bad[4 + 4 * 13 + 3] = 0x7f;  // the frames offset far past the end
  CHECK(contains(error_of([&] { parse_md2(bad, "ofs.md2"); }), "first frame"));
  check_truncations(md2_bytes(), [](const std::string& s) { parse_md2(s, "t.md2"); });
}

TEST_CASE("data: read_mesh picks the new readers by extension") {
  const std::string path = "build/test_formats.md2";
  {
    std::ofstream(path, std::ios::binary) << md2_bytes();
  }
  MeshTraits traits;
  CHECK(read_mesh(path, &traits).faces.size() == 2);
  CHECK(is_mesh_extension("a/b.WRL"));
  CHECK(is_mesh_extension("x.spm"));
  CHECK(!is_mesh_extension("x.ac"));
}
