// dataset_builder_cli.cpp: the build_dataset program's flags and run, in the
// library so the tests run it in-process (tools/build_dataset/main.cpp passes
// meshoptimizer's simplifier, which the library does not link).
#include "tools/dataset_builder_cli.h"

#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/flags.h"
#include "core/paths.h"
#include "tools/pickle_dataset.h"

namespace iflame {

namespace {

const char* kUsage =
    "usage: build_dataset -o OUT.npy [--max-faces N] [--val-fraction F] [--list FILE]...\n"
    "                     [--no-simplify] [--threads N] [--quiet] [PATH...]\n"
    "                     [--layout indexed16|triangles32] [--min-faces N] [--sheets DIR [--sheet-count N]]\n"
    "                     [--from-pickle FILE] [--max-per-family N [--family-cap-package P]...]\n"
    "\n"
    "  -o, --out FILE     the dataset to write (FILE and its .json sidecar; docs/data.md)\n"
    "  --max-faces N      meshes are simplified to at most N faces, or dropped (default 800)\n"
    "  --val-fraction F   share of meshes in the validation split, in [0, 1) (default 0.05)\n"
    "  --list FILE        a text list of meshes: path[<TAB>name[<TAB>category]] per line\n"
    "  --no-simplify      drop meshes over --max-faces instead of simplifying them\n"
    "  --threads N        reading threads (default: OpenMP's)\n"
    "  --quiet            no progress bar\n"
    "  --layout L         indexed16 (default): vertices as 16-bit fixed point + faces; triangles32:\n"
    "                     the older float32 [N, F_max, 9] layout (docs/data.md)\n"
    "  --min-faces N      meshes with fewer faces after cleaning are dropped (default 20)\n"
    "  --sheets DIR       the first --sheet-count (48) kept meshes of each package as OBJ in\n"
    "                     DIR/<package>/ (for ./render contact sheets)\n"
    "  --from-pickle FILE the reference implementation's preprocessed pickle (a dict of\n"
    "                     vertices_train, faces_train, name_train and the same for val); its splits\n"
    "                     are kept\n"
    "  --max-per-family N keep at most N meshes of each family (one part's sized variants: same\n"
    "                     category, same name but for digits and separators), spread over the\n"
    "                     family's face counts; the others are dropped as sized_variant (default: all)\n"
    "  --family-cap-package P  the cap applies to package P only (repeatable; default: every package)\n"
    "  PATH               mesh files (.obj .ply .stl .off .wrl .pmd .spm .md2, and what Assimp\n"
    "                     reads when built with it) or folders, searched recursively\n"
    "\n"
    "Exits 1 when no mesh is kept (nothing is written), 2 on bad flags.\n";

// A --family-cap-package naming no input's package would cap nothing: a typo.
void check_family_cap_packages(const BuildOptions& opt, const std::vector<BuildInput>& inputs) {
  if (!opt.family_cap_packages.empty() && opt.max_per_family == 0)
    throw UsageError("--family-cap-package needs --max-per-family N (the cap it restricts)");
  std::set<std::string> packages;
  for (const BuildInput& in : inputs) packages.insert(in.package);
  for (const std::string& p : opt.family_cap_packages)
    IFLAME_REQUIRE(packages.count(p), "--family-cap-package ", p, ": no input is of this package (",
                   packages.size(), " packages in the inputs, e.g. '", *packages.begin(), "')");
}

int run(int argc, char** argv, const SimplifyFn& simplify, const ExtraReader& extra_reader) {
  std::string out;
  BuildOptions opt;
  opt.simplify = simplify;
  opt.progress = true;
  opt.extra_reader = extra_reader;
  std::vector<std::string> paths, lists, pickles;
  FlagReader f("build_dataset", argc, argv);
  while (f.next()) {
    if (f.is_help()) {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f.is("-o") || f.is("--out")) out = f.text();
    else if (f.is("--max-faces")) opt.max_faces = f.integer<int>(1, 1 << 20);
    else if (f.is("--val-fraction")) opt.val_fraction = f.real<double>(0, 0.999);
    else if (f.is("--list")) lists.push_back(f.text());
    else if (f.is("--no-simplify")) opt.simplify = nullptr;
    else if (f.is("--threads")) opt.threads = f.integer<int>(1, 1024);
    else if (f.is("--quiet")) opt.progress = false;
    else if (f.is("--layout"))
      opt.layout = f.choice({"indexed16", "triangles32"}) == "indexed16" ? DatasetLayout::Indexed16
                                                                          : DatasetLayout::Triangles32;
    else if (f.is("--min-faces")) opt.min_faces = f.integer<int>(1, 1 << 20);
    else if (f.is("--sheets")) opt.sheet_dir = f.text();
    else if (f.is("--sheet-count")) opt.sheet_count = f.integer<int>(1, 1 << 16);
    else if (f.is("--from-pickle")) pickles.push_back(f.text());
    else if (f.is("--max-per-family")) opt.max_per_family = f.integer<int>(1, 1 << 20);
    else if (f.is("--family-cap-package")) opt.family_cap_packages.push_back(f.text());
    else f.positional_or_unknown(paths);
  }
  if (out.empty()) throw UsageError("no output given: -o OUT.npy (see --help)");
  if (paths.empty() && lists.empty() && pickles.empty())
    throw UsageError("no mesh files given: PATH..., --list FILE or --from-pickle FILE (see --help)");
  IFLAME_REQUIRE(!std::filesystem::is_directory(out), "-o ", out,
                 " is a directory: the dataset must be a file (e.g. ", out, "/dataset.npy)");
  std::vector<BuildInput> inputs = collect_inputs(paths);
  for (const auto& l : lists) {
    auto more = read_input_list(l);
    inputs.insert(inputs.end(), more.begin(), more.end());
  }
  for (const auto& p : pickles) {
    auto more = read_reference_pickle(p);
    inputs.insert(inputs.end(), more.begin(), more.end());
  }
  IFLAME_REQUIRE(!inputs.empty(), "no mesh files in the given paths, lists and pickles");
  check_family_cap_packages(opt, inputs);
  if (!opt.extra_reader)
    for (const BuildInput& in : inputs)
      if (!in.path.empty() && !is_mesh_extension(in.path)) {
        std::fprintf(stderr,
                     "build_dataset: built without Assimp (libassimp-dev): %s and other files of formats the\n"
                     "  builder does not read itself are counted unreadable\n",
                     in.path.c_str());
        break;
      }
  std::vector<std::string> input_paths = lists;
  input_paths.insert(input_paths.end(), pickles.begin(), pickles.end());
  for (const BuildInput& in : inputs) input_paths.push_back(in.path);
  refuse_output_over_input(out, input_paths, "-o");
  refuse_output_over_input(sidecar_path(out), input_paths, "-o (its sidecar)");
  BuildReport r = build_dataset(inputs, out, opt);
  std::printf("%s", r.text().c_str());
  std::printf("wrote %s and %s\n", out.c_str(), sidecar_path(out).c_str());
  return 0;
}

}  // namespace

int build_dataset_main(int argc, char** argv, const SimplifyFn& simplify, const ExtraReader& extra_reader) {
  return run_program("build_dataset", [&] { return run(argc, argv, simplify, extra_reader); });
}

}  // namespace iflame
