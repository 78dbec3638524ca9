// test_recompute.cpp: block recomputation (autograd/recompute.h) gives exactly
// the gradients, loss and optimizer step of the plain tape, holds less, and the
// memory model (training/memory_model.h) agrees with what the tape holds.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>

#include "autograd/recompute.h"
#include "core/allocator.h"
#include "core/philox.h"
#include "nn/iflame.h"
#include "tests/test_util.h"
#include "training/benchmark.h"
#include "training/memory_model.h"
#include "training/optimizer.h"
#include "training/train_config.h"

using namespace iflame;
using namespace iflame::test;

namespace {

ForwardContext context_with(DType matmul, Recompute recompute, int ffn_blocks = -1) {
  ForwardContext ctx;
  ctx.matmul = matmul;
  ctx.recompute = recompute;
  ctx.ffn_recompute_blocks = ffn_blocks;
  return ctx;
}

// A START row, then coordinates and a few PAD targets: B sequences of T tokens.
Tensor random_tokens(int64_t B, int64_t T, uint64_t seed) {
  Tensor t = Tensor::empty({B, T}, DType::I32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < B * T; i++) {
    const int64_t pos = i % T;
    const uint32_t r = philox_draw(seed, 0, static_cast<uint64_t>(i)).v[0];
    p[i] = pos < kTokensPerFace ? kStartToken : pos > T - 5 ? kPadToken : static_cast<int32_t>(r % kNumCoordinateTokens);
  }
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  auto x = a.to_floats(), y = b.to_floats();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

std::unique_ptr<IFlame> make_model(const std::string& preset, Device device, uint64_t seed) {
  auto m = std::make_unique<IFlame>(IFlameConfig::preset(preset), device);
  Generator gen(seed);
  m->init(gen);
  return m;
}

// Loss, every gradient and one Muon + AdamW step with and without recomputation,
// on two copies of one model: both losses, whether every gradient and every
// updated parameter is bit-identical, and the worst relative L2 differences.
struct Parity {
  float loss_none = 0, loss_blocks = 0;
  double worst_grad = 0, worst_param = 0;
  bool grads_bitwise = true, params_bitwise = true;
};

Parity parity(const std::string& preset, Device device, DType matmul, int64_t B, int64_t T,
              Recompute mode = Recompute::Blocks, int ffn_blocks = -1) {
  const Tensor tokens = random_tokens(B, T, 7);
  auto none = make_model(preset, device, 5), blocks = make_model(preset, device, 5);
  MuonAdamW opt_none(none->parameters(), OptimizerConfig{}), opt_blocks(blocks->parameters(), OptimizerConfig{});
  Parity p;
  IFlame::LossOutput a = none->loss(tokens, context_with(matmul, Recompute::None));
  tape().backward(a.loss);
  IFlame::LossOutput b = blocks->loss(tokens, context_with(matmul, mode, ffn_blocks));
  tape().backward(b.loss);
  p.loss_none = a.loss.value().item();
  p.loss_blocks = b.loss.value().item();
  auto& pa = none->parameters().items();
  auto& pb = blocks->parameters().items();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); i++) {
    REQUIRE_MESSAGE(pb[i].second.grad().defined(), "no gradient reached " << pb[i].first);
    p.grads_bitwise = p.grads_bitwise && same_bits(pa[i].second.grad(), pb[i].second.grad());
    p.worst_grad = std::max(p.worst_grad, rel_l2(pb[i].second.grad(), pa[i].second.grad()));
  }
  opt_none.step(1e-3f);
  opt_blocks.step(1e-3f);
  for (size_t i = 0; i < pa.size(); i++) {
    p.params_bitwise = p.params_bitwise && same_bits(pa[i].second.value(), pb[i].second.value());
    p.worst_param = std::max(p.worst_param, rel_l2(pb[i].second.value(), pa[i].second.value()));
  }
  return p;
}

// Host bytes that stay allocated across a training forward: what the tape
// saved (plus the loss outputs, which the tape saves too).
size_t bytes_held_after_forward(const IFlame& model, const Tensor& tokens, Recompute recompute, size_t* tape_steps,
                                int ffn_blocks = -1) {
  tape().clear();
  const size_t before = host_memory_stats().in_use;
  IFlame::LossOutput out = model.loss(tokens, context_with(DType::F32, recompute, ffn_blocks));
  const size_t held = host_memory_stats().in_use - before;
  if (tape_steps) *tape_steps = tape().size();
  tape().clear();
  return held;
}

}  // namespace

