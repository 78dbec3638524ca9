// dataset_builder.h: mesh files -> dataset (.npy + sidecar, docs/data.md).
//
// For each input: drop it by name when it is a collision proxy or a lower LOD;
// read it (any format of data/mesh.h, or an extra reader such as Assimp's),
// every part welded into one object; drop skinned files; turn Z-up sources to
// Y-up; clean it (merge vertices at identical positions, drop faces that repeat
// a vertex, drop repeated faces); drop meshes under 20 faces, flat ones
// (billboards) and scattered fragments; normalize; drop faces that collapse
// when quantized to 129 levels; if more than max_faces remain, simplify (a
// callback: the build_dataset program passes meshoptimizer's) and try again;
// drop what still does not fit, exact duplicates of an earlier mesh's tokens
// and same-topology variants (poses, recolours) of an earlier mesh; with a
// family cap, keep at most N meshes of each family (sized variants of one part)
// spread over its face counts. Every drop is counted by reason, per source
// package. The train/val split is a hash of
// the mesh's family (its category and its name without digits), so sized
// variants and LODs of one model never straddle the split, whatever the order
// or number of inputs.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/mesh.h"

namespace iflame {

struct BuildInput {
  BuildInput(std::string p = "", std::string n = "", std::string c = "")
      : path(std::move(p)), name(std::move(n)), category(std::move(c)) {}
  std::string path;      // mesh file
  std::string name;      // defaults to the file name without extension
  std::string category;  // may be empty
  std::string package, license, original_path;  // provenance for the sidecar (may be empty)
  bool z_up = false;     // the source's up axis is +Z (turned to +Y)
  std::shared_ptr<const Mesh> mesh;  // the mesh itself, read already (then `path` only labels it)
  std::string split;     // a fixed split ("train" / "val"), else the family hash decides
};

// Reads a file that data/mesh.h does not know (e.g. through Assimp); empty: none.
using ExtraReader = std::function<Mesh(const std::string& path, MeshTraits* traits)>;

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
  int min_faces = 20;     // fewer faces after cleaning: dropped
  ExtraReader extra_reader;
  std::string sheet_dir;  // when set: the first sheet_count kept meshes of each package as OBJ in sheet_dir/<package>/
  int sheet_count = 48;
  DatasetLayout layout = DatasetLayout::Indexed16;
  // At most this many meshes of one family (mesh_family) of one package are
  // kept, the rest dropped as "sized_variant" (0: no cap); only in the packages
  // of family_cap_packages when that is not empty.
  int max_per_family = 0;
  std::vector<std::string> family_cap_packages;
};

struct BuildReport {
  int64_t inputs = 0, kept = 0, train = 0, val = 0;
  std::map<std::string, int64_t> dropped;   // reason -> meshes
  std::map<std::string, int64_t> events;    // simplified, faces removed by cleaning, ...
  std::vector<int64_t> face_histogram;      // kept meshes per 50-face bin: [0,50), [50,100), ...
  std::map<std::string, BuildReport> per_package;  // the same counts per source package (not nested further)
  std::string json() const;                 // "\"counts\": {...}" for the sidecar
  std::string text() const;                 // human summary with the histogram and a table per package
  void count_drop(const std::string& package, const std::string& reason);
};

// Collects mesh files: each argument is a file or a directory (searched
// recursively for .obj .ply .stl .off), sorted by path.
std::vector<BuildInput> collect_inputs(const std::vector<std::string>& paths);
// Reads a list file: one mesh per line,
// "path[<TAB>name[<TAB>category[<TAB>package<TAB>license<TAB>original path[<TAB>z]]]]";
// '#' comments.
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

// Why a file is left out by its name alone ("" when it is not): a collision
// or physics proxy, a shadow mesh, or a lower level of detail.
std::string drop_reason_by_name(const std::string& path);
// Why a cleaned mesh is not one usable object ("" when it is): under
// min_faces faces, flat (a billboard), or scattered fragments.
std::string drop_reason_by_shape(const Mesh& mesh, int min_faces);
// The split key: category and name with digits and separators removed, lower case.
std::string mesh_family(const BuildInput& input);

// A kept mesh as the family cap sees it.
struct FamilyMember {
  std::string package, family, name;
  int64_t faces = 0;
};
// Which members the cap keeps (true) when each (package, family) may keep at
// most `cap` (0: all): a family's members sorted by (faces, name, position)
// and taken evenly from the smallest to the largest (cap 1: the median; cap 2:
// the smallest and the largest). Members of packages outside `packages` (when
// not empty) are all kept. Depends on nothing but the members themselves.
std::vector<bool> family_cap_keep(const std::vector<FamilyMember>& members, int cap,
                                  const std::vector<std::string>& packages);

BuildReport build_dataset(const std::vector<BuildInput>& inputs, const std::string& out_npy,
                          const BuildOptions& opt);

}  // namespace iflame
