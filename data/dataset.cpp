// dataset.cpp: writing the dataset .npy + sidecar (both layouts), and the memory-mapped reader.
#include "data/dataset.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/npy.h"
#include "data/indexed16.h"
#include "data/json.h"
#include "data/mesh.h"
#include "data/tokenize.h"

namespace iflame {

std::string sidecar_path(const std::string& npy_path) {
  if (npy_path.size() > 4 && npy_path.compare(npy_path.size() - 4, 4, ".npy") == 0)
    return npy_path.substr(0, npy_path.size() - 4) + ".json";
  return npy_path + ".json";
}

std::vector<Triangle> normalized_triangles(const Mesh& mesh) {
  std::vector<Vec3d> v = normalized_vertices(mesh);
  std::vector<Triangle> out;
  out.reserve(mesh.faces.size());
  for (const auto& f : mesh.faces) {
    Triangle t;
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 3; c++) t[3 * k + c] = static_cast<float>(v[f[k]][c]);
    out.push_back(t);
  }
  return out;
}

namespace {

// .npy version 1.0 header: magic, length, the dict padded so the data starts at a multiple of 64.
void write_npy_header(FILE* f, const std::string& descr, const std::string& shape) {
  std::string header = str("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  uint16_t len = static_cast<uint16_t>(header.size());
  std::fwrite(&len, 2, 1, f);
  std::fwrite(header.data(), 1, header.size(), f);
}

void write_triangles32(FILE* f, const std::vector<DatasetEntry>& meshes, int64_t f_max) {
  write_npy_header(f, "<f4", str("(", meshes.size(), ", ", f_max, ", 9)"));
  std::vector<float> pad(static_cast<size_t>(f_max) * 9, std::numeric_limits<float>::quiet_NaN());
  for (const DatasetEntry& m : meshes) {
    std::fwrite(m.triangles.data(), sizeof(Triangle), m.triangles.size(), f);
    std::fwrite(pad.data(), sizeof(float) * 9, static_cast<size_t>(f_max) - m.triangles.size(), f);
  }
}

void write_indexed16(FILE* f, const std::vector<Indexed16>& encoded) {
  int64_t rows = 0;
  for (const Indexed16& e : encoded) rows += static_cast<int64_t>(e.vertices.size() + e.faces.size());
  write_npy_header(f, "<u2", str("(", rows, ", 3)"));
  for (const Indexed16& e : encoded) {
    std::fwrite(e.vertices.data(), sizeof(Row16), e.vertices.size(), f);
    std::fwrite(e.faces.data(), sizeof(Row16), e.faces.size(), f);
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  FILE* j = std::fopen(path.c_str(), "wb");
  IFLAME_REQUIRE(j, "cannot write ", path);
  bool ok = std::fwrite(text.data(), 1, text.size(), j) == text.size();
  ok = (std::fclose(j) == 0) && ok;
  IFLAME_REQUIRE(ok, "error writing ", path);
}

}  // namespace

void write_dataset(const std::string& npy_path, const std::vector<DatasetEntry>& meshes, int max_faces,
                   const std::string& extra_json, DatasetLayout layout) {
  int64_t f_max = 1;
  for (const DatasetEntry& m : meshes) {
    IFLAME_REQUIRE(max_faces <= 0 || static_cast<int>(m.triangles.size()) <= max_faces, npy_path, ": mesh '", m.name,
                 "' has ", m.triangles.size(), " faces, over the limit ", max_faces);
    f_max = std::max<int64_t>(f_max, static_cast<int64_t>(m.triangles.size()));
  }
  const bool indexed = layout == DatasetLayout::Indexed16;
  std::vector<Indexed16> encoded;
  if (indexed)
    for (const DatasetEntry& m : meshes) encoded.push_back(encode_indexed16(m.triangles, npy_path + ": mesh '" + m.name + "'"));

  std::string tmp = npy_path + ".tmp";
  std::string jtmp = sidecar_path(npy_path) + ".tmp";
  // Whatever fails below, no .tmp file is left behind.
  struct RemoveOnFailure {
    const std::string &a, &b;
    bool done = false;
    ~RemoveOnFailure() {
      if (!done) std::remove(a.c_str()), std::remove(b.c_str());
    }
  } cleanup{tmp, jtmp};
  struct stat out_stat;
  IFLAME_REQUIRE(::stat(npy_path.c_str(), &out_stat) != 0 || !S_ISDIR(out_stat.st_mode), npy_path,
                 " is a directory: the dataset must be a file (e.g. ", npy_path, "/dataset.npy)");
  FILE* f = std::fopen(tmp.c_str(), "wb");
  IFLAME_REQUIRE(f, "cannot write ", tmp);
  if (indexed) write_indexed16(f, encoded);
  else write_triangles32(f, meshes, f_max);
  bool ok = std::ferror(f) == 0;
  ok = (std::fclose(f) == 0) && ok;
  IFLAME_REQUIRE(ok, "error writing ", tmp);

  std::string js = str("{\n  \"format\": \"iflame-mesh-dataset-", indexed ? 2 : 1, "\",\n");
  std::string base = npy_path.substr(npy_path.find_last_of('/') == std::string::npos ? 0 : npy_path.find_last_of('/') + 1);
  js += str("  \"npy\": ", json_quote(base), ",\n  \"layout\": \"", indexed ? "indexed16" : "triangles32",
            "\",\n  \"max_faces\": ", max_faces, ",\n  \"face_capacity\": ", f_max, ",\n");
  if (!extra_json.empty()) js += "  " + extra_json + ",\n";
  js += "  \"meshes\": [";
  for (size_t i = 0; i < meshes.size(); i++) {
    const DatasetEntry& m = meshes[i];
    js += str(i ? ",\n" : "\n", "    {\"name\": ", json_quote(m.name), ", \"source\": ", json_quote(m.source),
              ", \"category\": ", json_quote(m.category));
    for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"package", &m.package},
                                     {"license", &m.license}, {"path", &m.path}, {"family", &m.family}})
      if (!value->empty()) js += str(", \"", key, "\": ", json_quote(*value));
    if (indexed) js += str(", \"vertices\": ", encoded[i].vertices.size());
    js += str(", \"faces\": ", m.triangles.size(), ", \"split\": ", json_quote(m.split), "}");
  }
  js += "\n  ]\n}\n";
  FILE* j = std::fopen(jtmp.c_str(), "wb");
  IFLAME_REQUIRE(j, "cannot write ", jtmp);
  ok = std::fwrite(js.data(), 1, js.size(), j) == js.size();
  ok = (std::fclose(j) == 0) && ok;
  IFLAME_REQUIRE(ok, "error writing ", jtmp);
  IFLAME_REQUIRE(std::rename(tmp.c_str(), npy_path.c_str()) == 0, "cannot rename ", tmp);
  IFLAME_REQUIRE(std::rename(jtmp.c_str(), sidecar_path(npy_path).c_str()) == 0, "cannot rename ", jtmp);
  cleanup.done = true;
}

