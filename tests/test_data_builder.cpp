// test_data_builder.cpp: the dataset builder's library part (cleaning, the face
// limit, counts, the split) on the golden meshes, and data/furniture.npy when
// `make data` has built it.
#include <sys/stat.h>

#include <set>

#include "core/error.h"
#include "core/npy.h"
#include "data/json.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "tests/test_util.h"
#include "tools/dataset_builder.h"

using namespace iflame;
using namespace iflame::test;

TEST_CASE("data: cleaning merges equal positions and drops repeated and degenerate faces") {
  Mesh m;
  m.vertices = {{0, 0, 0}, {1, 0, 0}, {0, 1, 0}, {1, 0, 0}, {-0.0f, 1, 0}, {5, 5, 5}};
  m.faces = {{0, 1, 2}, {0, 3, 4}, {2, 1, 0}, {0, 1, 3}};  // a copy by position, reversed copy, degenerate
  CHECK(clean_mesh(m) == 3);
  CHECK(m.faces.size() == 1);
  CHECK(m.vertices.size() == 3);  // the unused (5, 5, 5) is gone
}

TEST_CASE("data: builder counts every drop and respects the face limit") {
  std::vector<BuildInput> inputs;
  for (const char* name : {"tatami", "ammoBox", "upperShelves", "bedsideTable2", "pallet"})
    inputs.push_back({golden(std::string("meshes/") + name + ".obj"), name, "furniture"});
  inputs.push_back(inputs[0]);                                           // a duplicate
  inputs.push_back({"build/no_such_mesh.obj", "missing", ""});          // unreadable
  BuildOptions opt;
  opt.max_faces = 150;
  opt.val_fraction = 0.5;
  opt.threads = 1;
  opt.log_errors = false;
  // A stand-in simplifier: keeps the first target faces.
  opt.simplify = [](const Mesh& m, int target) {
    Mesh s = m;
    if (static_cast<int>(s.faces.size()) > target) s.faces.resize(target);
    return s;
  };
  BuildReport r = build_dataset(inputs, "build/test_built.npy", opt);
  CHECK(r.inputs == 7);
  CHECK(r.dropped["duplicate"] == 1);
  CHECK(r.dropped["unreadable"] == 1);
  CHECK(r.kept == 5);
  CHECK(r.train + r.val == 5);
  CHECK(r.events["meshes_simplified"] == 2);  // bedsideTable2 (272 faces) and pallet (156)
  MeshDataset ds("build/test_built.npy", 150);
  CHECK(ds.size() == 5);
  CHECK(ds.skipped().empty());
  for (int64_t i = 0; i < ds.size(); i++) CHECK(ds.faces(i) <= 150);
  // Meshes under the limit are stored as they tokenize: the golden vectors come back.
  CHECK(dataset_mesh_tokens(ds, 0, false, 0, 0) == read_npy(golden("tokens_tatami.npy")).to_ints());
  int64_t hist = 0;
  for (int64_t c : r.face_histogram) hist += c;
  CHECK(hist == 5);
  // The split depends on the mesh, not on the input order.
  std::vector<BuildInput> reversed(inputs.rbegin(), inputs.rend());
  build_dataset(reversed, "build/test_built_rev.npy", opt);
  MeshDataset rev("build/test_built_rev.npy");
  std::map<std::string, std::string> a, b;
  for (int64_t i = 0; i < ds.size(); i++) a[ds.name(i)] = ds.split(i);
  for (int64_t i = 0; i < rev.size(); i++) b[rev.name(i)] = rev.split(i);
  CHECK(a == b);
  CHECK(parse_json(r.json().substr(10), "counts").find("kept")->number == 5);
}

TEST_CASE("data: the furniture dataset (when built by make data) loads and tokenizes within its limit") {
  struct stat st;
  if (stat("data/furniture.npy", &st) != 0) {
    MESSAGE("skipped: data/furniture.npy not built (make data)");
    return;
  }
  MeshDataset ds("data/furniture.npy", 800);
  CHECK(ds.skipped().empty());
  CHECK(ds.indices("train").size() + ds.indices("val").size() == static_cast<size_t>(ds.size()));
  int64_t longest = 0;
  for (int64_t i = 0; i < ds.size(); i += 7) {
    auto t = dataset_mesh_tokens(ds, i, true, 1, 0);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(t.size()) / 9 - 2);
  }
  CHECK(longest <= 800);
  MESSAGE(ds.size() << " meshes; longest augmented sequence sampled: " << longest << " faces");
}
