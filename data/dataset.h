// dataset.h: the mesh dataset file (docs/data.md) and its memory-mapped reader.
//
//   <name>.npy   float32 [N, F_max, 9]: mesh i's triangles (x0 y0 z0 x1 y1 z1 x2 y2 z2,
//                normalized into the unit cube [-0.5, 0.5]^3), then all-NaN rows
//   <name>.json  sidecar: format, max_faces, per mesh name / source / category /
//                faces / split ("train" or "val"), and the builder's counts
//
// The reader maps the .npy (no copy), checks the header (dtype <f4, shape
// [N, F, 9], size), then scans every mesh once and sets aside, with a count per
// reason, those that cannot be used: no faces, a non-finite value in a face row,
// a face row after the padding, a coordinate outside the unit cube, more faces
// than a limit. Structural problems (bad header, truncated file, sidecar that
// disagrees with the array) are errors that name the file.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace iflame {

using Triangle = std::array<float, 9>;

struct DatasetEntry {
  std::string name, source, category;
  std::string split = "train";
  std::vector<Triangle> triangles;  // in the unit cube, at most max_faces
};

// Writes <npy_path> and its sidecar (<npy_path> with .json for .npy). `extra`
// is raw JSON members appended to the sidecar's top level (e.g. the builder's
// counts: "\"counts\": {...}"), or empty. F_max = max(1, largest face count).
void write_dataset(const std::string& npy_path, const std::vector<DatasetEntry>& meshes, int max_faces,
                   const std::string& extra_json = "");

std::string sidecar_path(const std::string& npy_path);

struct Mesh;
// The mesh's triangles after normalization (spec §1 step 1), as float rows.
std::vector<Triangle> normalized_triangles(const Mesh& mesh);

class MeshDataset {
 public:
  // max_faces > 0 also sets aside meshes with more faces (counted as "over_face_limit").
  explicit MeshDataset(const std::string& npy_path, int max_faces = 0);
  ~MeshDataset();
  MeshDataset(const MeshDataset&) = delete;
  MeshDataset& operator=(const MeshDataset&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return n_; }             // meshes in the file, usable or not
  int64_t face_capacity() const { return f_max_; }
  bool usable(int64_t i) const { return faces_[i] > 0; }
  int faces(int64_t i) const { return faces_[i] > 0 ? faces_[i] : 0; }
  const float* triangles(int64_t i) const { return data_ + i * f_max_ * 9; }
  // From the sidecar ("" when there is none).
  const std::string& name(int64_t i) const;
  const std::string& split(int64_t i) const;
  bool has_sidecar() const { return !names_.empty(); }
  // Usable meshes of a split ("" = all), ascending.
  std::vector<int64_t> indices(const std::string& split = "") const;
  // Meshes set aside, per reason.
  const std::map<std::string, int64_t>& skipped() const { return skipped_; }

 private:
  std::string path_;
  int64_t n_ = 0, f_max_ = 0;
  const float* data_ = nullptr;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<int> faces_;  // > 0 usable, else -(reason index) or 0
  std::vector<std::string> names_, splits_;
  std::map<std::string, int64_t> skipped_;
};

}  // namespace iflame
