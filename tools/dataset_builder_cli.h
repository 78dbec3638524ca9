// dataset_builder_cli.h: the build_dataset program as a function, so tests can
// run it in-process (tools/build_dataset/main.cpp only calls it).
#pragma once
#include "tools/dataset_builder.h"

namespace iflame {

// Parses flags (see --help), builds the dataset. Returns the exit status: 0,
// 1 on an error (printed to stderr; also when no mesh is kept), 2 on bad flags.
// `simplify` reduces meshes over --max-faces (empty: they are dropped).
// extra_reader (Assimp, in the program only) reads the formats data/mesh.h does not.
int build_dataset_main(int argc, char** argv, const SimplifyFn& simplify, const ExtraReader& extra_reader = nullptr);

}  // namespace iflame
