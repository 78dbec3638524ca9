// test_data_compact.cpp: the indexed 16-bit dataset layout (data/indexed16.h,
// docs/data.md): round trip within a grid step, the same tokens as the float
// layout for the same meshes, a smaller file, and errors or counted skips for
// truncated and inconsistent files.
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include "core/error.h"
#include "data/dataset.h"
#include "data/indexed16.h"
#include "data/loader.h"
#include "data/mesh.h"
#include "data/tokenize.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// The golden furniture meshes and random triangle fans with arbitrary
// coordinates (many of them near a 7-bit rounding boundary by chance).
std::vector<DatasetEntry> compact_entries() {
  std::vector<DatasetEntry> out;
  for (const char* name : {"tatami", "ammoBox", "upperShelves", "bedsideTable2", "pallet"}) {
    DatasetEntry e;
    e.name = name;
    e.source = golden(std::string("meshes/") + name + ".obj");
    e.package = "golden";
    e.triangles = normalized_triangles(read_obj(e.source));
    out.push_back(e);
  }
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (int i = 0; i < 60; i++) {
    Mesh m;
    const int n = 5 + i;
    for (int v = 0; v < n; v++) m.vertices.push_back({u(rng), u(rng), u(rng)});
    for (int f = 1; f + 1 < n; f++) m.faces.push_back({0, f, f + 1});
    DatasetEntry e;
    e.name = "random" + std::to_string(i);
    e.split = i % 5 == 0 ? "val" : "train";
    e.triangles = normalized_triangles(m);
    out.push_back(e);
  }
  return out;
}

int64_t file_size(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

}  // namespace

TEST_CASE("data: the indexed 16-bit layout round-trips and tokenizes like the float layout") {
  const std::vector<DatasetEntry> entries = compact_entries();
  write_dataset("build/test_compact.npy", entries, 800);
  write_dataset("build/test_float.npy", entries, 800, "", DatasetLayout::Triangles32);
  MeshDataset compact("build/test_compact.npy"), plain("build/test_float.npy");
  CHECK(compact.layout() == DatasetLayout::Indexed16);
  CHECK(plain.layout() == DatasetLayout::Triangles32);
  REQUIRE(compact.size() == static_cast<int64_t>(entries.size()));
  CHECK(compact.skipped().empty());
  CHECK(compact.face_capacity() == plain.face_capacity());
  CHECK(compact.indices("val") == plain.indices("val"));
  CHECK(file_size("build/test_compact.npy") * 4 < file_size("build/test_float.npy"));
  double worst = 0;
  for (int64_t i = 0; i < compact.size(); i++) {
    CHECK(compact.name(i) == entries[i].name);
    const std::vector<Triangle> t = compact.triangles(i);
    REQUIRE(t.size() == entries[i].triangles.size());
    for (size_t f = 0; f < t.size(); f++)
      for (int k = 0; k < 9; k++) worst = std::max(worst, double(std::fabs(t[f][k] - entries[i].triangles[f][k])));
    CHECK(dataset_mesh_tokens(compact, i, false, 0, 0) == dataset_mesh_tokens(plain, i, false, 0, 0));
  }
  // Rounding is half a grid step; a vertex moved to keep its tokens goes a few steps more.
  CHECK(worst <= 4.0 / kFixedScale);
  CHECK(worst > 0);
  // The sidecar says which layout it describes and carries the provenance fields.
  std::ifstream side("build/test_compact.json");
  std::string text((std::istreambuf_iterator<char>(side)), std::istreambuf_iterator<char>());
  CHECK(contains(text, "\"layout\": \"indexed16\""));
  CHECK(contains(text, "\"package\": \"golden\""));
}

