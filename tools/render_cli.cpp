// render_cli.cpp: the ./render program's flags and run (a contact sheet of
// meshes, or the training curves of a run), in the library so tests can run it
// in-process (tools/render/main.cpp only calls render_main).
#include "tools/render_cli.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/flags.h"
#include "core/paths.h"
#include "tools/plot_log.h"
#include "tools/render.h"

namespace iflame {

namespace {

const char* kUsage =
    "usage: ./render PATH... [-o FILE.png] [flags]     contact sheet of meshes\n"
    "       ./render --log RUN_DIR|LOG.jsonl [-o FILE.png]   training curves of a run\n"
    "\n"
    "  PATH            a mesh file (.obj .ply .stl .off) or a folder of them, e.g. the samples\n"
    "                  folder of ./sample; folders are read in name order, not recursively\n"
    "  -o FILE         the PNG to write (default: sheet.png inside the one folder given, else\n"
    "                  ./sheet.png; with --log: curves.png next to log.jsonl)\n"
    "  --cell PX       pixels per view; each mesh gets a three-quarter and a top view (default 256)\n"
    "  --columns N     meshes per row (default: about a square sheet)\n"
    "  --max N         draw at most the first N meshes (default 64)\n"
    "  --no-labels     no file name and face count under each mesh\n"
    "  --no-edges      do not darken triangle edges\n"
    "  --size WxH      plot size with --log (default 900x900)\n"
    "\n"
    "Meshes are normalized like the tokenizer (bounding-box centre at the origin, longest side 1)\n"
    "and framed identically, so cells compare. No GPU or display is needed.\n";

int run(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<std::string> inputs;
  std::string out, log_path;
  RenderOptions opts;
  int max_meshes = 64, plot_w = 900, plot_h = 900;
  FlagReader f("render", argc, argv);
  while (f.next()) {
    if (f.is_help()) {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (f.is("-o")) out = f.text();
    else if (f.is("--log")) log_path = f.text();
    else if (f.is("--cell")) opts.cell = f.integer<int>(16, 2048);
    else if (f.is("--columns")) opts.columns = f.integer<int>(1, 1000);
    else if (f.is("--max")) max_meshes = f.integer<int>(1, 100000);
    else if (f.is("--no-labels")) opts.labels = false;
    else if (f.is("--no-edges")) opts.edges = false;
    else if (f.is("--size")) {
      const std::string v = f.text();
      const size_t x = v.find('x');
      if (x == std::string::npos) throw UsageError(str("--size: expected WxH, got '", v, "'"));
      plot_w = static_cast<int>(flag_integer("--size width", v.substr(0, x), 200, 8192));
      plot_h = static_cast<int>(flag_integer("--size height", v.substr(x + 1), 240, 8192));
    } else f.positional_or_unknown(inputs);
  }

  if (!log_path.empty()) {
    if (!inputs.empty()) throw UsageError("--log takes no mesh paths");
    const fs::path log_file = fs::is_directory(log_path) ? fs::path(log_path) / "log.jsonl" : fs::path(log_path);
    if (out.empty()) out = (log_file.parent_path() / "curves.png").string();
    refuse_output_over_input(out, {log_file.string()}, "-o");
    TrainingLog log = read_training_log(log_file.string());
    std::string title = log_file.parent_path().filename().string();
    if (title.empty()) title = log_file.string();
    write_png(out, plot_training_log(log, title, plot_w, plot_h));
    std::printf("%s: %d log lines (%zu training, %zu validation rows) -> %s\n", log_file.string().c_str(), log.lines,
                log.loss.size(), log.val_loss.size(), out.c_str());
    return 0;
  }

  if (inputs.empty()) throw UsageError("no mesh file or folder given (see --help)");
  std::vector<std::string> files;
  for (const std::string& in : inputs)
    for (std::string& f : list_mesh_files(in)) files.push_back(std::move(f));
  IFLAME_REQUIRE(!files.empty(), "no mesh files (.obj .ply .stl .off) in ", inputs[0], inputs.size() > 1 ? " ..." : "");
  if (out.empty()) out = inputs.size() == 1 && fs::is_directory(inputs[0]) ? (fs::path(inputs[0]) / "sheet.png").string()
                                                                            : std::string("sheet.png");
  refuse_output_over_input(out, files, "-o");
  const size_t total = files.size();
  if (files.size() > size_t(max_meshes)) files.resize(max_meshes);
  std::vector<Mesh> meshes;
  std::vector<std::string> labels;
  for (const std::string& f : files) {
    meshes.push_back(read_mesh(f));
    labels.push_back(mesh_label(f, meshes.back()));
  }
  render_meshes_to_png(meshes, labels, out, opts);
  std::printf("%zu meshes", meshes.size());
  if (total > meshes.size()) std::printf(" (the first %zu of %zu; see --max)", meshes.size(), total);
  std::printf(" -> %s\n", out.c_str());
  return 0;
}

}  // namespace

int render_main(int argc, char** argv) {
  return run_program("render", [&] { return run(argc, argv); });
}

}  // namespace iflame
