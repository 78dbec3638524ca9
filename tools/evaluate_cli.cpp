// evaluate_cli.cpp: flags, reading both mesh sets, sampling, the metrics of
// tools/eval_metrics.h, the table on stdout and the JSON report of ./evaluate.
#include "tools/evaluate_cli.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/flags.h"
#include "data/dataset.h"
#include "data/json.h"
#include "data/mesh.h"
#include "tools/eval_metrics.h"
#include "tools/surface_sample.h"

namespace iflame {

namespace {

const char* kUsage =
    "usage: ./evaluate GENERATED_DIR [flags]     generated meshes against a reference set\n"
    "\n"
    "  GENERATED_DIR          folder of generated meshes (.obj .ply .stl .off, not recursive,\n"
    "                         in name order); DIR/samples.jsonl from ./sample is read if present\n"
    "  --generated-split S    instead of a folder, take a split (train, val, all) of --dataset as\n"
    "                         the generated set: the yardstick, e.g. val against train\n"
    "  --dataset FILE         reference dataset .npy (default data/furniture.npy)\n"
    "  --reference-split S    train, val or all meshes of the dataset (default val)\n"
    "  --reference-folder DIR references from mesh files instead of a dataset\n"
    "  --sample-summary FILE  ./sample's per-file records (default GENERATED_DIR/samples.jsonl)\n"
    "  --device cpu|cuda      where Chamfer distances are computed (default cuda when usable)\n"
    "  --points N             points sampled per mesh surface (default 2048)\n"
    "  --seed S               seed of the surface sampling (default 0)\n"
    "  --max-meshes N         use the first N meshes of each set (default all)\n"
    "  --resolution R         voxel grid of the occupancy JSD (default 28)\n"
    "  --json FILE            also write the report as JSON\n"
    "\n"
    "Every mesh is cleaned (faces with coincident corners and repeated faces dropped) and\n"
    "normalized (bounding-box centre at the origin, largest side 1). Distances are Chamfer,\n"
    "squared L2, sum of the two directed means (ops/chamfer.h); COV, MMD, 1-NNA and JSD are\n"
    "defined in tools/eval_metrics.h. Meshes with no face left are counted in the validity\n"
    "figures and left out of the distribution metrics.\n";

struct Options {
  std::string generated, dataset = "data/furniture.npy", split = "val", reference_folder, summary, device, json;
  std::string generated_split;  // non-empty: the generated set is this split of the dataset
  int points = 2048, resolution = 28;
  int64_t max_meshes = 0;
  uint64_t seed = 0;
  bool help = false;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    const std::string flag = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(str(flag, " needs a value"));
      return argv[++i];
    };
    if (flag == "--help" || flag == "-h") o.help = true;
    else if (flag == "--dataset") o.dataset = value();
    else if (flag == "--reference-split") {
      o.split = value();
      if (o.split != "train" && o.split != "val" && o.split != "all")
        throw UsageError(str(flag, ": expected train, val or all, got '", o.split, "'"));
    } else if (flag == "--reference-folder") o.reference_folder = value();
    else if (flag == "--generated-split") {
      o.generated_split = value();
      if (o.generated_split != "train" && o.generated_split != "val" && o.generated_split != "all")
        throw UsageError(str(flag, ": expected train, val or all, got '", o.generated_split, "'"));
    }
    else if (flag == "--sample-summary") o.summary = value();
    else if (flag == "--device") {
      o.device = value();
      if (o.device != "cpu" && o.device != "cuda") throw UsageError(str(flag, ": expected cpu or cuda, got '", o.device, "'"));
    } else if (flag == "--points") o.points = int(flag_integer(flag, value(), 1, 1 << 20));
    else if (flag == "--seed") o.seed = uint64_t(flag_integer(flag, value(), 0, INT64_MAX));
    else if (flag == "--max-meshes") o.max_meshes = flag_integer(flag, value(), 1, INT64_MAX);
    else if (flag == "--resolution") o.resolution = int(flag_integer(flag, value(), 1, 512));
    else if (flag == "--json") o.json = value();
    else if (!flag.empty() && flag[0] == '-') throw UsageError(str("unknown flag '", flag, "' (see --help)"));
    else if (o.generated.empty()) o.generated = flag;
    else throw UsageError(str("one generated folder expected, got '", o.generated, "' and '", flag, "'"));
  }
  return o;
}

bool is_mesh_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".obj" || ext == ".ply" || ext == ".stl" || ext == ".off";
}

