// build_dataset: mesh files -> dataset .npy + sidecar .json (docs/data.md).
//
//   build_dataset -o data/furniture.npy [--max-faces 800] [--val-fraction 0.05]
//                 [--list meshes.tsv]... [--no-simplify] [--threads N] [paths...]
//                 [--layout indexed16|triangles32] [--min-faces 20] [--sheets DIR]
//                 [--from-pickle reference.pkl]
//
// paths are mesh files or directories (searched recursively); a list file has
// one mesh per line: path<TAB>name<TAB>category[<TAB>package<TAB>license<TAB>
// original path<TAB>up axis]. The flags and the run are in
// tools/dataset_builder_cli.cpp; this program adds meshoptimizer's simplifier
// and, when this build has it, Assimp for the formats data/mesh.h does not
// read (read_assimp.h).
#include "tools/build_dataset/read_assimp.h"
#include "tools/build_dataset/simplify_meshopt.h"
#include "tools/dataset_builder_cli.h"

int main(int argc, char** argv) {
  return iflame::build_dataset_main(argc, argv, iflame::simplify_with_meshoptimizer,
                                    iflame::assimp_available() ? iflame::ExtraReader(iflame::read_with_assimp)
                                                               : iflame::ExtraReader());
}
