// test_data_loader.cpp: the dataset file (write, map, validate) and the batch
// loader (padding, determinism, sharding, bucketing, threads, bad input).
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>

#include "core/error.h"
#include "core/npy.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/mesh.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

const char* kGoldenMeshes[] = {"tatami", "ammoBox", "upperShelves", "bedsideTable2", "pallet"};

// The five golden meshes plus `extra` random small meshes (2..40 faces), 1 in 4 in "val".
std::vector<DatasetEntry> sample_entries(int extra) {
  std::vector<DatasetEntry> out;
  for (const char* name : kGoldenMeshes) {
    DatasetEntry e;
    e.name = name;
    e.source = golden(std::string("meshes/") + name + ".obj");
    e.category = "furniture";
    e.triangles = normalized_triangles(read_obj(e.source));
    out.push_back(e);
  }
  Generator g(99);
  for (int i = 0; i < extra; i++) {
    Mesh m;
    int nf = 2 + static_cast<int>(g.uniform() * 39);
    for (int f = 0; f < nf; f++) {
      for (int k = 0; k < 3; k++) m.vertices.push_back({g.uniform(), g.uniform(), g.uniform()});
      m.faces.push_back({3 * f, 3 * f + 1, 3 * f + 2});
    }
    DatasetEntry e;
    e.name = "random" + std::to_string(i);
    e.category = "random";
    e.split = i % 4 == 3 ? "val" : "train";
    e.triangles = normalized_triangles(m);
    out.push_back(e);
  }
  return out;
}

// Raw float32 [n, f, 9] written straight through write_npy (no sidecar).
void write_raw(const std::string& path, const std::vector<float>& v, int64_t n, int64_t f) {
  std::remove(sidecar_path(path).c_str());
  write_npy(path, Tensor::from_floats(v, {n, f, 9}));
}

}  // namespace

TEST_CASE("data: dataset round trip, and its tokens equal the golden vectors") {
  write_dataset("build/test_ds.npy", sample_entries(20), 800);
  MeshDataset ds("build/test_ds.npy");
  CHECK(ds.size() == 25);
  CHECK(ds.face_capacity() == 572);
  CHECK(ds.faces(4) == 572);
  CHECK(ds.name(3) == "bedsideTable2");
  CHECK(ds.skipped().empty());
  CHECK(ds.indices().size() == 25);
  CHECK(ds.indices("val").size() == 5);
  CHECK(ds.indices("train").size() == 20);
  for (int i = 0; i < 5; i++) {
    std::vector<int32_t> expect = read_npy(golden(std::string("tokens_") + kGoldenMeshes[i] + ".npy")).to_ints();
    CHECK(dataset_mesh_tokens(ds, i, false, 0, 0) == expect);
  }
}

