// test_persistent_decode.cpp: the persistent decoding step (ops/persistent_decode.h)
// against the layered cached decoder (infer/decode.h), its reference, position
// by position over whole sequences; and which step DecodeStep::Auto picks.
//
// The tolerance. Both paths run bf16 products on the same bf16 weights and
// round at the same points (each product's input to bf16, softmax q/k/v and its
// output to bf16); they differ only in the order of some f32 sums (softmax
// attention split over other blocks, its merge), i.e. by a few f32 ulps, which
// now and then tips a bf16 rounding the other way. Such flips are a subset of
// the roundings the bf16 path makes everywhere, so the persistent step must stay
// at least as close to the layered bf16 step as that step is to the same
// decoder in f32: max |persistent - layered bf16| <= max |layered bf16 - layered
// f32|, over every position, row and logit. A wrong slot, position, split or
// fused norm moves logits by far more (order 1). For sampling, the greedy
// choices must agree at every position until the first one whose top two
// logits (layered bf16) are within twice the bf16 deviation of that position:
// where the argmax order is within rounding, either choice is right.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/npy.h"
#include "core/random.h"
#include "infer/decode.h"
#include "nn/model_weights.h"
#include "nn/state.h"
#include "infer/sample_cli.h"
#include "tests/cli_fixtures.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;
using namespace iflame::infer;

namespace {

// max_abs_diff (fmax) passes over NaN: the persistent logits are checked for it on their own.
bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

// Logits f32 [B, T, V] on the CPU of every position of tokens (i32 [B, T]).
Tensor logits_of(const ModelWeights& model, const Tensor& tokens, DType matmul, DecodeStep path) {
  const int64_t B = tokens.size(0), T = tokens.size(1), V = model.config().vocab;
  DecodeState st = begin(model, B, T, ForwardContext{matmul}, path);
  if (path == DecodeStep::Persistent) {
    REQUIRE(st.persistent != nullptr);
    MESSAGE("persistent step: " << st.persistent->blocks() << " blocks of 256 threads per launch");
  }
  Tensor out = Tensor::empty({B, T, V}, DType::F32, Device::CPU);
  for (int64_t t = 0; t < T; t++) {
    const Tensor column = tokens.select(1, t).contiguous().to(model.device());
    out.select(1, t).copy_from(step(st, column).to(Device::CPU));
  }
  return out;
}

// B rows of T tokens: the golden input's two rows first (where given), then rows of random_tokens.
Tensor batch_tokens(int64_t B, int64_t T, const Tensor& first_rows, uint64_t seed) {
  Tensor rows = random_tokens(B, T, seed);
  const int64_t given = first_rows.defined() ? std::min(B, first_rows.size(0)) : 0;
  for (int64_t b = 0; b < given; b++) rows.select(0, b).copy_from(first_rows.select(0, b).slice(0, 0, T).contiguous());
  return rows;
}

// The teacher-forced comparison of the file comment, for one model and batch.
void check_logits(const ModelWeights& model, const Tensor& tokens, const std::string& what) {
  const Tensor persistent = logits_of(model, tokens, DType::BF16, DecodeStep::Persistent);
  const Tensor layered = logits_of(model, tokens, DType::BF16, DecodeStep::Layered);
  const Tensor f32 = logits_of(model, tokens, DType::F32, DecodeStep::Layered);
  const double err = max_abs_diff(persistent, layered), bf16_err = max_abs_diff(layered, f32);
  MESSAGE(what << ", batch " << tokens.size(0) << ", " << tokens.size(1) << " positions: max |persistent - layered bf16| = "
               << err << ", max |layered bf16 - layered f32| = " << bf16_err);
  CHECK(all_finite(persistent.to_floats()));
  CHECK(all_finite(layered.to_floats()));
  CHECK(err <= bf16_err);
}

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}
float second_largest(const float* v, int n, int best) {
  float s = -INFINITY;
  for (int i = 0; i < n; i++)
    if (i != best && v[i] > s) s = v[i];
  return s;
}

