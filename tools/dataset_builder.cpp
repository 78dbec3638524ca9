// dataset_builder.cpp: the dataset builder's library part (see dataset_builder.h).
#include "tools/dataset_builder.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "core/error.h"
#include "core/paths.h"
#include "data/json.h"
#include "data/text_scan.h"
#include "data/tokenize.h"

namespace iflame {

namespace fs = std::filesystem;

static bool is_mesh_extension(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e == ".obj" || e == ".ply" || e == ".stl" || e == ".off";
}

std::vector<BuildInput> collect_inputs(const std::vector<std::string>& paths) {
  std::vector<BuildInput> out;
  for (const std::string& p : paths) {
    std::error_code ec;
    IFLAME_REQUIRE(fs::exists(p, ec), "no such file or folder: ", p);
    if (fs::is_directory(p, ec)) {
      std::vector<std::string> found;
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::recursive_directory_iterator();
           it.increment(ec))
        if (it->is_regular_file() && is_mesh_extension(it->path())) found.push_back(it->path().string());
      IFLAME_REQUIRE(!ec, p, ": cannot list: ", ec.message());
      std::sort(found.begin(), found.end());
      for (const auto& f : found) out.push_back({f, fs::path(f).stem().string(), ""});
    } else {
      out.push_back({p, fs::path(p).stem().string(), ""});
    }
  }
  return out;
}

std::vector<BuildInput> read_input_list(const std::string& list_path) {
  require_readable_file(list_path, "--list");
  std::ifstream in(list_path);
  IFLAME_REQUIRE(in, "cannot open ", list_path);
  std::vector<BuildInput> out;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); number++) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t binary = scan::first_binary_byte(line);
    IFLAME_REQUIRE(binary == std::string::npos, list_path, ":", number,
                   ": not a text list of mesh files (byte ", scan::hex_byte(line[binary]), " at column ", binary + 1,
                   ")");
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    size_t start = 0;
    while (true) {
      size_t tab = line.find('\t', start);
      cols.push_back(line.substr(start, tab == std::string::npos ? std::string::npos : tab - start));
      if (tab == std::string::npos) break;
      start = tab + 1;
    }
    BuildInput b{cols[0], cols.size() > 1 && !cols[1].empty() ? cols[1] : fs::path(cols[0]).stem().string(),
                 cols.size() > 2 ? cols[2] : ""};
    out.push_back(b);
  }
  return out;
}

int64_t clean_mesh(Mesh& mesh) {
  // Merge equal positions (first occurrence wins), drop unused vertices.
  std::map<std::array<float, 3>, int> index;
  std::vector<int> remap(mesh.vertices.size());
  std::vector<std::array<float, 3>> verts;
  for (size_t i = 0; i < mesh.vertices.size(); i++) {
    auto p = mesh.vertices[i];
    for (float& c : p)
      if (c == 0.0f) c = 0.0f;  // -0 and +0 are one position
    auto it = index.emplace(p, static_cast<int>(index.size())).first;
    remap[i] = it->second;
    if (it->second == static_cast<int>(verts.size())) verts.push_back(p);
  }
  std::set<std::array<int, 3>> seen;
  std::vector<std::array<int, 3>> faces;
  for (const auto& f : mesh.faces) {
    std::array<int, 3> g = {remap[f[0]], remap[f[1]], remap[f[2]]};
    if (g[0] == g[1] || g[1] == g[2] || g[0] == g[2]) continue;
    std::array<int, 3> key = g;
    std::sort(key.begin(), key.end());
    if (!seen.insert(key).second) continue;
    faces.push_back(g);
  }
  int64_t removed = static_cast<int64_t>(mesh.faces.size() - faces.size());
  // Keep only used vertices.
  std::vector<int> used(verts.size(), -1);
  Mesh out;
  for (auto& f : faces)
    for (int& v : f) {
      if (used[v] < 0) {
        used[v] = static_cast<int>(out.vertices.size());
        out.vertices.push_back(verts[v]);
      }
      v = used[v];
    }
  out.faces = std::move(faces);
  mesh = std::move(out);
  return removed;
}

