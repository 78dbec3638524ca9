// sample_cli.cpp: flags, the sampling run (batches, mesh files, summary) and the
// decoding benchmark (--bench) of ./sample.
#include "infer/sample_cli.h"

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/error.h"
#include "core/flags.h"
#include "core/gpu_capability.h"
#include "core/paths.h"
#include "core/profiler.h"
#include "core/random.h"
#include "infer/clean.h"
#include "infer/device_sampler.h"
#include "infer/generate.h"
#include "data/tokenize.h"
#include "nn/model_weights.h"
#include "ops/kernel_choices.h"
#include "tools/render.h"

namespace iflame::infer {

namespace {

std::string usage() {
  return std::string() +
    "usage: ./sample --ckpt FILE [flags]        sample meshes from a trained iFlame model\n"
    "       ./sample --bench [flags]            time cached decoding on random weights\n"
    "\n"
    "  --ckpt FILE          checkpoint: native (./train) or PyTorch .pth (published layout)\n"
    "  -n N                 number of samples (default 1)\n"
    "  --batch B            sequences in flight (default min(N, 16)); a sample that ends frees its row\n"
    "                       for the next sample at once (continuous batching); the meshes do not\n"
    "                       depend on B beyond float rounding (on the CPU, not at all)\n"
    "  --temperature T      logits are divided by T; 0 means greedy (default 1)\n"
    "  --top-k K            keep the K most likely tokens; 0 keeps all (default 50)\n"
    "  --top-p P            then keep the smallest set reaching probability P, in (0, 1] (default 0.95)\n"
    "  --seed S             seed of the draws; sample i draws the same tokens for a seed (default 0)\n"
    "  --max-faces F        stop a sample after F faces (prompt included) (default 800)\n"
    "  --unconstrained      draw from the raw model: by default tokens that would break the canonical\n"
    "                       order (spec §1) are masked, so every sample is valid by construction:\n"
    "                       coordinates only inside rows, END only as a whole row after a face, in\n"
    "                       each face the first vertex lowest and the three distinct, each face after\n"
    "                       the previous one in canonical order (no repeated faces); --constrained\n"
    "                       is accepted and changes nothing\n"
    "  --filter-on F        constrained sampling: where top-k and top-p apply (default allowed).\n"
    "                       allowed: to the tokens the order allows (they are the candidates);\n"
    "                       raw: to the model's whole distribution, as --unconstrained does, and\n"
    "                       the forbidden tokens are then dropped from what they keep: only tokens\n"
    "                       the model itself ranks among its top-k / top-p are drawn (none of them\n"
    "                       allowed: the most likely allowed token). Greedy draws the same in both;\n"
    "                       --bench times the constrained sampler in this mode\n"
    "  --prompt FILE        continue a partial mesh (OBJ, PLY, STL, OFF): it is tokenized canonically\n"
    "                       and fed before sampling\n"
    "  --out DIR            where mesh files go, created if missing (default samples); a folder that\n"
    "                       holds an earlier run's samples is refused\n"
    "  --overwrite          remove an earlier run's samples.jsonl and sample_* files from --out first\n"
    "  --format obj|ply     mesh file format (default obj)\n"
    "  --png FILE           also draw the samples (the first 64) as one PNG contact sheet,\n"
    "                       three-quarter and top views (tools/render.h)\n"
    "  --device cpu|cuda    (default cuda when a GPU is usable, else cpu)\n"
    "  --precision P        " + precision_help(23) + "\n"
    "  --no-graphs          GPU: launch every kernel of a step instead of replaying the step from a\n"
    "                       CUDA graph (slower; for comparison and debugging)\n"
    "  --no-compact         keep every row to the end of the run: by default, once no sample is left\n"
    "                       to start and at most half the rows still work, the run goes on with\n"
    "                       those rows only (the same meshes; for comparison)\n"
    "  --decode-step S      layered: a kernel per op, replayed from CUDA graphs on the GPU (any batch,\n"
    "                       precision, device); persistent: one cooperative kernel per position (GPU,\n"
    "                       bf16, batch <= 8; today slower than layered: docs/perf.md); auto:\n"
    "                       persistent where it can run, else layered (default layered)\n"
    "\n"
    "  --bench              decode --tokens positions at --batch on a random model, print tokens/s\n"
    "                       (decoding alone; with the device sampler, plain and constrained, with\n"
    "                       and without CUDA graphs; the sampler alone) and cache memory per\n"
    "                       sequence (no checkpoint needed)\n"
    "  --model NAME         preset for --bench: shapenet, small, tiny (default shapenet)\n"
    "  --tokens N           positions decoded by --bench (default 900)\n"
    "  --quick              with --bench: a warm-up of at most 900 positions, then only the run that\n"
    "                       sampling makes (decoding with the constrained device sampler, from CUDA\n"
    "                       graphs on the GPU): one pass of --tokens for long lengths (36,018 = 4,000\n"
    "                       faces) instead of ten\n"
    "  --profile            with --bench: one more decode-only run with every op timed (CUDA events\n"
    "                       on the GPU, wall clock on the CPU), then a table per op: calls, time,\n"
    "                       share, TFLOP/s, GB/s and time against its FLOP/byte floor on an H100\n"
    "\n"
    "Samples that stop mid-row or hold degenerate or repeated faces are cleaned before writing\n"
    "(incomplete last row, degenerate and duplicate faces dropped; with the default masks only a\n"
    "sample stopped by --max-faces mid-face can need it). Sampling and its masks run on the model's\n"
    "device next to the decoder. DIR/samples.jsonl gets one line per\n"
    "file: faces, status, whether END closed it, and what cleaning dropped (read by ./evaluate).\n";
}

struct Options {
  std::string ckpt, prompt, png, out = "samples", format = "obj", device, model = "shapenet";
  std::string precision;  // "" = bf16 on the GPU, f32 on the CPU (core/flags.h)
  std::string decode_step = "layered";  // persistent: slower today (docs/perf.md, issue 20)
  std::string filter_on = "allowed";    // constrained sampling: top-k / top-p over the allowed or the raw tokens
  int n = 1, batch = 0, top_k = 50, max_faces = 800, tokens = 900;
  float temperature = 1.0f, top_p = 0.95f;
  uint64_t seed = 0;
  bool bench = false, help = false, unconstrained = false, profile = false, no_graphs = false, overwrite = false;
  bool quick = false;  // --bench: only the run generate() makes, after a short warm-up
  bool no_compact = false;  // keep every row through the drain (GenerateConfig::compact_drain)
};

Options parse(int argc, char** argv) {
  Options o;
  FlagReader f("sample", argc, argv);
  while (f.next()) {
    if (f.is_help()) o.help = true;
    else if (f.is("--bench")) o.bench = true;
    else if (f.is("--profile")) o.profile = true;
    else if (f.is("--quick")) o.quick = true;
    else if (f.is("--unconstrained")) o.unconstrained = true;
    else if (f.is("--constrained")) {}  // the default; accepted for old command lines
    else if (f.is("--filter-on")) o.filter_on = f.choice({"allowed", "raw"});
    else if (f.is("--no-graphs")) o.no_graphs = true;
    else if (f.is("--no-compact")) o.no_compact = true;
    else if (f.is("--decode-step")) o.decode_step = f.choice({"persistent", "layered", "auto"});
    else if (f.is("--overwrite")) o.overwrite = true;
    else if (f.is("--ckpt")) o.ckpt = f.text();
    else if (f.is("-n")) o.n = f.integer<int>(1, 1 << 20);
    else if (f.is("--batch")) o.batch = f.integer<int>(1, 1 << 16);
    else if (f.is("--temperature")) o.temperature = f.real<float>(0, 1e6);
    else if (f.is("--top-k")) o.top_k = f.integer<int>(0, 1 << 20);
    else if (f.is("--top-p")) o.top_p = f.real<float>(0, 1, /*low_open=*/true);
    else if (f.is("--seed")) o.seed = f.integer<uint64_t>(0);
    else if (f.is("--max-faces")) o.max_faces = f.integer<int>(1, 1 << 20);
    else if (f.is("--prompt")) o.prompt = f.text();
    else if (f.is("--out")) o.out = f.text();
    else if (f.is("--png")) o.png = f.text();
    else if (f.is("--format")) o.format = f.choice({"obj", "ply"});
    else if (f.is("--device")) o.device = f.choice({"cpu", "cuda"});
    else if (f.is("--precision")) o.precision = precision_flag(f);
    else if (f.is("--model")) o.model = f.choice({"shapenet", "small", "tiny"});
    else if (f.is("--tokens")) o.tokens = f.integer<int>(1, 1 << 24);
    else f.unknown();
  }
  if (o.profile && !o.bench && !o.help) throw UsageError("--profile goes with --bench");
  if (o.quick && !o.bench && !o.help) throw UsageError("--quick goes with --bench");
  if (o.filter_on == "raw" && o.unconstrained && !o.help)
    throw UsageError("--filter-on raw goes with constrained sampling (with --unconstrained there is no mask to apply)");
  return o;
}

ops::FilterOn filter_on_of(const Options& o) { return o.filter_on == "raw" ? ops::FilterOn::Raw : ops::FilterOn::Allowed; }

DecodeStep decode_step_of(const Options& o) {
  return o.decode_step == "persistent" ? DecodeStep::Persistent
         : o.decode_step == "layered"  ? DecodeStep::Layered
                                       : DecodeStep::Auto;
}

// On the CPU a decoding step multiplies B-row matrices, which the CPU gemm splits
// by rows: two threads gain little, and spinning OpenMP threads on shared cores
// cost far more (measured 1.6 ms -> 178 ms per tiny-model step on a loaded 2-core
// machine). So CPU decoding uses one thread unless OMP_NUM_THREADS says otherwise.
void limit_cpu_threads(Device device) {
  if (device == Device::CPU && !std::getenv("OMP_NUM_THREADS")) omp_set_num_threads(1);
}

Device pick_device(const Options& o) {
  if (o.device == "cpu") return Device::CPU;
  if (o.device == "cuda") {
    IFLAME_REQUIRE(cuda_available(), "--device cuda: ", cuda_unavailable_reason(), " (--device cpu samples on the CPU)");
    return Device::CUDA;
  }
  return cuda_default_device() ? Device::CUDA : Device::CPU;
}

double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

// Files of an earlier ./sample run in `dir`: its samples.jsonl and sample_NNNN.* meshes.
std::vector<std::filesystem::path> earlier_samples(const std::string& dir) {
  std::vector<std::filesystem::path> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "samples.jsonl" || name.rfind("sample_", 0) == 0) found.push_back(it->path());
  }
  return found;
}

