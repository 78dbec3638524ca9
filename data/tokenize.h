// tokenize.h: a mesh to its canonical token sequence and back (docs/spec.md §1).
//
//   tokens = START x9, face_1 (9 tokens), ..., face_F, END x9
//
// Steps: normalize (bounding-box centre to the origin, largest side 1; done twice
// like the reference), [augment], quantize q = round(clip(c + 0.5, 0, 1) * 128),
// merge equal quantized vertices, sort vertices by (y, x, z), drop degenerate
// faces, store each face with its winding reversed and rotated so the lowest
// index is first, stable-sort faces by their sorted indices, write each vertex
// as (z, x, y). Coordinates are computed in double from the mesh's floats.
#pragma once
#include "core/tokens.h"
#include <array>
#include <cstdint>
#include <vector>

#include "data/mesh.h"

namespace iflame {

constexpr int kCoordLevels = 129;  // tokens 0..128

using Vec3d = std::array<double, 3>;

// Translate the bounding-box centre to the origin and scale the largest side to 1.
// Throws on an empty vertex list or a non-finite coordinate; a mesh whose
// bounding box is a single point is only translated.
void normalize_vertices(std::vector<Vec3d>& v);

// Vertices of a mesh in double, normalized twice (spec §1 step 1).
std::vector<Vec3d> normalized_vertices(const Mesh& mesh);

// One quantized coordinate: round(clip(c + 0.5, 0, 1) * 128), ties to even.
int quantize_coord(double c);

// The canonical quantized mesh: vertices as written tokens (z, x, y), in
// canonical order and all used; faces index them, canonical order and rotation.
struct QuantizedMesh {
  std::vector<std::array<int, 3>> vertices;  // (z, x, y) tokens
  std::vector<std::array<int, 3>> faces;
  int dropped_degenerate = 0;  // faces with fewer than 3 distinct vertices after merging
};

// Steps 3..9 on vertices that are already normalized (and possibly augmented).
QuantizedMesh quantize_canonical(const std::vector<Vec3d>& vertices, const std::vector<std::array<int, 3>>& faces);

// Step 10: START row, 9 tokens per face, END row.
std::vector<int32_t> emit_tokens(const QuantizedMesh& q);

// The whole pipeline without augmentation.
std::vector<int32_t> tokenize_mesh(const Mesh& mesh);

// Decoding: rows of 9 tokens; START rows and PAD tokens are skipped, decoding
// stops at the first END token; a row with a token outside 0..128 (or an
// incomplete last row) ends the mesh. Vertices are shared between faces when
// their tokens are equal; coordinate = token / 128 - 0.5, (z, x, y) -> (x, y, z).
// A row (p, q, r) becomes the triangle (p, r, q): the tokenizer's winding
// reversal is undone, so decode then quantize_canonical gives the same rows.
Mesh decode_tokens(const int32_t* tokens, size_t count);
inline Mesh decode_tokens(const std::vector<int32_t>& t) { return decode_tokens(t.data(), t.size()); }

}  // namespace iflame