// Mesh files directly in `dir`, by name; the first max_meshes when > 0.
std::vector<std::string> list_meshes(const std::string& dir, int64_t max_meshes, const char* what) {
  IFLAME_CHECK(std::filesystem::is_directory(dir), what, " folder '", dir, "' does not exist or is not a folder");
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && is_mesh_file(e.path())) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  IFLAME_CHECK(!files.empty(), what, " folder '", dir, "' holds no .obj, .ply, .stl or .off file");
  if (max_meshes > 0 && int64_t(files.size()) > max_meshes) files.resize(size_t(max_meshes));
  return files;
}

std::vector<EvalMesh> read_meshes(const std::vector<std::string>& files) {
  std::vector<EvalMesh> out;
  out.reserve(files.size());
  for (const std::string& f : files) out.push_back(clean_for_eval(read_mesh(f), f));
  return out;
}

// samples.jsonl: {"file": NAME, "status": ..., "ended": bool, "dropped_*": n} per line.
std::map<std::string, SampleRecord> read_summary(const std::string& path) {
  std::ifstream in(path);
  IFLAME_CHECK(in.good(), "cannot read sample summary '", path, "'");
  std::map<std::string, SampleRecord> records;
  std::string line;
  for (int number = 1; std::getline(in, line); number++) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const JsonValue v = parse_json(line, str(path, " line ", number));
    const JsonValue* file = v.find("file");
    const JsonValue* ended = v.find("ended");
    IFLAME_CHECK(file && file->kind == JsonValue::Kind::String && ended && ended->kind == JsonValue::Kind::Bool,
                 path, " line ", number, ": expected \"file\" (string) and \"ended\" (bool)");
    SampleRecord r;
    r.known = true;
    r.ended = ended->boolean;
    for (const char* key : {"dropped_incomplete", "dropped_invalid", "dropped_degenerate", "dropped_duplicate"}) {
      const JsonValue* d = v.find(key);
      IFLAME_CHECK(d && d->kind == JsonValue::Kind::Number, path, " line ", number, ": expected \"", key,
                   "\" (number)");
      if (d->number > 0) r.cleaned = true;
    }
    records[file->string] = r;
  }
  return records;
}