TEST_CASE("autograd: a recomputed function gives the plain tape's gradients, and nests") {
  Tensor xv = random_tensor({6, 8}, 21), w1v = random_tensor({12, 8}, 22), w2v = random_tensor({8, 12}, 23);
  Tensor targets = Tensor::from_ints({0, 3, -1, 7, 2, 5}, {6});
  Variable w1(w1v, true), w2(w2v, true), b2(random_tensor({8}, 24), true);
  auto body = [&](const Variable& in) {  // a residual MLP, like half a block
    Variable h = ag::linear(in, w1, Variable(), DType::F32);
    return ag::add(in, ag::linear(ag::swiglu(h, h), w2, b2, DType::F32));
  };
  auto run = [&](int mode) {  // 0 plain, 1 recomputed, 2 recomputed inside a recomputed function
    for (Variable* p : {&w1, &w2, &b2}) p->zero_grad();
    Variable x(xv, true);
    Variable y;
    if (mode == 0) y = body(body(x));
    if (mode == 1) y = ag::recomputed(ag::recomputed(x, body), body);
    if (mode == 2)
      y = ag::recomputed(x, [&](const Variable& in) { return ag::recomputed(body(in), body); });
    Variable loss = ag::cross_entropy(y, targets, -1).loss;
    const size_t steps = tape().size();
    tape().backward(loss);
    return std::make_tuple(loss.value().item(), x.grad().clone(), w1.grad().clone(), w2.grad().clone(),
                           b2.grad().clone(), steps);
  };
  auto plain = run(0), once = run(1), nested = run(2);
  CHECK(std::get<5>(plain) == 9);   // 2 x (linear, swiglu, linear, add) + cross-entropy
  CHECK(std::get<5>(once) == 3);    // two recomputed steps + cross-entropy
  CHECK(std::get<5>(nested) == 2);  // one recomputed step + cross-entropy
  for (auto* other : {&once, &nested}) {
    CHECK(std::get<0>(*other) == std::get<0>(plain));
    CHECK(same_bits(std::get<1>(*other), std::get<1>(plain)));
    CHECK(same_bits(std::get<2>(*other), std::get<2>(plain)));
    CHECK(same_bits(std::get<3>(*other), std::get<3>(plain)));
    CHECK(same_bits(std::get<4>(*other), std::get<4>(plain)));
  }
  {  // under NoGrad it is the function itself: nothing recorded
    NoGrad no_grad;
    Variable x(xv, true);
    Variable y = ag::recomputed(x, body);
    CHECK(tape().size() == 0);
    CHECK(same_bits(y.value(), body(x).value()));
  }
  CHECK(tape().recording());  // the sub-tapes handed tape() back
}

TEST_CASE("train: --recompute blocks gives the same loss, gradients and optimizer step (tiny and small, CPU)") {
  struct Case {
    const char* preset;
    int64_t B, T;
  };
  // T not a multiple of 9: the padding path too.
  for (Case c : {Case{"tiny", 2, 178}, Case{"small", 1, 97}}) {
    Parity p = parity(c.preset, Device::CPU, DType::F32, c.B, c.T);
    MESSAGE(std::string(c.preset) << ": loss " << p.loss_none << " (none) vs " << p.loss_blocks << " (blocks); worst gradient rel L2 "
                     << p.worst_grad << ", worst parameter after one step " << p.worst_param);
    CHECK(p.loss_none == p.loss_blocks);
    CHECK(p.grads_bitwise);   // the same ops on the same values in the same order
    CHECK(p.params_bitwise);
  }
}

TEST_CASE("train: --recompute ffn gives the same loss, gradients and optimizer step (tiny, CPU)") {
  // The tiny model only: the mechanism is the blocks test's, and a small-model
  // Muon step costs ~40 s on a CPU.
  for (const char* preset : {"tiny"}) {
    Parity p = parity(preset, Device::CPU, DType::F32, 1, 97, Recompute::Ffn);
    MESSAGE(std::string(preset) << ": loss " << p.loss_none << " (none) vs " << p.loss_blocks << " (ffn)");
    CHECK(p.loss_none == p.loss_blocks);
    CHECK(p.grads_bitwise);
    CHECK(p.params_bitwise);
  }
}