// Greedy decoding with each path fed its own choices (as a sampler with
// temperature 0 runs), B rows of T positions: see the file comment.
void check_greedy(const ModelWeights& model, int64_t B, int64_t T, const std::string& what) {
  const int V = model.config().vocab;
  DecodeState layered = begin(model, B, T, ForwardContext{DType::BF16}, DecodeStep::Layered);
  DecodeState persistent = begin(model, B, T, ForwardContext{DType::BF16}, DecodeStep::Persistent);
  DecodeState f32 = begin(model, B, T, ForwardContext{DType::F32}, DecodeStep::Layered);  // fed the layered choices
  REQUIRE(persistent.persistent != nullptr);
  std::vector<int32_t> tok_l(B, kStartToken), tok_p(B, kStartToken);
  std::vector<int64_t> agreed(B, T);  // positions each row agreed on before its first tie within rounding
  for (int64_t t = 0; t < T; t++) {
    const std::vector<float> l = step(layered, Tensor::from_ints(tok_l, {B})).to_floats();
    const std::vector<float> p = step(persistent, Tensor::from_ints(tok_p, {B})).to_floats();
    REQUIRE(all_finite(p));
    const std::vector<float> f = step(f32, Tensor::from_ints(tok_l, {B})).to_floats();
    for (int64_t b = 0; b < B; b++) {
      const float* lb = l.data() + b * V;
      const float* pb = p.data() + b * V;
      const int al = argmax(lb, V), ap = argmax(pb, V);
      if (agreed[b] == T) {
        double bf16_err = 0;
        for (int i = 0; i < V; i++) bf16_err = std::max(bf16_err, double(std::fabs(lb[i] - f[b * V + i])));
        const bool tie = lb[al] - second_largest(lb, V, al) <= 2.0 * bf16_err;
        if (tie) {
          agreed[b] = t;
        } else {
          CAPTURE(t);
          CAPTURE(b);
          CHECK(al == ap);
          if (al != ap) agreed[b] = t;  // the histories part here: nothing later compares
        }
      }
      tok_l[b] = t + 1 < kTokensPerFace ? kStartToken : al;
      tok_p[b] = t + 1 < kTokensPerFace ? kStartToken : ap;
    }
  }
  std::string agreed_text;
  for (int64_t b = 0; b < B; b++) agreed_text += (b ? ", " : "") + std::to_string(agreed[b]);
  MESSAGE(what << ", batch " << B << ": greedy choices compared over the first " << agreed_text << " of " << T
               << " positions per row (up to the first tie within rounding)");
}

ModelWeights published_size_model(uint64_t seed) {
  Generator gen(seed);
  return init_model_weights(IFlameConfig::preset("shapenet"), Device::CUDA, gen);
}

}  // namespace

TEST_CASE("persistent decoding: Auto falls back to the layered step where the persistent one cannot run (CPU)") {
  auto model = random_model(64, 2, Device::CPU, 5);
  DecodeState st = begin(*model, 2, 20, ForwardContext{DType::BF16}, DecodeStep::Auto);
  CHECK(st.persistent == nullptr);
  CHECK(std::string(st.step_path()) == "layered");
  CHECK(st.persistent_problem == "it needs a GPU");
  CHECK_THROWS_WITH_AS(begin(*model, 2, 20, ForwardContext{DType::BF16}, DecodeStep::Persistent),
                       doctest::Contains("the persistent step cannot run here: it needs a GPU"), Error);
  CHECK(std::string(decode_step_name(DecodeStep::Auto)) == "auto");
}

TEST_CASE("persistent decoding: ./sample --bench says which step it runs; --decode-step persistent without a GPU is refused") {
  auto sample = [](const std::vector<std::string>& args) { return run_program_main(sample_main, "sample", args); };
  ProgramRun r = sample({"--bench", "--model", "tiny", "--tokens", "14", "--device", "cpu"});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("bench: decode step layered (--decode-step layered)\n") != std::string::npos);  // the default
  r = sample({"--bench", "--model", "tiny", "--tokens", "14", "--device", "cpu", "--decode-step", "auto"});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("bench: decode step layered (--decode-step auto; the persistent step cannot run: it needs a GPU)") !=
        std::string::npos);
  r = sample({"--bench", "--model", "tiny", "--tokens", "14", "--device", "cpu", "--decode-step", "persistent"});
  CHECK(r.status != 0);
  CHECK(r.err == "sample: error: decode: the persistent step cannot run here: it needs a GPU\n");
  r = sample({"--bench", "--decode-step", "fast"});
  CHECK(r.status != 0);
  CHECK(r.err.find("--decode-step") != std::string::npos);
}

