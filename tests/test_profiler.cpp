// test_profiler.cpp: the op profiler (core/profiler.h): nothing recorded when
// off; names, call counts, FLOPs and bytes of known ops; nested ops counted
// once; reset and the table; on a GPU, event times and graph captures.
#include <algorithm>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "infer/sample_cli.h"
#include "ops/causal_attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/linear_attention.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "tests/test_util.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#endif

using namespace iflame;
using namespace iflame::test;
using profiler::OpStats;

namespace {

// Profiling on for one test, off and forgotten afterwards (also when it fails).
struct Profiling {
  Profiling() {
    profiler::reset();
    profiler::set_enabled(true);
  }
  ~Profiling() {
    profiler::set_enabled(false);
    profiler::reset();
  }
};

const OpStats* row_of(const std::vector<OpStats>& rows, const std::string& name) {
  for (const OpStats& r : rows)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace

TEST_CASE("profile: nothing is recorded while the profiler is off") {
  profiler::reset();
  REQUIRE_FALSE(profiler::enabled());
  const Tensor x = random_tensor({4, 8}, 1), w = random_tensor({3, 8}, 2);
  (void)ops::linear_forward(x, w, nullptr, DType::F32);
  (void)x.clone();
  (void)ops::add(x, x);
  CHECK(profiler::collect().empty());
}

TEST_CASE("profile: linear and gemm count exactly 2*m*k*n FLOPs per product, and their bytes") {
  const int64_t m = 37, k = 64, n = 48;
  const Tensor x = random_tensor({m, k}, 1), w = random_tensor({n, k}, 2), bias = random_tensor({n}, 3);
  const Tensor gy = random_tensor({m, n}, 4);
  Tensor gw = Tensor::zeros({n, k}), gb = Tensor::zeros({n}), gx;
  Tensor c = Tensor::empty({m, n});
  std::vector<OpStats> rows;
  {
    Profiling on;
    (void)ops::linear_forward(x, w, &bias, DType::F32);
    ops::linear_backward(gy, x, w, DType::F32, &gx, gw, &gb);
    ops::gemm(x, false, w, true, c, 1.0f, 0.0f, DType::F32);
    rows = profiler::collect();
  }
  REQUIRE(rows.size() == 3);
  const OpStats* fwd = row_of(rows, "linear_forward");
  REQUIRE(fwd);
  CHECK(fwd->calls == 1);
  CHECK(fwd->device == Device::CPU);
  CHECK(fwd->math == DType::F32);
  CHECK(fwd->flops == 2.0 * m * k * n);
  CHECK(fwd->bytes == 4.0 * (m * k + n * k + n + m * n));  // x, W, bias read; y written
  CHECK(fwd->ms > 0);
  const OpStats* bwd = row_of(rows, "linear_backward");
  REQUIRE(bwd);
  CHECK(bwd->flops == 4.0 * m * k * n);  // grad_x and grad_weight
  // grad_y, x, W read; grad_x written; grad_weight and grad_bias read and written.
  CHECK(bwd->bytes == 4.0 * (m * n + m * k + n * k + m * k + 2 * n * k + 2 * n));
  const OpStats* g = row_of(rows, "gemm");
  REQUIRE(g);
  CHECK(g->flops == 2.0 * m * k * n);
  CHECK(g->bytes == 4.0 * (m * k + n * k + m * n));  // beta 0: c only written
  for (const OpStats& r : rows) CHECK(r.ms > 0);
}

TEST_CASE("profile: a known sequence of ops gives its names, call counts, FLOPs and bytes") {
  const int64_t B = 2, T = 5, H = 3, D = 8;
  const Tensor a = random_tensor({5, 7}, 1), b = random_tensor({5, 7}, 2);
  const Tensor q = random_tensor({B, T, H, D}, 3), k = random_tensor({B, T, H, D}, 4),
               v = random_tensor({B, T, H, D}, 5);
  const Tensor q2 = random_tensor({B, 2, H, D}, 6);
  const Tensor qkv = random_tensor({2, 3 * 2 * 8}, 7);  // B = 2, H = 2, D = 8
  Tensor k_dst = Tensor::empty({2, 2, 8}), v_dst = Tensor::empty({2, 2, 8});
  const Tensor position = Tensor::from_ints({4}, {1});
  std::vector<OpStats> rows;
  {
    Profiling on;
    for (int i = 0; i < 3; i++) (void)ops::add(a, b);
    Tensor lse;
    (void)ops::causal_attention_forward(q, k, v, 0.3f, &lse);
    (void)ops::causal_attention_forward(q2, k, v, 0.3f, nullptr);  // Tq = 2 of Tk = 5
    (void)ops::linear_attention_forward(q, k, v, ops::linear_attention_slopes(int(H)));
    (void)a.clone();
    (void)Tensor::zeros({3, 3});
    // On the CPU qkv_rope_step slices, copies and rotates: one qkv_rope_step
    // call, and no copy of its own.
    (void)ops::qkv_rope_step(qkv, 2, position, 1, k_dst, v_dst);
    rows = profiler::collect();
  }
  std::vector<std::string> names;
  for (const OpStats& r : rows) names.push_back(r.name);
  std::sort(names.begin(), names.end());
  REQUIRE(names == std::vector<std::string>{"add", "causal_attention_forward", "copy", "fill",
                                          "linear_attention_forward", "qkv_rope_step"});
  for (const OpStats& r : rows) CHECK(r.ms > 0);
  // Sorted by time, slowest first.
  for (size_t i = 1; i < rows.size(); i++) CHECK(rows[i - 1].ms >= rows[i].ms);

  const OpStats* add = row_of(rows, "add");
  CHECK(add->calls == 3);
  CHECK(add->flops == 0);
  CHECK(add->bytes == 3 * 3 * a.nbytes());  // a, b read, the sum written, three times

  // Causal pairs per (batch, head): Tq*Tk - Tq*(Tq-1)/2 = 15 for Tq = Tk = 5
  // (= T(T+1)/2), 9 for Tq = 2, Tk = 5 (queries see 4 and 5 keys); two products
  // of 2 FLOPs per multiply-add: 4*B*H*D per pair.
  const OpStats* attn = row_of(rows, "causal_attention_forward");
  CHECK(attn->calls == 2);
  CHECK(attn->flops == 4.0 * B * H * D * (15 + 9));
  CHECK(attn->bytes == (2.0 * q.nbytes() + 2 * k.nbytes() + 4 * B * H * T) + (2.0 * q2.nbytes() + 2 * k.nbytes()));

  const OpStats* lin = row_of(rows, "linear_attention_forward");
  CHECK(lin->flops == 4.0 * B * T * H * D * D);  // S += k^T v and o = q S, 2*D^2 each per position and head
  CHECK(lin->bytes == 4.0 * q.nbytes());

  CHECK(row_of(rows, "copy")->bytes == 2.0 * a.nbytes());
  CHECK(row_of(rows, "fill")->bytes == 9 * 4);
  CHECK(row_of(rows, "qkv_rope_step")->calls == 1);
  CHECK(row_of(rows, "qkv_rope_step")->bytes == 2.0 * qkv.nbytes());
}

TEST_CASE("profile: an op that throws closes its scope; the next op is recorded") {
  const Tensor table = random_tensor({10, 4}, 1);
  const Tensor bad = Tensor::from_ints({1, 99}, {2});
  const Tensor x = random_tensor({3, 4}, 2);
  std::vector<OpStats> rows;
  {
    Profiling on;
    CHECK_THROWS_AS(ops::embedding_forward(table, bad, DType::F32), Error);  // checked inside the scope
    (void)ops::scale(x, 2.0f);
    rows = profiler::collect();
  }
  REQUIRE(row_of(rows, "scale"));
  CHECK(row_of(rows, "scale")->calls == 1);
  CHECK(row_of(rows, "embedding_forward")->calls == 1);
}

TEST_CASE("profile: reset forgets everything; the table prints every op and a total") {
  const Tensor x = random_tensor({16, 32}, 1), w = random_tensor({32}, 2), w8 = random_tensor({8, 32}, 3);
  Profiling on;
  Tensor inv_rms;
  (void)ops::rms_norm_forward(x, w, 1e-5f, inv_rms);
  (void)ops::scale(x, 0.5f);
  (void)ops::linear_forward(x, w8, nullptr, DType::BF16);
  const std::vector<OpStats> rows = profiler::collect();
  REQUIRE(rows.size() == 3);
  const std::string table = profiler::format_table(rows);
  for (const char* name : {"rms_norm_forward", "scale", "linear_forward", "total", "TFLOP/s", "GB/s", "x floor"})
    CHECK_MESSAGE(table.find(name) != std::string::npos, name);
  CHECK(table.find("bf16") != std::string::npos);  // the product dtype of the bf16 linear
  CHECK(table.find("H100") != std::string::npos);  // the peaks are stated
  profiler::reset();
  CHECK(profiler::collect().empty());
  (void)ops::scale(x, 0.5f);
  CHECK(profiler::collect().size() == 1);  // still enabled after reset
}

TEST_CASE("profile: the floor is the larger of the FLOP time at the dtype's peak and the byte time") {
  profiler::Peaks peaks;  // 989 TFLOP/s bf16, 67 TFLOP/s f32, 3350 GB/s
  OpStats r;
  r.math = DType::BF16;
  r.flops = 989e9;  // 1 ms at the bf16 tensor-core peak
  r.bytes = 3350e6 / 2;
  CHECK(profiler::floor_ms(r, peaks) == doctest::Approx(1.0));
  r.math = DType::F32;  // the same FLOPs on the f32 peak
  CHECK(profiler::floor_ms(r, peaks) == doctest::Approx(989.0 / 67.0));
  r.flops = 0;
  r.bytes = 2 * 3350e6;  // 2 ms of memory traffic
  CHECK(profiler::floor_ms(r, peaks) == doctest::Approx(2.0));
}

TEST_CASE("profile: ./sample --bench --profile runs and leaves the profiler off") {
  std::vector<const char*> args = {"sample", "--bench", "--model", "tiny", "--tokens", "12",
                                   "--batch", "1", "--device", "cpu", "--profile"};
  CHECK(infer::sample_main(int(args.size()), const_cast<char**>(args.data())) == 0);
  CHECK_FALSE(profiler::enabled());
  CHECK(profiler::collect().empty());
}

TEST_CASE("profile: CUDA ops record positive event times; a graph capture records nothing" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
#ifdef IFLAME_CUDA
  const Tensor x = random_tensor({256, 512}, 1).to(Device::CUDA), w = random_tensor({384, 512}, 2).to(Device::CUDA);
  Tensor acc = Tensor::zeros({256, 512}, DType::F32, Device::CUDA);
  const Tensor one = Tensor::full({256, 512}, 1.0f, DType::F32, Device::CUDA);
  (void)ops::linear_forward(x, w, nullptr, DType::BF16);  // warm-up: cuBLAS handle and heuristics
  cuda_synchronize();
  Profiling on;
  for (int i = 0; i < 3; i++) (void)ops::linear_forward(x, w, nullptr, DType::BF16);
  ops::add_inplace(acc, one);
  std::vector<OpStats> rows = profiler::collect();
  const OpStats* lin = row_of(rows, "linear_forward");
  REQUIRE(lin);
  CHECK(lin->device == Device::CUDA);
  CHECK(lin->math == DType::BF16);
  CHECK(lin->calls == 3);
  CHECK(lin->flops == 3 * 2.0 * 256 * 512 * 384);
  CHECK(lin->ms > 0);
  REQUIRE(row_of(rows, "add_inplace"));
  CHECK(row_of(rows, "add_inplace")->ms > 0);

  // Inside a capture nothing is recorded and nothing fails; the graph still does
  // the work. (No allocation inside the capture: the caching allocator may call cudaMalloc.)
  Tensor copy = Tensor::empty({256, 512}, DType::BF16, Device::CUDA);
  acc.zero_();
  cuda_synchronize();
  profiler::reset();
  cudaGraph_t graph = nullptr;
  CUDA_CHECK(cudaStreamBeginCapture(cuda_stream(), cudaStreamCaptureModeThreadLocal));
  try {
    ops::add_inplace(acc, one);
    copy.copy_from(acc);  // a conversion through the core scope
  } catch (...) {
    cudaStreamEndCapture(cuda_stream(), &graph);
    throw;
  }
  CUDA_CHECK(cudaStreamEndCapture(cuda_stream(), &graph));
  cudaGraphExec_t exec = nullptr;
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaGraphLaunch(exec, cuda_stream()));
  CUDA_CHECK(cudaGraphLaunch(exec, cuda_stream()));
  cuda_synchronize();
  CHECK(profiler::collect().empty());
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CHECK(acc.to_floats()[0] == 2.0f);
  CHECK(copy.to_floats()[0] == 2.0f);
  // After the capture, ops are recorded again.
  profiler::reset();
  ops::add_inplace(acc, one);
  rows = profiler::collect();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].name == "add_inplace");
  CHECK(rows[0].ms > 0);
#endif
}
