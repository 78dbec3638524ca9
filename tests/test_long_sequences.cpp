// test_long_sequences.cpp: exactness at length (issue 25). The float32 model (CPU
// and GPU) and cached decoding, at long sequences, against the float64
// reference of tests/reference_forward_f64.h.
//
// The float32 bound, derived rather than chosen: the reference run once exactly
// and once with the noise of float32 rounding injected at every op's output
// (relative u sqrt(n), u = 2^-24, n the length of the sum that made the value:
// the probabilistic size of float32 rounding in a sum of n terms). Their
// difference, noise = |noisy - exact|, is what float32 rounding does to the
// logits of this network at these positions. A float32 implementation commits
// several roundings per op where the noise run commits one (a norm rounds its
// sum, its scale and its product), so its error may be a few times larger: the
// check is
//     max |model - exact| <= 4 max noise   and   rms(model - exact) <= 4 rms(noise)
// over the compared logits. The factor 4 was fixed before the first run; on the
// CPU the model lands at 0.3 to 1 times the noise run's deviation. A departure
// the long tests exist for, the linear attention's decay rounded to bf16 (as a
// kernel keeping it in bf16 would), lands far outside: the test "the float32
// bound is tight enough to catch ..." shows it. (RoPE angles computed in double
// instead of float32, as spec §2 forbids, were not resolved at 2,699 positions:
// their angle error there, up to half a float32 step of the position, 1.2e-4
// rad, moved these logits less than float32 rounding does.)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cmath>
#include <string>
#include <vector>

#include "core/tokens.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/mesh.h"
#include "infer/decode.h"
#include "tests/cli_fixtures.h"
#include "tests/model_fixtures.h"
#include "tests/reference_forward_f64.h"
#include "tests/test_util.h"
#include "tests/training_fixtures.h"
#include "training/trainer.h"

using namespace iflame;
using namespace iflame::test;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<int32_t> row_tokens(const Tensor& tokens, int64_t b) {
  Tensor r = tokens.slice(0, b, b + 1).contiguous();
  return std::vector<int32_t>(r.data<int32_t>(), r.data<int32_t>() + r.numel());
}

// The logits a test compares: rows `positions` of an f32 [T_any, vocab] CPU tensor.
std::vector<double> rows_of(const Tensor& logits, const std::vector<int64_t>& positions) {
  const int64_t V = logits.size(-1);
  Tensor c = logits.reshape({-1, V}).contiguous();
  const float* p = c.data<float>();
  std::vector<double> out;
  for (int64_t t : positions)
    for (int64_t v = 0; v < V; v++) out.push_back(p[t * V + v]);
  return out;
}
std::vector<double> rows_of(const std::vector<double>& logits, int64_t V, const std::vector<int64_t>& positions) {
  std::vector<double> out;
  for (int64_t t : positions) out.insert(out.end(), logits.begin() + t * V, logits.begin() + (t + 1) * V);
  return out;
}

struct Spread {
  double max = 0, rms = 0;
};
Spread spread(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  Spread s;
  for (size_t i = 0; i < a.size(); i++) {
    const double d = std::fabs(a[i] - b[i]);
    s.max = std::max(s.max, d);
    s.rms += d * d;
  }
  s.rms = std::sqrt(s.rms / double(a.size()));
  return s;
}

// The float32 bound's yardstick at `positions`: the exact reference's logits
// there, and the spread of the noisy run around them.
struct Yardstick {
  std::vector<double> exact;
  Spread noise;
};
Yardstick yardstick(const ModelWeights& w, const std::vector<int32_t>& tokens, const std::vector<int64_t>& positions,
                    ReferenceOptions options = {}) {
  const int64_t V = w.config().vocab;
  Yardstick y;
  y.exact = rows_of(reference_logits_f64(w, tokens, options), V, positions);
  options.rounding_noise = true;
  y.noise = spread(rows_of(reference_logits_f64(w, tokens, options), V, positions), y.exact);
  return y;
}

// The check of the header comment; returns whether it held.
bool within_f32_bound(const std::string& what, const std::vector<double>& model, const Yardstick& y) {
  const Spread e = spread(model, y.exact);
  MESSAGE(what << ": max |f32 - f64| = " << e.max << " (bound 4 x " << y.noise.max << "), rms " << e.rms
               << " (bound 4 x " << y.noise.rms << ")");
  return e.max <= 4 * y.noise.max && e.rms <= 4 * y.noise.rms;
}

std::vector<int64_t> every_position(int64_t T) {
  std::vector<int64_t> p(T);
  for (int64_t t = 0; t < T; t++) p[t] = t;
  return p;
}

// Positions from `first` to T - 1, and every `stride`-th one before `first`.
std::vector<int64_t> tail_and_sample(int64_t T, int64_t first, int64_t stride) {
  std::vector<int64_t> p;
  for (int64_t t = 0; t < first; t += stride) p.push_back(t);
  for (int64_t t = first; t < T; t++) p.push_back(t);
  return p;
}