namespace {

// A dataset file truncated or rewritten in place while it is mapped makes the
// next read of a lost page raise SIGBUS. The handler looks the faulting address
// up among the live mappings and, when it is one of them, stops the program
// with a message naming the file (exit status 1) instead of dying silently.
struct LiveMapping {
  std::atomic<uintptr_t> begin{0}, end{0};
  char path[1024] = {};
};
LiveMapping g_mappings[64];

void write_stderr(const char* s) {
  if (::write(2, s, std::strlen(s)) < 0) return;
}

void on_sigbus(int sig, siginfo_t* info, void*) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (LiveMapping& m : g_mappings) {
    if (at >= m.begin.load() && at < m.end.load()) {
      write_stderr("error: dataset ");
      write_stderr(m.path);
      write_stderr(" became shorter while it was being read (truncated or rewritten in place?); stopping\n");
      ::_exit(1);
    }
  }
  ::signal(sig, SIG_DFL);  // not a dataset page: the default action (a core dump)
  ::raise(sig);
}

void watch_mapping(const void* begin, size_t bytes, const std::string& path) {
  static const bool installed = [] {
    struct sigaction sa = {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return ::sigaction(SIGBUS, &sa, nullptr) == 0;
  }();
  (void)installed;
  for (LiveMapping& m : g_mappings) {
    if (m.end.load() != 0) continue;
    std::snprintf(m.path, sizeof m.path, "%s", path.c_str());
    m.begin.store(reinterpret_cast<uintptr_t>(begin));
    m.end.store(reinterpret_cast<uintptr_t>(begin) + bytes);
    return;
  }
}

void forget_mapping(const void* begin) {
  for (LiveMapping& m : g_mappings)
    if (m.begin.load() == reinterpret_cast<uintptr_t>(begin)) {
      m.end.store(0);
      m.begin.store(0);
    }
}

const char* kReasons[] = {"",        "empty",           "non_finite",          "rows_after_padding",
                          "outside_unit_cube", "over_face_limit", "index_out_of_range"};

// A whole non-negative count from a sidecar member.
int64_t sidecar_count(const JsonValue& mesh, const char* key, int64_t i, const std::string& side) {
  const JsonValue* v = mesh.find(key);
  IFLAME_REQUIRE(v && v->kind == JsonValue::Kind::Number && v->number >= 0 && v->number < 1e9 &&
                   v->number == std::floor(v->number),
               side, ": mesh ", i, " has no valid \"", key, "\" count (the indexed layout needs it)");
  return static_cast<int64_t>(v->number);
}
}  // namespace