TEST_CASE("train: --recompute ffn:K rebuilds the K longest blocks' feed-forwards and changes no number (tiny, CPU)") {
  // The order: encoder_blocks.0, decoder_blocks.1 (full length), then the T/3
  // stages, then the bottleneck's two.
  const int per = 4;
  CHECK(IFlame::ffn_recompute_rank(0, 0, per) == 0);
  CHECK(IFlame::ffn_recompute_rank(0, 3, per) == 3);
  CHECK(IFlame::ffn_recompute_rank(5, 0, per) == 4);
  CHECK(IFlame::ffn_recompute_rank(1, 0, per) == 8);
  CHECK(IFlame::ffn_recompute_rank(4, 3, per) == 15);
  CHECK(IFlame::ffn_recompute_rank(2, 0, per) == 16);
  CHECK(IFlame::ffn_recompute_rank(3, 3, per) == 23);
  std::vector<int> ranks;
  for (int s = 0; s < IFlame::kStages; s++)
    for (int i = 0; i < per; i++) ranks.push_back(IFlame::ffn_recompute_rank(s, i, per));
  std::sort(ranks.begin(), ranks.end());
  for (int r = 0; r < 24; r++) CHECK(ranks[r] == r);  // a permutation of the 24 blocks

  int k = 7;
  CHECK(parse_recompute("ffn:3", &k) == Recompute::Ffn);
  CHECK(k == 3);
  CHECK(parse_recompute("ffn", &k) == Recompute::Ffn);
  CHECK(k == -1);
  CHECK(recompute_label(Recompute::Ffn, 5) == "ffn:5");
  CHECK(recompute_label(Recompute::Ffn, -1) == "ffn");
  for (const char* bad : {"ffn:", "ffn:-1", "ffn:2x", "ffn:x"})
    CHECK(contains(error_of([&] { parse_recompute(bad); }), "ffn:K"));

  // Bit-identical to none, as ffn is.
  Parity p = parity("tiny", Device::CPU, DType::F32, 1, 97, Recompute::Ffn, 3);
  CHECK(p.loss_none == p.loss_blocks);
  CHECK(p.grads_bitwise);
  CHECK(p.params_bitwise);

  // The tape holds what the memory model says, and K moves it from ffn to none.
  const int64_t B = 2, T = 178;
  const Tensor tokens = random_tokens(B, T, 3);
  const IFlameConfig tiny = IFlameConfig::preset("tiny");
  auto model = make_model("tiny", Device::CPU, 5);
  double previous = 0;
  for (int blocks : {0, 1, 5, 12, 24}) {
    CAPTURE(blocks);
    ForwardContext ctx = context_with(DType::F32, Recompute::Ffn, blocks);
    const MemoryEstimate e = estimate_training_memory(tiny, B, T, ctx);
    const double held = double(bytes_held_after_forward(*model, tokens, Recompute::Ffn, nullptr, blocks));
    CHECK(std::fabs(held - e.saved_bytes) <= 1e-3 * e.saved_bytes);
    if (blocks > 0) CHECK(held < previous);  // every further block keeps less
    previous = held;
  }
  CHECK(estimate_training_memory(tiny, B, T, context_with(DType::F32, Recompute::Ffn, 0)).total() ==
        estimate_training_memory(tiny, B, T, context_with(DType::F32, Recompute::None)).total());
  CHECK(estimate_training_memory(tiny, B, T, context_with(DType::F32, Recompute::Ffn, 24)).total() ==
        estimate_training_memory(tiny, B, T, context_with(DType::F32, Recompute::Ffn)).total());
  // From the command line: the count reaches the forward context.
  TrainConfig c;
  c.recompute = "ffn:2";
  CHECK(c.resolved_recompute(Device::CUDA, IFlameConfig::preset("shapenet")) == Recompute::Ffn);
  CHECK(c.forward_context(Device::CUDA).ffn_recompute_blocks == 2);
}

