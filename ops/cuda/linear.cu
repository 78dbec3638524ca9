// cuda/linear.cu: the dense layer and gemm on cuBLAS (cublasGemmEx, f32 accumulation),
// and a cuBLASLt path for the biased bf16-compute dense layer.
//
// cuBLAS is column-major; a row-major [r, c] matrix is the column-major [c, r]
// matrix of its transpose. So row-major C = op(A) op(B) is computed as the
// column-major C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
// F32 compute uses CUBLAS_COMPUTE_32F under the handle's default math mode,
// which never uses TF32 (the golden tests need exact f32 products).
// Bias, f32 compute (and the fallback below): y is first filled with the bias
// (rounded to y's dtype), then the product is added (beta = 1).
// Bias, bf16 compute: one cublasLtMatmul with the epilogue CUBLASLT_EPILOGUE_BIAS
// adds the bias as it writes the product, so y is written once and never re-read
// (the fill + beta = 1 pair cost a write and a read of y: ~10 ms a training step).
// Column-major, y^T [out, rows] = W x^T: A = W (col-major [in, out], op T, ld in),
// B = x (col-major [in, rows], op N, ld in), D = y (m = out, n = rows, ld out); the
// bias has one value per row of D, in y's dtype as the fill has it. Not the fill's
// numbers bit for bit: on the H100 a bf16 y was more than one bf16 step from the
// fill's on 4.7% of the elements where product and bias nearly cancel, as if the
// product were rounded to bf16 before the bias is added (cuBLASLt documents
// neither; docs/perf.md, sixth session). The algorithm the heuristic
// picks is cached per shape, dtypes and alignments. Where it finds none, or the
// matmul answers NOT_SUPPORTED, the fill + cublasGemmEx path runs instead.
// The kernel choice lt_bias (ops/kernel_choices.h; IFLAME_LT_BIAS=0) turns the
// cuBLASLt path off, for comparing the two.
// Bias gradient: grad_y's column sums, in the pass that converts grad_y to the
// compute dtype when it needs converting (column_sums.cuh: deterministic).
#include <cublasLt.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "core/cuda_check.h"
#include "ops/cuda/column_sums.cuh"
#include "ops/cuda/elem_util.cuh"
#include "ops/linear.h"
#include "ops/kernel_choices.h"

namespace iflame::ops::cuda {

namespace {

cudaDataType cuda_type(DType t) {
  if (t == DType::F32) return CUDA_R_32F;
  if (t == DType::BF16) return CUDA_R_16BF;
  IFLAME_FAIL("gemm: no cuBLAS type for ", dtype_name(t));
}

int as_int(int64_t v, const char* what) {
  IFLAME_CHECK(v >= 0 && v <= INT_MAX, "gemm: ", what, " = ", v, " does not fit cuBLAS's int");
  return static_cast<int>(v);
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(bf16* p, float v) { *p = float_to_bf16(v); }

// y[i, o] = b[o] for every row i: a block per row at a time, its threads across
// the row (coalesced stores, no index division: the row-major flat index with a
// modulo per element ran at a third of the memory's rate).
template <typename T>
__global__ void fill_rows_kernel(T* __restrict__ y, const float* __restrict__ b, long long rows, int out) {
  for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
    T* row = y + r * out;
    for (int o = threadIdx.x; o < out; o += blockDim.x) store(row + o, b[o]);
  }
}

void fill_rows(Tensor& y, const Tensor& bias) {
  const long long out = bias.numel(), rows = y.numel() / out;
  IFLAME_CHECK(out <= INT_MAX, "linear: bias of ", out, " elements");
  const int threads = out >= 512 ? 512 : 128;
  const unsigned blocks = static_cast<unsigned>(std::min<long long>(std::max<long long>(rows, 1), 65535LL * 8));
  if (y.dtype() == DType::F32)
    fill_rows_kernel<<<blocks, threads, 0, cuda_stream()>>>(y.data<float>(), bias.data<float>(), rows, int(out));
  else
    fill_rows_kernel<<<blocks, threads, 0, cuda_stream()>>>(y.data<bf16>(), bias.data<float>(), rows, int(out));
  CUDA_CHECK_LAUNCH();
}

// ---- cuBLASLt: the product with the bias in its epilogue ----------------------------

// Built once, never destroyed (like cublas_handle()).
cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t hh;
    CUBLAS_CHECK(cublasLtCreate(&hh));
    return hh;
  }();
  return h;
}

