// simplify_meshopt.h: the builder's simplification callback, via meshoptimizer.
#pragma once
#include "data/mesh.h"

namespace iflame {
// At most target_faces triangles when meshoptimizer can reach it; unused vertices are left in.
Mesh simplify_with_meshoptimizer(const Mesh& mesh, int target_faces);
}  // namespace iflame