// The float32 model's logits of one sequence (B = 1) on its device, first T rows, on the CPU.
Tensor model_logits(const IFlame& model, const Tensor& tokens) {
  NoGrad no_grad;
  return model.forward(tokens, {}).value().to(Device::CPU).slice(1, 0, tokens.size(1)).contiguous();
}

// `model` on any device; the reference reads the same weights from `cpu_twin`
// (the model itself when it is on the CPU).
void check_model_at_length(const IFlame& model, int64_t T, uint64_t seed, const std::vector<int64_t>& positions,
                           const IFlame* cpu_twin = nullptr) {
  Tensor tokens = random_tokens(1, T, seed);
  const auto start = std::chrono::steady_clock::now();
  Tensor logits = model_logits(model, tokens);
  const double model_s = seconds_since(start);
  const Yardstick y = yardstick((cpu_twin ? *cpu_twin : model).weights(), row_tokens(tokens, 0), positions);
  CHECK(within_f32_bound(str(device_name(model.device()), " T=", T, " (", T % 9, " past a multiple of 9), ",
                             positions.size(), " positions; model ", model_s, " s, reference ", seconds_since(start) - model_s, " s"),
                         rows_of(logits, positions), y));
}

// A height field of nx x ny cells, two triangles a cell: 2 nx ny faces whose
// vertices all quantize apart (cells wider than one of the 128 token steps), so
// tokenization keeps every face.
Mesh grid_mesh(int nx, int ny) {
  Mesh m;
  for (int j = 0; j <= ny; j++)
    for (int i = 0; i <= nx; i++)
      m.vertices.push_back({float(i) / nx, float(j) / ny, 0.2f * std::sin(0.3f * i) * std::cos(0.2f * j)});
  auto at = [nx](int i, int j) { return j * (nx + 1) + i; };
  for (int j = 0; j < ny; j++)
    for (int i = 0; i < nx; i++) {
      m.faces.push_back({at(i, j), at(i + 1, j), at(i + 1, j + 1)});
      m.faces.push_back({at(i, j), at(i + 1, j + 1), at(i, j + 1)});
    }
  return m;
}

}  // namespace

// ---- data: the paper's Objaverse length, 4,000 faces = 9 x 4,002 = 36,018 tokens

TEST_CASE("long: a dataset of 4,000-face meshes loads, buckets and batches at 36,018 tokens") {
  struct GridSize {
    int nx, ny;
    const char* split;
  };
  // 4,000 and 3,960 faces (train), 1,000 (val), and 4,002: one row too long for --max-faces 4000.
  const GridSize shapes[] = {{50, 40, "train"}, {45, 44, "train"}, {25, 20, "val"}, {87, 23, "train"}};
  std::vector<DatasetEntry> entries;
  for (const GridSize& sh : shapes) {
    DatasetEntry e;
    e.name = str("grid", sh.nx, "x", sh.ny);
    e.category = "grid";
    e.split = sh.split;
    e.triangles = normalized_triangles(grid_mesh(sh.nx, sh.ny));
    entries.push_back(e);
  }
  const std::string path = "build/test_long_4k.npy";
  std::filesystem::create_directories("build");
  write_dataset(path, entries, 4002);
  MeshDataset ds(path, 4000);
  REQUIRE(ds.skipped().count("over_face_limit") == 1);
  CHECK(ds.skipped().at("over_face_limit") == 1);
  const std::vector<int64_t> train = ds.indices("train");
  REQUIRE(train.size() == 2);
  CHECK(ds.faces(train[0]) + ds.faces(train[1]) == 4000 + 3960);
  CHECK(ds.indices("val").size() == 1);

  LoaderOptions o;
  o.batch_size = 2;
  o.bucket_window = 2;
  o.seed = 5;
  Loader loader(ds, train, o);
  loader.start_epoch(0);
  Batch batch;
  REQUIRE(loader.next(batch));
  REQUIRE(batch.tokens.shape() == Shape{2, 36018});  // 9 x (4,000 faces + START + END)
  const int32_t* t = batch.tokens.data<int32_t>();
  for (int64_t r = 0; r < 2; r++) {
    const int64_t faces = ds.faces(batch.meshes[r]);
    const int32_t* row = t + r * 36018;
    const int64_t end_row = 9 * (faces + 1);  // augmentation may merge vertices, never add faces
    CHECK(row[0] == kStartToken);
    CHECK(row[8] == kStartToken);
    int64_t coordinates = 0, ends = 0, pads = 0;
    for (int64_t i = 9; i < 36018; i++) {
      coordinates += row[i] <= 128;
      ends += row[i] == kEndToken;
      pads += row[i] == kPadToken;
    }
    CHECK(ends == 9);
    CHECK(coordinates % 9 == 0);
    CHECK(coordinates <= 9 * faces);
    CHECK(coordinates + ends + pads == 36018 - 9);
    CHECK(row[9 + coordinates] == kEndToken);
    CHECK(9 + coordinates <= end_row);
  }
  CHECK_FALSE(loader.next(batch));

  // ./train's header names what a batch of the longest training mesh holds (the
  // 4,002-face mesh is skipped, so 4,000 faces: 2 x 36,018 tokens) and its memory.
  // The header's "memory" line for config c (the Trainer prints its header when made).
  auto memory_line = [](const TrainConfig& c) {
    const ProgramRun r = run_program_main(
        [&](int, char**) {
          Trainer t(c);
          return 0;
        },
        "train", {});
    REQUIRE(r.status == 0);
    const size_t at = r.out.find("memory    about ");
    REQUIRE(at != std::string::npos);
    return r.out.substr(at, r.out.find('\n', at) - at);
  };
  auto gib_of = [](const std::string& line) { return std::stod(line.substr(std::string("memory    about ").size())); };
  TrainConfig c = tiny_cpu_config(path, fresh_dir("build/test_long_4k_runs"), "mem", 1, 2, 5, 0);
  c.max_faces = 4000;
  c.quiet = false;  // the header is the point
  const std::string line = memory_line(c);
  MESSAGE(line);
  CHECK(contains(line, " GiB per step at 2 x 36018 tokens (the longest training mesh, 4000 faces; recompute "));
  CHECK(gib_of(line) > 0.0);
  // A batch of one more mesh never takes less.
  c.batch_size = 3;
  c.name = "mem3";  // a new run folder: the first run claimed "mem"
  CHECK(gib_of(memory_line(c)) > gib_of(line));
}