TEST_CASE("data: the encoder keeps 7-bit tokens even for coordinates on a rounding boundary") {
  // A token boundary (k + 0.5) / 128 with a 16-bit grid point a little above
  // it (less than 0.4 of a step): a coordinate a quarter of that gap below the
  // boundary (token k) is still nearest to that grid point (token k + 1).
  double best_gap = 0, boundary = 0;
  for (int k = 0; k < 128; k++) {
    const double b = (k + 0.5) / 128, gap = std::nearbyint(b * kFixedScale) / kFixedScale - b;
    if (gap > best_gap && gap < 0.4 / kFixedScale) best_gap = gap, boundary = b;
  }
  REQUIRE(best_gap > 2e-6);
  const float edge = static_cast<float>(boundary - best_gap / 4 - 0.5);
  REQUIRE(quantize_coord(edge) != quantize_coord(fixed_to_coord(coord_to_fixed(edge))));
  std::vector<Triangle> tris = {{-0.5f, -0.5f, -0.5f, 0.5f, 0.5f, 0.5f, edge, 0.1f, 0.2f}};
  Indexed16 enc = encode_indexed16(tris, "edge");
  CHECK(enc.vertices.size() == 3);
  CHECK(enc.nudged > 0);
  std::vector<Triangle> back = decode_indexed16(enc.vertices.data(), enc.faces.data(), 1);
  CHECK(quantize_coord(back[0][6]) == quantize_coord(edge));
  CHECK(contains(error_of([] { encode_indexed16({{0.9f, 0, 0, 0, 0, 0, 0, 0, 0}}, "big"); }),
                 "big: coordinate 0.9 outside the unit cube"));
}

TEST_CASE("data: truncated or inconsistent indexed files are errors; bad indices are counted skips") {
  std::vector<DatasetEntry> entries = compact_entries();
  entries.resize(3);
  write_dataset("build/test_cbad.npy", entries, 800);
  std::ifstream in("build/test_cbad.npy", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ifstream js("build/test_cbad.json");
  std::string side((std::istreambuf_iterator<char>(js)), std::istreambuf_iterator<char>());

  std::ofstream("build/test_ctrunc.npy", std::ios::binary).write(bytes.data(), bytes.size() - 7);
  std::ofstream("build/test_ctrunc.json") << side;
  CHECK(contains(error_of([] { MeshDataset d("build/test_ctrunc.npy"); }), "build/test_ctrunc.npy: truncated"));

  std::ofstream("build/test_cnoside.npy", std::ios::binary) << bytes;
  std::remove("build/test_cnoside.json");
  CHECK(contains(error_of([] { MeshDataset d("build/test_cnoside.npy"); }), "needs its sidecar"));

  // The sidecar's counts must add up to the array's rows.
  std::string other = side;
  const size_t at = other.find("\"vertices\": ");
  other.insert(at + 12, "1");
  std::ofstream("build/test_cnoside.json") << other;
  CHECK(contains(error_of([] { MeshDataset d("build/test_cnoside.npy"); }), "rows but"));
  other = side;
  other.replace(other.find("\"vertices\": "), 10, "\"vertexes\"");
  std::ofstream("build/test_cnoside.json") << other;
  CHECK(contains(error_of([] { MeshDataset d("build/test_cnoside.npy"); }), "no valid \"vertices\" count"));

  // A face index past the mesh's vertices: that mesh is set aside, the rest load.
  std::string corrupt = bytes;
  const size_t data_at = 10 + (static_cast<unsigned char>(bytes[8]) | static_cast<unsigned char>(bytes[9]) << 8);
  const size_t nv0 = encode_indexed16(entries[0].triangles, "m0").vertices.size();
  corrupt[data_at + 6 * nv0] = '\xff';
  corrupt[data_at + 6 * nv0 + 1] = '\xff';
  std::ofstream("build/test_cindex.npy", std::ios::binary) << corrupt;
  std::ofstream("build/test_cindex.json") << side;
  MeshDataset ds("build/test_cindex.npy");
  CHECK(ds.skipped().at("index_out_of_range") == 1);
  CHECK(ds.indices() == std::vector<int64_t>{1, 2});
  CHECK(ds.triangles(1).size() == entries[1].triangles.size());
}
