// read_assimp.h: the dataset builder's reader for the formats data/mesh.h does
// not know (AC3D .ac, MD3, ASE, IQM, ... : whatever Assimp reads), built only
// when libassimp-dev is installed (IFLAME_ASSIMP, set by the Makefile); the
// training and sampling programs never link it.
#pragma once
#include <string>

#include "data/mesh.h"

namespace iflame {

// True when this build has Assimp.
bool assimp_available();
// Every mesh of every node, with the node transforms applied, welded into one
// mesh; traits.skinned when a mesh has bones. Throws (naming the file) when
// Assimp cannot read it, or when this build has no Assimp.
Mesh read_with_assimp(const std::string& path, MeshTraits* traits);

}  // namespace iflame