TEST_CASE("data: batches are padded, repeatable, and differ by epoch") {
  write_dataset("build/test_ds.npy", sample_entries(40), 800);
  MeshDataset ds("build/test_ds.npy");
  LoaderOptions opt;
  opt.batch_size = 4;
  opt.seed = 5;
  opt.threads = 2;
  auto run = [&](LoaderOptions o, int64_t epoch) {
    Loader loader(ds, ds.indices(), o);
    loader.start_epoch(epoch);
    std::vector<Batch> out;
    Batch b;
    while (loader.next(b)) out.push_back(b);
    return out;
  };
  std::vector<Batch> a = run(opt, 0);
  CHECK(a.size() == 12);  // 45 meshes / 4 = 11 full + 1 short
  CHECK(a.back().tokens.size(0) == 1);
  std::set<int64_t> seen;
  for (const Batch& b : a) {
    CHECK(b.tokens.dtype() == DType::I32);
    CHECK(b.tokens.size(1) % 9 == 0);
    std::vector<int32_t> t = b.tokens.to_ints();
    const int64_t T = b.tokens.size(1);
    size_t longest = 0;
    for (size_t r = 0; r < b.meshes.size(); r++) {
      seen.insert(b.meshes[r]);
      const int32_t* row = t.data() + r * T;
      for (int k = 0; k < 9; k++) CHECK(row[k] == kStartToken);
      int64_t end = 9;
      while (end < T && row[end] != kEndToken) end++;
      REQUIRE(end + 9 <= T);
      for (int64_t k = end + 9; k < T; k++) CHECK(row[k] == kPadToken);
      for (int64_t k = 9; k < end; k++) CHECK((row[k] >= 0 && row[k] <= 128));
      longest = std::max<size_t>(longest, end + 9);
    }
    CHECK(static_cast<int64_t>(longest) == T);
  }
  CHECK(seen.size() == 45);
  // Same seed and epoch: the same batches, whatever the threading.
  LoaderOptions sync = opt;
  sync.threads = 0;
  std::vector<Batch> s = run(sync, 0);
  LoaderOptions many = opt;
  many.threads = 3;
  many.prefetch = 2;
  std::vector<Batch> m = run(many, 0);
  REQUIRE(s.size() == a.size());
  REQUIRE(m.size() == a.size());
  for (size_t i = 0; i < a.size(); i++) {
    CHECK(a[i].tokens.to_ints() == s[i].tokens.to_ints());
    CHECK(a[i].tokens.to_ints() == m[i].tokens.to_ints());
  }
  // Another epoch: another order and other augmentations.
  std::vector<Batch> e1 = run(opt, 1);
  CHECK(e1[0].meshes != a[0].meshes);
  LoaderOptions other = opt;
  other.seed = 6;
  CHECK(run(other, 0)[0].meshes != a[0].meshes);
  // Without shuffling and augmentation, a row is exactly the mesh's canonical tokens.
  LoaderOptions plain = opt;
  plain.shuffle = false;
  plain.augment = false;
  std::vector<Batch> p = run(plain, 3);
  CHECK(p[0].meshes == std::vector<int64_t>{0, 1, 2, 3});
  std::vector<int32_t> row0 = p[0].tokens.to_ints();
  std::vector<int32_t> tatami = read_npy(golden("tokens_tatami.npy")).to_ints();
  CHECK(std::vector<int32_t>(row0.begin(), row0.begin() + tatami.size()) == tatami);
}

TEST_CASE("data: ranks share an epoch without overlap; bucketing cuts padding") {
  write_dataset("build/test_ds.npy", sample_entries(58), 800);  // 63 meshes
  MeshDataset ds("build/test_ds.npy");
  LoaderOptions opt;
  opt.batch_size = 5;
  opt.seed = 1;
  opt.world_size = 3;
  std::set<int64_t> all;
  size_t batches = 0, total = 0;
  for (int r = 0; r < 3; r++) {
    opt.rank = r;
    auto plan = plan_epoch(ds, ds.indices(), opt, 2);
    if (r == 0) batches = plan.size();
    CHECK(plan.size() == batches);  // every rank steps the same number of times
    CHECK(plan == plan_epoch(ds, ds.indices(), opt, 2));
    for (const auto& b : plan)
      for (int64_t i : b) {
        all.insert(i);
        total++;
      }
  }
  CHECK(total == 63);  // 63 = 4 global batches of 15 + 3, shared one each
  CHECK(all.size() == 63);
  opt.drop_last = true;
  opt.rank = 0;
  CHECK(plan_epoch(ds, ds.indices(), opt, 2).size() == 4);

  auto padding = [&](int window) {
    LoaderOptions o;
    o.batch_size = 8;
    o.seed = 3;
    o.augment = false;
    o.bucket_window = window;
    size_t pad = 0, seen = 0;
    for (const auto& b : plan_epoch(ds, ds.indices(), o, 0)) {
      int longest = 0;
      for (int64_t i : b) longest = std::max(longest, ds.faces(i));
      for (int64_t i : b) pad += longest - ds.faces(i);
      seen += b.size();
    }
    CHECK(seen == 63);
    return pad;
  };
  size_t unbucketed = padding(0), bucketed = padding(8);
  MESSAGE("padding face rows per epoch: " << unbucketed << " unbucketed, " << bucketed << " bucketed");
  CHECK(bucketed < unbucketed / 2);
}