TEST_CASE("train: --recompute blocks matches none on the GPU (tiny model, f32)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // Not bit-identical on the GPU: the rms_norm and embedding weight gradients
  // are summed with float atomics in an unrepeatable order.
  Parity p = parity("tiny", Device::CUDA, DType::F32, 2, 360);
  MESSAGE("GPU f32: loss " << p.loss_none << " vs " << p.loss_blocks << "; worst gradient rel L2 " << p.worst_grad
                           << ", worst parameter after one step " << p.worst_param);
  CHECK(p.loss_blocks == doctest::Approx(p.loss_none).epsilon(1e-6));
  CHECK(p.worst_grad <= 1e-6);
  CHECK(p.worst_param <= 1e-6);
}

TEST_CASE("train: the memory model's saved bytes match what the tape holds (tiny model, CPU)") {
  for (const char* preset : {"tiny", "small", "shapenet"}) {  // parameters as IFlame registers them
    IFlame m(IFlameConfig::preset(preset), Device::CPU);
    MemoryEstimate e = estimate_training_memory(m.config(), 1, 9, DType::F32, Recompute::None);
    CHECK(e.parameters == m.parameters().count());
    if (std::string(preset) == "tiny") {
      MuonAdamW opt(m.parameters(), OptimizerConfig{});
      double state = 0;
      for (auto& s : opt.slots())
        for (Tensor* t : {&s.momentum, &s.moment1, &s.moment2})
          if (t->defined()) state += t->nbytes();
      CHECK(e.optimizer_bytes == state);
    }
  }

  const int64_t B = 2, T = 178;  // padded to 180 inside
  const Tensor tokens = random_tokens(B, T, 3);
  const IFlameConfig tiny = IFlameConfig::preset("tiny");
  const MemoryEstimate none = estimate_training_memory(tiny, B, T, DType::F32, Recompute::None);
  const MemoryEstimate blocks = estimate_training_memory(tiny, B, T, DType::F32, Recompute::Blocks);
  const MemoryEstimate ffn = estimate_training_memory(tiny, B, T, DType::F32, Recompute::Ffn);
  size_t steps_none = 0, steps_blocks = 0;
  long long held_none = 0, held_blocks = 0;
  {
    auto model = make_model("tiny", Device::CPU, 5);
    held_none = (long long)bytes_held_after_forward(*model, tokens, Recompute::None, &steps_none);
    held_blocks = (long long)bytes_held_after_forward(*model, tokens, Recompute::Blocks, &steps_blocks);
    const long long held_ffn = (long long)bytes_held_after_forward(*model, tokens, Recompute::Ffn, nullptr);
    MESSAGE("tiny, B=2, T=178, recompute ffn: held after forward " << held_ffn << " bytes, estimated "
                                                                   << (long long)ffn.saved_bytes);
    CHECK(std::fabs(held_ffn - ffn.saved_bytes) <= 1e-3 * ffn.saved_bytes);
    CHECK(held_ffn < held_none);
    CHECK(held_ffn > held_blocks);
  }
  const double ratio = double(held_none) / double(held_blocks);
  MESSAGE("tiny, B=2, T=178: held after forward " << held_none << " bytes (none), " << held_blocks
                                                  << " (blocks); estimated " << (long long)none.saved_bytes << ", "
                                                  << (long long)blocks.saved_bytes << "; ratio " << ratio << " measured, "
                                                  << none.saved_bytes / blocks.saved_bytes
                                                  << " estimated; tape steps " << steps_none << " vs " << steps_blocks);
  // The count follows functions.cpp term by term: it should be exact; the bound
  // (0.1%) leaves room only for a stray small tensor.
  CHECK(std::fabs(held_none - none.saved_bytes) <= 1e-3 * none.saved_bytes);
  CHECK(std::fabs(held_blocks - blocks.saved_bytes) <= 1e-3 * blocks.saved_bytes);
  CHECK(ratio == doctest::Approx(none.saved_bytes / blocks.saved_bytes).epsilon(0.01));
  CHECK(ratio > 10.0);  // about 11.7 here (the logits weigh more at d = 64); about 13 at d = 512
  CHECK(steps_blocks + 24 * 10 < steps_none);  // one step per block instead of about a dozen

  // A whole step: what the model holds between steps (parameters, gradients,
  // optimizer state) and the peak above that, against the estimate (which
  // leaves out temporaries inside single ops, so it may err a little).
  const size_t outside = host_memory_stats().in_use;  // the tokens and whatever earlier tests keep
  for (Recompute r : {Recompute::None, Recompute::Blocks, Recompute::Ffn}) {
    auto m = make_model("tiny", Device::CPU, 5);
    MuonAdamW opt(m->parameters(), OptimizerConfig{});
    auto step = [&]() {
      m->zero_grad();
      IFlame::LossOutput out = m->loss(tokens, context_with(DType::F32, r));
      tape().backward(out.loss);
      opt.step(1e-3f);
    };
    step();  // gradient buffers exist from here on, as in a run
    const size_t base = host_memory_stats().in_use;
    reset_peak_host_memory();
    step();
    const double growth = double(host_memory_stats().peak_in_use) - double(base);
    const double held = double(base) - double(outside);
    const MemoryEstimate& e = r == Recompute::None ? none : r == Recompute::Blocks ? blocks : ffn;
    const double model_bytes = e.parameter_bytes + e.gradient_bytes + e.optimizer_bytes;
    const double step_bytes = e.saved_bytes + e.recompute_bytes + e.transient_bytes;
    MESSAGE("tiny step, recompute " << std::string(recompute_name(r)) << ": between steps " << held
                                    << " bytes measured, " << model_bytes << " estimated; peak above that " << growth
                                    << " measured, " << step_bytes << " estimated");
    CHECK(held == doctest::Approx(model_bytes).epsilon(1e-3));
    CHECK(growth == doctest::Approx(step_bytes).epsilon(0.1));
  }
}

