// read_assimp.cpp: Assimp behind the builder's extra-reader hook (read_assimp.h).
#include "tools/build_dataset/read_assimp.h"

#include "core/error.h"

#ifdef IFLAME_ASSIMP
#include <assimp/postprocess.h>
#include <assimp/scene.h>

#include <assimp/Importer.hpp>
#endif

namespace iflame {

#ifdef IFLAME_ASSIMP

bool assimp_available() { return true; }

namespace {

void add_node(const aiScene* scene, const aiNode* node, const aiMatrix4x4& parent, Mesh& out, MeshTraits& traits,
              int depth) {
  IFLAME_CHECK(depth < 200, "node tree too deep");
  const aiMatrix4x4 m = parent * node->mTransformation;
  for (unsigned i = 0; i < node->mNumMeshes; i++) {
    const aiMesh* mesh = scene->mMeshes[node->mMeshes[i]];
    if (mesh->HasBones()) traits.skinned = true;
    const int base = static_cast<int>(out.vertices.size());
    for (unsigned v = 0; v < mesh->mNumVertices; v++) {
      const aiVector3D p = m * mesh->mVertices[v];
      out.vertices.push_back({p.x, p.y, p.z});
    }
    for (unsigned f = 0; f < mesh->mNumFaces; f++) {
      const aiFace& face = mesh->mFaces[f];
      for (unsigned k = 1; k + 1 < face.mNumIndices; k++)  // points and lines give no triangle
        out.faces.push_back({base + static_cast<int>(face.mIndices[0]), base + static_cast<int>(face.mIndices[k]),
                             base + static_cast<int>(face.mIndices[k + 1])});
    }
    traits.parts++;
  }
  for (unsigned c = 0; c < node->mNumChildren; c++) add_node(scene, node->mChildren[c], m, out, traits, depth + 1);
}

}  // namespace

Mesh read_with_assimp(const std::string& path, MeshTraits* traits) {
  Assimp::Importer importer;
  const aiScene* scene = importer.ReadFile(path, 0);  // no post-processing: Debian's Assimp aborts in its
  // triangulation on some .ac files (an ai_assert); add_node fans the polygons itself.
  IFLAME_REQUIRE(scene && scene->mRootNode, path, ": Assimp cannot read it: ", importer.GetErrorString());
  Mesh out;
  MeshTraits t;
  add_node(scene, scene->mRootNode, aiMatrix4x4(), out, t, 0);
  check_mesh_indices(out, path);
  check_mesh_finite(out, path);
  if (traits) *traits = t;
  return out;
}

#else

bool assimp_available() { return false; }

Mesh read_with_assimp(const std::string& path, MeshTraits*) {
  throw InputError(
      str(path, ": this build_dataset has no Assimp (install libassimp-dev and rebuild: make build_dataset)"));
}

#endif

}  // namespace iflame