// cuBLASLt takes its workspace per call: one of its own, allocated once (32 MiB,
// as cublas_handle() gives cuBLAS), so a matmul allocates nothing and can be
// captured in a CUDA graph. Allocated in relaxed capture mode, like the caching
// allocator's blocks, in case the first call comes inside a capture.
constexpr size_t kLtWorkspace = size_t(32) << 20;
void* lt_workspace() {
  static void* w = [] {
    void* p = nullptr;
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    const cudaError_t err = cudaMalloc(&p, kLtWorkspace);
    CUDA_CHECK(cudaThreadExchangeStreamCaptureMode(&mode));
    CUDA_CHECK(err);
    return p;
  }();
  return w;
}

// linear_forward calls the cuBLASLt path has done (lt_bias_matmuls(), for tests).
std::atomic<int64_t> lt_matmuls{0};

// The largest power of two up to 256 that divides the address: what the
// heuristic may assume of a buffer (it assumes 256 bytes unless told).
uint32_t alignment_of(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// What the heuristic's choice depends on: the shape (m = out, n = rows, k = in),
// D's dtype (A and B are bf16) and the alignment of A, B, D and the bias.
using LtKey = std::tuple<int64_t, int64_t, int64_t, int, uint32_t, uint32_t, uint32_t, uint32_t>;

// The descriptors and algorithm for one key; `usable` false when cuBLASLt has
// no algorithm for it (the fallback runs then, without asking again).
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool usable = false;
};

void destroy(LtPlan& p) {
  if (p.a) cublasLtMatrixLayoutDestroy(p.a);
  if (p.b) cublasLtMatrixLayoutDestroy(p.b);
  if (p.d) cublasLtMatrixLayoutDestroy(p.d);
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  p = LtPlan{};
}

// The plans made so far. Training and sampling call ops from one thread at a
// time; the mutex makes concurrent calls safe anyway (it is held across the
// matmul, since a plan's descriptor is given each call's bias pointer). Never
// destroyed (plans may be used until exit); emptied when it grows past
// kMaxLtPlans (row counts that change every step would otherwise pile up).
constexpr size_t kMaxLtPlans = 256;
std::mutex lt_mutex;
std::map<LtKey, LtPlan>& lt_plans() {
  static auto* plans = new std::map<LtKey, LtPlan>();
  return *plans;
}

template <typename T>
void set_desc(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const T& value) {
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attr, &value, sizeof value));
}
template <typename T>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr, const T& value) {
  CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof value));
}

LtPlan make_plan(int64_t m, int64_t n, int64_t k, cudaDataType d_type, const uint32_t align[4],
                 const void* bias) {
  LtPlan p;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  try {
    // f32 accumulation and f32 alpha / beta, as cublasGemmEx with CUBLAS_COMPUTE_32F.
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, int32_t(CUBLAS_OP_T));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, int32_t(CUBLAS_OP_N));
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, uint32_t(CUBLASLT_EPILOGUE_BIAS));
    // The bias's dtype is left unset, so it is D's (cublasLt.h: "Bias vector elements
    // are the same type as the elements of output matrix (Dtype)", the exceptions being
    // integer and fp8 kernels; a f32 bias with a bf16 D is not documented), as the
    // fill rounds it. The heuristic reads the pointer's value for its alignment, so
    // the plan's first pointer is set here.
    set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, uint64_t(k), uint64_t(m), k));  // W
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, uint64_t(k), uint64_t(n), k));  // x
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.d, d_type, uint64_t(m), uint64_t(n), m));       // y (C = D)
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(kLtWorkspace));
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align[0]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align[1]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align[2]);
    set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align[2]);
    st = cublasLtMatmulAlgoGetHeuristic(lt_handle(), p.desc, p.a, p.b, p.d, p.d, pref, 1, &result, &found);
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) CUBLAS_CHECK(st);  // NOT_SUPPORTED: no algorithm
  } catch (...) {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    destroy(p);
    throw;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  p.usable = st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
             result.workspaceSize <= kLtWorkspace;
  if (p.usable) p.algo = result.algo;
  return p;
}

