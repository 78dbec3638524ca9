// test_golden_model.cpp: the model against the reference implementation's own
// numbers (tests/golden, docs/spec.md §5): parameter layout, logits, loss,
// gradients, one optimizer step, and checkpoint round trips; on the CPU in f32,
// and on the GPU in f32 and bf16.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "nn/state.h"
#include "core/npy.h"
#include "core/random.h"
#include "tests/test_util.h"
#include "training/optimizer.h"

using namespace iflame;
using namespace iflame::test;

namespace {

struct ParamRecord {
  std::string name;
  Shape shape;
  int64_t offset = 0;
};

// "name [d0, d1] offset" lines (tiny_param_order.txt) or "name [d0, d1]" (the full config).
std::vector<ParamRecord> read_param_list(const std::string& path) {
  std::ifstream f(path);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  std::vector<ParamRecord> out;
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    ParamRecord r;
    size_t open = line.find('['), close = line.find(']');
    REQUIRE(open != std::string::npos);
    r.name = line.substr(0, line.find(' '));
    std::stringstream dims(line.substr(open + 1, close - open - 1));
    std::string d;
    while (std::getline(dims, d, ',')) r.shape.push_back(std::stoll(d));
    std::string rest = line.substr(close + 1);
    if (rest.find_first_not_of(' ') != std::string::npos) r.offset = std::stoll(rest);
    out.push_back(r);
  }
  return out;
}

struct GoldenData {
  TorchCheckpoint ckpt;
  Tensor input, logits, grads, after_step_f32ns;
  std::vector<ParamRecord> order;
  float loss = 6.369139194488525f;
};

const GoldenData& golden_data() {
  static GoldenData* g = [] {
    auto* d = new GoldenData();
    d->ckpt = load_torch_checkpoint(golden("tiny_checkpoint.pth"));
    d->input = read_npy(golden("tiny_input.npy"));
    d->logits = read_npy(golden("tiny_logits.npy"));
    d->grads = read_npy(golden("tiny_grads.npy"));
    d->after_step_f32ns = read_npy(golden("tiny_params_after_step_f32ns.npy"));
    d->order = read_param_list(golden("tiny_param_order.txt"));
    return d;
  }();
  return *g;
}

std::unique_ptr<IFlame> tiny_golden_model(Device device) {
  const GoldenData& g = golden_data();
  auto model = std::make_unique<IFlame>(IFlameConfig::preset("tiny"), device);
  load_parameters(*model, g.ckpt.model, "tiny_checkpoint.pth");
  return model;
}

// Slice of a flat golden array belonging to one parameter.
Tensor flat_slice(const Tensor& flat, const ParamRecord& r) {
  return flat.slice(0, r.offset, r.offset + shape_numel(r.shape)).reshape(r.shape);
}

void check_logits(Device device, DType matmul, double tolerance) {
  const GoldenData& g = golden_data();
  auto model = tiny_golden_model(device);
  NoGrad no_grad;
  ForwardContext ctx{matmul};
  Tensor logits = model->forward(g.input, ctx).value();
  REQUIRE(logits.shape() == g.logits.shape());
  double err = max_abs_diff(logits, g.logits);
  MESSAGE(std::string(device_name(device)) << " " << std::string(dtype_name(matmul)) << " matmuls: max |logits - reference| = " << err);
  CHECK(err <= tolerance);
}

struct GradReport {
  double loss_rel = 0, worst_rel = 0;
  std::string worst_name;
};

GradReport check_loss_and_grads(Device device, DType matmul, DType activations = DType::F32, int ffn_align = 1) {
  const GoldenData& g = golden_data();
  auto model = tiny_golden_model(device);
  ForwardContext ctx{matmul, activations};
  ctx.ffn_align = ffn_align;
  IFlame::LossOutput out = model->loss(g.input, ctx);
  tape().backward(out.loss);
  GradReport rep;
  rep.loss_rel = std::fabs(out.loss.value().item() - g.loss) / g.loss;
  for (const ParamRecord& r : g.order) {
    Variable p = model->parameters().find(r.name);
    REQUIRE_MESSAGE(p.defined(), r.name);
    REQUIRE_MESSAGE(p.grad().defined(), "no gradient reached " << r.name);
    double e = rel_l2(p.grad(), flat_slice(g.grads, r));
    if (e > rep.worst_rel) {
      rep.worst_rel = e;
      rep.worst_name = r.name;
    }
  }
  MESSAGE(std::string(device_name(device)) << " " << std::string(dtype_name(matmul)) << " matmuls: loss " << out.loss.value().item()
                              << " (relative error " << rep.loss_rel << "), worst gradient relative L2 "
                              << rep.worst_rel << " (" << rep.worst_name << ")");
  return rep;
}