// The output folder exists (made if needed), holds no earlier samples (with
// --overwrite they are removed first, and nothing else is) and accepts a file.
void prepare_out_dir(const std::string& dir, bool overwrite, const std::vector<std::string>& inputs) {
  std::error_code ec;
  IFLAME_REQUIRE(!std::filesystem::exists(dir) || std::filesystem::is_directory(dir), "--out ", dir,
                 " exists and is not a directory");
  const std::vector<std::filesystem::path> earlier = earlier_samples(dir);
  if (!earlier.empty() && !overwrite)
    throw UsageError(str("--out ", dir, " already holds ", earlier.size(),
                         " files of an earlier ./sample run (samples.jsonl, sample_*); pass --overwrite to remove "
                         "them first, or choose another --out (nothing was written)"));
  for (const std::filesystem::path& p : earlier) refuse_output_over_input(p.string(), inputs, "--overwrite: removing");
  for (const std::filesystem::path& p : earlier) {
    std::filesystem::remove(p, ec);
    IFLAME_REQUIRE(!ec, "--overwrite: cannot remove ", p.string(), ": ", ec.message());
  }
  std::filesystem::create_directories(dir, ec);
  IFLAME_REQUIRE(!ec && std::filesystem::is_directory(dir), "cannot create output directory '", dir, "'",
                 ec ? str(": ", ec.message()) : std::string());
  const std::string probe = dir + "/.sample_write_test";
  {
    std::ofstream f(probe);
    IFLAME_REQUIRE(f.good() && (f << "x") && (f.flush(), f.good()), "output directory '", dir, "' is not writable");
  }
  std::filesystem::remove(probe, ec);
}