// y2 [rows, out] = x2 [rows, in] W^T + bias in one cublasLtMatmul (bf16 operands,
// f32 accumulation, y2 f32 or bf16). False when cuBLASLt cannot do it: the caller
// then takes the fill + cublasGemmEx path (y2 is untouched).
bool linear_lt(const Tensor& x2, const Tensor& weight, const Tensor& bias, Tensor& y2) {
  const int64_t rows = x2.size(0), in = x2.size(1), out = y2.size(1);
  if (rows == 0 || out == 0) return true;  // nothing to write
  if (in == 0) return false;               // y = bias: the fill does that
  const Tensor xc = x2.to(DType::BF16), wc = weight.to(DType::BF16);
  // The bias in y's dtype (bf16: a copy of `out` elements), on a 16-byte boundary.
  Tensor bc = bias.to(y2.dtype());
  if (alignment_of(bc.raw_data()) < 16) bc = bc.clone();
  const uint32_t align[4] = {alignment_of(wc.raw_data()), alignment_of(xc.raw_data()),
                             alignment_of(y2.raw_data()), alignment_of(bc.raw_data())};
  const cudaDataType d_type = cuda_type(y2.dtype());
  const LtKey key{out, rows, in, int(d_type), align[0], align[1], align[2], align[3]};

  std::lock_guard<std::mutex> lock(lt_mutex);
  auto& plans = lt_plans();
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= kMaxLtPlans) {
      for (auto& kv : plans) destroy(kv.second);
      plans.clear();
    }
    it = plans.emplace(key, make_plan(out, rows, in, d_type, align, bc.raw_data())).first;
  }
  LtPlan& p = it->second;
  if (!p.usable) return false;
  set_desc(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, static_cast<const void*>(bc.raw_data()));
  const float alpha = 1.0f, beta = 0.0f;
  const cublasStatus_t st =
      cublasLtMatmul(lt_handle(), p.desc, &alpha, wc.raw_data(), p.a, xc.raw_data(), p.b, &beta, y2.raw_data(),
                     p.d, y2.raw_data(), p.d, &p.algo, lt_workspace(), kLtWorkspace, cuda_stream());
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
    p.usable = false;  // and from now on for this key
    return false;
  }
  CUBLAS_CHECK(st);
  lt_matmuls.fetch_add(1, std::memory_order_relaxed);
  return true;
}

// ---- the bias gradient: column sums of grad_y, with its conversion in the same pass ----

// Rows [blockIdx.x * rows_per_block, ...) of grad_y [rows, cols]: thread t sums
// column groups t, t + blockDim.x, ... (V columns each) into
// partials[blockIdx.x, :]; with converted, it also writes grad_y rounded to bf16.
template <typename TI, int V>
__global__ void bias_grad_kernel(const TI* __restrict__ grad_y, bf16* __restrict__ converted,
                                 float* __restrict__ partials, long long rows, long long rows_per_block, int cols) {
  const long long r0 = blockIdx.x * rows_per_block;
  const long long r1 = r0 + rows_per_block < rows ? r0 + rows_per_block : rows;
  for (int j = threadIdx.x * V; j < cols; j += blockDim.x * V) {
    float sum[V];
#pragma unroll
    for (int k = 0; k < V; k++) sum[k] = 0.0f;
    for (long long r = r0; r < r1; r++) {
      float v[V];
      load_vec<V>(grad_y, r * cols + j, v);
      if (converted) store_vec<V>(converted, r * cols + j, v);
#pragma unroll
      for (int k = 0; k < V; k++) sum[k] += v[k];
    }
#pragma unroll
    for (int k = 0; k < V; k++) partials[blockIdx.x * (long long)cols + j + k] = sum[k];
  }
}

