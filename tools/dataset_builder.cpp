// dataset_builder.cpp: the dataset builder's library part (see dataset_builder.h).
#include "tools/dataset_builder.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
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
    if (cols.size() > 3) b.package = cols[3];
    if (cols.size() > 4) b.license = cols[4];
    if (cols.size() > 5) b.original_path = cols[5];
    if (cols.size() > 6) {
      IFLAME_CHECK(cols[6] == "z" || cols[6] == "y" || cols[6].empty(), list_path, ": up axis '", cols[6], "' for ",
                   cols[0], " (expected z or y)");
      b.z_up = cols[6] == "z";
    }
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
  out.dropped = drop_reason_by_shape(mesh, opt.min_faces);
  if (!out.dropped.empty()) return out;
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

static std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string drop_reason_by_name(const std::string& path) {
  const std::string base = lower(fs::path(path).stem().string());
  for (const char* proxy : {"physics", "collision", "collider", "_coll", "_shadow"})
    if (base.find(proxy) != std::string::npos) return "collision_or_physics";
  // "_lod1", "-lod2", "lod_3": a level of detail other than the finest.
  for (size_t at = base.find("lod"); at != std::string::npos; at = base.find("lod", at + 1)) {
    size_t d = at + 3;
    if (d < base.size() && (base[d] == '_' || base[d] == '-')) d++;
    if (d < base.size() && base[d] >= '1' && base[d] <= '9' && (at == 0 || !std::isalpha(static_cast<unsigned char>(base[at - 1]))))
      return "lower_lod";
  }
  return "";
}

std::string drop_reason_by_shape(const Mesh& mesh, int min_faces) {
  if (static_cast<int64_t>(mesh.faces.size()) < min_faces) return str("under_", min_faces, "_faces");
  // Billboards: every face on one of at most three planes (a quad, crossed quads).
  std::array<float, 3> lo = mesh.vertices[0], hi = mesh.vertices[0];
  for (const auto& v : mesh.vertices)
    for (int c = 0; c < 3; c++) lo[c] = std::min(lo[c], v[c]), hi[c] = std::max(hi[c], v[c]);
  const double size = std::max({hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2], 1e-30f});
  std::set<std::array<int64_t, 4>> planes;
  for (const auto& f : mesh.faces) {
    const auto &a = mesh.vertices[f[0]], &b = mesh.vertices[f[1]], &c = mesh.vertices[f[2]];
    double u[3], w[3], n[3];
    for (int k = 0; k < 3; k++) u[k] = (b[k] - a[k]) / size, w[k] = (c[k] - a[k]) / size;
    n[0] = u[1] * w[2] - u[2] * w[1], n[1] = u[2] * w[0] - u[0] * w[2], n[2] = u[0] * w[1] - u[1] * w[0];
    const double len = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    if (len < 1e-12) continue;
    double sign = (n[0] < 0 || (n[0] == 0 && (n[1] < 0 || (n[1] == 0 && n[2] < 0)))) ? -1 : 1;
    for (double& x : n) x *= sign / len;
    const double d = (n[0] * a[0] + n[1] * a[1] + n[2] * a[2]) / size;
    planes.insert({std::llround(n[0] * 100), std::llround(n[1] * 100), std::llround(n[2] * 100), std::llround(d * 100)});
    if (planes.size() > 3) break;
  }
  if (planes.size() <= 3) return "billboard_or_flat";
  // Scattered fragments: many disconnected pieces of a few faces each.
  std::vector<int> parent(mesh.vertices.size());
  for (size_t i = 0; i < parent.size(); i++) parent[i] = static_cast<int>(i);
  std::function<int(int)> root = [&](int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  };
  for (const auto& f : mesh.faces) {
    parent[root(f[1])] = root(f[0]);
    parent[root(f[2])] = root(f[0]);
  }
  std::set<int> pieces;
  for (const auto& f : mesh.faces) pieces.insert(root(f[0]));
  if (pieces.size() >= 20 && mesh.faces.size() < 6 * pieces.size()) return "scattered_fragments";
  return "";
}

std::string mesh_family(const BuildInput& input) {
  std::string key = input.category + "/";
  for (char c : lower(input.name))
    if (std::isalpha(static_cast<unsigned char>(c))) key += c;
  return key;
}

