// tokenize.cpp: canonical tokenization and decoding (docs/spec.md §1).
#include "data/tokenize.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/error.h"

namespace iflame {

void normalize_vertices(std::vector<Vec3d>& v) {
  IFLAME_CHECK(!v.empty(), "normalize_vertices: a mesh without vertices");
  Vec3d lo = v[0], hi = v[0];
  for (const Vec3d& p : v)
    for (int k = 0; k < 3; k++) {
      IFLAME_CHECK(std::isfinite(p[k]), "normalize_vertices: non-finite coordinate ", p[k]);
      lo[k] = std::min(lo[k], p[k]);
      hi[k] = std::max(hi[k], p[k]);
    }
  Vec3d centre;
  double side = 0;
  for (int k = 0; k < 3; k++) {
    centre[k] = (lo[k] + hi[k]) / 2;
    side = std::max(side, hi[k] - lo[k]);
  }
  const double scale = side > 0 ? side : 1.0;
  for (Vec3d& p : v)
    for (int k = 0; k < 3; k++) p[k] = (p[k] - centre[k]) / scale;
}

std::vector<Vec3d> normalized_vertices(const Mesh& mesh) {
  std::vector<Vec3d> v(mesh.vertices.size());
  for (size_t i = 0; i < v.size(); i++)
    for (int k = 0; k < 3; k++) v[i][k] = mesh.vertices[i][k];
  normalize_vertices(v);
  normalize_vertices(v);
  return v;
}

int quantize_coord(double c) {
  double x = std::min(std::max(c + 0.5, 0.0), 1.0) * 128.0;
  return static_cast<int>(std::nearbyint(x));  // default rounding mode: ties to even, like numpy
}

QuantizedMesh quantize_canonical(const std::vector<Vec3d>& vertices, const std::vector<std::array<int, 3>>& faces) {
  const int nv = static_cast<int>(vertices.size());
  // Quantize; key each vertex by its sort key (y, x, z).
  std::vector<std::array<int, 3>> key(nv);
  for (int i = 0; i < nv; i++)
    key[i] = {quantize_coord(vertices[i][1]), quantize_coord(vertices[i][0]), quantize_coord(vertices[i][2])};
  // Merge and order: the rank of each distinct key.
  std::vector<std::array<int, 3>> distinct = key;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<int> merged(nv);
  for (int i = 0; i < nv; i++)
    merged[i] = static_cast<int>(std::lower_bound(distinct.begin(), distinct.end(), key[i]) - distinct.begin());

  QuantizedMesh q;
  struct Face {
    std::array<int, 3> v, sorted;
  };
  std::vector<Face> kept;
  kept.reserve(faces.size());
  for (const auto& f : faces) {
    for (int k = 0; k < 3; k++)
      IFLAME_CHECK(f[k] >= 0 && f[k] < nv, "quantize_canonical: face index ", f[k], " out of range (", nv,
                   " vertices)");
    int a = merged[f[0]], b = merged[f[1]], c = merged[f[2]];
    if (a == b || b == c || a == c) {
      q.dropped_degenerate++;
      continue;
    }
    // Reverse the winding, (a, b, c) -> (a, c, b), then rotate the lowest first.
    std::array<int, 3> r = {a, c, b};
    int m = static_cast<int>(std::min_element(r.begin(), r.end()) - r.begin());
    Face face;
    face.v = {r[m], r[(m + 1) % 3], r[(m + 2) % 3]};
    face.sorted = face.v;
    std::sort(face.sorted.begin(), face.sorted.end());
    kept.push_back(face);
  }
  // Stable: faces on the same three vertices keep their file order (as Python's sort does).
  std::stable_sort(kept.begin(), kept.end(), [](const Face& x, const Face& y) { return x.sorted < y.sorted; });

  // Drop unused vertices, keeping the order (so faces stay sorted and rotated).
  std::vector<int> remap(distinct.size(), -1);
  for (const Face& f : kept)
    for (int k = 0; k < 3; k++) remap[f.v[k]] = 0;
  int used = 0;
  for (size_t i = 0; i < distinct.size(); i++)
    if (remap[i] == 0) {
      remap[i] = used++;
      const auto& yxz = distinct[i];
      q.vertices.push_back({yxz[2], yxz[1], yxz[0]});  // written (z, x, y)
    }
  q.faces.reserve(kept.size());
  for (const Face& f : kept) q.faces.push_back({remap[f.v[0]], remap[f.v[1]], remap[f.v[2]]});
  return q;
}

std::vector<int32_t> emit_tokens(const QuantizedMesh& q) {
  std::vector<int32_t> t;
  t.reserve((q.faces.size() + 2) * kTokensPerFace);
  t.insert(t.end(), kTokensPerFace, kStartToken);
  for (const auto& f : q.faces)
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 3; c++) t.push_back(q.vertices[f[k]][c]);
  t.insert(t.end(), kTokensPerFace, kEndToken);
  return t;
}

std::vector<int32_t> tokenize_mesh(const Mesh& mesh) {
  return emit_tokens(quantize_canonical(normalized_vertices(mesh), mesh.faces));
}

Mesh decode_tokens(const int32_t* tokens, size_t count) {
  Mesh mesh;
  std::map<std::array<int, 3>, int> index;
  for (size_t row = 0; row + kTokensPerFace <= count; row += kTokensPerFace) {
    const int32_t* r = tokens + row;
    bool start = true, coords = true, end = false;
    for (int k = 0; k < kTokensPerFace; k++) {
      start = start && (r[k] == kStartToken || r[k] == kPadToken);
      coords = coords && r[k] >= 0 && r[k] < kCoordLevels;
      end = end || r[k] == kEndToken;
    }
    if (end || (!coords && !start)) break;
    if (start) continue;
    std::array<int, 3> face;
    for (int v = 0; v < 3; v++) {
      std::array<int, 3> zxy = {r[3 * v], r[3 * v + 1], r[3 * v + 2]};
      auto it = index.find(zxy);
      if (it == index.end()) {
        it = index.emplace(zxy, static_cast<int>(mesh.vertices.size())).first;
        auto c = [](int t) { return static_cast<float>(t / 128.0 - 0.5); };
        mesh.vertices.push_back({c(zxy[1]), c(zxy[2]), c(zxy[0])});  // (x, y, z)
      }
      face[v] = it->second;
    }
    // Undo the tokenizer's winding reversal, so the decoded mesh faces the way
    // the source did and tokenizes back to the same rows.
    mesh.faces.push_back({face[0], face[2], face[1]});
  }
  return mesh;
}

}  // namespace iflame
