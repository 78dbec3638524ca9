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
#include "core/paths.h"
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
    "  --novelty              also the novelty against the dataset's train split: the share of\n"
    "                         samples that are not nearer a training mesh than their nearest\n"
    "                         reference is (tools/eval_metrics.h); needs --dataset references\n"
    "                         of the val split\n"
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
  bool help = false, novelty = false;
};

Options parse(int argc, char** argv) {
  Options o;
  FlagReader f("evaluate", argc, argv);
  std::vector<std::string> generated;
  bool dataset_given = false;
  while (f.next()) {
    if (f.is_help()) o.help = true;
    else if (f.is("--dataset")) o.dataset = f.text(), dataset_given = true;
    else if (f.is("--reference-split")) o.split = f.choice({"train", "val", "all"});
    else if (f.is("--reference-folder")) o.reference_folder = f.text();
    else if (f.is("--generated-split")) o.generated_split = f.choice({"train", "val", "all"});
    else if (f.is("--sample-summary")) o.summary = f.text();
    else if (f.is("--device")) o.device = f.choice({"cpu", "cuda"});
    else if (f.is("--points")) o.points = f.integer<int>(1, 1 << 20);
    else if (f.is("--seed")) o.seed = f.integer<uint64_t>(0);
    else if (f.is("--max-meshes")) o.max_meshes = f.integer<int64_t>(1);
    else if (f.is("--resolution")) o.resolution = f.integer<int>(1, 512);
    else if (f.is("--json")) o.json = f.text();
    else if (f.is("--novelty")) o.novelty = true;
    else f.positional_or_unknown(generated);
  }
  if (generated.size() > 1)
    throw UsageError(str("one generated folder expected, got '", generated[0], "' and '", generated[1], "'"));
  if (!generated.empty()) o.generated = generated[0];
  if (dataset_given && !o.reference_folder.empty() && o.generated_split.empty())
    throw UsageError("--dataset and --reference-folder both name the references: give one");
  if (o.novelty && (!o.reference_folder.empty() || o.split != "val"))
    throw UsageError("--novelty compares with the dataset's train split: it needs the references to be its val "
                     "split (--dataset FILE, no --reference-folder, --reference-split val)");
  return o;
}

bool is_mesh_file(const std::filesystem::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return ext == ".obj" || ext == ".ply" || ext == ".stl" || ext == ".off";
}

