// cuda/small_product_mma.cu: decode_product and decode_product_swiglu for
// kSmallBatch + 1 .. kSmallBatchMma rows on the tensor cores (ops/small_product.h):
// one kernel where cuBLAS took three or four (x's conversion to bf16, the bias
// fill, the product, and the gate).
//
// At these sizes the product is a read of W (bf16 [N, K], 0.5-3 MB, from HBM)
// and of x (f32 [rows, K], up to 350 KB at 64 x 1368, from L2 by every block
// that needs it). Staging all of x in each block would cost microseconds of L2
// reads per block at 64 rows, so K is split as well: the blocks of one output
// tile form a thread-block cluster (at most 8, one slice of K each), and sum
// their partial products through distributed shared memory, in a fixed order
// (no atomics: the same inputs give the same bits, as graph replays expect).
//
// Grid: (cluster, tiles), a cluster per tile of kTileOut = 64 outputs (64 W
// rows, or 64 gate units = 128 W rows: a from rows u, c from rows F + u).
// Block: 8 warps; warp w owns the tile's outputs 8w .. 8w+7 (one 8-column
// n-tile of the mma, two for the gate) for every 16-row tile of x, over the
// block's slice of K, with mma.sync m16n8k16 bf16 x bf16 -> f32. Steps:
//  1. each lane loads all its W words of the slice into registers (W does not
//     depend on the previous kernel, so these loads overlap x's staging);
//  2. the block stages its slice of x as bf16 (rounded to nearest even, as
//     cuBLAS's bf16 products and the CPU's emulation round it), rows padded
//     with zeros to a multiple of 16 and K to a multiple of 32;
//  3. the mma loop; 4. the partial sums go to shared memory (over the staged
//     x); 5. after a cluster barrier, block r sums every block's partials of
//     its 1/cluster share of the tile's outputs, adds the bias, applies the
//     gate and writes y; 6. a last barrier keeps each block's shared memory
//     alive until the others have read it.
//
// K is walked in chunks of 32 (two k-steps), with the k order inside a chunk
// permuted identically for A and B (a sum does not care about its order), so
// that every operand comes as one 16-byte load: lane (g = lane / 4, t = lane %
// 4) holds k = 8t .. 8t+7 of W's row g and of x's rows g and g + 8, words
// 0, 1 feeding the first k-step and 2, 3 the second. In the PTX layout
// (ops/cuda/mma_fragments.h) A register r holds k = 2t + 8 (r >> 1), +1 and B
// register r holds k = 2t + 8r, +1; here both stand for the real k = 8t + 4s +
// 2h, +1 (s the k-step, h = r >> 1 for A and r for B): one bijection of the 16
// k of a step, the same for A and B.
//
// Shared memory: x as rows_pad x x_pitch bf16, x_pitch = 32 (chunks | 1) for
// the widest slice's chunks: an odd number of 64-byte chunks puts rows g and
// g + 1 64 bytes apart in the banks, so each quarter warp's 16-byte loads
// (two rows x 64 bytes) are free of conflicts. The partials take its place
// afterwards: rows_pad x (W rows of the tile + 8) f32, the 8 of padding
// spreading the 8-byte stores of the fragment rows over the banks. Bytes per
// block: max(2 rows_pad x_pitch, 4 rows_pad (64 or 128 + 8)), rows_pad the rows
// rounded up to 16; e.g. 64 rows of K = 1368: 6 chunks per block, x_pitch 224,
// 28 KiB (35 KiB for the gate's partials).
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_check.h"
#include "ops/cuda/elem_util.cuh"
#include "ops/cuda/mma_fragments.h"
#include "ops/cuda/mma_ptx.cuh"
#include "ops/small_product.h"