MeshDataset::MeshDataset(const std::string& npy_path, int max_faces) : path_(npy_path) {
  NpyHeader h = read_npy_header(npy_path);  // checks magic, header, and that the file holds the data
  IFLAME_REQUIRE(h.descr == "<f4" || h.descr == "<u2", npy_path, ": dataset dtype is ", h.descr,
               ", expected <f4 (float32 triangles) or <u2 (indexed 16-bit)");
  size_t data_bytes = 0;
  if (h.descr == "<f4") {
    IFLAME_REQUIRE(h.shape.size() == 3 && h.shape[2] == 9, npy_path, ": dataset shape ", shape_str(h.shape),
                 ", expected [N, F_max, 9]");
    n_ = h.shape[0];
    f_max_ = h.shape[1];
    IFLAME_REQUIRE(n_ < (int64_t(1) << 31) && f_max_ < (int64_t(1) << 24), npy_path, ": implausible shape ",
                 shape_str(h.shape));
    IFLAME_REQUIRE(f_max_ > 0 || n_ == 0, npy_path, ": dataset shape ", shape_str(h.shape), " has no face rows");
    data_bytes = static_cast<size_t>(n_) * static_cast<size_t>(f_max_) * 9 * sizeof(float);
  } else {
    layout_ = DatasetLayout::Indexed16;
    IFLAME_REQUIRE(h.shape.size() == 2 && h.shape[1] == 3 && h.shape[0] < (int64_t(1) << 40), npy_path,
                 ": dataset shape ", shape_str(h.shape), ", expected [rows, 3] for the indexed layout");
    data_bytes = static_cast<size_t>(h.shape[0]) * 3 * sizeof(uint16_t);
  }
  int fd = ::open(npy_path.c_str(), O_RDONLY);
  IFLAME_REQUIRE(fd >= 0, npy_path, ": cannot open: ", std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < h.data_offset + data_bytes) {
    ::close(fd);
    IFLAME_REJECT(npy_path, ": truncated: ", st.st_size, " bytes, the header promises ", h.data_offset + data_bytes);
  }
  map_bytes_ = h.data_offset + data_bytes;
  if (map_bytes_ > 0) {
    map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    IFLAME_REQUIRE(map_ != MAP_FAILED, npy_path, ": mmap failed: ", std::strerror(errno));
    watch_mapping(map_, map_bytes_, npy_path);
  } else {
    ::close(fd);
  }
  const char* data = static_cast<const char*>(map_) + h.data_offset;
  IFLAME_REQUIRE(reinterpret_cast<uintptr_t>(data) % alignof(float) == 0, npy_path, ": misaligned data offset");
  data_ = reinterpret_cast<const float*>(data);
  rows_ = reinterpret_cast<const uint16_t*>(data);

  // The sidecar: optional for the triangles layout, where it must describe the
  // array; required for the indexed one, whose mesh boundaries it holds.
  std::string side = sidecar_path(npy_path);
  const bool has_side = std::filesystem::is_regular_file(side);
  IFLAME_REQUIRE(has_side || layout_ == DatasetLayout::Triangles32, npy_path, ": the indexed layout needs its sidecar ",
               side, ", which does not exist");
  std::vector<int64_t> vertex_counts, face_counts;
  if (has_side) {
    JsonValue js = read_json_file(side);
    const JsonValue* meshes = js.find("meshes");
    IFLAME_REQUIRE(meshes && meshes->is_array(), side, ": no \"meshes\" array");
    const int64_t listed = static_cast<int64_t>(meshes->items.size());
    if (layout_ == DatasetLayout::Triangles32)
      IFLAME_REQUIRE(listed == n_, side, ": lists ", listed, " meshes but ", npy_path, " holds ", n_);
    n_ = listed;
    for (int64_t i = 0; i < n_; i++) {
      const JsonValue& m = meshes->items[i];
      const JsonValue* nm = m.find("name");
      const JsonValue* sp = m.find("split");
      names_.push_back(nm && nm->kind == JsonValue::Kind::String ? nm->string : "");
      splits_.push_back(sp && sp->kind == JsonValue::Kind::String ? sp->string : "train");
      if (layout_ == DatasetLayout::Indexed16) {
        vertex_counts.push_back(sidecar_count(m, "vertices", i, side));
        face_counts.push_back(sidecar_count(m, "faces", i, side));
      } else if (const JsonValue* fc = m.find("faces")) {
        face_counts.push_back(static_cast<int64_t>(fc->number));
      } else {
        face_counts.push_back(-1);
      }
    }
  }
  if (layout_ == DatasetLayout::Indexed16) {
    int64_t rows = 0;
    for (int64_t i = 0; i < n_; i++) rows += vertex_counts[i] + face_counts[i];
    IFLAME_REQUIRE(rows == h.shape[0], side, ": its vertex and face counts add up to ", rows, " rows but ", npy_path,
                 " holds ", h.shape[0]);
    scan_indexed16(vertex_counts, face_counts, max_faces);
  } else {
    scan_triangles32(max_faces);
    for (size_t i = 0; i < face_counts.size(); i++)
      IFLAME_REQUIRE(face_counts[i] < 0 || faces_[i] < 0 || face_counts[i] == faces_[i], side, ": mesh ", i, " has ",
                   faces_[i], " face rows in ", npy_path, " but the sidecar says ", face_counts[i]);
  }
}

