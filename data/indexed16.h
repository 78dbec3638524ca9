// indexed16.h: a mesh in the unit cube as 16-bit fixed point, the rows of the
// compact dataset layout (docs/data.md).
//
// A mesh is stored as its distinct vertex positions (x, y, z as q in 0..65535,
// coordinate = q / 65535 - 0.5) followed by its faces (three vertex indices,
// local to the mesh). One step of the grid is 1/65535 of the cube, 512 times
// finer than the model's 1/128 tokens. The encoder also makes sure that the
// stored mesh gives the same tokens (spec §1, no augmentation) as the float
// triangles it came from: a vertex whose 7-bit token would change by the
// rounding is moved one grid step at a time towards its float side.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "data/dataset.h"

namespace iflame {

using Row16 = std::array<uint16_t, 3>;

struct Indexed16 {
  std::vector<Row16> vertices;  // fixed-point positions
  std::vector<Row16> faces;     // indices into vertices
  int nudged = 0;               // grid steps taken to keep the tokens
};

constexpr double kFixedScale = 65535.0;

inline float fixed_to_coord(uint16_t q) { return static_cast<float>(q / kFixedScale - 0.5); }
uint16_t coord_to_fixed(float c);

// Welds equal positions and encodes; throws (naming `name`) on a coordinate
// outside the unit cube or more than 65536 distinct vertices.
Indexed16 encode_indexed16(const std::vector<Triangle>& triangles, const std::string& name);

// Triangles of rows [vertices..., faces...]; the caller has checked the indices.
std::vector<Triangle> decode_indexed16(const Row16* vertices, const Row16* faces, int64_t num_faces);

}  // namespace iflame
