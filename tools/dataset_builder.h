// dataset_builder.h: mesh files -> dataset (.npy + sidecar, docs/data.md).
//
// For each input: read it (any format of data/mesh.h); clean it (merge vertices
// at identical positions, drop faces that repeat a vertex, drop repeated faces);
// normalize; drop faces that collapse when quantized to 129 levels; if more than
// max_faces remain, simplify (a callback: the build_dataset program passes
// meshoptimizer's) and try again; drop what still does not fit, and exact
// duplicates of an earlier mesh's tokens. Every drop is counted by reason.
// The train/val split is a hash of the source path, so it does not depend on
// the order or number of inputs.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/mesh.h"

namespace iflame {

struct BuildInput {
  std::string path;      // mesh file
  std::string name;      // defaults to the file name without extension
  std::string category;  // may be empty
};

// Reduces `mesh` to at most `target_faces` triangles (may return more when it
// cannot); vertices are in the unit cube.
using SimplifyFn = std::function<Mesh(const Mesh& mesh, int target_faces)>;

struct BuildOptions {
  int max_faces = 800;
  double val_fraction = 0.05;
  SimplifyFn simplify;    // empty: meshes over the limit are dropped
  bool progress = false;  // a progress bar on stderr
  bool log_errors = true;  // print each unreadable file's error on stderr
  int threads = 0;        // 0: OpenMP's default
};

struct BuildReport {
  int64_t inputs = 0, kept = 0, train = 0, val = 0;
  std::map<std::string, int64_t> dropped;   // reason -> meshes
  std::map<std::string, int64_t> events;    // simplified, faces removed by cleaning, ...
  std::vector<int64_t> face_histogram;      // kept meshes per 50-face bin: [0,50), [50,100), ...
  std::string json() const;                 // "\"counts\": {...}" for the sidecar
  std::string text() const;                 // human summary with the histogram
};

// Collects mesh files: each argument is a file or a directory (searched
// recursively for .obj .ply .stl .off), sorted by path.
std::vector<BuildInput> collect_inputs(const std::vector<std::string>& paths);
// Reads a list file: one mesh per line, "path[<TAB>name[<TAB>category]]"; '#' comments.
std::vector<BuildInput> read_input_list(const std::string& list_path);

// Cleans a mesh: merges exactly equal positions, drops faces with a repeated
// vertex and repeated faces (same three vertices). Returns faces removed.
int64_t clean_mesh(Mesh& mesh);

// One mesh through the pipeline; an empty result and a reason when it is dropped.
struct PreparedMesh {
  std::vector<Triangle> triangles;
  std::string dropped;  // reason, empty when kept
  bool simplified = false;
  int64_t cleaned_faces = 0, collapsed_faces = 0;
};
PreparedMesh prepare_mesh(Mesh mesh, const BuildOptions& opt);

BuildReport build_dataset(const std::vector<BuildInput>& inputs, const std::string& out_npy,
                          const BuildOptions& opt);

}  // namespace iflame
