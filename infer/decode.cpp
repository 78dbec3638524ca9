// decode.cpp: one cached decoding step through the hourglass, and its CUDA
// graphs (see decode.h).
#include "infer/decode.h"

#include <algorithm>
#include <cmath>

#include "core/allocator.h"
#include "core/error.h"
#include "infer/row_gather.h"
#include "ops/cached_attention.h"
#include "ops/decode_position.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear_attention.h"
#include "ops/resample.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/small_product.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#endif

namespace iflame::infer {

namespace {

using ops::decode_product;
using ops::decode_product_swiglu;

Tensor rms_norm(const Tensor& x, const NormWeights& norm) {
  Tensor inv_rms;
  return ops::rms_norm_forward(x, norm.weight, norm.eps, inv_rms);
}

// h = x + y, written, and its RMSNorm, returned (f32).
Tensor add_rms_norm(const Tensor& x, const Tensor& y, const NormWeights& norm, Tensor& h) {
  Tensor inv_rms;
  return ops::add_rms_norm_forward(x, y, norm.weight, norm.eps, h, inv_rms, DType::F32);
}

// Rows [first, first + n) of `dst` (a [rows, in] or [rows] tensor) = src.
void place(Tensor& dst, int64_t first, const Tensor& src) {
  dst.slice(0, first, first + src.size(0)).copy_from(src);
}

// One block at the level position p / div: x [B, 1, d] and n1 = norm1(x) in,
// the block's output out. When `next_norm` is given, its RMSNorm of the output
// comes back in next_n1, from the same kernel as the residual add.
void block_step(const DecodeState& st, const BlockWeights& block, const DecodeBlockWeights& w, BlockCache& cache,
                const Tensor& x, const Tensor& n1, int64_t div, const NormWeights* next_norm, Tensor& out,
                Tensor& next_n1) {
  const int64_t B = x.size(0), H = block.heads, D = block.head_dim;
  const DType mm = st.weights->matmul;
  const Tensor qkv = decode_product(n1, w.qkv, Tensor(), mm).view({B, 3 * H * D});
  Tensor o;
  if (block.full) {
    const Tensor q = ops::qkv_rope_step(qkv, H, st.position, div, cache.k, cache.v);
    // Rows flagged dead in st.row_live read no cache and get zeros (decode.h says why that is safe).
    o = ops::cached_attention_at(q, cache.k, cache.v, st.position, div, 1.0f / std::sqrt(static_cast<float>(D)),
                                 std::min(st.pos, st.max_len - 1) / div + 1, st.row_live)
            .to(DType::F32);  // no copy with f32 caches
  } else {
    Tensor k = Tensor::empty({B, H, D}, DType::F32, x.device());
    Tensor v = Tensor::empty({B, H, D}, DType::F32, x.device());
    const Tensor q = ops::qkv_rope_step(qkv, H, st.position, div, k, v);
    o = rms_norm(ops::linear_attention_step(q, k, v, cache.state, block.slopes).view({B, 1, H * D}),
                 block.attn_norm);
  }
  Tensor h;
  const Tensor n2 = add_rms_norm(x, decode_product(o.view({B, 1, H * D}), w.out, Tensor(), mm), block.norm2, h);
  const Tensor f = decode_product(decode_product_swiglu(n2, w.ff12, w.ff12_bias, mm), w.ff3, w.ff3_bias, mm);
  if (next_norm) {
    next_n1 = add_rms_norm(h, f, *next_norm, out);
  } else {
    out = ops::add(h, f);
  }
}

Tensor stage_step(DecodeState& st, int s, Tensor x) {
  const std::vector<BlockWeights>& blocks = st.model->stages[s];
  const int64_t div = stage_level(s) == 0 ? 1 : stage_level(s) == 1 ? 3 : 9;
  if (blocks.empty()) return x;
  Tensor n1 = rms_norm(x, blocks[0].norm1);
  for (size_t i = 0; i < blocks.size(); i++) {
    const NormWeights* next = i + 1 < blocks.size() ? &blocks[i + 1].norm1 : nullptr;
    Tensor out, next_n1;
    block_step(st, blocks[i], st.weights->blocks[s][i], st.caches[s][i], x, n1, div, next, out, next_n1);
    x = out;
    n1 = next_n1;
  }
  return x;
}

// What a row starting over needs zeroed (decode.h): its position, the
// linear-attention states and the coarse outputs that stand for the shift's zeros.
std::vector<Tensor> reset_tensors(const DecodeState& st) {
  std::vector<Tensor> t = {st.position, st.out1, st.out2};
  for (const auto& stage : st.caches)
    for (const BlockCache& c : stage)
      if (c.state.defined()) t.push_back(c.state);
  return t;
}

// Which levels run at level-0 position pos: 0 (level 0 only), 1 (and level 1), 2 (and the bottleneck).
int phase_of(int64_t pos) { return pos % 9 == 8 ? 2 : pos % 3 == 2 ? 1 : 0; }

// The device work of step(): nothing here changes host state or waits.
void enqueue_step(DecodeState& st, const Tensor& tok) {
  const ModelWeights& model = *st.model;
  const int64_t p = st.pos;
  if (st.row_resets.defined()) ops::zero_flagged_rows(reset_tensors(st), st.row_resets);
  if (st.persistent) {
    st.persistent->step(tok.view({st.batch}), phase_of(p));
    return;
  }
  Tensor x = ops::embedding_forward(model.embedding, tok, DType::F32);
  x = stage_step(st, 0, rms_norm(x, model.norm));
  st.skip0.copy_from(x);
  ops::write_group_slot(st.group0, x, st.position, 1);
  if (p % 3 == 2) {
    const Tensor y = stage_step(st, 1, ops::avg_pool3_forward(st.group0));
    st.skip1.copy_from(y);
    ops::write_group_slot(st.group1, y, st.position, 3);
    if (p % 9 == 8) st.out2.copy_from(stage_step(st, 3, stage_step(st, 2, ops::avg_pool3_forward(st.group1))));
    st.out1.copy_from(stage_step(st, 4, ops::skip_scale_add_forward(st.out2, model.skip_weights, 0, st.skip1)));
  }
  x = stage_step(st, 5, ops::skip_scale_add_forward(st.out1, model.skip_weights, 1, st.skip0));
  const DecodeWeights& w = *st.weights;
  st.logits.copy_from(decode_product(x, w.output, w.output_bias, w.matmul).view({st.batch, model.config().vocab}));
  ops::advance_position(st.position);
}

// Checks a step's tokens and returns them as the [B, 1] device tensor to read.
Tensor step_tokens(DecodeState& st, const Tensor& tokens) {
  IFLAME_CHECK(st.model, "decode: step on a state that begin() did not make");
  IFLAME_CHECK(tokens.dtype() == DType::I32 && tokens.numel() == st.batch, "decode: tokens must be i32 [",
               st.batch, "], got ", tokens.describe());
  IFLAME_CHECK(st.pos < st.max_len || st.row_resets.defined(), "decode: all ", st.max_len,
               " positions of the state are used");
  auto check_row_flags = [&](const char* name, const Tensor& flags) {
    IFLAME_CHECK(!flags.defined() || (flags.dtype() == DType::I32 && flags.numel() == st.batch &&
                                      flags.device() == st.model->device()),
                 "decode: ", name, " must be i32 [", st.batch, "] on the model's device, got ", flags.describe());
  };
  check_row_flags("row_resets", st.row_resets);
  check_row_flags("row_live", st.row_live);
  // Tokens already on the device are read in place; host tokens go through the
  // buffer (a host-to-device copy, which waits for the queue).
  if (tokens.device() == st.model->device()) return tokens.contiguous().view({st.batch, 1});
  st.token_buffer.copy_from(tokens.contiguous().view({st.batch, 1}));
  return st.token_buffer;
}

size_t bytes_of(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

// The persistent step's view of a state: the same weights, caches and buffers.
ops::PersistentDecodeModel persistent_view(const DecodeState& st) {
  const ModelWeights& model = *st.model;
  const DecodeWeights& w = *st.weights;
  ops::PersistentDecodeModel m;
  m.heads = model.config().heads;
  m.embedding = model.embedding;
  m.norm = model.norm.weight;
  m.norm_eps = model.norm.eps;
  m.skip_weights = model.skip_weights;
  for (int s = 0; s < ModelWeights::kStages; s++)
    for (size_t i = 0; i < model.stages[s].size(); i++) {
      const BlockWeights& a = model.stages[s][i];
      const DecodeBlockWeights& b = w.blocks[s][i];
      const BlockCache& c = st.caches[s][i];
      ops::PersistentBlock p;
      p.full = a.full;
      p.qkv = b.qkv;
      p.out = b.out;
      p.ff12 = b.ff12;
      p.ff3 = b.ff3;
      p.ff12_bias = b.ff12_bias;
      p.ff3_bias = b.ff3_bias;
      p.norm1 = a.norm1.weight;
      p.norm2 = a.norm2.weight;
      p.attn_norm = a.attn_norm.weight;
      p.norm1_eps = a.norm1.eps;
      p.norm2_eps = a.norm2.eps;
      p.attn_norm_eps = a.attn_norm.eps;
      p.slopes = a.slopes;
      p.k_cache = c.k;
      p.v_cache = c.v;
      p.state = c.state;
      m.stages[s].push_back(p);
    }
  m.output = w.output;
  m.output_bias = w.output_bias;
  m.position = st.position;
  m.group0 = st.group0;
  m.group1 = st.group1;
  m.skip0 = st.skip0;
  m.skip1 = st.skip1;
  m.out1 = st.out1;
  m.out2 = st.out2;
  m.logits = st.logits;
  return m;
}

// Why the persistent step cannot run on st ("" when it can).
std::string why_not_persistent(const DecodeState& st) {
  if (st.model->device() != Device::CUDA) return "it needs a GPU";
  if (st.weights->matmul != DType::BF16) return "it needs bf16 products (--precision bf16)";
  return ops::persistent_decode_unsupported(persistent_view(st));
}

}  // namespace

const char* decode_step_name(DecodeStep s) {
  return s == DecodeStep::Layered ? "layered" : s == DecodeStep::Persistent ? "persistent" : "auto";
}

int stage_level(int stage) {
  static const int levels[ModelWeights::kStages] = {0, 1, 2, 2, 1, 0};
  return levels[stage];
}

std::shared_ptr<const DecodeWeights> prepare_decode_weights(const ModelWeights& model, DType matmul) {
  IFLAME_CHECK(matmul == DType::F32 || matmul == DType::BF16, "decode: products must be f32 or bf16, got ",
               dtype_name(matmul));
  const Device dev = model.device();
  // The CPU reference takes f32 weights and rounds them itself for bf16 products.
  const DType store = dev == Device::CUDA ? matmul : DType::F32;
  auto w = std::make_shared<DecodeWeights>();
  w->matmul = matmul;
  for (int s = 0; s < ModelWeights::kStages; s++)
    for (const BlockWeights& a : model.stages[s]) {
      const BlockWeights& ff = a;
      const int64_t HD = a.q_proj.out, d = a.q_proj.in, F = ff.proj1.out;
      // The hidden width padded to a multiple of 8 with zero weights and biases
      // (aligned products; the padded units are exactly 0: see FeedForward).
      const int64_t Fp = (F + 7) / 8 * 8;
      DecodeBlockWeights b;
      Tensor qkv = Tensor::empty({3 * HD, d}, DType::F32, dev);
      place(qkv, 0, a.q_proj.weight);
      place(qkv, HD, a.k_proj.weight);
      place(qkv, 2 * HD, a.v_proj.weight);
      Tensor ff12 = Tensor::zeros({2 * Fp, d}, DType::F32, dev);
      place(ff12, 0, ff.proj1.weight);
      place(ff12, Fp, ff.proj2.weight);
      IFLAME_CHECK(!a.q_proj.bias.defined() && !a.k_proj.bias.defined() && !a.v_proj.bias.defined() &&
                       !a.out_proj.bias.defined() && ff.proj1.bias.defined() == ff.proj2.bias.defined(),
                   "decode: unexpected bias layout in the attention or feed-forward projections");
      if (ff.proj1.bias.defined()) {
        b.ff12_bias = Tensor::zeros({2 * Fp}, DType::F32, dev);
        place(b.ff12_bias, 0, ff.proj1.bias);
        place(b.ff12_bias, Fp, ff.proj2.bias);
      }
      Tensor ff3 = Tensor::zeros({d, Fp}, DType::F32, dev);
      ff3.slice(1, 0, F).copy_from(ff.proj3.weight);
      b.qkv = qkv.to(store);
      b.out = a.out_proj.weight.to(store);
      b.ff12 = ff12.to(store);
      b.ff3 = ff3.to(store);
      if (ff.proj3.bias.defined()) b.ff3_bias = ff.proj3.bias;
      w->blocks[s].push_back(b);
    }
  w->output = model.output_proj.weight.to(store);
  if (model.output_proj.bias.defined()) w->output_bias = model.output_proj.bias;
  return w;
}

size_t DecodeState::cache_bytes() const {
  size_t n = 0;
  for (const auto& stage : caches)
    for (const BlockCache& c : stage) n += bytes_of(c.k) + bytes_of(c.v) + bytes_of(c.state);
  for (const Tensor* t : {&group0, &group1, &skip0, &skip1, &out1, &out2, &logits}) n += bytes_of(*t);
  return n;
}

namespace {

// A fresh state on prepared weights (what begin() and compact_rows() share).
DecodeState make_state(std::shared_ptr<const ModelWeights> model_ptr, std::shared_ptr<const DecodeWeights> weights,
                       int64_t batch, int64_t max_len, ForwardContext ctx, DecodeStep path) {
  IFLAME_CHECK(batch >= 1 && max_len >= 1, "decode: need batch >= 1 and max_len >= 1, got ", batch, " and ",
               max_len);
  IFLAME_CHECK(max_len < (int64_t(1) << 30), "decode: max_len ", max_len, " is too large");
  const ModelWeights& model = *model_ptr;
  const IFlameConfig& cfg = model.config();
  const Device dev = model.device();
  const int64_t d = cfg.dim, H = cfg.heads, D = cfg.head_dim();
  const int64_t capacity[3] = {max_len, (max_len + 2) / 3, (max_len + 8) / 9};
  DecodeState st;
  st.model = std::move(model_ptr);
  st.weights = std::move(weights);
  st.ctx = ctx;
  st.batch = batch;
  st.max_len = max_len;
  st.requested_step = path;
  // With bf16 products on the GPU, K and V are cached in bf16 (half the memory
  // and the bytes each step reads); f32 otherwise.
  const DType cache_dtype = dev == Device::CUDA && ctx.matmul == DType::BF16 ? DType::BF16 : DType::F32;
  for (int s = 0; s < ModelWeights::kStages; s++) {
    for (const BlockWeights& block : model.stages[s]) {
      BlockCache c;
      if (block.full) {
        // Filled row by row before they are read: no need to clear.
        c.k = Tensor::empty({batch, capacity[stage_level(s)], H, D}, cache_dtype, dev);
        c.v = Tensor::empty({batch, capacity[stage_level(s)], H, D}, cache_dtype, dev);
      } else {
        c.state = Tensor::zeros({batch, H, D, D}, DType::F32, dev);
      }
      st.caches[s].push_back(c);
    }
  }
  st.position = Tensor::zeros({batch}, DType::I32, dev);
  st.group0 = Tensor::zeros({batch, 3, d}, DType::F32, dev);
  st.group1 = Tensor::zeros({batch, 3, d}, DType::F32, dev);
  st.skip0 = Tensor::zeros({batch, 1, d}, DType::F32, dev);
  st.skip1 = Tensor::zeros({batch, 1, d}, DType::F32, dev);
  st.out1 = Tensor::zeros({batch, 1, d}, DType::F32, dev);
  st.out2 = Tensor::zeros({batch, 1, d}, DType::F32, dev);
  st.logits = Tensor::zeros({batch, cfg.vocab}, DType::F32, dev);
  st.token_buffer = Tensor::zeros({batch, 1}, DType::I32, dev);
  return st;
}

// Makes the persistent step for st when its requested path asks for it and it can run.
void pick_step_kernels(DecodeState& st) {
  if (st.requested_step == DecodeStep::Layered) return;
  st.persistent_problem = why_not_persistent(st);
  // A user's choice (--decode-step persistent): an input error, no source location.
  IFLAME_REQUIRE(st.requested_step == DecodeStep::Auto || st.persistent_problem.empty(),
                 "decode: the persistent step cannot run here: ", st.persistent_problem);
  if (st.persistent_problem.empty()) st.persistent = std::make_shared<ops::PersistentDecode>(persistent_view(st));
}

}  // namespace

DecodeState begin(const ModelWeights& model, int64_t batch, int64_t max_len, ForwardContext ctx, DecodeStep path) {
  DecodeState st = make_state(std::make_shared<const ModelWeights>(model), prepare_decode_weights(model, ctx.matmul),
                              batch, max_len, ctx, path);
  pick_step_kernels(st);
  return st;
}

DecodeState compact_rows(const DecodeState& from, const std::vector<int>& keep) {
  IFLAME_CHECK(from.model, "compact_rows: a state that begin() did not make");
  check_kept_rows(keep, from.batch, "compact_rows");
  DecodeState st = make_state(from.model, from.weights, int64_t(keep.size()), from.max_len, from.ctx,
                              from.requested_step);
  st.pos = from.pos;
  // The kept rows, copied into the new state's tensors (K/V caches whole: the
  // unfilled part is never read, copying it is simpler than per-row lengths).
  for (int s = 0; s < ModelWeights::kStages; s++)
    for (size_t i = 0; i < st.caches[s].size(); i++) {
      const BlockCache& a = from.caches[s][i];
      BlockCache& c = st.caches[s][i];
      copy_rows(c.k, a.k, keep);
      copy_rows(c.v, a.v, keep);
      copy_rows(c.state, a.state, keep);
    }
  for (Tensor DecodeState::*t : {&DecodeState::position, &DecodeState::group0, &DecodeState::group1,
                                 &DecodeState::skip0, &DecodeState::skip1, &DecodeState::out1, &DecodeState::out2,
                                 &DecodeState::logits})
    copy_rows(st.*t, from.*t, keep);
  pick_step_kernels(st);
  return st;
}

Tensor step(DecodeState& st, const Tensor& tokens) {
  const Tensor tok = step_tokens(st, tokens);
  enqueue_step(st, tok);
  st.pos++;
  return st.logits;
}

// ---- CUDA graphs ----

void DecodeGraphs::step(DecodeState& st, const Tensor& device_tokens, const std::function<void()>& after) {
  if (!st.model || st.model->device() != Device::CUDA || st.persistent) {
    infer::step(st, device_tokens);
    after();
    return;
  }
#ifdef IFLAME_CUDA
  const Tensor tok = step_tokens(st, device_tokens);
  IFLAME_CHECK(device_tokens.device() == Device::CUDA, "DecodeGraphs: tokens must stay on the GPU, got ",
               device_tokens.describe());
  IFLAME_CHECK(state_ == nullptr || state_ == &st, "DecodeGraphs: used with two decode states");
  IFLAME_CHECK(tokens_ == nullptr || tokens_ == tok.raw_data(),
               "DecodeGraphs: the token buffer moved between steps");
  state_ = &st;
  tokens_ = tok.raw_data();
  const int phase = phase_of(st.pos);
  if (!exec_[phase] && !ran_eagerly_[phase]) {
    // The first step of each phase runs as plain launches, so that whatever
    // initialises itself lazily (the cuBLAS handle and its kernels, static
    // device queries) does so outside a capture.
    ran_eagerly_[phase] = true;
    enqueue_step(st, tok);
    after();
    st.pos++;
    return;
  }
  if (!exec_[phase]) {
    if (pool_ == 0) pool_ = create_device_pool();
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(cuda_stream(), cudaStreamCaptureModeThreadLocal));
    try {
      DevicePoolScope scope(pool_);
      enqueue_step(st, tok);
      after();
    } catch (...) {
      cudaStreamEndCapture(cuda_stream(), &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(cuda_stream(), &graph));
    cudaGraphExec_t exec = nullptr;
    CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    exec_[phase] = exec;
  }
  CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_[phase]), cuda_stream()));
  st.pos++;