// Drops faces that collapse at 129 levels (after normalizing what is left) and
// normalizes the result into the unit cube. Returns faces dropped.
static int64_t drop_collapsed(Mesh& mesh) {
  int64_t dropped = 0;
  for (int round = 0; round < 4 && !mesh.faces.empty(); round++) {
    std::vector<Vec3d> v = normalized_vertices(mesh);
    std::vector<std::array<int, 3>> q(v.size());
    for (size_t i = 0; i < v.size(); i++)
      q[i] = {quantize_coord(v[i][0]), quantize_coord(v[i][1]), quantize_coord(v[i][2])};
    std::vector<std::array<int, 3>> keep;
    for (const auto& f : mesh.faces)
      if (q[f[0]] != q[f[1]] && q[f[1]] != q[f[2]] && q[f[0]] != q[f[2]]) keep.push_back(f);
    for (size_t i = 0; i < v.size(); i++)
      for (int k = 0; k < 3; k++) mesh.vertices[i][k] = static_cast<float>(v[i][k]);
    if (keep.size() == mesh.faces.size()) break;
    dropped += static_cast<int64_t>(mesh.faces.size() - keep.size());
    mesh.faces = std::move(keep);
    clean_mesh(mesh);  // drops the vertices no face uses, so the next normalization sees only what is kept
  }
  return dropped;
}

PreparedMesh prepare_mesh(Mesh mesh, const BuildOptions& opt) {
  PreparedMesh out;
  out.cleaned_faces = clean_mesh(mesh);
  if (mesh.faces.empty()) {
    out.dropped = "no_faces";
    return out;
  }
  out.collapsed_faces = drop_collapsed(mesh);
  const int limit = opt.max_faces > 0 ? opt.max_faces : INT32_MAX;
  for (int attempt = 0; static_cast<int64_t>(mesh.faces.size()) > limit && opt.simplify && attempt < 4; attempt++) {
    int target = std::max(4, static_cast<int>(limit * (1.0 - 0.15 * attempt)));
    Mesh s = opt.simplify(mesh, target);
    clean_mesh(s);
    if (s.faces.empty()) break;
    drop_collapsed(s);
    if (s.faces.empty()) break;
    mesh = std::move(s);
    out.simplified = true;
  }
  if (mesh.faces.empty()) {
    out.dropped = "collapsed_when_quantized";
    return out;
  }
  if (static_cast<int64_t>(mesh.faces.size()) > limit) {
    out.dropped = "over_face_limit";
    return out;
  }
  out.triangles = normalized_triangles(mesh);
  return out;
}

static uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string BuildReport::json() const {
  std::string s = str("\"counts\": {\"inputs\": ", inputs, ", \"kept\": ", kept, ", \"train\": ", train,
                      ", \"val\": ", val, ", \"dropped\": {");
  bool first = true;
  for (const auto& d : dropped) s += str(first ? "" : ", ", json_quote(d.first), ": ", d.second), first = false;
  s += "}, \"events\": {";
  first = true;
  for (const auto& d : events) s += str(first ? "" : ", ", json_quote(d.first), ": ", d.second), first = false;
  s += "}, \"face_histogram_bin\": 50, \"face_histogram\": [";
  for (size_t i = 0; i < face_histogram.size(); i++) s += str(i ? ", " : "", face_histogram[i]);
  return s + "]}";
}

std::string BuildReport::text() const {
  std::string s = str("inputs ", inputs, ", kept ", kept, " (train ", train, ", val ", val, ")\n");
  for (const auto& d : dropped) s += str("  dropped, ", d.first, ": ", d.second, "\n");
  for (const auto& d : events) s += str("  ", d.first, ": ", d.second, "\n");
  int64_t most = 1;
  for (int64_t c : face_histogram) most = std::max(most, c);
  s += "faces after tokenization (meshes per bin):\n";
  for (size_t i = 0; i < face_histogram.size(); i++) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "  %4zu-%4zu %6lld ", i * 50, i * 50 + 49, static_cast<long long>(face_histogram[i]));
    s += buf + std::string(static_cast<size_t>(40 * face_histogram[i] / most), '#') + "\n";
  }
  return s;
}