// grad_bias += column sums of gy [rows, cols] (f32 or bf16, as given); returns gy
// in `compute` (the same tensor when it already is; else converted to bf16 in
// the same pass, or by to() for other conversions).
Tensor bias_grad_and_convert(const Tensor& gy, DType compute, Tensor& grad_bias) {
  const long long rows = gy.size(0);
  const int cols = (int)gy.size(1);
  const bool convert = gy.dtype() != compute && compute == DType::BF16 && gy.dtype() == DType::F32;
  Tensor converted = convert ? Tensor::empty(gy.shape(), DType::BF16, Device::CUDA) : Tensor();
  const RowRuns runs = row_runs(rows);
  Tensor partials = Tensor::empty({(int64_t)runs.blocks, (int64_t)cols}, DType::F32, Device::CUDA);
  auto aligned = [](const Tensor& t, int bytes) {
    return !t.defined() || reinterpret_cast<uintptr_t>(t.raw_data()) % bytes == 0;
  };
  bf16* out = convert ? converted.data<bf16>() : nullptr;
  auto launch = [&](auto kernel, auto* in, int V) {
    kernel<<<runs.blocks, column_threads((cols + V - 1) / V), 0, cuda_stream()>>>(
        in, out, partials.data<float>(), rows, runs.rows_per_block, cols);
  };
  // 16-byte loads where the rows allow them (f32: 4 columns, bf16: 8).
  if (gy.dtype() == DType::F32) {
    if (cols % 4 == 0 && aligned(gy, 16) && aligned(converted, 8))
      launch(bias_grad_kernel<float, 4>, gy.data<float>(), 4);
    else
      launch(bias_grad_kernel<float, 1>, gy.data<float>(), 1);
  } else {
    IFLAME_CHECK(gy.dtype() == DType::BF16, "linear_backward: grad_y must be f32 or bf16, got ", gy.describe());
    if (cols % 8 == 0 && aligned(gy, 16))
      launch(bias_grad_kernel<bf16, 8>, gy.data<bf16>(), 8);
    else
      launch(bias_grad_kernel<bf16, 1>, gy.data<bf16>(), 1);
  }
  CUDA_CHECK_LAUNCH();
  add_column_partials(partials, runs.blocks, cols, grad_bias.data<float>());
  if (convert) return converted;
  return gy.to(compute);
}

}  // namespace

