// test_sample.cpp: cached decoding (infer/decode.h) against the full forward and
// the reference's own cached logits, the cached attention step, the sampler,
// cleaning of sampled sequences, and the ./sample program run in-process.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/npy.h"
#include "core/random.h"
#include "data/mesh.h"
#include "infer/clean.h"
#include "infer/decode.h"
#include "infer/generate.h"
#include "infer/sample_cli.h"
#include "infer/sampler.h"
#include "nn/state.h"
#include "ops/cached_attention.h"
#include "ops/causal_attention.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;
using namespace iflame::infer;
using iflame::ops::cached_attention_step;

namespace {

// CPU decoding runs products of 1..4 rows; the CPU gemm opens an OpenMP region
// once m*k*n > 32768, and on a loaded 2-core machine those regions cost 10-30x
// the work they split (measured: 0.5 s serial vs 17 s with 2 threads). These
// tests run their CPU parts on one thread; the numbers do not depend on it.
struct SerialCpu {
  int previous = omp_get_max_threads();
  SerialCpu() { omp_set_num_threads(1); }
  ~SerialCpu() { omp_set_num_threads(previous); }
};

std::unique_ptr<IFlame> golden_tiny(Device device) { return load_model(golden("tiny_checkpoint.pth"), device); }

// The golden cached logits were made by the reference AFTER its optimizer step:
// they match its full forward with the weights of tiny_params_after_step.npy
// (bf16 Newton-Schulz, as published) to 3.5e-5, and differ from the checkpoint's
// logits by up to 4.3. So the cached test loads those weights
// (flat, in tiny_param_order.txt order: "name [shape] offset").
std::unique_ptr<IFlame> golden_tiny_after_step(Device device) {
  auto model = golden_tiny(device);
  Tensor flat = read_npy(golden("tiny_params_after_step.npy"));
  std::ifstream in(golden("tiny_param_order.txt"));
  REQUIRE(in.good());
  std::string line;
  int loaded = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const std::string name = line.substr(0, line.find(' '));
    const int64_t offset = std::stoll(line.substr(line.find(']') + 1));
    Variable p = model->parameters().find(name);
    REQUIRE_MESSAGE(p.defined(), name);
    Tensor& value = p.mutable_value();
    value.copy_from(flat.slice(0, offset, offset + value.numel()).reshape(value.shape()));
    loaded++;
  }
  CHECK(loaded == static_cast<int>(model->parameters().items().size()));
  return model;
}

// Full forward logits of the first T positions, on the CPU.
Tensor full_logits(const IFlame& model, const Tensor& tokens, ForwardContext ctx = {}) {
  NoGrad no_grad;
  Tensor all = model.forward(tokens, ctx).value().to(Device::CPU);
  return all.slice(1, 0, tokens.size(1)).contiguous();
}

void check_cached_vs_full(Device device, int dim, int heads, int64_t T, int64_t B, double tol) {
  auto model = random_model(dim, heads, device, 1000 + dim + T);
  Tensor tokens = random_tokens(B, T, 77 + T);
  Tensor cached = full_cached_logits(*model, tokens);
  double err = max_abs_diff(cached, full_logits(*model, tokens));
  MESSAGE(std::string(device_name(device)) << " d=" << dim << " heads=" << heads << " B=" << B << " T=" << T
                              << ": max |cached - full| = " << err);
  CHECK(err <= tol);
}

void check_golden_cached(Device device) {
  auto model = golden_tiny_after_step(device);
  Tensor input = read_npy(golden("tiny_input.npy"));
  Tensor reference_cached = read_npy(golden("tiny_cached_logits.npy"));
  Tensor cached = full_cached_logits(*model, input);
  REQUIRE(cached.shape() == reference_cached.shape());
  double vs_reference = max_abs_diff(cached, reference_cached);
  double vs_full = max_abs_diff(cached, full_logits(*model, input));
  MESSAGE(std::string(device_name(device)) << " f32: max |cached - reference cached| = " << vs_reference
                              << ", max |cached - our full forward| = " << vs_full);
  CHECK(vs_reference <= 1e-4);
  CHECK(vs_full <= 1e-4);
  // And at the checkpoint's own weights: cached against our full forward (the
  // issue's 1e-4), and against the reference's full-forward logits, which by the
  // triangle inequality may be off by that plus our full forward's own error
  // (golden test: <= 1e-4), so 2e-4.
  auto at_checkpoint_model = golden_tiny(device);
  Tensor at_checkpoint = full_cached_logits(*at_checkpoint_model, input);
  double vs_own_full = max_abs_diff(at_checkpoint, full_logits(*at_checkpoint_model, input));
  double vs_logits = max_abs_diff(at_checkpoint, read_npy(golden("tiny_logits.npy")));
  MESSAGE(std::string(device_name(device)) << " f32, checkpoint weights: max |cached - our full| = " << vs_own_full
                                           << ", max |cached - reference full forward| = " << vs_logits);
  CHECK(vs_own_full <= 1e-4);
  CHECK(vs_logits <= 2e-4);
}

