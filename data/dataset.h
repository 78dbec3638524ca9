// dataset.h: the mesh dataset file (docs/data.md) and its memory-mapped reader.
// Two layouts of <name>.npy, both in the unit cube [-0.5, 0.5]^3:
//
//   indexed (default)  uint16 [R, 3]: per mesh its vertices (16-bit fixed point,
//                      data/indexed16.h) then its faces (local vertex indices);
//                      the sidecar gives each mesh's vertex and face counts
//   triangles          float32 [N, F_max, 9]: mesh i's triangles (x0 y0 z0 x1 y1
//                      z1 x2 y2 z2), then all-NaN rows
//   <name>.json        sidecar: format, layout, max_faces, per mesh name / source /
//                      category / faces [/ vertices / package / license / path /
//                      family] / split ("train" or "val"), and the builder's counts
//
// The reader maps the .npy (no copy), checks the header (dtype and shape, size),
// then scans every mesh once and sets aside, with a count per reason, those that
// cannot be used: no faces, a non-finite value in a face row, a face row after
// the padding, a coordinate outside the unit cube, a vertex index out of range,
// more faces than a limit. Structural problems (bad header, truncated file,
// sidecar missing or disagreeing with the array) are errors that name the file.
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
  std::string package, license, path, family;  // optional provenance (written when not empty)
  std::string split = "train";
  std::vector<Triangle> triangles;  // in the unit cube, at most max_faces
};

// Writes <npy_path> and its sidecar (<npy_path> with .json for .npy). `extra`
// is raw JSON members appended to the sidecar's top level (e.g. the builder's
// counts: "\"counts\": {...}"), or empty. F_max = max(1, largest face count).
enum class DatasetLayout { Indexed16, Triangles32 };
void write_dataset(const std::string& npy_path, const std::vector<DatasetEntry>& meshes, int max_faces,
                   const std::string& extra_json = "", DatasetLayout layout = DatasetLayout::Indexed16);

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
  int64_t face_capacity() const { return f_max_; }  // largest face count of any mesh
  DatasetLayout layout() const { return layout_; }
  bool usable(int64_t i) const { return faces_[i] > 0; }
  int faces(int64_t i) const { return faces_[i] > 0 ? faces_[i] : 0; }
  // Mesh i's triangles as float rows (a copy, decoded for the indexed layout).
  std::vector<Triangle> triangles(int64_t i) const;
  // From the sidecar ("" when there is none).
  const std::string& name(int64_t i) const;
  const std::string& split(int64_t i) const;
  bool has_sidecar() const { return !names_.empty(); }
  // Usable meshes of a split ("" = all), ascending.
  std::vector<int64_t> indices(const std::string& split = "") const;
  // Meshes set aside, per reason.
  const std::map<std::string, int64_t>& skipped() const { return skipped_; }

 private:
  void scan_triangles32(int max_faces);
  void scan_indexed16(const std::vector<int64_t>& vertex_counts, const std::vector<int64_t>& face_counts,
                      int max_faces);
  void set_aside(int64_t i, int reason);

  std::string path_;
  DatasetLayout layout_ = DatasetLayout::Triangles32;
  int64_t n_ = 0, f_max_ = 0;
  const float* data_ = nullptr;        // triangles layout
  const uint16_t* rows_ = nullptr;     // indexed layout
  std::vector<int64_t> row_offset_;    // indexed: first row of mesh i; its faces follow its vertices
  std::vector<int64_t> vertex_count_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<int> faces_;  // > 0 usable, else -(reason index) or 0
  std::vector<std::string> names_, splits_;
  std::map<std::string, int64_t> skipped_;
};

}  // namespace iflame