std::vector<std::vector<Triangle>> nonempty(const std::vector<EvalMesh>& meshes) {
  std::vector<std::vector<Triangle>> out;
  for (const EvalMesh& m : meshes)
    if (!m.triangles.empty()) out.push_back(m.triangles);
  return out;
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// The meshes of one split of a dataset, as triangle lists in the unit cube.
std::vector<std::vector<Triangle>> dataset_split(const std::string& path, const std::string& split,
                                                  int64_t max_meshes) {
  IFLAME_CHECK(std::filesystem::is_regular_file(path), "dataset '", path,
               "' does not exist (make data builds data/furniture.npy; or give --dataset / --reference-folder)");
  MeshDataset ds(path);
  std::vector<int64_t> idx = ds.indices(split == "all" ? "" : split);
  IFLAME_CHECK(!idx.empty(), path, ": no usable meshes in the '", split, "' split",
               ds.has_sidecar() ? "" : " (no sidecar: every mesh counts as train; try the split all)");
  if (max_meshes > 0 && int64_t(idx.size()) > max_meshes) idx.resize(size_t(max_meshes));
  std::vector<std::vector<Triangle>> out;
  for (int64_t i : idx) {
    std::vector<Triangle> t(size_t(ds.faces(i)));
    const float* src = ds.triangles(i);
    for (size_t f = 0; f < t.size(); f++) std::copy(src + 9 * f, src + 9 * f + 9, t[f].begin());
    normalize_triangles(t);
    out.push_back(std::move(t));
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Phases go to stderr as they start (stdout keeps the report), so a long
// evaluation on the CPU shows where it is.
void say(const std::string& line) { std::fprintf(stderr, "evaluate: %s\n", line.c_str()); }

// Reports each Chamfer matrix as it fills: on a terminal one line rewritten in
// place, otherwise one line per block of rows.
ChamferProgress chamfer_progress_printer(Device device) {
  const bool tty = isatty(fileno(stderr));
  auto started = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [tty, device, started](const std::string& matrix, int64_t done, int64_t rows) {
    const std::string line = str("Chamfer matrix ", matrix, " on ", device_name(device), ": ", done, "/", rows,
                                 " rows, ", static_cast<long>(seconds_since(*started) * 10) / 10.0, " s");
    const bool last = done == rows;
    if (tty) std::fprintf(stderr, "\revaluate: %s%s", line.c_str(), last ? "\n" : "");
    else say(line);
    if (last) *started = std::chrono::steady_clock::now();
  };
}

int run(const Options& o) {
  if (o.generated.empty() == o.generated_split.empty())
    throw UsageError("give one generated set: a folder, or --generated-split (see --help)");
  Device device = Device::CPU;
  if (o.device == "cuda") {
    IFLAME_CHECK(cuda_available(), "--device cuda: ", cuda_unavailable_reason(), " (--device cpu evaluates on the CPU)");
    device = Device::CUDA;
  } else if (o.device.empty() && cuda_available()) {
    device = Device::CUDA;
  }

  // Generated meshes and what ./sample said about them.
  std::vector<std::string> gen_files;
  std::vector<EvalMesh> generated;
  if (o.generated_split.empty()) {
    gen_files = list_meshes(o.generated, o.max_meshes, "generated");
    say(str("reading ", gen_files.size(), " generated meshes from ", o.generated));
    generated = read_meshes(gen_files);
  } else {
    say(str("reading the ", o.generated_split, " split of ", o.dataset, " as the generated set"));
    for (auto& t : dataset_split(o.dataset, o.generated_split, o.max_meshes)) {
      EvalMesh m;
      m.path = str(o.generated_split, " split of ", o.dataset);
      m.faces_read = int64_t(t.size());
      m.triangles = std::move(t);
      generated.push_back(std::move(m));
    }
  }
  const std::string generated_desc = o.generated_split.empty() ? o.generated : generated.front().path;
  std::string summary_path = o.summary;
  if (summary_path.empty() && !o.generated.empty() &&
      std::filesystem::is_regular_file(o.generated + "/samples.jsonl"))
    summary_path = o.generated + "/samples.jsonl";
  std::vector<SampleRecord> records;
  if (!summary_path.empty()) {
    const std::map<std::string, SampleRecord> by_name = read_summary(summary_path);
    for (const std::string& f : gen_files) {
      auto it = by_name.find(std::filesystem::path(f).filename().string());
      records.push_back(it == by_name.end() ? SampleRecord{} : it->second);
    }
  }
  const ValidityStats validity = validity_stats(generated, records);

  // References.
  std::vector<std::vector<Triangle>> references;
  std::string reference_desc;
  int64_t references_read = 0;
  if (!o.reference_folder.empty()) {
    const std::vector<std::string> ref_files = list_meshes(o.reference_folder, o.max_meshes, "reference");
    say(str("reading ", ref_files.size(), " reference meshes from ", o.reference_folder));
    const std::vector<EvalMesh> refs = read_meshes(ref_files);
    references_read = int64_t(refs.size());
    references = nonempty(refs);
    reference_desc = str("folder ", o.reference_folder);
  } else {
    say(str("reading the ", o.split, " split of ", o.dataset, " as the references"));
    references = dataset_split(o.dataset, o.split, o.max_meshes);
    references_read = int64_t(references.size());
    reference_desc = str(o.split, " split of ", o.dataset);
  }
  const std::vector<std::vector<Triangle>> samples = nonempty(generated);
  IFLAME_CHECK(!samples.empty(), "no generated mesh in '", generated_desc, "' has a face left after cleaning");
  IFLAME_CHECK(!references.empty(), "no reference mesh has a face (", reference_desc, ")");

  // Point clouds and metrics.
  say(str("sampling point clouds: ", o.points, " points on each of ", samples.size(), " generated and ",
          references.size(), " reference meshes"));
  auto t0 = std::chrono::steady_clock::now();
  const Tensor sample_clouds = sample_point_clouds(samples, o.points, o.seed);
  const Tensor reference_clouds = sample_point_clouds(references, o.points, o.seed);
  const double sampling_s = seconds_since(t0);
  say(str("Chamfer matrices on ", device_name(device), ": ", samples.size(), " x ", references.size(), ", ",
          samples.size(), " x ", samples.size(), ", ", references.size(), " x ", references.size()));
  t0 = std::chrono::steady_clock::now();
  const DistributionMetrics m =
      compare_point_clouds(sample_clouds, reference_clouds, device, chamfer_progress_printer(device));
  const double chamfer_s = seconds_since(t0);
  say(str("occupancy JSD on a ", o.resolution, "^3 grid"));
  const double jsd = occupancy_jsd(sample_clouds, reference_clouds, o.resolution);

  // Validity shares over all generated files.
  const double n = double(validity.meshes);
  const int64_t unknown = validity.meshes - validity.status_known;
  const double closed = (double(validity.ended) + double(unknown)) / n;  // files without a record count as closed
  const bool status_known = validity.status_known > 0;
  int64_t no_cleaning = 0;  // among files with a record: neither ./sample nor the evaluator cleaned
  for (size_t i = 0; i < records.size(); i++)
    no_cleaning += records[i].known && !records[i].cleaned && !generated[i].needed_cleaning();
  const double no_cleaning_share = status_known ? double(no_cleaning) / double(validity.status_known) : NAN;

  std::printf("generated:  %lld files in %s, %lld with faces after cleaning\n", (long long)validity.meshes,
              generated_desc.c_str(), (long long)validity.with_faces);
  std::printf("reference:  %lld meshes (%s), %lld with faces\n", (long long)references_read,
              reference_desc.c_str(), (long long)references.size());
  std::printf("clouds:     %d points per mesh, seed %llu; sampling %.2f s, Chamfer matrices on %s %.2f s\n",
              o.points, (unsigned long long)o.seed, sampling_s, device_name(device), chamfer_s);
  std::printf("\n%-34s %12s\n", "metric", "value");
  std::printf("%-34s %12.4f\n", "COV (share of references matched)", m.cov);
  std::printf("%-34s %12.4f\n", "MMD (Chamfer, x 1e3)", m.mmd * 1e3);
  std::printf("%-34s %12.4f   (samples %.4f, references %.4f)\n", "1-NNA (0.5 is best)", m.one_nna,
              m.one_nna_samples, m.one_nna_references);
  std::printf("%-34s %12.4f\n", str("JSD (occupancy ", o.resolution, "^3)").c_str(), jsd);
  if (m.identical_pairs > 0)
    std::printf("%-34s %12lld   (skipped as 1-NNA neighbours)\n", "identical sample/reference pairs",
                (long long)m.identical_pairs);
  std::printf("\n%-34s %12.4f   %s\n", "closed with END", closed,
              status_known ? str("(", validity.status_known, " files with a ./sample record)").c_str()
                           : "(assumed: no ./sample record)");
  std::printf("%-34s %12.4f\n", ">= 1 face after cleaning", double(validity.with_faces) / n);
  if (status_known)
    std::printf("%-34s %12.4f   (of %lld with a record)\n", "needed no cleaning", no_cleaning_share,
                (long long)validity.status_known);
  else
    std::printf("%-34s %12s   (no ./sample record)\n", "needed no cleaning", "unknown");
  std::printf("%-34s %12.4f\n", "clean files (evaluator)", double(validity.clean_files) / n);
  std::printf("%-34s %12.1f   (median %.1f, max %lld)\n", "faces per sample, mean", validity.faces_mean,
              validity.faces_median, (long long)validity.faces_max);

  if (!o.json.empty()) {
    std::ostringstream j;
    j << "{\n  \"generated\": {\"folder\": " << json_quote(generated_desc) << ", \"files\": " << validity.meshes
      << ", \"with_faces\": " << validity.with_faces << "},\n"
      << "  \"reference\": {\"source\": " << json_quote(reference_desc) << ", \"meshes\": " << references_read
      << ", \"with_faces\": " << references.size() << "},\n"
      << "  \"points\": " << o.points << ", \"seed\": " << o.seed << ", \"device\": \"" << device_name(device)
      << "\",\n"
      << "  \"distance\": \"chamfer: mean_a min_b |a-b|^2 + mean_b min_a |a-b|^2\",\n"
      << "  \"cov\": " << json_number(m.cov) << ", \"mmd\": " << json_number(m.mmd)
      << ", \"one_nna\": " << json_number(m.one_nna) << ", \"one_nna_samples\": " << json_number(m.one_nna_samples)
      << ", \"one_nna_references\": " << json_number(m.one_nna_references) << ",\n"
      << "  \"jsd\": " << json_number(jsd) << ", \"jsd_resolution\": " << o.resolution
      << ", \"identical_pairs\": " << m.identical_pairs << ",\n"
      << "  \"validity\": {\"closed_with_end\": " << json_number(closed)
      << ", \"status_known\": " << validity.status_known
      << ", \"with_faces\": " << json_number(double(validity.with_faces) / n)
      << ", \"no_cleaning\": " << json_number(no_cleaning_share)
      << ", \"clean_files\": " << json_number(double(validity.clean_files) / n)
      << ", \"faces_mean\": " << json_number(validity.faces_mean)
      << ", \"faces_median\": " << json_number(validity.faces_median) << ", \"faces_max\": " << validity.faces_max
      << "},\n"
      << "  \"seconds\": {\"sampling\": " << json_number(sampling_s) << ", \"chamfer\": " << json_number(chamfer_s)
      << "}\n}\n";
    const std::string tmp = o.json + ".tmp";
    {
      std::ofstream f(tmp, std::ios::trunc);
      IFLAME_CHECK(f.good(), "cannot write --json file '", o.json, "'");
      f << j.str();
      f.flush();
      IFLAME_CHECK(f.good(), "cannot write --json file '", o.json, "'");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, o.json, ec);
    IFLAME_CHECK(!ec, "cannot write --json file '", o.json, "': ", ec.message());
  }
  return 0;
}

}  // namespace

int evaluate_main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "evaluate: %s\n", e.what());
    return 2;
  }
  if (o.help) {
    std::printf("%s", kUsage);
    return 0;
  }
  try {
    return run(o);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "evaluate: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "evaluate: %s\n", e.what());
    return 1;
  }
}

}  // namespace iflame