// Relative L2 distance, over all parameters at once, between the update of one
// step with Newton-Schulz in ns_dtype (on the CPU) and the update in `target`.
double update_distance(DType ns_dtype, const Tensor& target) {
  const GoldenData& g = golden_data();
  auto model = tiny_golden_model(Device::CPU);
  OptimizerConfig oc;
  oc.ns_dtype = ns_dtype;
  MuonAdamW opt(model->parameters(), oc);
  opt.load_torch_state(g.ckpt, "tiny_checkpoint.pth");
  for (const ParamRecord& r : g.order) model->parameters().find(r.name).grad_buffer().copy_from(flat_slice(g.grads, r));
  opt.step(opt.config().lr);
  std::vector<float> ours, theirs;
  for (const ParamRecord& r : g.order) {
    auto b = g.ckpt.find_param(r.name)->to_floats();
    auto a = model->parameters().find(r.name).value().to_floats();
    auto w = flat_slice(target, r).to_floats();
    for (size_t i = 0; i < b.size(); i++) {
      ours.push_back(a[i] - b[i]);
      theirs.push_back(w[i] - b[i]);
    }
  }
  return rel_l2(ours, theirs);
}

double check_optimizer_step(Device device, DType ns_dtype) {
  const GoldenData& g = golden_data();
  auto model = tiny_golden_model(device);
  OptimizerConfig oc;
  oc.ns_dtype = ns_dtype;
  MuonAdamW opt(model->parameters(), oc);
  opt.load_torch_state(g.ckpt, "tiny_checkpoint.pth");
  for (const ParamRecord& r : g.order) {
    Variable p = model->parameters().find(r.name);
    p.grad_buffer().copy_from(flat_slice(g.grads, r));
  }
  opt.step(opt.config().lr);
  double worst = 0;
  std::string worst_name;
  for (const ParamRecord& r : g.order) {
    Tensor before = *g.ckpt.find_param(r.name);
    Tensor after = model->parameters().find(r.name).value().to(Device::CPU);
    Tensor want = flat_slice(g.after_step_f32ns, r);
    auto b = before.to_floats(), a = after.to_floats(), w = want.to_floats();
    std::vector<float> ours(b.size()), theirs(b.size());
    for (size_t i = 0; i < b.size(); i++) {
      ours[i] = a[i] - b[i];
      theirs[i] = w[i] - b[i];
    }
    double e = rel_l2(ours, theirs);
    if (e > worst) {
      worst = e;
      worst_name = r.name;
    }
  }
  MESSAGE(std::string(device_name(device)) << " optimizer step, Newton-Schulz in " << std::string(dtype_name(ns_dtype))
                              << ": worst update relative L2 " << worst << " (" << worst_name << ")");
  return worst;
}

}  // namespace

TEST_CASE("golden: the published configuration has 75,732,598 parameters under the published names") {
  std::vector<ParamRecord> full = read_param_list(golden("state_dict_full_config.txt"));
  IFlame model(IFlameConfig::preset("shapenet"), Device::CPU);
  const auto& items = model.parameters().items();
  REQUIRE(items.size() == full.size());
  for (size_t i = 0; i < full.size(); i++) {
    CHECK(items[i].first == full[i].name);
    CHECK(items[i].second.value().shape() == full[i].shape);
  }
  CHECK(model.parameters().count() == 75732598);
}

TEST_CASE("golden: tiny model parameter order matches the reference") {
  const GoldenData& g = golden_data();
  IFlame model(IFlameConfig::preset("tiny"), Device::CPU);
  const auto& items = model.parameters().items();
  REQUIRE(items.size() == g.order.size());
  for (size_t i = 0; i < items.size(); i++) {
    CHECK(items[i].first == g.order[i].name);
    CHECK(items[i].second.value().shape() == g.order[i].shape);
  }
}

