// build_dataset: mesh files -> dataset .npy + sidecar .json (docs/data.md).
//
//   build_dataset -o data/furniture.npy [--max-faces 800] [--val-fraction 0.05]
//                 [--list meshes.tsv]... [--no-simplify] [--threads N] [paths...]
//                 [--layout indexed16|triangles32] [--min-faces 20] [--sheets DIR]
//                 [--from-pickle reference.pkl]
//
// paths are mesh files or directories (searched recursively); a list file has
// one mesh per line: path<TAB>name<TAB>category[<TAB>package<TAB>license<TAB>
// original path<TAB>up axis]. Files of formats data/mesh.h does not read go
// through Assimp when this build has it (read_assimp.h).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/build_dataset/read_assimp.h"
#include "tools/build_dataset/simplify_meshopt.h"
#include "tools/dataset_builder.h"
#include "tools/pickle_dataset.h"

using namespace iflame;

static void usage() {
  std::fprintf(stderr,
               "usage: build_dataset -o OUT.npy [--max-faces N] [--val-fraction F] [--list FILE]...\n"
               "                     [--no-simplify] [--threads N] [--quiet] [PATH...]\n"
               "                     [--layout indexed16|triangles32] [--min-faces N] [--sheets DIR [--sheet-count N]]\n"
               "                     [--from-pickle FILE]\n"
               "  --from-pickle the reference implementation's preprocessed pickle (dict of vertices_train,\n"
               "                faces_train, name_train and the same for val); its splits are kept\n"
               "  --layout      indexed16 (default): vertices as 16-bit fixed point + faces; triangles32: the old\n"
               "                float32 [N, F_max, 9] layout\n"
               "  --min-faces   meshes with fewer faces after cleaning are dropped (default 20)\n"
               "  --sheets DIR  write the first --sheet-count (48) kept meshes of each package as OBJ in DIR/<package>/\n"
               "                (for ./render contact sheets)\n");
}

int main(int argc, char** argv) {
  try {
    std::string out;
    BuildOptions opt;
    opt.simplify = simplify_with_meshoptimizer;
    opt.progress = true;
    if (assimp_available()) opt.extra_reader = read_with_assimp;
    std::vector<std::string> paths, lists, pickles;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        IFLAME_CHECK(i + 1 < argc, a, " needs a value");
        return argv[++i];
      };
      if (a == "-o" || a == "--out") out = value();
      else if (a == "--max-faces") opt.max_faces = std::atoi(value().c_str());
      else if (a == "--val-fraction") opt.val_fraction = std::atof(value().c_str());
      else if (a == "--list") lists.push_back(value());
      else if (a == "--from-pickle") pickles.push_back(value());
      else if (a == "--no-simplify") opt.simplify = nullptr;
      else if (a == "--threads") opt.threads = std::atoi(value().c_str());
      else if (a == "--quiet") opt.progress = false;
      else if (a == "--min-faces") opt.min_faces = std::atoi(value().c_str());
      else if (a == "--sheets") opt.sheet_dir = value();
      else if (a == "--sheet-count") opt.sheet_count = std::atoi(value().c_str());
      else if (a == "--layout") {
        std::string l = value();
        IFLAME_CHECK(l == "indexed16" || l == "triangles32", "--layout ", l, ": expected indexed16 or triangles32");
        opt.layout = l == "indexed16" ? DatasetLayout::Indexed16 : DatasetLayout::Triangles32;
      }
      else if (a == "-h" || a == "--help") { usage(); return 0; }
      else if (!a.empty() && a[0] == '-') { usage(); IFLAME_FAIL("unknown option ", a); }
      else paths.push_back(a);
    }
    if (out.empty()) { usage(); return 2; }
    std::vector<BuildInput> inputs = collect_inputs(paths);
    for (const auto& l : lists) {
      auto more = read_input_list(l);
      inputs.insert(inputs.end(), more.begin(), more.end());
    }
    for (const auto& p : pickles) {
      auto more = read_reference_pickle(p);
      inputs.insert(inputs.end(), more.begin(), more.end());
    }
    IFLAME_CHECK(!inputs.empty(), "no mesh files given");
    if (!assimp_available())
      for (const BuildInput& in : inputs)
        if (!is_mesh_extension(in.path)) {
          std::fprintf(stderr,
                       "build_dataset: built without Assimp (libassimp-dev): %s and other files of formats the\n"
                       "  builder does not read itself are counted unreadable\n",
                       in.path.c_str());
          break;
        }
    BuildReport r = build_dataset(inputs, out, opt);
    std::printf("%s", r.text().c_str());
    std::printf("wrote %s and %s\n", out.c_str(), sidecar_path(out).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "build_dataset: %s\n", e.what());
    return 1;
  }
}
