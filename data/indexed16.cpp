// indexed16.cpp: 16-bit fixed-point indexed meshes (see indexed16.h).
#include "data/indexed16.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "data/mesh.h"
#include "data/tokenize.h"

namespace iflame {

uint16_t coord_to_fixed(float c) {
  double q = std::nearbyint((static_cast<double>(c) + 0.5) * kFixedScale);
  return static_cast<uint16_t>(std::min(kFixedScale, std::max(0.0, q)));
}

namespace {

// The 7-bit token triple of every vertex after the loader's normalization.
std::vector<std::array<int, 3>> vertex_tokens(const std::vector<std::array<float, 3>>& positions) {
  Mesh m;
  m.vertices = positions;
  std::vector<Vec3d> v = normalized_vertices(m);
  std::vector<std::array<int, 3>> out(v.size());
  for (size_t i = 0; i < v.size(); i++)
    for (int c = 0; c < 3; c++) out[i][c] = quantize_coord(v[i][c]);
  return out;
}

std::vector<std::array<float, 3>> decoded_positions(const std::vector<Row16>& rows) {
  std::vector<std::array<float, 3>> out(rows.size());
  for (size_t i = 0; i < rows.size(); i++)
    for (int c = 0; c < 3; c++) out[i][c] = fixed_to_coord(rows[i][c]);
  return out;
}

}  // namespace

Indexed16 encode_indexed16(const std::vector<Triangle>& triangles, const std::string& name) {
  Indexed16 out;
  std::map<std::array<float, 3>, int> index;
  std::vector<std::array<float, 3>> positions;
  const float bound = 0.5f + 1e-4f;
  for (const Triangle& t : triangles) {
    Row16 face;
    for (int k = 0; k < 3; k++) {
      std::array<float, 3> p = {t[3 * k], t[3 * k + 1], t[3 * k + 2]};
      for (float c : p)
        IFLAME_CHECK(std::isfinite(c) && std::fabs(c) <= bound, name, ": coordinate ", c, " outside the unit cube");
      auto it = index.emplace(p, static_cast<int>(positions.size())).first;
      if (it->second == static_cast<int>(positions.size())) positions.push_back(p);
      IFLAME_CHECK(positions.size() <= 65536, name, ": more than 65536 distinct vertices");
      face[k] = static_cast<uint16_t>(it->second);
    }
    out.faces.push_back(face);
  }
  out.vertices.resize(positions.size());
  for (size_t i = 0; i < positions.size(); i++)
    for (int c = 0; c < 3; c++) out.vertices[i][c] = coord_to_fixed(positions[i][c]);
  if (positions.empty()) return out;

  // Keep the tokens: move a mismatching coordinate one step towards its float token.
  const std::vector<std::array<int, 3>> want = vertex_tokens(positions);
  for (int round = 0; round < 16; round++) {
    std::vector<std::array<int, 3>> got = vertex_tokens(decoded_positions(out.vertices));
    bool same = true;
    for (size_t i = 0; i < positions.size(); i++)
      for (int c = 0; c < 3; c++) {
        if (got[i][c] == want[i][c]) continue;
        same = false;
        uint16_t& q = out.vertices[i][c];
        if (got[i][c] > want[i][c] && q > 0) q--;
        else if (got[i][c] < want[i][c] && q < 65535) q++;
        out.nudged++;
      }
    if (same) return out;
  }
  IFLAME_FAIL(name, ": cannot store the mesh in 16-bit fixed point without changing its tokens");
}

std::vector<Triangle> decode_indexed16(const Row16* vertices, const Row16* faces, int64_t num_faces) {
  std::vector<Triangle> out(static_cast<size_t>(num_faces));
  for (int64_t f = 0; f < num_faces; f++)
    for (int k = 0; k < 3; k++)
      for (int c = 0; c < 3; c++) out[f][3 * k + c] = fixed_to_coord(vertices[faces[f][k]][c]);
  return out;
}

}  // namespace iflame