TEST_CASE("golden: logits of the tiny model (CPU, f32)") { check_logits(Device::CPU, DType::F32, 1e-4); }

TEST_CASE("golden: loss and every gradient of the tiny model (CPU, f32)") {
  GradReport r = check_loss_and_grads(Device::CPU, DType::F32);
  CHECK(r.loss_rel <= 1e-5);
  CHECK(r.worst_rel <= 1e-4);
}

TEST_CASE("golden: one Muon + AdamW step resumed from the checkpoint (CPU, f32 Newton-Schulz)") {
  CHECK(check_optimizer_step(Device::CPU, DType::F32) <= 1e-3);
}

// Padding the feed-forward width (170 here, 1365 in the published model) to a
// multiple of 8 with zero weights is the same function: the extra hidden units
// are exactly 0 and meet zero columns. On the CPU the sums see the same terms in
// the same order plus exact zeros, so logits and gradients are bit-identical.
TEST_CASE("golden: padding the feed-forward width changes neither logits nor gradients (CPU)") {
  const GoldenData& g = golden_data();
  auto run = [&](int align, std::vector<std::vector<float>>& grads) {
    auto model = tiny_golden_model(Device::CPU);
    ForwardContext ctx;
    ctx.ffn_align = align;
    IFlame::LossOutput out = model->loss(g.input, ctx);
    std::vector<float> logits = out.logits.value().to_floats();
    tape().backward(out.loss);
    for (const ParamRecord& r : g.order) {
      const Variable p = model->parameters().find(r.name);
      grads.push_back(p.grad().to_floats());
      CHECK_MESSAGE(p.grad().shape() == r.shape, r.name);  // gradients keep the published shapes
    }
    return logits;
  };
  std::vector<std::vector<float>> plain_grads, padded_grads;
  const std::vector<float> plain = run(1, plain_grads), padded = run(8, padded_grads);
  CHECK(IFlameConfig::preset("tiny").hidden() % 8 != 0);  // so the padded run does pad
  CHECK(plain == padded);
  REQUIRE(plain_grads.size() == padded_grads.size());
  int differing = 0;
  for (size_t i = 0; i < plain_grads.size(); i++) differing += plain_grads[i] != padded_grads[i];
  CHECK(differing == 0);
}

// ./train --muon-ns bf16 runs Newton-Schulz in bf16 as the reference does
// (golden/tiny_params_after_step.npy); the spec puts that 6% (overall) from the
// f32 step. Emulated on the CPU, our bf16 step must land nearer the reference's
// bf16 step than the f32 one does, and our f32 step nearer the f32 one.
TEST_CASE("golden: Muon with bf16 Newton-Schulz lands nearer the reference's bf16 step (CPU)") {
  const GoldenData& g = golden_data();
  const Tensor ref_bf16 = read_npy(golden("tiny_params_after_step.npy"));
  const double bf16_to_bf16 = update_distance(DType::BF16, ref_bf16);
  const double bf16_to_f32 = update_distance(DType::BF16, g.after_step_f32ns);
  const double f32_to_f32 = update_distance(DType::F32, g.after_step_f32ns);
  const double f32_to_bf16 = update_distance(DType::F32, ref_bf16);
  MESSAGE("update distance, ours bf16 NS: to the reference's bf16 step " << bf16_to_bf16 << ", to its f32 step "
                                                                        << bf16_to_f32 << "; ours f32 NS: "
                                                                        << f32_to_f32 << " and " << f32_to_bf16);
  CHECK(bf16_to_bf16 < bf16_to_f32);
  CHECK(f32_to_f32 < f32_to_bf16);
}