// Mesh files directly in `dir`, by name; the first max_meshes when > 0.
std::vector<std::string> list_meshes(const std::string& dir, int64_t max_meshes, const char* what) {
  IFLAME_REQUIRE(std::filesystem::exists(dir), what, " folder: no such folder: ", dir);
  IFLAME_REQUIRE(std::filesystem::is_directory(dir), what, " folder ", dir, " is a file, not a folder");
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    if (e.is_regular_file() && is_mesh_file(e.path())) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  IFLAME_REQUIRE(!files.empty(), what, " folder '", dir, "' holds no .obj, .ply, .stl or .off file");
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
  require_readable_file(path, "sample summary");
  std::ifstream in(path);
  IFLAME_REQUIRE(in.good(), "cannot read sample summary '", path, "'");
  std::map<std::string, SampleRecord> records;
  std::string line;
  for (int number = 1; std::getline(in, line); number++) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const JsonValue v = parse_json(line, str(path, " line ", number));
    const JsonValue* file = v.find("file");
    const JsonValue* ended = v.find("ended");
    IFLAME_REQUIRE(file && file->kind == JsonValue::Kind::String && ended && ended->kind == JsonValue::Kind::Bool,
                 path, " line ", number, ": expected \"file\" (string) and \"ended\" (bool)");
    SampleRecord r;
    r.known = true;
    r.ended = ended->boolean;
    for (const char* key : {"dropped_incomplete", "dropped_invalid", "dropped_degenerate", "dropped_duplicate"}) {
      const JsonValue* d = v.find(key);
      IFLAME_REQUIRE(d && d->kind == JsonValue::Kind::Number, path, " line ", number, ": expected \"", key,
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
  IFLAME_REQUIRE(std::filesystem::exists(path), "no such file: ", path,
                 " (make data builds data/furniture.npy; or give --dataset / --reference-folder)");
  require_readable_file(path, "dataset");
  MeshDataset ds(path);
  std::vector<int64_t> idx = ds.indices(split == "all" ? "" : split);
  IFLAME_REQUIRE(!idx.empty(), path, ": no usable meshes in the '", split, "' split",
               ds.has_sidecar() ? "" : " (no sidecar: every mesh counts as train; try the split all)");
  if (max_meshes > 0 && int64_t(idx.size()) > max_meshes) idx.resize(size_t(max_meshes));
  std::vector<std::vector<Triangle>> out;
  for (int64_t i : idx) {
    std::vector<Triangle> t = ds.triangles(i);
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
    IFLAME_REQUIRE(cuda_available(), "--device cuda: ", cuda_unavailable_reason(), " (--device cpu evaluates on the CPU)");
    device = Device::CUDA;
  } else if (o.device.empty() && cuda_default_device()) {
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
  if (!o.json.empty()) {  // the report never replaces an input
    std::vector<std::string> inputs = gen_files;
    for (const std::string& in : {o.dataset, summary_path}) inputs.push_back(in);
    refuse_output_over_input(o.json, inputs, "--json");
  }
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
    if (!o.json.empty()) refuse_output_over_input(o.json, ref_files, "--json");
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
  IFLAME_REQUIRE(!samples.empty(), "no generated mesh in '", generated_desc, "' has a face left after cleaning");
  IFLAME_REQUIRE(!references.empty(), "no reference mesh has a face (", reference_desc, ")");

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
  NoveltyMetrics nov;
  if (o.novelty) {
    say(str("reading the train split of ", o.dataset, " for the novelty"));
    const std::vector<std::vector<Triangle>> training = dataset_split(o.dataset, "train", o.max_meshes);
    say(str("sampling point clouds: ", o.points, " points on each of ", training.size(), " training meshes"));
    const Tensor training_clouds = sample_point_clouds(training, o.points, o.seed);
    nov = compare_to_training(sample_clouds, reference_clouds, training_clouds, device,
                              chamfer_progress_printer(device));
  }

  // Validity shares over all generated files.
  const double n = double(validity.meshes);
  const int64_t unknown = validity.meshes - validity.status_known;
  const bool status_known = validity.status_known > 0;
  // Among files with a ./sample record; a file without one is unknown, never counted as closed.
  const double closed = status_known ? double(validity.ended) / double(validity.status_known) : NAN;
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
  if (o.novelty) {
    std::printf("%-34s %12.4f   (%lld of %lld samples nearer a training mesh than their nearest reference is)\n",
                "novelty (not a train copy)", nov.novelty, (long long)nov.copies, (long long)nov.samples);
    std::printf("%-34s %12.4f   (references: %.4f; %lld training meshes)\n", "nearest train mesh, x 1e3",
                nov.sample_to_train_mean * 1e3, nov.reference_to_train_mean * 1e3, (long long)nov.training);
  }
  if (m.identical_pairs > 0)
    std::printf("%-34s %12lld   (skipped as 1-NNA neighbours)\n", "identical sample/reference pairs",
                (long long)m.identical_pairs);
  if (status_known)
    std::printf("\n%-34s %12.4f   (of %lld files with a ./sample record%s)\n", "closed with END", closed,
                (long long)validity.status_known,
                unknown > 0 ? str("; ", unknown, " without one: unknown").c_str() : "");
  else
    std::printf("\n%-34s %12s   (no ./sample record)\n", "closed with END", "unknown");
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
      << ", \"identical_pairs\": " << m.identical_pairs << ",\n";
    if (o.novelty)
      j << "  \"novelty\": " << json_number(nov.novelty) << ", \"train_copies\": " << nov.copies
        << ", \"training_meshes\": " << nov.training
        << ", \"sample_to_train_mean\": " << json_number(nov.sample_to_train_mean)
        << ", \"reference_to_train_mean\": " << json_number(nov.reference_to_train_mean) << ",\n";
    j
      << "  \"validity\": {\"closed_with_end\": " << json_number(closed)
      << ", \"status_known\": " << validity.status_known << ", \"status_unknown\": " << unknown
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
      IFLAME_REQUIRE(f.good(), "cannot write --json file '", o.json, "'");
      f << j.str();
      f.flush();
      IFLAME_REQUIRE(f.good(), "cannot write --json file '", o.json, "'");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, o.json, ec);
    IFLAME_REQUIRE(!ec, "cannot write --json file '", o.json, "': ", ec.message());
  }
  return 0;
}

}  // namespace

int evaluate_main(int argc, char** argv) {
  return run_program("evaluate", [&] {
    const Options o = parse(argc, argv);
    if (o.help) {
      std::printf("%s", kUsage);
      return 0;
    }
    return run(o);
  });
}

}  // namespace iflame