TEST_CASE("persistent decoding: Auto picks it for batch <= 8 with bf16 products, not above or in f32" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  auto model = random_model(64, 2, Device::CUDA, 6);
  for (const int64_t B : {1, 8}) {
    DecodeState st = begin(*model, B, 20, ForwardContext{DType::BF16}, DecodeStep::Auto);
    CHECK(std::string(st.step_path()) == "persistent");
  }
  DecodeState nine = begin(*model, 9, 20, ForwardContext{DType::BF16}, DecodeStep::Auto);
  CHECK(std::string(nine.step_path()) == "layered");
  CHECK(nine.persistent_problem.find("batch 9") != std::string::npos);
  DecodeState f32 = begin(*model, 2, 20, ForwardContext{DType::F32}, DecodeStep::Auto);
  CHECK(std::string(f32.step_path()) == "layered");
  CHECK(f32.persistent_problem.find("bf16") != std::string::npos);
}

TEST_CASE("persistent decoding: logits of the tiny golden model equal the layered step's within bf16 rounding" *
          needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const ModelWeights model = load_model_weights(golden("tiny_checkpoint.pth"), Device::CUDA);
  const Tensor input = read_npy(golden("tiny_input.npy"));  // [2, 360]: tatami, pallet
  for (const int64_t B : {1, 2, 3, 8}) {
    CAPTURE(B);
    check_logits(model, batch_tokens(B, input.size(1), input, 40 + B), "tiny golden model");
  }
}

TEST_CASE("persistent decoding: logits of a published-size model equal the layered step's within bf16 rounding" *
          needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const ModelWeights model = published_size_model(20);
  const int64_t T = 300;  // 33 bottleneck positions, 100 of level 1
  for (const int64_t B : {1, 2, 3, 8}) {
    CAPTURE(B);
    check_logits(model, batch_tokens(B, T, Tensor(), 50 + B), "published size (shapenet preset), random weights");
  }
}

TEST_CASE("persistent decoding: greedy choices equal the layered step's until a tie within rounding" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const ModelWeights tiny = load_model_weights(golden("tiny_checkpoint.pth"), Device::CUDA);
  check_greedy(tiny, 2, 200, "tiny golden model");
  const ModelWeights published = published_size_model(21);
  for (const int64_t B : {1, 3, 8}) check_greedy(published, B, 200, "published size, random weights");
}

TEST_CASE("persistent decoding: continuous batching restarts rows as the layered step does" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // Rows 0 and 2 start over at step 18 (0 mod 9, as decode.h requires) while
  // row 1 goes on; the tolerance is the teacher-forced one (file comment).
  auto model = random_model(64, 2, Device::CUDA, 7);
  const int64_t B = 3, T = 45;
  const Tensor tokens = random_tokens(B, T, 8);
  const DecodeStep paths[3] = {DecodeStep::Persistent, DecodeStep::Layered, DecodeStep::Layered};
  const DType matmuls[3] = {DType::BF16, DType::BF16, DType::F32};
  std::vector<float> logits[3];
  for (int k = 0; k < 3; k++) {
    DecodeState st = begin(*model, B, T, ForwardContext{matmuls[k]}, paths[k]);
    REQUIRE((st.persistent != nullptr) == (k == 0));
    st.row_resets = Tensor::zeros({B}, DType::I32, Device::CUDA);
    for (int64_t t = 0; t < T; t++) {
      const int32_t restart = t == 18 ? 1 : 0;
      st.row_resets.copy_from(Tensor::from_ints({restart, 0, restart}, {B}));
      const std::vector<float> l = step(st, tokens.select(1, t).contiguous().to(Device::CUDA)).to_floats();
      logits[k].insert(logits[k].end(), l.begin(), l.end());
    }
  }
  const double err = max_abs_diff(logits[0], logits[1]), bf16_err = max_abs_diff(logits[1], logits[2]);
  MESSAGE("continuous batching, batch 3: max |persistent - layered bf16| = " << err
                                                                          << ", max |layered bf16 - f32| = " << bf16_err);
  CHECK(all_finite(logits[0]));
  CHECK(err <= bf16_err);
}