TEST_CASE("golden: .pth import -> native checkpoint -> load gives identical logits") {
  const GoldenData& g = golden_data();
  auto imported = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  CheckpointData ckpt;
  add_model_to_checkpoint(*imported, ckpt);
  save_checkpoint("build/golden_tiny.ckpt", ckpt);
  auto reloaded = load_model("build/golden_tiny.ckpt", Device::CPU);
  CHECK(reloaded->config().describe() == imported->config().describe());
  NoGrad no_grad;
  Tensor tokens = g.input.slice(0, 0, 1).slice(1, 0, 99).contiguous();  // a length that is not a multiple of 9
  auto a = imported->forward(tokens, {}).value().to_floats();
  auto b = reloaded->forward(tokens, {}).value().to_floats();
  CHECK(a == b);
}

TEST_CASE("golden: a checkpoint for another model is refused with the reason") {
  CheckpointData ckpt;
  IFlame small(IFlameConfig::preset("tiny"), Device::CPU);
  add_model_to_checkpoint(small, ckpt);
  ckpt.tensors.pop_back();  // drop norm.weight
  save_checkpoint("build/golden_broken.ckpt", ckpt);
  CHECK_THROWS_WITH_AS(load_model("build/golden_broken.ckpt", Device::CPU),
                       doctest::Contains("parameter 'norm.weight' is missing"), Error);
}

TEST_CASE("golden: out-of-vocabulary tokens are refused") {
  IFlame model(IFlameConfig::preset("tiny"), Device::CPU);
  Tensor bad = Tensor::from_ints(std::vector<int32_t>(18, 5), {2, 9});
  bad.data<int32_t>()[12] = 132;
  NoGrad no_grad;
  CHECK_THROWS_WITH_AS(model.forward(bad, {}), doctest::Contains("token 132 at position 3 of sequence 1"),
                       Error);
}

// ---------------------------------------------------------------- on the GPU

TEST_CASE("golden: logits, loss and gradients of the tiny model (GPU, f32)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  check_logits(Device::CUDA, DType::F32, 1e-4);
  GradReport r = check_loss_and_grads(Device::CUDA, DType::F32);
  CHECK(r.loss_rel <= 1e-5);
  CHECK(r.worst_rel <= 1e-4);
}

// bf16 matrix products round both operands to 8 significant bits. How far
// that alone moves the tiny model from the f32 reference is measured by the
// CPU's exact emulation of the GPU's bf16 products (same roundings, f32 sums):
// the GPU must land as close to the reference as the emulation does (within
// 1.5x: the two differ only in summation order, which flips a few roundings),
// and close to the emulation itself. The f32 path above holds 1e-4.
TEST_CASE("golden: logits, loss and gradients of the tiny model (GPU, bf16 matmuls)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const GoldenData& g = golden_data();
  Tensor emulated, on_gpu;
  {
    NoGrad no_grad;
    emulated = tiny_golden_model(Device::CPU)->forward(g.input, {DType::BF16}).value();
    on_gpu = tiny_golden_model(Device::CUDA)->forward(g.input, {DType::BF16}).value().to(Device::CPU);
  }
  double format_error = max_abs_diff(emulated, g.logits);
  double gpu_error = max_abs_diff(on_gpu, g.logits);
  double gpu_vs_emulation = max_abs_diff(on_gpu, emulated);
  MESSAGE("bf16 logits: CPU emulation vs reference " << format_error << ", GPU vs reference " << gpu_error
                                                     << ", GPU vs CPU emulation " << gpu_vs_emulation);
  CHECK(gpu_error <= 1.5 * format_error);
  CHECK(gpu_vs_emulation <= 0.5 * format_error);
  GradReport cpu = check_loss_and_grads(Device::CPU, DType::BF16);
  GradReport gpu = check_loss_and_grads(Device::CUDA, DType::BF16);
  CHECK(gpu.loss_rel <= 2e-3);
  CHECK(gpu.worst_rel <= 1.5 * cpu.worst_rel);
}