std::vector<bool> family_cap_keep(const std::vector<FamilyMember>& members, int cap,
                                  const std::vector<std::string>& packages) {
  std::vector<bool> keep(members.size(), true);
  if (cap <= 0) return keep;
  std::map<std::pair<std::string, std::string>, std::vector<size_t>> families;
  for (size_t i = 0; i < members.size(); i++)
    if (packages.empty() || std::find(packages.begin(), packages.end(), members[i].package) != packages.end())
      families[{members[i].package, members[i].family}].push_back(i);
  for (auto& [key, group] : families) {
    const size_t m = group.size();
    if (m <= static_cast<size_t>(cap)) continue;
    std::sort(group.begin(), group.end(), [&](size_t a, size_t b) {
      const FamilyMember &x = members[a], &y = members[b];
      if (x.faces != y.faces) return x.faces < y.faces;
      if (x.name != y.name) return x.name < y.name;
      return a < b;
    });
    for (size_t i : group) keep[i] = false;
    if (cap == 1) {
      keep[group[(m - 1) / 2]] = true;
      continue;
    }
    // Positions 0, (m-1)/(cap-1), ..., m-1 rounded: distinct, since m > cap.
    for (int k = 0; k < cap; k++) keep[group[(static_cast<size_t>(k) * (m - 1) + (cap - 1) / 2) / (cap - 1)]] = true;
  }
  return keep;
}

void BuildReport::count_drop(const std::string& package, const std::string& reason) {
  dropped[reason]++;
  per_package[package].dropped[reason]++;
}

static std::string counts_json(const BuildReport& r) {
  std::string s = str("{\"inputs\": ", r.inputs, ", \"kept\": ", r.kept, ", \"train\": ", r.train, ", \"val\": ", r.val,
                      ", \"dropped\": {");
  bool first = true;
  for (const auto& d : r.dropped) s += str(first ? "" : ", ", json_quote(d.first), ": ", d.second), first = false;
  s += "}, \"events\": {";
  first = true;
  for (const auto& d : r.events) s += str(first ? "" : ", ", json_quote(d.first), ": ", d.second), first = false;
  return s + "}}";
}

std::string BuildReport::json() const {
  std::string s = "\"counts\": " + counts_json(*this);
  s.pop_back();  // reopen the object for the histogram and the table
  s += ", \"face_histogram_bin\": 50, \"face_histogram\": [";
  for (size_t i = 0; i < face_histogram.size(); i++) s += str(i ? ", " : "", face_histogram[i]);
  s += "], \"per_package\": {";
  bool first = true;
  for (const auto& [package, r] : per_package)
    s += str(first ? "" : ", ", json_quote(package), ": ", counts_json(r)), first = false;
  return s + "}}";
}