// --png draws at most this many samples (a sheet of 64 is 4096 x 4600 pixels).
constexpr size_t kMaxSheetMeshes = 64;

int run_sampling(const Options& o) {
  if (o.ckpt.empty()) throw UsageError("no checkpoint given: --ckpt FILE (or --bench for random weights)");
  require_readable_file(o.ckpt, "--ckpt");
  if (!o.png.empty()) refuse_output_over_input(o.png, {o.ckpt, o.prompt}, "--png");
  const Device device = pick_device(o);
  std::vector<int32_t> prompt;
  if (!o.prompt.empty()) {
    prompt = prompt_tokens_from_mesh(o.prompt);
    const int64_t prompt_faces = (int64_t(prompt.size()) - kTokensPerFace) / kTokensPerFace;
    IFLAME_REQUIRE(prompt_faces < o.max_faces, "prompt '", o.prompt, "' has ", prompt_faces,
                 " faces, not fewer than --max-faces ", o.max_faces);
  }
  limit_cpu_threads(device);
  const ModelWeights model = load_model_weights(o.ckpt, device);
  prepare_out_dir(o.out, o.overwrite, {o.ckpt, o.prompt});  // only once the checkpoint has loaded
  const DType matmul = precision_matmul(o.precision, device);
  std::printf("model %s from %s on %s, %s matmuls\n", model.config().describe().c_str(), o.ckpt.c_str(),
              device_name(device), dtype_name(matmul));
  if (!prompt.empty())
    std::printf("prompt %s: %zu faces\n", o.prompt.c_str(), (prompt.size() - kTokensPerFace) / kTokensPerFace);

  GenerateConfig cfg;
  cfg.sampling = {o.temperature, o.top_k, o.top_p, o.seed, filter_on_of(o)};
  cfg.max_faces = o.max_faces;
  cfg.constrained = !o.unconstrained;
  cfg.cuda_graphs = !o.no_graphs;
  cfg.ctx.matmul = matmul;
  cfg.decode_step = decode_step_of(o);
  cfg.compact_drain = !o.no_compact;
  const int batch = o.batch > 0 ? o.batch : std::min(o.n, 16);

  int counts[4] = {0, 0, 0, 0};
  // One JSON line per written file, for ./evaluate (closed with END, cleaned).
  const std::string summary_path = o.out + "/samples.jsonl";
  std::ofstream summary(summary_path, std::ios::trunc);
  IFLAME_REQUIRE(summary.good(), "cannot write ", summary_path);
  int64_t sampled = 0;
  int64_t row_steps = 0;  // the batch at each step, over the chunks: what "rows busy" divides by
  int compactions = 0, chunks = 0;
  GenerateStats last;  // the last chunk's (its rows at the start and the end)
  double seconds = 0;
  size_t cache_bytes = 0;
  std::string step_path = "layered";
  std::vector<Mesh> sheet_meshes;  // kept only for --png
  std::vector<std::string> sheet_labels;
  // Continuous batching keeps every sample's tokens on the device until its
  // chunk is done: chunks of at most 256 MiB of tokens (at least a batch).
  const int64_t sample_bytes = int64_t(sizeof(int32_t)) * kTokensPerFace * (o.max_faces + 1);
  const int chunk = static_cast<int>(std::max<int64_t>(batch, (int64_t(256) << 20) / sample_bytes));
  const auto run_start = std::chrono::steady_clock::now();
  for (int first = 0; first < o.n; first += chunk) {
    const int b = std::min(chunk, o.n - first);
    GenerateStats stats;
    std::vector<GeneratedSequence> seqs = generate_samples(model, b, batch, prompt, cfg, first, &stats);
    sampled += stats.sampled_tokens;
    row_steps += stats.row_steps;
    compactions += stats.compactions;
    chunks++;
    last = stats;
    seconds += stats.seconds;
    cache_bytes = std::max(cache_bytes, stats.cache_bytes / std::min(batch, b));
    step_path = stats.decode_step;
    for (int i = 0; i < b; i++) {
      CleanedSample c = clean_sample(seqs[i].tokens);
      char name[64];
      std::snprintf(name, sizeof name, "sample_%04d.%s", first + i, o.format.c_str());
      const std::string path = o.out + "/" + name;
      write_sample_mesh(path, c, o.format);
      counts[static_cast<int>(c.status)]++;
      summary << "{\"file\": \"" << name << "\", \"faces\": " << c.faces << ", \"status\": \""
              << sample_status_name(c.status) << "\", \"ended\": " << (c.ended ? "true" : "false")
              << ", \"dropped_incomplete\": " << c.dropped_incomplete << ", \"dropped_invalid\": "
              << c.dropped_invalid << ", \"dropped_degenerate\": " << c.dropped_degenerate
              << ", \"dropped_duplicate\": " << c.dropped_duplicate << "}\n";
      if (!o.png.empty() && sheet_meshes.size() < kMaxSheetMeshes) {
        sheet_meshes.push_back(decode_tokens(c.tokens));
        sheet_labels.push_back(str(name, "  ", c.faces, " faces, ", sample_status_name(c.status)));
      }
      std::printf("%s: %d faces, %s", path.c_str(), c.faces, sample_status_name(c.status));
      if (c.status == SampleStatus::Cleaned || c.status == SampleStatus::Empty)
        std::printf(" (dropped: %d incomplete-row tokens, %d invalid, %d degenerate, %d duplicate faces)",
                    c.dropped_incomplete, c.dropped_invalid, c.dropped_degenerate, c.dropped_duplicate);
      std::printf("\n");
    }
    std::fflush(stdout);
    summary.flush();
    IFLAME_REQUIRE(summary.good(), "cannot write ", summary_path);
  }
  const double run_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  std::printf(
      "%d samples: %d complete, %d truncated at %d faces, %d cleaned, %d empty\n"
      "whole run (%s, batch %d, %s): %lld tokens sampled in %.2f s (%.2f s in the sampling loop) = %.1f tokens/s, "
      "%.2f meshes/s; cache %.1f MiB per sequence\n"
      "rows busy: %.1f%% of row-steps (tokens drawn over the batch summed over the steps)\n",
      o.n, counts[0], counts[1], o.max_faces, counts[2], counts[3],
      device == Device::CPU          ? "CPU"
      : step_path == "persistent"    ? "GPU, persistent step"
      : o.no_graphs                  ? "GPU, kernels launched one by one"
                                     : "GPU, CUDA graphs",
      batch,
      cfg.constrained ? str("constrained, --filter-on ", o.filter_on).c_str() : "unconstrained",
      static_cast<long long>(sampled), run_seconds, seconds,
      run_seconds > 0 ? sampled / run_seconds : 0.0, run_seconds > 0 ? o.n / run_seconds : 0.0,
      mib(double(cache_bytes)), row_steps > 0 ? 100.0 * double(sampled) / double(row_steps) : 0.0);
  if (o.no_compact)
    std::printf("drain: all %d rows kept to the end (--no-compact)\n", last.first_rows);
  else
    std::printf("drain: %d compaction%s, %d -> %d rows%s\n", compactions, compactions == 1 ? "" : "s",
                last.first_rows, last.last_rows, chunks > 1 ? " (rows: the last chunk's)" : "");
  if (!o.png.empty()) {
    render_meshes_to_png(sheet_meshes, sheet_labels, o.png);
    std::printf("contact sheet of %s samples: %s\n",
                o.n > int(kMaxSheetMeshes) ? str("the first ", kMaxSheetMeshes).c_str() : "all", o.png.c_str());
  }
  return 0;
}