std::vector<int32_t> row(std::initializer_list<int32_t> v) { return v; }
std::vector<int32_t> start_row() { return std::vector<int32_t>(kTokensPerFace, kStartToken); }
void append(std::vector<int32_t>& a, const std::vector<int32_t>& b) { a.insert(a.end(), b.begin(), b.end()); }

int run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "sample");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return sample_main(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

// ------------------------------------------------------------------ decoding

TEST_CASE("golden: cached decoding of the tiny model equals the reference's cached logits (CPU, f32)") {
  SerialCpu serial;
  check_golden_cached(Device::CPU);
}

TEST_CASE("golden: cached decoding of the tiny model equals the reference's cached logits (GPU, f32)" * needs_gpu()) {
  SerialCpu serial;
  SKIP_WITHOUT_GPU();
  check_golden_cached(Device::CUDA);
}

TEST_CASE("sample: cached decoding equals the full forward for other widths and lengths (CPU)") {
  SerialCpu serial;
  check_cached_vs_full(Device::CPU, 96, 3, 50, 2, 1e-4);
  check_cached_vs_full(Device::CPU, 64, 2, 100, 2, 1e-4);
  check_cached_vs_full(Device::CPU, 64, 2, 8, 2, 1e-4);  // shorter than one face: no coarse level runs
}

TEST_CASE("sample: cached decoding equals the full forward for other widths and lengths (GPU)" * needs_gpu()) {
  SerialCpu serial;
  SKIP_WITHOUT_GPU();
  check_cached_vs_full(Device::CUDA, 96, 3, 50, 3, 1e-4);
  check_cached_vs_full(Device::CUDA, 64, 2, 100, 2, 1e-4);
  check_cached_vs_full(Device::CUDA, 512, 16, 200, 2, 2e-4);  // the published width
}

TEST_CASE("sample: bf16 matmuls in cached decoding stay near the f32 full forward (GPU)" * needs_gpu()) {
  SerialCpu serial;
  SKIP_WITHOUT_GPU();
  auto model = golden_tiny(Device::CUDA);
  Tensor input = read_npy(golden("tiny_input.npy")).slice(1, 0, 120).contiguous();
  Tensor cached = full_cached_logits(*model, input, {DType::BF16});
  Tensor full_bf16 = full_logits(*model, input, {DType::BF16});
  Tensor full_f32 = full_logits(*model, input);
  double format_error = max_abs_diff(full_bf16, full_f32), err = max_abs_diff(cached, full_f32);
  MESSAGE("bf16: full forward vs f32 " << format_error << ", cached vs f32 " << err);
  CHECK(err <= 2.0 * format_error + 1e-3);
}

TEST_CASE("sample: the state holds one cache row per position of each level") {
  SerialCpu serial;
  auto model = random_model(64, 2, Device::CPU, 3);
  DecodeState st = begin(*model, 3, 100);
  CHECK(st.caches[0][3].k.shape() == Shape{3, 100, 2, 32});   // encoder_blocks.0.3, level 0
  CHECK(st.caches[1][3].k.shape() == Shape{3, 34, 2, 32});    // encoder_blocks.1.3, level 1
  CHECK(st.caches[2][3].k.shape() == Shape{3, 12, 2, 32});    // bottlenecke.3, level 2
  CHECK(st.caches[5][0].state.shape() == Shape{3, 2, 32, 32});
  CHECK(!st.caches[5][0].k.defined());
  Tensor tok = Tensor::from_ints({kStartToken, kStartToken, kStartToken}, {3});
  for (int i = 0; i < 100; i++) step(st, tok);
  CHECK_THROWS_WITH_AS(step(st, tok), doctest::Contains("all 100 positions"), Error);
}

TEST_CASE("sample: the cached attention step equals causal attention with one query") {
  SerialCpu serial;
  const int64_t B = 2, H = 3, D = 32, cap = 40, len = 27;
  Tensor kc = random_tensor({B, cap, H, D}, 1), vc = random_tensor({B, cap, H, D}, 2);
  Tensor q = random_tensor({B, H, D}, 3, -2.0f, 2.0f);
  const float scale = 1.0f / std::sqrt(32.0f);
  Tensor o = cached_attention_step(q, kc, vc, len, scale);
  Tensor want = ops::causal_attention_forward(q.view({B, 1, H, D}), kc.slice(1, 0, len).contiguous(),
                                              vc.slice(1, 0, len).contiguous(), scale, nullptr);
  CHECK(max_abs_diff(o, want) <= 1e-6);
  if (cuda_available()) {
    for (int64_t L : {int64_t(1), int64_t(27), int64_t(40)}) {
      Tensor og = cached_attention_step(q.to(Device::CUDA), kc.to(Device::CUDA), vc.to(Device::CUDA), L, scale);
      double err = max_abs_diff(og.to(Device::CPU), cached_attention_step(q, kc, vc, L, scale));
      MESSAGE("GPU cached attention, length " << L << ": max error " << err);
      CHECK(err <= 1e-5);
    }
    // A long cache (many rows per thread) in bf16 storage.
    Tensor kl = random_tensor({1, 3000, H, D}, 4), vl = random_tensor({1, 3000, H, D}, 5);
    Tensor ql = random_tensor({1, H, D}, 6, -3.0f, 3.0f);
    Tensor ref = cached_attention_step(ql, kl, vl, 2999, scale);
    Tensor g32 = cached_attention_step(ql.to(Device::CUDA), kl.to(Device::CUDA), vl.to(Device::CUDA), 2999, scale);
    CHECK(max_abs_diff(g32.to(Device::CPU), ref) <= 1e-5);
    Tensor g16 = cached_attention_step(ql.to(Device::CUDA).to(DType::BF16), kl.to(Device::CUDA).to(DType::BF16),
                                       vl.to(Device::CUDA).to(DType::BF16), 2999, scale);
    CHECK(max_abs_diff(g16.to(Device::CPU).to(DType::F32), ref) <= 3e-2);
  } else {
    MESSAGE("GPU part skipped (needs a GPU): " << cuda_unavailable_reason());
  }
}

// ------------------------------------------------------------------ sampling

TEST_CASE("sample: top-k = 1 (and temperature 0) is greedy argmax") {
  SerialCpu serial;
  std::vector<float> logits(kVocabSize);
  for (int i = 0; i < kVocabSize; i++) logits[i] = std::sin(1.7f * i);
  int argmax = 0;
  for (int i = 0; i < kVocabSize; i++)
    if (logits[i] > logits[argmax]) argmax = i;
  SamplingConfig greedy{1.0f, 1, 0.95f, 0};
  SamplingConfig cold{0.0f, 50, 0.95f, 0};
  for (float u : {0.0f, 0.3f, 0.999f}) {
    CHECK(sample_token(logits.data(), kVocabSize, greedy, u, {}) == argmax);
    CHECK(sample_token(logits.data(), kVocabSize, cold, u, {}) == argmax);
  }
  // Greedy generation: each sampled token is the argmax (PAD, START excluded) of the
  // full forward's logits at the position before it.
  auto model = golden_tiny(Device::CPU);
  GenerateConfig cfg;
  cfg.sampling = greedy;
  cfg.max_faces = 6;
  cfg.constrained = false;  // the raw model's argmax (the default masks the order's breaks)
  auto seqs = generate(*model, 2, {}, cfg, 0);
  for (const auto& s : seqs) {
    Tensor tokens = Tensor::from_ints(s.tokens, {1, int64_t(s.tokens.size())});
    std::vector<float> full = full_logits(*model, tokens).to_floats();
    for (size_t p = kTokensPerFace; p < s.tokens.size(); p++) {
      const float* l = full.data() + (p - 1) * kVocabSize;
      int best = -1;
      for (int t = 0; t < kVocabSize; t++)
        if (t != kPadToken && t != kStartToken && (best < 0 || l[t] > l[best])) best = t;
      CHECK(s.tokens[p] == best);
    }
  }
}

TEST_CASE("sample: top-k and top-p keep only the tokens they should") {
  SerialCpu serial;
  // Probabilities proportional to 2^-i over tokens 0..9, the rest impossible.
  std::vector<float> logits(kVocabSize, -1e30f);
  for (int i = 0; i < 10; i++) logits[i] = -std::log(2.0f) * i;
  std::vector<int> seen(kVocabSize, 0);
  for (int i = 0; i < 2000; i++) seen[sample_token(logits.data(), kVocabSize, {1.0f, 3, 1.0f, 0}, (i + 0.5f) / 2000, {})]++;
  CHECK(seen[0] + seen[1] + seen[2] == 2000);
  CHECK(std::abs(seen[0] - 2000 * 4 / 7) <= 2);  // renormalised over the top 3: 4/7, 2/7, 1/7
  // top-p 0.7 over (1/2, 1/4, 1/8, ...) keeps 0 and 1 (0.5 < 0.7, 0.75 >= 0.7).
  std::fill(seen.begin(), seen.end(), 0);
  for (int i = 0; i < 2000; i++) seen[sample_token(logits.data(), kVocabSize, {1.0f, 0, 0.7f, 0}, (i + 0.5f) / 2000, {})]++;
  CHECK(seen[0] + seen[1] == 2000);
  CHECK(std::abs(seen[0] - 2000 * 2 / 3) <= 2);
  // top-p applies after top-k: top-2 renormalised is (2/3, 1/3), top-p 0.6 keeps only token 0.
  for (float u : {0.1f, 0.9f}) CHECK(sample_token(logits.data(), kVocabSize, {1.0f, 2, 0.6f, 0}, u, {}) == 0);
  // Banned tokens are never drawn.
  for (float u : {0.0f, 0.5f, 0.99f}) CHECK(sample_token(logits.data(), kVocabSize, {1.0f, 1, 1.0f, 0}, u, {0}) == 1);
  // Temperature flattens: at T = 1e6 the top 3 are nearly uniform.
  std::fill(seen.begin(), seen.end(), 0);
  for (int i = 0; i < 3000; i++) seen[sample_token(logits.data(), kVocabSize, {1e6f, 3, 1.0f, 0}, (i + 0.5f) / 3000, {})]++;
  CHECK(std::abs(seen[2] - 1000) <= 3);
}

TEST_CASE("sample: a seed fixes every sample, and each sample's draws do not depend on the batch") {
  SerialCpu serial;
  auto model = golden_tiny(Device::CPU);
  GenerateConfig cfg;
  cfg.max_faces = 8;
  cfg.sampling.seed = 42;
  auto a = generate(*model, 3, {}, cfg, 0);
  auto b = generate(*model, 3, {}, cfg, 0);
  for (int i = 0; i < 3; i++) CHECK(a[i].tokens == b[i].tokens);
  CHECK(a[0].tokens != a[1].tokens);
  cfg.sampling.seed = 43;
  auto c = generate(*model, 3, {}, cfg, 0);
  CHECK(a[0].tokens != c[0].tokens);
  // Draws are keyed by (seed, position, sample id): the same numbers for sample 2
  // alone as in a batch (logits may differ in the last bits across batch sizes,
  // so compare the draws, not the tokens).
  CHECK(sampling_uniform(42, 17, 2) == sampling_uniform(42, 17, 2));
  CHECK(sampling_uniform(42, 17, 2) != sampling_uniform(42, 17, 1));
}

TEST_CASE("sample: generation stops at END or at the face limit, and continues a prompt") {
  SerialCpu serial;
  auto model = golden_tiny(Device::CPU);
  GenerateConfig cfg;
  cfg.max_faces = 5;
  GenerateStats stats;
  auto seqs = generate(*model, 4, {}, cfg, 0, &stats);
  for (const auto& s : seqs) {
    if (s.ended) {
      CHECK(s.tokens.back() == kEndToken);
    } else {
      CHECK(s.tokens.size() == size_t(kTokensPerFace) * 6);
    }
    for (size_t i = kTokensPerFace; i + 1 < s.tokens.size(); i++) CHECK(s.tokens[i] <= 128);
  }
  CHECK(stats.steps <= kTokensPerFace * 6);
  // The tatami's first 3 faces as a prompt: every sample starts with them.
  Tensor tatami = read_npy(golden("tokens_tatami.npy"));
  std::vector<int32_t> all = tatami.to_ints();
  std::vector<int32_t> prompt(all.begin(), all.begin() + 4 * kTokensPerFace);
  auto cont = generate(*model, 2, prompt, cfg, 0);
  for (const auto& s : cont) {
    REQUIRE(s.tokens.size() >= prompt.size());
    CHECK(std::equal(prompt.begin(), prompt.end(), s.tokens.begin()));
  }
  cfg.max_faces = 2;
  CHECK_THROWS_WITH_AS(generate(*model, 1, prompt, cfg, 0), doctest::Contains("more than --max-faces"), Error);
  CHECK_THROWS_AS(generate(*model, 1, {1, 2, 3}, cfg, 0), Error);
}

// ------------------------------------------------------------------ cleaning

TEST_CASE("sample: cleaning drops an incomplete last row, degenerate, duplicate and invalid faces") {
  SerialCpu serial;
  const auto f1 = row({1, 2, 3, 4, 5, 6, 7, 8, 9});
  const auto f2 = row({10, 11, 12, 13, 14, 15, 16, 17, 18});
  const auto f1_rotated = row({4, 5, 6, 7, 8, 9, 1, 2, 3});
  const auto degenerate = row({1, 2, 3, 1, 2, 3, 7, 8, 9});
  const auto invalid = row({1, 2, 3, 4, 129, 6, 7, 8, 9});

  std::vector<int32_t> complete = start_row();
  append(complete, f1);
  append(complete, f2);
  complete.push_back(kEndToken);
  CleanedSample c = clean_sample(complete);
  CHECK(c.status == SampleStatus::Complete);
  CHECK(c.faces == 2);
  CHECK(c.tokens.size() == 4u * kTokensPerFace);
  CHECK(c.tokens.back() == kEndToken);

  std::vector<int32_t> messy = start_row();
  for (const auto& r : {f1, degenerate, f2, f1_rotated, invalid}) append(messy, r);
  append(messy, row({5, 6, 7, 8}));  // then END mid-row
  messy.push_back(kEndToken);
  append(messy, f2);  // after END: ignored
  c = clean_sample(messy);
  CHECK(c.status == SampleStatus::Cleaned);
  CHECK(c.faces == 2);
  CHECK(c.dropped_degenerate == 1);
  CHECK(c.dropped_duplicate == 1);
  CHECK(c.dropped_invalid == 1);
  CHECK(c.dropped_incomplete == 4);
  std::vector<int32_t> want = start_row();
  append(want, f1);
  append(want, f2);
  want.insert(want.end(), kTokensPerFace, kEndToken);
  CHECK(c.tokens == want);

  std::vector<int32_t> truncated = start_row();
  append(truncated, f1);
  CHECK(clean_sample(truncated).status == SampleStatus::Truncated);
  std::vector<int32_t> empty = start_row();
  empty.push_back(kEndToken);
  CHECK(clean_sample(empty).status == SampleStatus::Empty);
  append(empty, f1);
  CHECK(clean_sample(empty).faces == 0);
}

TEST_CASE("sample: a prompt mesh is tokenized canonically without its END row") {
  SerialCpu serial;
  std::vector<int32_t> want = read_npy(golden("tokens_tatami.npy")).to_ints();
  want.resize(want.size() - kTokensPerFace);
  CHECK(prompt_tokens_from_mesh(golden("meshes/tatami.obj")) == want);
}

// ------------------------------------------------------------------ the program

TEST_CASE("sample: ./sample on the tiny golden checkpoint writes valid OBJ files") {
  SerialCpu serial;
  const std::string out = "build/test_sample_out";
  std::filesystem::remove_all(out);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "-n", "3", "--batch", "2", "--max-faces", "12",
                 "--seed", "5", "--out", out, "--device", "cpu"}) == 0);
  for (int i = 0; i < 3; i++) {
    char name[64];
    std::snprintf(name, sizeof name, "/sample_%04d.obj", i);
    REQUIRE(std::filesystem::exists(out + name));
    Mesh m = read_obj(out + name);
    check_mesh_indices(m, name);
    CHECK(m.faces.size() <= 12);
    for (const auto& v : m.vertices)
      for (float c : v) CHECK(std::fabs(c) <= 0.5f);
  }
  // Continuing a prompt, PLY output, into the same folder (--overwrite clears the first run's samples).
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--max-faces", "32", "--prompt",
                 golden("meshes/tatami.obj"), "--out", out, "--format", "ply", "--device", "cpu", "--overwrite"}) == 0);
  CHECK_FALSE(std::filesystem::exists(out + "/sample_0001.obj"));
  Mesh cont = read_ply(out + "/sample_0000.ply");
  CHECK(cont.faces.size() >= 20);  // the prompt's 28 faces, minus any the cleaner drops (none expected)
  CHECK(run_cli({"--help"}) == 0);
}

TEST_CASE("sample: ./sample names bad input and exits non-zero") {
  SerialCpu serial;
  CHECK(run_cli({"--ckpt", "build/no_such_checkpoint.pth", "--device", "cpu"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--top-p", "1.5"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--top-k", "many"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--format", "stl"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--bogus"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--device", "cpu", "--out", "/proc/no/such/dir"}) != 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "--device", "cpu", "--max-faces", "5", "--prompt",
                 golden("meshes/tatami.obj"), "--out", "build/test_sample_out"}) != 0);
  CHECK(run_cli({}) != 0);
}