std::string BuildReport::text() const {
  std::string s = str("inputs ", inputs, ", kept ", kept, " (train ", train, ", val ", val, ")\n");
  for (const auto& d : dropped) s += str("  dropped, ", d.first, ": ", d.second, "\n");
  for (const auto& d : events) s += str("  ", d.first, ": ", d.second, "\n");
  if (per_package.size() > 1 || (per_package.size() == 1 && !per_package.begin()->first.empty())) {
    s += "per source package:\n";
    for (const auto& [package, r] : per_package) {
      s += str("  ", package.empty() ? "(none)" : package, ": files ", r.inputs, ", kept ", r.kept, " (val ", r.val,
               "), simplified ", r.events.count("meshes_simplified") ? r.events.at("meshes_simplified") : 0, "\n");
      for (const auto& d : r.dropped) s += str("      dropped, ", d.first, ": ", d.second, "\n");
    }
  }
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

namespace {

// One input read and prepared; the topology key identifies its raw face list.
struct Prepared {
  PreparedMesh mesh;
  std::vector<int32_t> tokens;
  uint64_t topology = 0;
};

uint64_t topology_key(const Mesh& m) {
  uint64_t h = 1469598103934665603ull ^ m.vertices.size();
  for (const auto& f : m.faces)
    for (int v : f) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
  return h;
}

Prepared prepare_input(const BuildInput& in, const BuildOptions& opt) {
  Prepared p;
  p.mesh.dropped = in.mesh ? "" : drop_reason_by_name(in.path);
  if (!p.mesh.dropped.empty()) return p;
  MeshTraits traits;
  Mesh mesh = in.mesh ? *in.mesh
              : (is_mesh_extension(in.path) || !opt.extra_reader) ? read_mesh(in.path, &traits)
                                                                  : opt.extra_reader(in.path, &traits);
  if (traits.skinned) {
    p.mesh.dropped = "skinned";
    return p;
  }
  if (in.z_up)
    for (auto& v : mesh.vertices) v = {v[0], v[2], -v[1]};
  p.topology = topology_key(mesh);
  p.mesh = prepare_mesh(std::move(mesh), opt);
  if (p.mesh.dropped.empty()) {
    Mesh soup;
    for (const Triangle& t : p.mesh.triangles) {
      int b = static_cast<int>(soup.vertices.size());
      for (int k = 0; k < 3; k++) soup.vertices.push_back({t[3 * k], t[3 * k + 1], t[3 * k + 2]});
      soup.faces.push_back({b, b + 1, b + 2});
    }
    p.tokens = tokenize_mesh(soup);
  }
  return p;
}

std::string file_safe(const std::string& s) {
  std::string out;
  for (char c : s) out += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return out.substr(0, 60);
}

void write_sheet_mesh(const std::string& dir, int index, const DatasetEntry& e) {
  Mesh m;
  for (const Triangle& t : e.triangles) {
    int b = static_cast<int>(m.vertices.size());
    for (int k = 0; k < 3; k++) m.vertices.push_back({t[3 * k], t[3 * k + 1], t[3 * k + 2]});
    m.faces.push_back({b, b + 1, b + 2});
  }
  clean_mesh(m);
  fs::create_directories(dir);
  char prefix[16];
  std::snprintf(prefix, sizeof prefix, "%03d_", index);
  write_obj(dir + "/" + prefix + file_safe(e.name) + ".obj", m);
}

}  // namespace

BuildReport build_dataset(const std::vector<BuildInput>& inputs, const std::string& out_npy, const BuildOptions& opt) {
  const int64_t n = static_cast<int64_t>(inputs.size());
  std::vector<Prepared> prepared(n);
  std::mutex mu;
  int64_t done = 0;
  const bool bar = opt.progress && isatty(2);
#pragma omp parallel for schedule(dynamic, 1) num_threads(opt.threads > 0 ? opt.threads : omp_get_max_threads())
  for (int64_t i = 0; i < n; i++) {
    try {
      prepared[i] = prepare_input(inputs[i], opt);
    } catch (const std::exception& e) {
      prepared[i] = Prepared();
      prepared[i].mesh.dropped = "unreadable";
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
  std::set<uint64_t> topologies;
  // Pass 1: the drops that depend on earlier inputs (duplicates, same topology).
  std::vector<int64_t> candidates;
  std::vector<FamilyMember> members;
  for (int64_t i = 0; i < n; i++) {
    Prepared& pr = prepared[i];
    PreparedMesh& p = pr.mesh;
    if (p.dropped.empty() && pr.tokens.size() <= 2 * kTokensPerFace) p.dropped = "collapsed_when_quantized";
    if (p.dropped.empty() && !seen.insert(pr.tokens).second) p.dropped = "duplicate";
    if (p.dropped.empty() && !topologies.insert(pr.topology).second) p.dropped = "same_topology";
    if (!p.dropped.empty()) continue;
    candidates.push_back(i);
    members.push_back({inputs[i].package, mesh_family(inputs[i]), inputs[i].name,
                       static_cast<int64_t>(p.triangles.size())});
  }
  // The family cap, over what is left.
  const std::vector<bool> capped_keep = family_cap_keep(members, opt.max_per_family, opt.family_cap_packages);
  for (size_t c = 0; c < candidates.size(); c++)
    if (!capped_keep[c]) prepared[candidates[c]].mesh.dropped = "sized_variant";
  // Pass 2: count, split and collect, in input order.
  std::vector<DatasetEntry> entries;
  std::map<std::string, int> sheet_written;
  for (int64_t i = 0; i < n; i++) {
    Prepared& pr = prepared[i];
    PreparedMesh& p = pr.mesh;
    const BuildInput& in = inputs[i];
    BuildReport& pkg = report.per_package[in.package];
    pkg.inputs++;
    for (BuildReport* r : {&report, &pkg}) {
      r->events["faces_removed_by_cleaning"] += p.cleaned_faces;
      r->events["faces_collapsed_when_quantized"] += p.collapsed_faces;
      if (p.simplified) r->events["meshes_simplified"]++;
    }
    if (!p.dropped.empty()) {
      report.count_drop(in.package, p.dropped);
      continue;
    }
    DatasetEntry e;
    e.name = in.name;
    e.source = in.path;
    e.category = in.category;
    e.package = in.package;
    e.license = in.license;
    e.path = in.original_path;
    e.family = mesh_family(in);
    const uint64_t h = fnv1a(e.family);
    e.split = !in.split.empty() ? in.split : static_cast<double>(h % 1000000) / 1e6 < opt.val_fraction ? "val" : "train";
    for (BuildReport* r : {&report, &pkg}) {
      (e.split == "val" ? r->val : r->train)++;
      r->kept++;
    }
    e.triangles = std::move(p.triangles);
    size_t faces = pr.tokens.size() / kTokensPerFace - 2;
    if (report.face_histogram.size() <= faces / 50) report.face_histogram.resize(faces / 50 + 1, 0);
    report.face_histogram[faces / 50]++;
    if (!opt.sheet_dir.empty() && sheet_written[in.package] < opt.sheet_count)
      write_sheet_mesh(opt.sheet_dir + "/" + file_safe(in.package.empty() ? "meshes" : in.package),
                       sheet_written[in.package]++, e);
    entries.push_back(std::move(e));
  }
  report.kept = static_cast<int64_t>(entries.size());
  IFLAME_REQUIRE(report.kept > 0, "no mesh of the ", n, " inputs was kept, so nothing was written to ", out_npy,
                 "\n", report.text());
  write_dataset(out_npy, entries, opt.max_faces, report.json(), opt.layout);
  return report;
}

}  // namespace iflame
