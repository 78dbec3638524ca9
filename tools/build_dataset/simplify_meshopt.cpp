// simplify_meshopt.cpp: mesh simplification through meshoptimizer (Debian's
// libmeshoptimizer-dev). Kept out of the library so that only the
// build_dataset program links against it.
#include <meshoptimizer.h>

#include "tools/build_dataset/simplify_meshopt.h"

namespace iflame {

Mesh simplify_with_meshoptimizer(const Mesh& mesh, int target_faces) {
  std::vector<unsigned int> idx;
  idx.reserve(mesh.faces.size() * 3);
  for (const auto& f : mesh.faces)
    for (int v : f) idx.push_back(static_cast<unsigned int>(v));
  const float* pos = mesh.vertices.empty() ? nullptr : mesh.vertices[0].data();
  const size_t target = static_cast<size_t>(target_faces) * 3;
  std::vector<unsigned int> out(idx.size());
  float err = 0;
  // Edge collapses that keep the shape (error up to 2% of the mesh extent) ...
  size_t n = meshopt_simplify(out.data(), idx.data(), idx.size(), pos, mesh.vertices.size(), sizeof(float) * 3,
                              target, 0.02f, 0, &err);
  if (n > target) {
    // ... then, where that is not enough, vertex clustering, which always reaches the target.
    n = meshopt_simplifySloppy(out.data(), idx.data(), idx.size(), pos, mesh.vertices.size(), sizeof(float) * 3,
                               target, 1.0f, &err);
  }
  Mesh r;
  r.vertices = mesh.vertices;
  for (size_t i = 0; i + 2 < n; i += 3)
    r.faces.push_back({static_cast<int>(out[i]), static_cast<int>(out[i + 1]), static_cast<int>(out[i + 2])});
  return r;
}

}  // namespace iflame