namespace iflame::ops::cuda {

namespace {

namespace cg = cooperative_groups;
using mma::mma_bf16;
using mma::pack_bf16x2;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTileOut = kWarps * 8;  // outputs (columns, or gate units) per cluster
constexpr int kMaxCluster = 8;        // the portable cluster size
constexpr int kMaxRowTiles = kSmallBatchMma / 16;
static_assert(kSmallBatchMma % 16 == 0, "x's rows are padded to 16-row tiles");

// How a product of rows x K is laid out (host and kernel agree through it).
struct Plan {
  int chunks;      // 32-wide chunks of K, the last zero-padded
  int cluster;     // blocks per output tile, one slice of K each
  int per_block;   // chunks of the widest slice
  int x_pitch;     // bf16 per staged row of x
  int part_pitch;  // floats per row of the partial sums
  int64_t shared;  // bytes of dynamic shared memory per block
};

Plan plan_for(int64_t rows, int64_t K, bool gate) {
  Plan p;
  p.chunks = int((K + 31) / 32);
  p.cluster = std::max(1, std::min(kMaxCluster, p.chunks));
  p.per_block = (p.chunks + p.cluster - 1) / p.cluster;
  p.x_pitch = 32 * (p.per_block | 1);
  p.part_pitch = (gate ? 2 : 1) * kTileOut + 8;
  const int64_t rows_pad = (rows + 15) / 16 * 16;
  p.shared = std::max<int64_t>(rows_pad * p.x_pitch * int64_t(sizeof(uint16_t)),
                               rows_pad * p.part_pitch * int64_t(sizeof(float)));
  return p;
}

// y [rows, outputs] (outputs = N, or N / 2 with kGate) as the file's header
// describes. kHeld: chunks of W a lane holds in registers at once (a slice
// wider than that is walked kHeld chunks at a time).
template <int kHeld, bool kGate>
__global__ void __launch_bounds__(kThreads)
    small_product_mma_kernel(const float* __restrict__ x, const bf16* __restrict__ W,
                             const float* __restrict__ bias, float* __restrict__ y, int rows, int K, int N,
                             int chunks, int x_pitch, int part_pitch) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(16) unsigned char smem[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(smem);  // [rows_pad, x_pitch] bf16 bits
  float* part = reinterpret_cast<float*>(smem);      // [rows_pad, part_pitch], after the products
  cg::cluster_group cluster = cg::this_cluster();
  const int blocks = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = mma::group_of(lane), t = mma::thread_in_group(lane);
  const int outputs = kGate ? N / 2 : N;
  const int tile0 = blockIdx.y * kTileOut;
  const int rows_pad = (rows + 15) & ~15, row_tiles = rows_pad / 16;
  // This block's slice of K: chunks [first, first + count), balanced.
  const int first = rank * chunks / blocks, count = (rank + 1) * chunks / blocks - first;

  // 1. W: this lane's row g of the warp's n-tile (and its c row for the gate),
  // k = 8t .. 8t+7 of each chunk; zeros past N or K.
  const int unit = tile0 + 8 * warp + g;
  const bool unit_ok = unit < outputs;
  const bf16* wa = W + (long long)(unit_ok ? unit : 0) * K;
  const bf16* wc = kGate ? W + (long long)(unit_ok ? unit + outputs : 0) * K : wa;
  uint4 held_a[kHeld], held_c[kHeld];
  auto load_w = [&](int from) {
#pragma unroll
    for (int j = 0; j < kHeld; j++) {
      const int k = 32 * (first + from + j) + 8 * t;
      const bool ok = unit_ok && from + j < count && k < K;
      held_a[j] = ok ? __ldg(reinterpret_cast<const uint4*>(wa + k)) : make_uint4(0, 0, 0, 0);
      if constexpr (kGate) held_c[j] = ok ? __ldg(reinterpret_cast<const uint4*>(wc + k)) : make_uint4(0, 0, 0, 0);
    }
  };
  load_w(0);

  // 2. x's slice as bf16, 8 values (two float4 in, one 16-byte store) per piece.
  const int pieces = 4 * count, k0 = 32 * first;
#pragma unroll 4
  for (int p = threadIdx.x; p < rows_pad * pieces; p += kThreads) {
    const int b = p / pieces, q = p - b * pieces, k = k0 + 8 * q;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (b < rows && k < K) {
      const float4* src = reinterpret_cast<const float4*>(x + (long long)b * K + k);
      const float4 lo = __ldg(src), hi = __ldg(src + 1);
      v = make_uint4(pack_bf16x2(lo.x, lo.y), pack_bf16x2(lo.z, lo.w), pack_bf16x2(hi.x, hi.y),
                     pack_bf16x2(hi.z, hi.w));
    }
    *reinterpret_cast<uint4*>(xs + b * x_pitch + 8 * q) = v;
  }
  __syncthreads();

  // 3. The products: acc[m] is rows 16m .. 16m+15 of the warp's n-tile.
  float acc_a[kMaxRowTiles][4] = {}, acc_c[kMaxRowTiles][4] = {};
  for (int from = 0; from < count; from += kHeld) {
    if (from > 0) load_w(from);
#pragma unroll
    for (int j = 0; j < kHeld; j++) {
      if (from + j < count) {
        const uint16_t* col = xs + 32 * (from + j) + 8 * t;
#pragma unroll
        for (int m = 0; m < kMaxRowTiles; m++) {
          if (m < row_tiles) {
            const uint4 lo = *reinterpret_cast<const uint4*>(col + (16 * m + g) * x_pitch);
            const uint4 hi = *reinterpret_cast<const uint4*>(col + (16 * m + g + 8) * x_pitch);
            const uint32_t s0[4] = {lo.x, hi.x, lo.y, hi.y}, s1[4] = {lo.z, hi.z, lo.w, hi.w};
            mma_bf16(acc_a[m], s0, held_a[j].x, held_a[j].y);
            mma_bf16(acc_a[m], s1, held_a[j].z, held_a[j].w);
            if constexpr (kGate) {
              mma_bf16(acc_c[m], s0, held_c[j].x, held_c[j].y);
              mma_bf16(acc_c[m], s1, held_c[j].z, held_c[j].w);
            }
          }
        }
      }
    }
  }

  // 4. The partials over x's staging (every warp is done reading it): element
  // i of acc[m] is row 16m + g + 8 (i >> 1), column 2t + (i & 1) of the n-tile.
  __syncthreads();
#pragma unroll
  for (int m = 0; m < kMaxRowTiles; m++) {
    if (m < row_tiles) {
      float* at = part + (16 * m + g) * part_pitch + 8 * warp + 2 * t;
      *reinterpret_cast<float2*>(at) = make_float2(acc_a[m][0], acc_a[m][1]);
      *reinterpret_cast<float2*>(at + 8 * part_pitch) = make_float2(acc_a[m][2], acc_a[m][3]);
      if constexpr (kGate) {
        *reinterpret_cast<float2*>(at + kTileOut) = make_float2(acc_c[m][0], acc_c[m][1]);
        *reinterpret_cast<float2*>(at + kTileOut + 8 * part_pitch) = make_float2(acc_c[m][2], acc_c[m][3]);
      }
    }
  }
  cluster.sync();  // every block's partials written and visible to the cluster

  // 5. Block `rank` finishes every blocks-th element of the tile, summing the
  // slices in rank order.
  for (int e = rank * kThreads + threadIdx.x; e < rows * kTileOut; e += blocks * kThreads) {
    const int b = e / kTileOut, c = e % kTileOut, out = tile0 + c;
    if (out >= outputs) continue;
    float a = 0.0f, cv = 0.0f;
    for (int r = 0; r < blocks; r++) {
      const float* src = cluster.map_shared_rank(part, r) + b * part_pitch + c;
      a += src[0];
      if constexpr (kGate) cv += src[kTileOut];
    }
    a += bias ? bias[out] : 0.0f;
    if constexpr (!kGate) {
      y[(long long)b * outputs + out] = a;
    } else {
      cv += bias ? bias[out + outputs] : 0.0f;
      y[(long long)b * outputs + out] = a * sigmoid(a) * cv;
    }
  }
  cluster.sync();  // 6. no block leaves while another still reads its partials
#endif
}

// Launches one instantiation on a cluster of plan.cluster blocks per tile.
template <int kHeld, bool kGate>
void launch(const Plan& plan, unsigned tiles, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
            int rows, int K, int N) {
  auto kernel = small_product_mma_kernel<kHeld, kGate>;
  if (plan.shared > 48 * 1024) {
    // Once per kernel: dynamic shared memory past the default 48 KiB must be
    // asked for (the dispatch keeps it within kSmallBatchMmaShared).
    static const bool allowed = [&] {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmallBatchMmaShared)));
      return true;
    }();
    (void)allowed;
  }
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = unsigned(plan.cluster);
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(plan.cluster), tiles, 1);
  config.blockDim = dim3(kThreads, 1, 1);
  config.dynamicSmemBytes = size_t(plan.shared);
  config.stream = cuda_stream();
  config.attrs = attribute;
  config.numAttrs = 1;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, x.data<float>(), w.data<bf16>(),
                                bias.defined() ? bias.data<float>() : static_cast<const float*>(nullptr),
                                y.data<float>(), rows, K, N, plan.chunks, plan.x_pitch, plan.part_pitch));
  CUDA_CHECK_LAUNCH();
}