#else
  IFLAME_FAIL("DecodeGraphs: this build has no CUDA support");
#endif
}

int DecodeGraphs::graphs_captured() const {
  int n = 0;
  for (void* e : exec_) n += e != nullptr;
  return n;
}

DecodeGraphs::~DecodeGraphs() {
#ifdef IFLAME_CUDA
  for (void* e : exec_)
    if (e) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(e));
  if (pool_ != 0) {
    try {
      release_device_pool(pool_);
    } catch (const std::exception&) {
      // Tensors made inside a capture are still alive: their blocks stay with
      // the pool (never reused by anyone else), which is safe, only not freed.
    }
  }
#endif
}

Tensor full_cached_logits(const ModelWeights& model, const Tensor& tokens, ForwardContext ctx) {
  IFLAME_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::I32, "tokens must be i32 [B, T], got ",
               tokens.describe());
  const int64_t B = tokens.size(0), T = tokens.size(1), V = model.config().vocab;
  Tensor host = tokens.to(Device::CPU).contiguous();
  Tensor out = Tensor::empty({B, T, V}, DType::F32, Device::CPU);
  DecodeState st = begin(model, B, T, ctx);
  for (int64_t t = 0; t < T; t++) {
    Tensor column = host.select(1, t).contiguous();
    out.select(1, t).copy_from(step(st, column).to(Device::CPU));
  }
  return out;
}

}  // namespace iflame::infer