TEST_CASE("train: the memory model at the published size (estimate only)") {
  const IFlameConfig c = IFlameConfig::preset("shapenet");
  const double gib = double(1ull << 30);
  for (int64_t B : {16, 48}) {
    MemoryEstimate none = estimate_training_memory(c, B, 6921, DType::F32, Recompute::None);
    MemoryEstimate blocks = estimate_training_memory(c, B, 6921, DType::F32, Recompute::Blocks);
    MESSAGE("shapenet B=" << B << " T=6921 (estimate):\n" << describe_memory({{"none", none}, {"blocks", blocks}}));
    CHECK(blocks.saved_bytes < none.saved_bytes / 5);
    CHECK(blocks.total() < none.total());
    if (B == 48) CHECK(blocks.total() < 70 * gib);  // the published batch on an 80 GB GPU, with room
    if (B == 16) CHECK(blocks.total() < 25.9 * gib);  // the reference's measured peak at batch 16
  }
}

TEST_CASE("train: --recompute is parsed, and defaults to ffn only for the published width on the GPU") {
  bool help = false;
  const char* a1[] = {"train", "x.npy", "--recompute", "blocks"};
  TrainConfig c = parse_train_args(4, const_cast<char**>(a1), help);
  CHECK(c.resolved_recompute(Device::CPU, IFlameConfig::preset("tiny")) == Recompute::Blocks);
  const char* a2[] = {"train", "x.npy", "--recompute", "stages"};
  CHECK(contains(error_of([&] { parse_train_args(4, const_cast<char**>(a2), help); }), "--recompute"));
  TrainConfig d;
  CHECK(d.resolved_recompute(Device::CUDA, IFlameConfig::preset("shapenet")) == Recompute::Ffn);
  CHECK(d.resolved_recompute(Device::CPU, IFlameConfig::preset("shapenet")) == Recompute::None);
  CHECK(d.resolved_recompute(Device::CUDA, IFlameConfig::preset("small")) == Recompute::None);
  d.recompute = "none";
  CHECK(d.resolved_recompute(Device::CUDA, IFlameConfig::preset("shapenet")) == Recompute::None);
  CHECK(train_usage().find("--recompute") != std::string::npos);
}

TEST_CASE("train: --bench --recompute blocks runs and reports the estimate beside the measured peak") {
  const char* argv[] = {"train", "--bench", "--model", "tiny", "--batch", "1", "--bench-length", "45",
                        "--bench-steps", "1", "--device", "cpu", "--quiet", "--recompute", "blocks"};
  bool help = false;
  TrainConfig c = parse_train_args(15, const_cast<char**>(argv), help);
  TrainBenchmarkResult r = run_train_benchmark(c);
  CHECK(r.mean_step_s > 0);
  CHECK(r.peak_gib > 0);
  CHECK(r.estimate_gib > 0);
}