TEST_CASE("data: bad dataset files are errors or counted skips, never crashes") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // 6 meshes x 3 rows: good, empty, partial NaN, inf, face after padding, outside the cube.
  std::vector<float> v(6 * 3 * 9, nan);
  auto row = [&](int mesh, int r, float value) {
    for (int k = 0; k < 9; k++) v[(mesh * 3 + r) * 9 + k] = (k % 3 == 0) ? value : 0.1f * k / 9;
  };
  row(0, 0, 0.1f); row(0, 1, -0.2f);
  row(2, 0, 0.1f); v[(2 * 3 + 0) * 9 + 4] = nan;
  row(3, 0, inf);
  row(4, 0, 0.1f); row(4, 2, 0.2f);
  row(5, 0, 0.9f);
  write_raw("build/test_bad.npy", v, 6, 3);
  MeshDataset ds("build/test_bad.npy");
  CHECK(ds.indices() == std::vector<int64_t>{0});
  CHECK(ds.skipped().at("empty") == 1);
  CHECK(ds.skipped().at("non_finite") == 2);
  CHECK(ds.skipped().at("rows_after_padding") == 1);
  CHECK(ds.skipped().at("outside_unit_cube") == 1);
  MeshDataset limited("build/test_bad.npy", 1);
  CHECK(limited.skipped().at("over_face_limit") == 1);
  CHECK(limited.indices().empty());
  CHECK_THROWS_AS(Loader(ds, {1}, LoaderOptions{}), Error);

  // Truncated: the header promises more than the file holds.
  {
    std::ifstream in("build/test_bad.npy", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream("build/test_trunc.npy", std::ios::binary).write(bytes.data(), bytes.size() - 10);
    std::ofstream("build/test_garbage.npy", std::ios::binary) << "not a numpy file at all";
  }
  CHECK(error_of([] { MeshDataset d("build/test_trunc.npy"); }).find("build/test_trunc.npy: truncated") !=
        std::string::npos);
  CHECK(error_of([] { MeshDataset d("build/test_garbage.npy"); }).find("build/test_garbage.npy") != std::string::npos);
  CHECK(error_of([] { MeshDataset d("build/no_such_dataset.npy"); }).find("no_such_dataset") != std::string::npos);
  write_npy("build/test_i32.npy", Tensor::from_ints({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 9}));
  CHECK(error_of([] { MeshDataset d("build/test_i32.npy"); }).find("expected <f4") != std::string::npos);
  write_npy("build/test_shape.npy", Tensor::zeros({2, 6}));
  CHECK(error_of([] { MeshDataset d("build/test_shape.npy"); }).find("expected [N, F_max, 9]") != std::string::npos);
  // A sidecar that does not describe the array.
  write_dataset("build/test_side.npy", sample_entries(1), 800);
  write_raw("build/test_side_other.npy", std::vector<float>(9, 0.1f), 1, 1);
  std::rename("build/test_side.json", "build/test_side_other.json");
  CHECK(error_of([] { MeshDataset d("build/test_side_other.npy"); }).find("lists 6 meshes") != std::string::npos);
  std::ofstream("build/test_side_other.json") << "{\"meshes\": [1, ";
  CHECK(error_of([] { MeshDataset d("build/test_side_other.npy"); }).find("test_side_other.json: byte") !=
        std::string::npos);
  // Over the face limit at write time.
  CHECK_THROWS_AS(write_dataset("build/test_side.npy", sample_entries(0), 100), Error);
}