void MeshDataset::set_aside(int64_t i, int reason) {
  faces_[i] = -reason;
  skipped_[kReasons[reason]]++;
}

void MeshDataset::scan_triangles32(int max_faces) {
  faces_.assign(static_cast<size_t>(n_), 0);
  const float bound = 0.5f + 1e-4f;
  for (int64_t i = 0; i < n_; i++) {
    const float* t = data_ + i * f_max_ * 9;
    int64_t count = 0;
    int reason = 0;
    bool padding = false;
    for (int64_t r = 0; r < f_max_ && !reason; r++) {
      const float* row = t + r * 9;
      int nan = 0, bad = 0;
      for (int k = 0; k < 9; k++) {
        if (std::isnan(row[k])) nan++;
        else if (!std::isfinite(row[k])) bad++;
        else if (std::fabs(row[k]) > bound) reason = 4;
      }
      if (nan == 9) {
        padding = true;
        continue;
      }
      if (nan > 0 || bad > 0) reason = 2;
      else if (padding) reason = 3;
      else count++;
    }
    if (!reason && count == 0) reason = 1;
    if (!reason && max_faces > 0 && count > max_faces) reason = 5;
    if (reason) set_aside(i, reason);
    else faces_[i] = static_cast<int>(count);
  }
}

void MeshDataset::scan_indexed16(const std::vector<int64_t>& vertex_counts, const std::vector<int64_t>& face_counts,
                                 int max_faces) {
  faces_.assign(static_cast<size_t>(n_), 0);
  row_offset_.assign(static_cast<size_t>(n_), 0);
  vertex_count_ = vertex_counts;
  f_max_ = 0;
  int64_t row = 0;
  for (int64_t i = 0; i < n_; i++) {
    row_offset_[i] = row;
    const int64_t nv = vertex_counts[i], nf = face_counts[i];
    const uint16_t* faces = rows_ + 3 * (row + nv);
    row += nv + nf;
    int reason = 0;
    for (int64_t k = 0; k < 3 * nf && !reason; k++)
      if (faces[k] >= nv) reason = 6;
    if (!reason && nf == 0) reason = 1;
    if (!reason && nf >= (int64_t(1) << 24)) reason = 5;
    if (!reason && max_faces > 0 && nf > max_faces) reason = 5;
    if (reason) {
      set_aside(i, reason);
      continue;
    }
    faces_[i] = static_cast<int>(nf);
    f_max_ = std::max(f_max_, nf);
  }
}

std::vector<Triangle> MeshDataset::triangles(int64_t i) const {
  IFLAME_REQUIRE(i >= 0 && i < n_, path_, ": no mesh ", i);
  const int64_t nf = faces(i);
  if (layout_ == DatasetLayout::Triangles32) {
    const float* t = data_ + i * f_max_ * 9;
    std::vector<Triangle> out(static_cast<size_t>(nf));
    for (int64_t f = 0; f < nf; f++) std::copy(t + 9 * f, t + 9 * f + 9, out[f].begin());
    return out;
  }
  const Row16* v = reinterpret_cast<const Row16*>(rows_) + row_offset_[i];
  return decode_indexed16(v, v + vertex_count_[i], nf);
}

MeshDataset::~MeshDataset() {
  if (map_ && map_ != MAP_FAILED) {
    forget_mapping(map_);
    ::munmap(map_, map_bytes_);
  }
}

const std::string& MeshDataset::name(int64_t i) const {
  static const std::string none;
  return names_.empty() ? none : names_[i];
}

const std::string& MeshDataset::split(int64_t i) const {
  static const std::string train = "train";
  return splits_.empty() ? train : splits_[i];
}

std::vector<int64_t> MeshDataset::indices(const std::string& which) const {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < n_; i++)
    if (usable(i) && (which.empty() || split(i) == which)) out.push_back(i);
  return out;
}

}  // namespace iflame