template <bool kGate>
void launch_held(const Plan& plan, unsigned tiles, const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y,
                 int rows, int K, int N) {
  if (plan.per_block <= 1)
    launch<1, kGate>(plan, tiles, x, w, bias, y, rows, K, N);
  else if (plan.per_block <= 2)
    launch<2, kGate>(plan, tiles, x, w, bias, y, rows, K, N);
  else if (plan.per_block <= 4)
    launch<4, kGate>(plan, tiles, x, w, bias, y, rows, K, N);
  else
    launch<8, kGate>(plan, tiles, x, w, bias, y, rows, K, N);
}

}  // namespace

int64_t small_batch_mma_shared(int64_t rows, int64_t K, bool swiglu) {
  // The kernel needs clusters (sm_90): built for an earlier architecture its
  // body is empty, and the dispatch must not take it.
  static const bool available = [] {
    cudaFuncAttributes attributes;
    CUDA_CHECK(cudaFuncGetAttributes(&attributes, small_product_mma_kernel<1, false>));
    return attributes.binaryVersion >= 90;
  }();
  return available ? plan_for(rows, K, swiglu).shared : -1;
}

Tensor small_batch_product_mma(const Tensor& x, const Tensor& w, const Tensor& bias, bool swiglu) {
  const char* op = swiglu ? "decode_product_swiglu" : "decode_product";
  const int64_t K = w.size(1), N = w.size(0), rows = K > 0 ? x.numel() / K : 0;
  IFLAME_CHECK(x.is_cuda() && x.dtype() == DType::F32 && x.is_contiguous() && w.dtype() == DType::BF16 &&
                   w.is_contiguous() && reinterpret_cast<uintptr_t>(x.raw_data()) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(w.raw_data()) % 16 == 0,
               op, ": the tensor-core kernel needs contiguous, 16-byte aligned f32 x and bf16 W on the GPU, got ",
               x.describe(), " and ", w.describe());
  IFLAME_CHECK(rows >= 1 && rows <= kSmallBatchMma && K % 8 == 0 && (!swiglu || N % 2 == 0), op,
               ": the tensor-core kernel takes 1 to ", kSmallBatchMma, " rows and K % 8 == 0, got x ",
               x.describe(), " and W ", w.describe());
  const Plan plan = plan_for(rows, K, swiglu);
  IFLAME_CHECK(plan.shared <= kSmallBatchMmaShared, op, ": ", rows, " rows of ", K, " need ", plan.shared,
               " bytes of shared memory, past the tensor-core kernel's ", kSmallBatchMmaShared);
  const int64_t outputs = swiglu ? N / 2 : N;
  Tensor y = Tensor::empty({rows, outputs}, DType::F32, Device::CUDA);
  if (outputs == 0) return y;
  const unsigned tiles = unsigned((outputs + kTileOut - 1) / kTileOut);
  if (swiglu)
    launch_held<true>(plan, tiles, x, w, bias, y, int(rows), int(K), int(N));
  else
    launch_held<false>(plan, tiles, x, w, bias, y, int(rows), int(K), int(N));
  return y;
}

}  // namespace iflame::ops::cuda
