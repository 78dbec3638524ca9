// test_data_tokenize.cpp: canonical tokenization against the reference's token
// vectors (golden/tokens_*.npy), and decoding back to meshes.
#include <map>

#include "core/error.h"
#include "core/npy.h"
#include "data/mesh.h"
#include "data/tokenize.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// The two shapes of spec §5, built in code.
Mesh spec_box() {
  Mesh m;
  for (int i = 0; i < 8; i++)
    m.vertices.push_back({(i & 4) ? 0.3f : -0.3f, (i & 2) ? 0.5f : -0.5f, (i & 1) ? 0.2f : -0.2f});
  m.faces = {{0, 1, 3}, {0, 3, 2}, {4, 6, 7}, {4, 7, 5}, {0, 4, 5}, {0, 5, 1},
             {2, 3, 7}, {2, 7, 6}, {0, 2, 6}, {0, 6, 4}, {1, 5, 7}, {1, 7, 3}};
  return m;
}

Mesh spec_tetra() {
  Mesh m;
  m.vertices = {{0.1f, 0.2f, 0.3f}, {0.9f, -0.4f, 0.05f}, {-0.3f, 0.7f, -0.6f}, {0.2f, -0.1f, 0.8f}};
  m.faces = {{0, 1, 2}, {0, 3, 1}, {1, 3, 2}, {0, 2, 3}};
  return m;
}

// Output face counts from tokens_index.json.
const std::map<std::string, int> kOutputFaces = {{"box", 12},          {"tetra", 4},          {"tatami", 28},
                                                 {"ammoBox", 76},      {"upperShelves", 120}, {"bedsideTable2", 272},
                                                 {"pallet", 156}};

void check_against_golden(const std::string& name, const Mesh& mesh) {
  std::vector<int32_t> expect = read_npy(golden("tokens_" + name + ".npy")).to_ints();
  std::vector<int32_t> got = tokenize_mesh(mesh);
  CHECK(got.size() == expect.size());
  CHECK(static_cast<int>(got.size()) / kTokensPerFace - 2 == kOutputFaces.at(name));
  size_t first_diff = 0;
  while (first_diff < std::min(got.size(), expect.size()) && got[first_diff] == expect[first_diff]) first_diff++;
  INFO(name << ": first difference at token " << first_diff << " (row " << first_diff / 9 << ")");
  CHECK(got == expect);
}

}  // namespace

TEST_CASE("golden: tokenization of the spec box and tetra") {
  check_against_golden("box", spec_box());
  check_against_golden("tetra", spec_tetra());
}

TEST_CASE("golden: tokenization of the furniture meshes") {
  for (const char* name : {"tatami", "ammoBox", "upperShelves", "bedsideTable2", "pallet"}) {
    SUBCASE(name) { check_against_golden(name, read_obj(golden(std::string("meshes/") + name + ".obj"))); }
  }
}

TEST_CASE("data: decoding tokens gives back a mesh that tokenizes to the same rows") {
  for (const char* name : {"tatami", "bedsideTable2", "pallet"}) {
    std::vector<int32_t> t = tokenize_mesh(read_obj(golden(std::string("meshes/") + name + ".obj")));
    Mesh decoded = decode_tokens(t);
    CHECK(decoded.faces.size() == t.size() / 9 - 2);
    for (const auto& v : decoded.vertices)
      for (float c : v) CHECK((c >= -0.5f && c <= 0.5f));
    std::vector<Vec3d> v(decoded.vertices.size());
    for (size_t i = 0; i < v.size(); i++) v[i] = {decoded.vertices[i][0], decoded.vertices[i][1], decoded.vertices[i][2]};
    CHECK(emit_tokens(quantize_canonical(v, decoded.faces)) == t);
  }
  // START rows and PAD are skipped, decoding stops at END.
  std::vector<int32_t> t = tokenize_mesh(spec_tetra());
  std::vector<int32_t> padded = t;
  padded.insert(padded.end(), 18, kPadToken);
  CHECK(decode_tokens(padded).faces.size() == 4);
  std::vector<int32_t> cut(t.begin(), t.begin() + 9 * 3 + 4);  // START, 2 faces, a partial row
  CHECK(decode_tokens(cut).faces.size() == 2);
}

TEST_CASE("data: quantization rounds half to even and clips") {
  CHECK(quantize_coord(-0.5) == 0);
  CHECK(quantize_coord(0.5) == 128);
  CHECK(quantize_coord(-3.0) == 0);
  CHECK(quantize_coord(7.0) == 128);
  CHECK(quantize_coord(0.5 / 128.0 - 0.5) == 0);   // 0.5 -> 0
  CHECK(quantize_coord(1.5 / 128.0 - 0.5) == 2);   // 1.5 -> 2
  CHECK(quantize_coord(0.0) == 64);
}

TEST_CASE("data: degenerate faces are dropped, duplicates after merging are kept in file order") {
  Mesh m;
  m.vertices = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1e-4f, 0, 0}};
  m.faces = {{0, 1, 2}, {3, 1, 2}, {0, 3, 1}};  // the second merges onto the first; the third collapses
  QuantizedMesh q = quantize_canonical(normalized_vertices(m), m.faces);
  CHECK(q.dropped_degenerate == 1);
  CHECK(q.faces.size() == 2);
  CHECK_THROWS_AS(tokenize_mesh(Mesh{}), Error);
}