int run_bench(const Options& o) {
  const Device device = pick_device(o);
  limit_cpu_threads(device);
  Generator gen(o.seed);
  const ModelWeights model = init_model_weights(IFlameConfig::preset(o.model), device, gen);
  ForwardContext ctx{precision_matmul(o.precision, device)};
  const int B = o.batch > 0 ? o.batch : 1;
  const int N = o.tokens;
  std::printf("bench: model %s (%s), %s, %s matmuls, batch %d, %d positions\n", o.model.c_str(),
              model.config().describe().c_str(), device_name(device), dtype_name(ctx.matmul), B, N);
  std::printf("bench: kernels %s (ops/kernel_choices.h)\n", ops::describe_kernel_choices().c_str());
  if (device == Device::CUDA)
    std::printf("bench: %s; kernels: %s\n", cuda_device_description().c_str(), gpu_paths_description().c_str());
  // Tokens: the START row, then coordinates from the seed.
  std::vector<int32_t> tokens(size_t(B) * N);
  for (int t = 0; t < N; t++)
    for (int b = 0; b < B; b++)
      tokens[size_t(t) * B + b] =
          t < kTokensPerFace ? kStartToken : static_cast<int32_t>(sampling_uniform(o.seed, t, b) * 129) % 129;
  // All tokens uploaded once, so a step never waits for the host.
  const Tensor on_device = Tensor::from_ints(tokens, {N, B}).to(device);
  // Decoding alone: plain steps (optionally copying the logits to the host
  // each step), or replayed from CUDA graphs (each position's tokens copied
  // into the one buffer the graphs read, outside the graphs).
  enum RunMode { kPlain, kLogitsToHost, kGraphs };
  auto time_run = [&](RunMode mode, const char* label, int steps, DecodeStep path) {
    DecodeState st = begin(model, B, N, ctx, path);
    DecodeGraphs graphs;
    Tensor feed = Tensor::zeros({B}, DType::I32, device);
    cuda_synchronize();
    auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < steps; t++) {
      if (mode == kGraphs) {
        feed.copy_from(on_device.select(0, t));
        graphs.step(st, feed, [] {});
      } else {
        Tensor logits = step(st, on_device.select(0, t));
        if (mode == kLogitsToHost) (void)logits.to_floats();
      }
    }
    cuda_synchronize();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %-40s %8.3f s  %10.1f tokens/s  %8.3f ms/step\n", label, s, double(B) * steps / s,
                1e3 * s / steps);
    return st.cache_bytes();
  };
  // The step --decode-step picks (infer/decode.h), found on a one-position state.
  const DecodeState probe = begin(model, B, 1, ctx, decode_step_of(o));
  const bool persistent = probe.persistent != nullptr;
  std::printf("bench: decode step %s (--decode-step %s%s%s)", probe.step_path(), o.decode_step.c_str(),
              probe.persistent_problem.empty() ? "" : "; the persistent step cannot run: ",
              probe.persistent_problem.c_str());
  if (persistent) std::printf(": one cooperative launch of %d blocks per position", probe.persistent->blocks());
  std::printf("\n");
  // With --profile the warm-up is profiled too (so the profiler's event pool
  // has grown before the profiled run); the two timed runs are not.
  profiler::set_enabled(o.profile);
  const size_t bytes =
      time_run(kPlain, o.profile ? "warm-up (allocator, cuBLAS, kernels, events):" : "warm-up (allocator, cuBLAS, kernels):",
               o.quick ? std::min(N, 900) : N, DecodeStep::Layered);
  profiler::set_enabled(false);
  profiler::reset();
  if (!o.quick) {
    time_run(kPlain, "decode only (one sync at the end):", N, DecodeStep::Layered);
    time_run(kLogitsToHost, "decode + logits to host every step:", N, DecodeStep::Layered);
    if (device == Device::CUDA) time_run(kGraphs, "decode only, CUDA graphs:", N, DecodeStep::Layered);
  }
  // Both paths where both apply: the persistent step after a warm-up of its own.
  if (persistent) {
    time_run(kPlain, "persistent step warm-up:", std::min(N, 900), DecodeStep::Persistent);
    time_run(kPlain, "persistent step, decode only:", N, DecodeStep::Persistent);
    if (!o.quick) time_run(kLogitsToHost, "persistent step + logits to host:", N, DecodeStep::Persistent);
  }
  // The device sampler (infer/device_sampler.h) at the published settings: inside
  // the decoding loop as generate() runs it (the model's draws fed back; rows that
  // end keep stepping, so every run is N steps), the same with the step and the
  // draws replayed from CUDA graphs, and alone on fixed random logits where END
  // is never drawn (every row draws every step): the sampler's own cost.
  if (N > kTokensPerFace) {
    std::printf("bench: constrained sampling with --filter-on %s\n", o.filter_on.c_str());
    const int V = model.config().vocab;
    std::vector<float> fixed(size_t(B) * V);
    for (size_t i = 0; i < fixed.size(); i++) fixed[i] = 8.0f * sampling_uniform(o.seed + 1, i / V, i % V);
    for (int b = 0; b < B; b++) fixed[size_t(b) * V + kEndToken] = -1e30f;
    const Tensor fixed_logits = Tensor::from_floats(fixed, {B, V}).to(device);
    enum Mode { kAlone, kDecode, kGraphs };
    auto time_sampling = [&](Mode mode, bool constrained, const char* label, DecodeStep path = DecodeStep::Layered) {
      SamplingConfig sampling;
      sampling.seed = o.seed;
      sampling.filter_on = filter_on_of(o);
      DeviceSampler sampler(device, B, std::vector<int32_t>(kTokensPerFace, kStartToken), N, V, sampling,
                            constrained, 0);
      DecodeState st = begin(model, B, N, ctx, path);
      DecodeGraphs graphs;
      cuda_synchronize();
      auto t0 = std::chrono::steady_clock::now();
      for (int t = 0; t < N; t++) {
        if (mode == kGraphs) {
          graphs.step(st, sampler.feed(), [&] { sampler.queue_draws(st.logits); });
          sampler.count_step(t);
        } else {
          sampler.step(mode == kDecode ? step(st, sampler.feed()) : fixed_logits, t);
        }
        (void)sampler.finished();
      }
      cuda_synchronize();
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("  %-40s %8.3f s  %10.1f tokens/s  %8.3f ms/step  (%lld draws)\n", label, s, double(B) * N / s,
                  1e3 * s / N, static_cast<long long>(sampler.sampled_tokens()));
    };
    if (o.quick) {  // what generate() runs
      time_sampling(device == Device::CUDA ? kGraphs : kDecode, true,
                    device == Device::CUDA ? "constrained, in CUDA graphs:" : "decode + constrained device sampling:");
      if (persistent)
        time_sampling(kDecode, true, "persistent step + constrained sampling:", DecodeStep::Persistent);
    } else {
      time_sampling(kDecode, false, "decode + device sampling:");
      time_sampling(kDecode, true, "decode + constrained device sampling:");
      time_sampling(kGraphs, false, "the same in CUDA graphs (DecodeGraphs):");
      time_sampling(kGraphs, true, "constrained, in CUDA graphs:");
      if (persistent) {
        time_sampling(kDecode, false, "persistent step + device sampling:", DecodeStep::Persistent);
        time_sampling(kDecode, true, "persistent step + constrained sampling:", DecodeStep::Persistent);
      }
      time_sampling(kAlone, false, "device sampling alone:");
      time_sampling(kAlone, true, "constrained device sampling alone:");
    }
  }
  std::vector<profiler::OpStats> profile;
  if (o.profile) {
    profiler::set_enabled(true);
    time_run(kPlain, "decode only, every op profiled:", N, DecodeStep::Layered);
    profile = profiler::collect();
    profiler::set_enabled(false);
    profiler::reset();
  }
  // The cache of one sequence at the published ShapeNet length (800 faces) and
  // at the Objaverse length of 4,000 faces (issue 25): START + F faces, as
  // generate() sizes it for --max-faces F.
  std::printf("  cache: %.2f MiB per sequence at %d positions", mib(double(bytes) / B), N);
  for (int64_t faces : {800, 4000}) {
    const int64_t positions = int64_t(kTokensPerFace) * (faces + 1);
    std::printf("; %.2f MiB at %lld (%lld faces)", mib(double(begin(model, 1, positions, ctx).cache_bytes())),
                static_cast<long long>(positions), static_cast<long long>(faces));
  }
  std::printf("\n");
  if (o.profile) {
    double op_ms = 0;
    for (const profiler::OpStats& row : profile) op_ms += row.ms;
    std::printf("\nprofile of the profiled run (%d steps): ops %.1f ms in all, %.4f ms per step%s\n", N, op_ms,
                op_ms / N, device == Device::CUDA ? "" : "; CPU wall times, compared with H100 floors");
    std::fputs(profiler::format_table(profile).c_str(), stdout);
  }
  return 0;
}

}  // namespace

int sample_main(int argc, char** argv) {
  return run_program("sample", [&] {
    Options o = parse(argc, argv);
    if (o.help) {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    return o.bench ? run_bench(o) : run_sampling(o);
  });
}

}  // namespace iflame::infer