BuildReport build_dataset(const std::vector<BuildInput>& inputs, const std::string& out_npy, const BuildOptions& opt) {
  const int64_t n = static_cast<int64_t>(inputs.size());
  std::vector<PreparedMesh> prepared(n);
  std::vector<std::vector<int32_t>> tokens(n);
  std::mutex mu;
  int64_t done = 0;
  const bool bar = opt.progress && isatty(2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(opt.threads > 0 ? opt.threads : omp_get_max_threads())
  for (int64_t i = 0; i < n; i++) {
    try {
      prepared[i] = prepare_mesh(read_mesh(inputs[i].path), opt);
      if (prepared[i].dropped.empty()) {
        Mesh soup;
        for (const Triangle& t : prepared[i].triangles) {
          int b = static_cast<int>(soup.vertices.size());
          for (int k = 0; k < 3; k++) soup.vertices.push_back({t[3 * k], t[3 * k + 1], t[3 * k + 2]});
          soup.faces.push_back({b, b + 1, b + 2});
        }
        tokens[i] = tokenize_mesh(soup);
      }
    } catch (const std::exception& e) {
      prepared[i] = PreparedMesh();
      prepared[i].dropped = "unreadable";
      std::lock_guard<std::mutex> lock(mu);
      if (opt.log_errors) std::fprintf(stderr, "%s%s\n", bar ? "\r\033[K" : "", e.what());
    }
    std::lock_guard<std::mutex> lock(mu);
    done++;
    if (bar) {
      int w = static_cast<int>(30 * done / std::max<int64_t>(n, 1));
      std::fprintf(stderr, "\r[%s%s] %lld/%lld %-40.40s", std::string(w, '#').c_str(), std::string(30 - w, ' ').c_str(),
                   static_cast<long long>(done), static_cast<long long>(n), inputs[i].name.c_str());
      std::fflush(stderr);
    }
  }
  if (bar) std::fprintf(stderr, "\r\033[K");

  BuildReport report;
  report.inputs = n;
  std::set<std::vector<int32_t>> seen;
  std::vector<DatasetEntry> entries;
  for (int64_t i = 0; i < n; i++) {
    PreparedMesh& p = prepared[i];
    report.events["faces_removed_by_cleaning"] += p.cleaned_faces;
    report.events["faces_collapsed_when_quantized"] += p.collapsed_faces;
    if (p.simplified) report.events["meshes_simplified"]++;
    if (p.dropped.empty() && tokens[i].size() <= 2 * kTokensPerFace) p.dropped = "collapsed_when_quantized";
    if (p.dropped.empty() && !seen.insert(tokens[i]).second) p.dropped = "duplicate";
    if (!p.dropped.empty()) {
      report.dropped[p.dropped]++;
      continue;
    }
    DatasetEntry e;
    e.name = inputs[i].name;
    e.source = inputs[i].path;
    e.category = inputs[i].category;
    const uint64_t h = fnv1a(e.name + "\n" + e.category + "\n" + fs::path(e.source).filename().string());
    e.split = static_cast<double>(h % 1000000) / 1e6 < opt.val_fraction ? "val" : "train";
    (e.split == "val" ? report.val : report.train)++;
    e.triangles = std::move(p.triangles);
    size_t faces = tokens[i].size() / kTokensPerFace - 2;
    if (report.face_histogram.size() <= faces / 50) report.face_histogram.resize(faces / 50 + 1, 0);
    report.face_histogram[faces / 50]++;
    entries.push_back(std::move(e));
  }
  report.kept = static_cast<int64_t>(entries.size());
  IFLAME_REQUIRE(report.kept > 0, "no mesh of the ", n, " inputs was kept, so nothing was written to ", out_npy,
                 "\n", report.text());
  write_dataset(out_npy, entries, opt.max_faces, report.json());
  return report;
}

}  // namespace iflame
