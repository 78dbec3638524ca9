// training_fixtures.h: what the tests that train share (tests/test_training.cpp,
// tests/test_distributed.cpp): small generated meshes, a dataset of them, a
// quick CPU run configuration for the tiny model, and a parameter snapshot.
#pragma once
#include <sys/stat.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/mesh.h"
#include "nn/iflame.h"
#include "training/train_config.h"

namespace iflame::test {

// The box of half-extents (sx, sy, sz) centred at the origin: 12 faces.
inline Mesh box_mesh(float sx, float sy, float sz) {
  Mesh m;
  for (int c = 0; c < 8; c++)
    m.vertices.push_back({(c & 4 ? 1 : -1) * sx, (c & 2 ? 1 : -1) * sy, (c & 1 ? 1 : -1) * sz});
  m.faces = {{0, 1, 3}, {0, 3, 2}, {4, 6, 7}, {4, 7, 5}, {0, 4, 5}, {0, 5, 1},
             {2, 3, 7}, {2, 7, 6}, {0, 2, 6}, {0, 6, 4}, {1, 5, 7}, {1, 7, 3}};
  return m;
}

// A tetrahedron stretched by `a`: 4 faces.
inline Mesh tetra_mesh(float a) {
  Mesh m;
  m.vertices = {{0.1f, 0.2f, 0.3f}, {0.9f, -0.4f * a, 0.05f}, {-0.3f, 0.7f, -0.6f * a}, {0.2f * a, -0.1f, 0.8f}};
  m.faces = {{0, 1, 2}, {0, 3, 1}, {1, 3, 2}, {0, 2, 3}};
  return m;
}

// Writes (once per process) a dataset of 5 boxes and 5 tetrahedra of assorted
// proportions at `path` (under build/), the last two for validation: sequences
// of very different lengths.
inline const std::string& shapes_dataset(const std::string& path) {
  static std::vector<std::string> made;
  for (const std::string& p : made)
    if (p == path) return p;
  std::vector<DatasetEntry> entries;
  for (int i = 0; i < 10; i++) {
    DatasetEntry e;
    e.name = str("shape", i);
    e.source = "generated";
    e.category = i % 2 ? "box" : "tetra";
    e.split = i >= 8 ? "val" : "train";
    Mesh m = i % 2 ? box_mesh(0.2f + 0.05f * i, 0.5f, 0.3f - 0.02f * i) : tetra_mesh(0.5f + 0.1f * i);
    e.triangles = normalized_triangles(m);
    entries.push_back(e);
  }
  mkdir("build", 0755);
  write_dataset(path, entries, 800);
  made.push_back(path);
  return made.back();
}

// A few quick steps of the tiny model on the CPU: no periodic validation or
// checkpoints, no output.
inline TrainConfig tiny_cpu_config(const std::string& dataset, const std::string& out_dir,
                                   const std::string& name, int64_t steps, int batch, uint64_t seed,
                                   int loader_threads) {
  TrainConfig c;
  c.dataset = dataset;
  c.model = "tiny";
  c.batch_size = batch;
  c.steps = steps;
  c.device = "cpu";
  c.out_dir = out_dir;
  c.name = name;
  c.val_interval = 0;
  c.val_batches = 2;
  c.ckpt_interval = 1000;
  c.loader_threads = loader_threads;
  c.quiet = true;
  c.seed = seed;
  return c;
}

// Every parameter of the model, flattened in state-dict order (host copy).
inline std::vector<float> all_parameters(IFlame& model) {
  std::vector<float> out;
  for (auto& kv : model.parameters().items()) {
    auto v = kv.second.value().to_floats();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

}  // namespace iflame::test