// T one short of a multiple of 9 (the last face's last token missing), 4 past
// one (a face begun), and a multiple: the hourglass's grouping at the end.
TEST_CASE("long: the float32 model equals the float64 reference within float32 rounding at every position (CPU, tiny width)") {
  auto model = random_model(64, 2, Device::CPU, 25);
  check_model_at_length(*model, 9 * 500 - 1, 1, every_position(9 * 500 - 1));
  check_model_at_length(*model, 9 * 470 + 4, 2, every_position(9 * 470 + 4));
  check_model_at_length(*model, 9 * 12, 3, every_position(9 * 12));
}

TEST_CASE("long: the float32 bound is tight enough to catch a decay rounded to bf16 (CPU)") {
  auto model = random_model(64, 2, Device::CPU, 25);
  const int64_t T = 9 * 100 - 1;
  Tensor tokens = random_tokens(1, T, 1);
  const std::vector<int64_t> positions = every_position(T);
  const Tensor logits = model_logits(*model, tokens);
  CHECK(within_f32_bound("against the reference", rows_of(logits, positions),
                         yardstick(model->weights(), row_tokens(tokens, 0), positions)));
  ReferenceOptions departing;
  departing.decay_in_bf16 = true;
  CHECK_FALSE(within_f32_bound("against a reference whose decay is rounded to bf16", rows_of(logits, positions),
                               yardstick(model->weights(), row_tokens(tokens, 0), positions, departing)));
}

// Cached decoding past 9,000 positions (one sequence, one thread: decoding's
// products are a few rows; tests/test_sample.cpp's SerialCpu says why) against
// the float64 reference at the last 400 positions and every 5th before: about
// 20 s of decoding and 15 s of reference on a 2-core machine.
TEST_CASE("long: cached decoding of 9,018 positions equals the float64 reference within float32 rounding (CPU, tiny width)") {
  const int64_t T = 9 * 1002;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto model = random_model(64, 2, Device::CPU, 26);
  Tensor tokens = random_tokens(1, T, 26);
  const auto start = std::chrono::steady_clock::now();
  Tensor cached = infer::full_cached_logits(*model, tokens);
  const double decode_s = seconds_since(start);
  omp_set_num_threads(threads);
  const std::vector<int64_t> positions = tail_and_sample(T, T - 400, 5);
  const Yardstick y = yardstick(model->weights(), row_tokens(tokens, 0), positions);
  CHECK(within_f32_bound(str("cached decoding T=", T, " (", decode_s, " s)"), rows_of(cached, positions), y));
}

// ---- GPU: the paper's long length, 9 x (4000 + 2) = 36,018 tokens

TEST_CASE("long: the float32 model on the GPU equals the float64 reference beyond position 30,000 (T = 36,018 and 36,016)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  auto model = random_model(64, 2, Device::CUDA, 27);
  auto twin = random_model(64, 2, Device::CPU, 27);  // the same weights (model_fixtures.h), for the reference
  for (int64_t T : {int64_t(36018), int64_t(36016)})
    check_model_at_length(*model, T, 10 + T, tail_and_sample(T, 30000, 97), twin.get());
}

TEST_CASE("long: cached decoding of 9,018 positions equals the full forward on the GPU (published width)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  auto model = random_model(512, 16, Device::CUDA, 28);
  const int64_t T = 9 * 1002;
  Tensor tokens = random_tokens(1, T, 5);
  const auto start = std::chrono::steady_clock::now();
  Tensor cached = infer::full_cached_logits(*model, tokens);
  const double decode_s = seconds_since(start);
  const double err = max_abs_diff(cached, model_logits(*model, tokens));
  MESSAGE("GPU d=512 T=" << T << ": max |cached - full| = " << err << " (decoding " << decode_s << " s)");
  CHECK(err <= 2e-4);  // the published-width bound of tests/test_sample.cpp's shorter parity test
}
