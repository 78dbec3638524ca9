// main.cpp: the ./render program: a PNG contact sheet of meshes, or the
// training curves of a run (tools/render.h, tools/plot_log.h do the work).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/plot_log.h"
#include "tools/render.h"

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

struct UsageError : iflame::Error {
  using Error::Error;
};

int parse_int(const std::string& flag, const std::string& text, int lo, int hi) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < lo || v > hi)
    throw UsageError(iflame::str(flag, ": expected an integer in [", lo, ", ", hi, "], got '", text, "'"));
  return static_cast<int>(v);
}

int run(int argc, char** argv) {
  using namespace iflame;
  namespace fs = std::filesystem;
  std::vector<std::string> inputs;
  std::string out, log_path;
  RenderOptions opts;
  int max_meshes = 64, plot_w = 900, plot_h = 900;
  for (int i = 1; i < argc; i++) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(str(flag, " needs a value"));
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (flag == "-o") out = value();
    else if (flag == "--log") log_path = value();
    else if (flag == "--cell") opts.cell = parse_int(flag, value(), 16, 2048);
    else if (flag == "--columns") opts.columns = parse_int(flag, value(), 1, 1000);
    else if (flag == "--max") max_meshes = parse_int(flag, value(), 1, 100000);
    else if (flag == "--no-labels") opts.labels = false;
    else if (flag == "--no-edges") opts.edges = false;
    else if (flag == "--size") {
      const std::string v = value();
      const size_t x = v.find('x');
      if (x == std::string::npos) throw UsageError(str(flag, ": expected WxH, got '", v, "'"));
      plot_w = parse_int(flag, v.substr(0, x), 200, 8192);
      plot_h = parse_int(flag, v.substr(x + 1), 240, 8192);
    } else if (!flag.empty() && flag[0] == '-') throw UsageError(str("unknown flag '", flag, "' (see --help)"));
    else inputs.push_back(flag);
  }

  if (!log_path.empty()) {
    if (!inputs.empty()) throw UsageError("--log takes no mesh paths");
    const fs::path log_file = fs::is_directory(log_path) ? fs::path(log_path) / "log.jsonl" : fs::path(log_path);
    if (out.empty()) out = (log_file.parent_path() / "curves.png").string();
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
  IFLAME_CHECK(!files.empty(), "no mesh files (.obj .ply .stl .off) in ", inputs[0], inputs.size() > 1 ? " ..." : "");
  if (out.empty()) out = inputs.size() == 1 && fs::is_directory(inputs[0]) ? (fs::path(inputs[0]) / "sheet.png").string()
                                                                            : std::string("sheet.png");
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

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "render: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "render: error: %s\n", e.what());
    return 1;
  }
}