void gemm_mixed(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                float alpha, float beta, DType compute) {
  // Row-major 2-D views whose rows may lie further apart than their length (a
  // column block of a wider matrix): unit stride along a row, the row stride is
  // the leading dimension.
  auto row_major = [](const Tensor& t) {
    return t.ndim() == 2 && t.is_cuda() && (t.size(1) <= 1 || t.strides()[1] == 1) &&
           (t.size(0) <= 1 || t.strides()[0] >= t.size(1));
  };
  IFLAME_CHECK(row_major(a) && row_major(b) && row_major(c),
               "gemm: needs 2-D GPU tensors with rows of unit stride, got a ", a.describe(), ", b ", b.describe(),
               ", c ", c.describe());
  const int64_t m = c.size(0), n = c.size(1), k = transpose_a ? a.size(0) : a.size(1);
  IFLAME_CHECK((transpose_a ? a.size(1) : a.size(0)) == m && (transpose_b ? b.size(1) : b.size(0)) == k &&
                   (transpose_b ? b.size(0) : b.size(1)) == n,
               "gemm: shapes do not match: a ", a.describe(), (transpose_a ? " (T)" : ""), ", b ",
               b.describe(), (transpose_b ? " (T)" : ""), ", c ", c.describe());
  if (m == 0 || n == 0) return;
  // Operands in the compute dtype (no copy when they already are).
  const Tensor ac = a.to(compute), bc = b.to(compute);
  // cuBLAS has no (f32, f32) -> bf16 product: go through an f32 result.
  if (compute == DType::F32 && c.dtype() != DType::F32) {
    Tensor c32 = beta != 0.0f ? c.to(DType::F32) : Tensor::empty(c.shape(), DType::F32, Device::CUDA);
    gemm_mixed(ac, transpose_a, bc, transpose_b, c32, alpha, beta, compute);
    c.copy_from(c32);
    return;
  }
  const cudaDataType ct = cuda_type(compute);
  // Leading dimensions: the row stride (the row length when there is one row),
  // at least 1 even for k == 0 (then cuBLAS just scales c by beta).
  auto ld = [](const Tensor& t, const char* what) {
    const int64_t v = t.size(0) > 1 ? t.strides()[0] : t.size(1);
    return as_int(std::max<int64_t>(v, 1), what);
  };
  CUBLAS_CHECK(cublasGemmEx(cublas_handle(), transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                            transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, as_int(n, "n"), as_int(m, "m"),
                            as_int(k, "k"), &alpha, bc.raw_data(), ct, ld(bc, "lda (b)"), ac.raw_data(), ct,
                            ld(ac, "ldb (a)"), &beta, c.raw_data(), cuda_type(c.dtype()), ld(c, "ldc"),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void gemm(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
          float alpha, float beta, DType compute) {
  gemm_mixed(a, transpose_a, b, transpose_b, c, alpha, beta, compute);
}

namespace {

// The fill + cublasGemmEx form: y2 [rows, out] filled with the bias (rounded to
// y2's dtype), then x2 W^T added (beta = 1); without a bias, the product alone.
void linear_fill_gemm(const Tensor& x2, const Tensor& weight, const Tensor* bias, Tensor& y2, DType compute) {
  if (bias) fill_rows(y2, *bias);
  gemm_mixed(x2, false, weight, true, y2, 1.0f, bias ? 1.0f : 0.0f, compute);
}

}  // namespace

int64_t lt_bias_matmuls() { return lt_matmuls.load(std::memory_order_relaxed); }

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor* bias, DType compute) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  Shape y_shape = x.shape();
  y_shape.back() = out;
  // With f32 compute the result is formed in f32 (bias included) and rounded
  // once into x's dtype; with bf16 compute cuBLAS writes x's dtype directly.
  const DType acc = compute == DType::F32 ? DType::F32 : x.dtype();
  Tensor y = Tensor::empty(y_shape, acc, Device::CUDA);
  Tensor y2 = y.view({rows, out});
  const Tensor x2 = x.view({rows, in});
  // A bias with bf16 compute: in the product's epilogue (cuBLASLt) when it can.
  const bool lt = bias && compute == DType::BF16 && kernel_choices().lt_bias && linear_lt(x2, weight, *bias, y2);
  if (!lt) linear_fill_gemm(x2, weight, bias, y2, compute);
  return y.to(x.dtype());
}

void linear_backward(const Tensor& grad_y, const Tensor& x, const Tensor& weight, DType compute,
                     Tensor* grad_x, Tensor& grad_weight, Tensor* grad_bias, bool accumulate_grad_x) {
  const int64_t in = weight.size(1), out = weight.size(0), rows = x.numel() / in;
  // Convert each operand to the compute dtype once (no copy when it already is);
  // with a bias, its gradient (grad_y's column sums, as given: f32 sums) comes
  // from the same pass over grad_y.
  const Tensor gy = grad_bias && rows > 0 ? bias_grad_and_convert(grad_y.view({rows, out}), compute, *grad_bias)
                                          : grad_y.view({rows, out}).to(compute);
  if (grad_x) {  // grad_x = grad_y W (+ grad_x, beta = 1, when accumulating)
    if (!accumulate_grad_x) *grad_x = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
    Tensor gx = grad_x->view({rows, in});
    gemm_mixed(gy, false, weight.to(compute), false, gx, 1.0f, accumulate_grad_x ? 1.0f : 0.0f, compute);
  }
  // grad_weight += grad_y^T x (f32 accumulation, beta = 1)
  gemm_mixed(gy, true, x.view({rows, in}).to(compute), false, grad_weight, 1.0f, 1.0f, compute);
}

void linear_pair_backward(const Tensor& grad_ab, const Tensor& x, const Tensor& packed_weight, int64_t hidden,
                          DType compute, Tensor* grad_x, Tensor& grad_w1, Tensor& grad_w2, bool accumulate_grad_x) {
  const int64_t in = x.size(-1), rows = x.numel() / in, padded = packed_weight.size(0) / 2;
  const Tensor g = grad_ab.view({rows, 2 * padded}).to(compute), x2 = x.view({rows, in}).to(compute);
  if (grad_x) {  // grad_x = grad_ab W (+ grad_x, beta = 1, when accumulating): one product over 2P
    if (!accumulate_grad_x) *grad_x = Tensor::empty(x.shape(), x.dtype(), Device::CUDA);
    Tensor gx = grad_x->view({rows, in});
    gemm_mixed(g, false, packed_weight.to(compute), false, gx, 1.0f, accumulate_grad_x ? 1.0f : 0.0f, compute);
  }
  // grad_w += (a block of grad_ab's columns)^T x: the block read in place, its row stride 2P.
  gemm_mixed(g.slice(1, 0, hidden), true, x2, false, grad_w1, 1.0f, 1.0f, compute);
  gemm_mixed(g.slice(1, padded, padded + hidden), true, x2, false, grad_w2, 1.0f, 1.0f, compute);
}

}  // namespace iflame::ops::cuda