// bf16 activations inside the blocks (./train's GPU default) add roundings to
// what the bf16 products already round: the norm outputs are rounded anyway as
// product operands, so the new ones are the stored q/k/v, the attention output,
// the branch outputs before they join the f32 residual, and the gate's inputs,
// each 2^-9 relative like the operand roundings. So the distance from the f32
// reference may grow by up to about as much again as the products alone cost:
// bounded by 2.5x the emulation's distance (products alone) for logits and
// gradients, and the loss within 5e-3 relative.
TEST_CASE("golden: logits, loss and gradients of the tiny model (GPU, bf16 matmuls and activations)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const GoldenData& g = golden_data();
  Tensor emulated, on_gpu;
  {
    NoGrad no_grad;
    emulated = tiny_golden_model(Device::CPU)->forward(g.input, {DType::BF16}).value();
    on_gpu = tiny_golden_model(Device::CUDA)->forward(g.input, {DType::BF16, DType::BF16}).value().to(Device::CPU);
  }
  CHECK(on_gpu.dtype() == DType::F32);  // the residual stream and the output stay f32
  const double format_error = max_abs_diff(emulated, g.logits), gpu_error = max_abs_diff(on_gpu, g.logits);
  MESSAGE("bf16 activations: logits vs reference " << gpu_error << " (bf16 products alone, emulated: " << format_error
                                                   << ")");
  CHECK(gpu_error <= 2.5 * format_error);
  GradReport cpu = check_loss_and_grads(Device::CPU, DType::BF16);
  GradReport gpu = check_loss_and_grads(Device::CUDA, DType::BF16, DType::BF16);
  MESSAGE("bf16 activations: loss relative error " << gpu.loss_rel << ", worst gradient " << gpu.worst_rel
                                                   << " (products alone, emulated: " << cpu.worst_rel << ")");
  CHECK(gpu.loss_rel <= 5e-3);
  CHECK(gpu.worst_rel <= 2.5 * cpu.worst_rel);
  // ./train's GPU default also pads the FFN width to a multiple of 8: the same
  // function computed by other cuBLAS kernels. With f32 products that is exact
  // up to summation order, so a wrong padding (a stray non-zero column, a
  // misplaced slice) shows far above 1e-4. In bf16 the other summation orders
  // flip roundings that propagate through the blocks: on the H100 the padded
  // logits moved by 0.26 from the unpadded ones, about as far as two bf16 runs
  // are from each other, so there the padded run is held to the contract the
  // unpadded one meets (distance from the reference).
  auto forward_padded = [&](ForwardContext ctx) {
    NoGrad no_grad;
    ctx.ffn_align = 8;
    return tiny_golden_model(Device::CUDA)->forward(g.input, ctx).value().to(Device::CPU);
  };
  Tensor unpadded_f32;
  {
    NoGrad no_grad;
    unpadded_f32 = tiny_golden_model(Device::CUDA)->forward(g.input, {DType::F32}).value().to(Device::CPU);
  }
  const double f32_change = max_abs_diff(forward_padded({DType::F32}), unpadded_f32);
  const double padded_error = max_abs_diff(forward_padded({DType::BF16, DType::BF16}), g.logits);
  MESSAGE("FFN padded to a multiple of 8: f32 products move the logits by " << f32_change
          << "; bf16 activations, padded, vs reference " << padded_error << " (unpadded " << gpu_error << ")");
  CHECK(f32_change <= 1e-4);
  CHECK(padded_error <= 2.5 * format_error);
}

TEST_CASE("golden: f32 loss and gradients with the FFN padded (GPU: proj1 and proj2 as one packed product)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // With the width padded, the GPU runs proj1 and proj2 as one product over
  // packed weights, the gate over its packed output, and takes the biases'
  // gradients from the gate's backward (ag::swiglu_pair): in f32 the reference's
  // own 1e-4 holds for every gradient, proj1/proj2 weights and biases included.
  GradReport gpu = check_loss_and_grads(Device::CUDA, DType::F32, DType::F32, 8);
  CHECK(gpu.loss_rel <= 1e-5);
  CHECK(gpu.worst_rel <= 1e-4);
}

TEST_CASE("golden: bf16 activations are refused on the CPU and without bf16 products") {
  const GoldenData& g = golden_data();
  auto model = tiny_golden_model(Device::CPU);
  NoGrad no_grad;
  CHECK_THROWS_WITH_AS(model->forward(g.input, {DType::BF16, DType::BF16}),
                       doctest::Contains("bf16 activations need bf16 products on the GPU"), Error);
}

TEST_CASE("golden: one Muon + AdamW step resumed from the checkpoint (GPU, f32 Newton-Schulz)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  CHECK(check_optimizer_step(Device::CUDA, DType::F32) <= 1e-3);
}
