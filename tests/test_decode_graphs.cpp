// test_decode_graphs.cpp: the position-free decoding ops (ops/decode_position.h,
// ops/rope.h's qkv_rope_step, ops/cached_attention.h, ops/small_product.h),
// the allocator's private pools, and decoding replayed from CUDA graphs
// (infer/decode.h's DecodeGraphs) against plain steps.
#include <cmath>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/random.h"
#include "infer/decode.h"
#include "ops/cached_attention.h"
#include "ops/decode_position.h"
#include "ops/elementwise.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"
#include "ops/small_product.h"
#include "ops/swiglu.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;
using namespace iflame::infer;
using namespace iflame::ops;

namespace {

Tensor position_tensor(int32_t p, Device device) { return Tensor::from_ints({p}, {1}).to(device); }

// START row, then coordinates: B rows of T tokens.
Tensor some_tokens(int64_t B, int64_t T, uint64_t seed) {
  std::vector<int32_t> t(B * T);
  Generator g(seed);
  Tensor u = Tensor::empty({B * T}, DType::F32);
  fill_uniform(u, g, 0.0f, 128.99f);
  for (int64_t i = 0; i < B * T; i++) t[i] = (i % T) < 9 ? kStartToken : int32_t(u.data<float>()[i]);
  return Tensor::from_ints(t, {B, T});
}

}  // namespace

TEST_CASE("sample: the position-free decoding ops read the level position from the counter (CPU)") {
  // p = 23: level 0 works at 23, level 1 at 7, level 2 at 2.
  const int64_t B = 2, H = 3, D = 32, HD = H * D;
  const Tensor qkv = random_tensor({B, 3 * HD}, 5);
  for (int64_t div : {1, 3, 9}) {
    const Tensor pos = position_tensor(23, Device::CPU);
    const int64_t p = 23 / div;
    Tensor k_cache = Tensor::zeros({B, 30, H, D}), v_cache = Tensor::zeros({B, 30, H, D});
    const Tensor q = qkv_rope_step(qkv, H, pos, div, k_cache, v_cache);
    const Shape split = {B, 1, H, D};
    CHECK(max_abs_diff(q, ops::rope_forward(qkv.slice(1, 0, HD).contiguous().view(split), p)) == 0.0);
    CHECK(max_abs_diff(k_cache.slice(1, p, p + 1).contiguous(),
                       ops::rope_forward(qkv.slice(1, HD, 2 * HD).contiguous().view(split), p)) == 0.0);
    CHECK(max_abs_diff(v_cache.slice(1, p, p + 1).contiguous(), qkv.slice(1, 2 * HD, 3 * HD).contiguous().view(split)) == 0.0);
    // Nothing else of the cache was written.
    CHECK(k_cache.slice(1, p + 1, 30).to_floats() == std::vector<float>(B * (29 - p) * HD, 0.0f));
    CHECK(max_abs_diff(cached_attention_at(q, k_cache, v_cache, pos, div, 0.2f),
                       cached_attention_step(q, k_cache, v_cache, p + 1, 0.2f)) == 0.0);
    Tensor group = Tensor::zeros({B, 3, 8});
    const Tensor x = random_tensor({B, 1, 8}, 9);
    write_group_slot(group, x, pos, div);
    for (int64_t s = 0; s < 3; s++)
      CHECK((max_abs_diff(group.slice(1, s, s + 1).contiguous(), x) == 0.0) == (s == p % 3));
  }
  Tensor pos = position_tensor(41, Device::CPU);
  advance_position(pos);
  CHECK(pos.to_ints()[0] == 42);
  // The gate and the residual add + norm of a step are the training ops
  // (swiglu_packed_forward, add_rms_norm_forward) on the step's shapes.
  const Tensor ab = random_tensor({3, 1, 2 * 7}, 11, -4.0f, 4.0f);
  CHECK(max_abs_diff(ops::swiglu_packed_forward(ab), ops::swiglu_forward(ab.slice(2, 0, 7).contiguous(),
                                                                         ab.slice(2, 7, 14).contiguous())) == 0.0);
  Tensor h, inv, inv2;
  const Tensor x = random_tensor({3, 1, 40}, 12), y = random_tensor({3, 1, 40}, 13), w = random_tensor({40}, 14);
  const Tensor n = ops::add_rms_norm_forward(x, y, w, 1e-6f, h, inv, DType::F32);
  CHECK(max_abs_diff(h, ops::add(x, y)) == 0.0);
  CHECK(max_abs_diff(n, ops::rms_norm_forward(ops::add(x, y), w, 1e-6f, inv2)) == 0.0);
  Tensor n_dst = n;
  CHECK_THROWS_WITH_AS(qkv_rope_step(qkv, H, pos, 2, h, n_dst), doctest::Contains("div must be 1, 3 or 9"), Error);
}

TEST_CASE("sample: the position-free decoding ops on the GPU equal the CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 3, H = 5, D = 32, HD = H * D, cap = 400;
  const Tensor qkv = random_tensor({B, 3 * HD}, 21, -2.0f, 2.0f);
  for (int64_t div : {1, 3, 9}) {
    for (int32_t p0 : {0, 8, 100, 359}) {
      CAPTURE(div);
      CAPTURE(p0);
      const Tensor pos_c = position_tensor(p0, Device::CPU), pos_g = position_tensor(p0, Device::CUDA);
      Tensor kc = random_tensor({B, cap, H, D}, 22), vc = random_tensor({B, cap, H, D}, 23);
      Tensor kg = kc.to(Device::CUDA), vg = vc.to(Device::CUDA);
      const Tensor qc = qkv_rope_step(qkv, H, pos_c, div, kc, vc);
      const Tensor qg = qkv_rope_step(qkv.to(Device::CUDA), H, pos_g, div, kg, vg);
      // sinf/cosf of the same f32 angle; the products may be contracted differently.
      CHECK(max_abs_diff(qc, qg) <= 1e-5);
      CHECK(max_abs_diff(kc, kg) <= 1e-5);
      CHECK(max_abs_diff(vc, vg) == 0.0);
      CHECK(max_abs_diff(cached_attention_at(qc, kc, vc, pos_c, div, 0.17f),
                         cached_attention_at(qg, kg, vg, pos_g, div, 0.17f)) <= 1e-5);
      // bf16 caches (bf16 products): the f32 results rounded once, q in bf16 too.
      Tensor kb = Tensor::zeros({B, cap, H, D}, DType::BF16, Device::CUDA), vb = kb.clone();
      const Tensor qb = qkv_rope_step(qkv.to(Device::CUDA), H, pos_g, div, kb, vb);
      CHECK(qb.dtype() == DType::BF16);
      const int64_t row = p0 / div;
      // |x| < 4 here, so rounding to bf16 moves a value by at most 2^-7 (plus the f32 tolerance).
      CHECK(max_abs_diff(qb, qc) <= 1.0 / 128 + 1e-5);
      CHECK(max_abs_diff(kb.slice(1, row, row + 1), kc.slice(1, row, row + 1)) <= 1.0 / 128 + 1e-5);
      CHECK(max_abs_diff(vb.slice(1, row, row + 1), vc.slice(1, row, row + 1)) <= 1.0 / 128);
      Tensor k3c = Tensor::zeros({B, H, D}), v3c = Tensor::zeros({B, H, D});
      Tensor k3g = k3c.to(Device::CUDA), v3g = v3c.to(Device::CUDA);
      qkv_rope_step(qkv, H, pos_c, div, k3c, v3c);
      qkv_rope_step(qkv.to(Device::CUDA), H, pos_g, div, k3g, v3g);
      CHECK(max_abs_diff(k3c, k3g) <= 1e-5);
      CHECK(max_abs_diff(v3c, v3g) == 0.0);
      Tensor gc = random_tensor({B, 3, 33}, 24), gg = gc.to(Device::CUDA);
      const Tensor x = random_tensor({B, 1, 33}, 25);
      write_group_slot(gc, x, pos_c, div);
      write_group_slot(gg, x.to(Device::CUDA), pos_g, div);
      CHECK(max_abs_diff(gc, gg) == 0.0);
    }
  }
  Tensor pos = position_tensor(7, Device::CUDA);
  advance_position(pos);
  advance_position(pos);
  CHECK(pos.to(Device::CPU).to_ints()[0] == 9);
  const Tensor ab = random_tensor({5, 1, 2 * 1365}, 26, -6.0f, 6.0f);
  CHECK(max_abs_diff(ops::swiglu_packed_forward(ab), ops::swiglu_packed_forward(ab.to(Device::CUDA))) <= 1e-5);
  const Tensor x = random_tensor({7, 1, 515}, 27), y = random_tensor({7, 1, 515}, 28), w = random_tensor({515}, 29);
  Tensor hc, hg, inv_c, inv_g;
  const Tensor nc = ops::add_rms_norm_forward(x, y, w, 1e-6f, hc, inv_c, DType::F32);
  const Tensor ng = ops::add_rms_norm_forward(x.to(Device::CUDA), y.to(Device::CUDA), w.to(Device::CUDA), 1e-6f, hg,
                                              inv_g, DType::F32);
  CHECK(max_abs_diff(hc, hg) == 0.0);
  CHECK(max_abs_diff(nc, ng) <= 1e-5);
}

TEST_CASE("sample: the cached attention step split over several blocks per head equals the CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // Batch 1 with a long cache: the GPU splits each head's rows over many blocks.
  const int64_t B = 1, H = 3, D = 32, cap = 5000;
  const Tensor kc = random_tensor({B, cap, H, D}, 41), vc = random_tensor({B, cap, H, D}, 42);
  const Tensor q = random_tensor({B, H, D}, 43, -3.0f, 3.0f);
  const Tensor kg = kc.to(Device::CUDA), vg = vc.to(Device::CUDA), qg = q.to(Device::CUDA);
  for (int32_t length : {1, 2, 17, 129, 600, 4097, 4999, 5000}) {
    CAPTURE(length);
    const Tensor expected = cached_attention_step(q, kc, vc, length, 0.25f);
    CHECK(max_abs_diff(cached_attention_step(qg, kg, vg, length, 0.25f), expected) <= 1e-5);
    CHECK(max_abs_diff(cached_attention_at(qg, kg, vg, position_tensor(length - 1, Device::CUDA), 1, 0.25f),
                       expected) <= 1e-5);
    CHECK(max_abs_diff(cached_attention_at(qg, kg, vg, position_tensor(9 * (length - 1) + 8, Device::CUDA), 9,
                                           0.25f),
                       expected) <= 1e-5);
  }
}

TEST_CASE("sample: a private device pool never lends its blocks to the shared cache" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int pool = create_device_pool();
  void* pooled = nullptr;
  {
    DevicePoolScope scope(pool);
    Tensor t = Tensor::empty({1000}, DType::F32, Device::CUDA);
    pooled = t.raw_data();
  }  // freed: back to the pool
  // The shared cache does not hand out the pooled block, even for the same size.
  std::vector<Tensor> shared;
  for (int i = 0; i < 8; i++) {
    shared.push_back(Tensor::empty({1000}, DType::F32, Device::CUDA));
    CHECK(shared.back().raw_data() != pooled);
  }
  {
    DevicePoolScope scope(pool);
    Tensor again = Tensor::empty({1000}, DType::F32, Device::CUDA);
    CHECK(again.raw_data() == pooled);  // the pool reuses its own block
    CHECK_THROWS_WITH_AS(release_device_pool(pool), doctest::Contains("still held"), Error);
  }
  release_device_pool(pool);
  CHECK_THROWS_WITH_AS(DevicePoolScope{pool}, doctest::Contains("no pool"), Error);
}

TEST_CASE("sample: decoding replayed from CUDA graphs equals plain steps" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  auto model = random_model(64, 2, Device::CUDA, 31);
  // f32 products (cuBLAS) at batch 3; bf16 products at batch 12, which take
  // the tensor-core kernel and its cluster launches (ops/cuda/small_product_mma.cu).
  for (const int64_t B : {3, 12}) {
    CAPTURE(B);
    ForwardContext ctx;
    ctx.matmul = B == 3 ? DType::F32 : DType::BF16;
    const int64_t T = 58;  // several of each phase, and not a multiple of 9
    const Tensor tokens = some_tokens(B, T, 32);
    const Tensor plain = full_cached_logits(*model, tokens, ctx);
    DecodeState st = begin(*model, B, T, ctx);
    Tensor feed = Tensor::zeros({B}, DType::I32, Device::CUDA);
    Tensor logits_copy = Tensor::zeros({B, 132}, DType::F32, Device::CUDA);
    Tensor all = Tensor::zeros({B, T, 132}, DType::F32, Device::CPU);
    DecodeGraphs graphs;
    size_t mallocs_after_warmup = 0;
    for (int64_t t = 0; t < T; t++) {
      feed.copy_from(tokens.select(1, t).contiguous());
      // The `after` work runs inside the graph: copy the logits to a buffer of ours.
      graphs.step(st, feed, [&] { logits_copy.copy_from(st.logits); });
      all.select(1, t).copy_from(logits_copy.to(Device::CPU));
      if (t == 20) mallocs_after_warmup = device_memory_stats().cuda_mallocs;
    }
    CHECK(graphs.graphs_captured() == 3);
    CHECK(st.pos == T);
    CHECK(device_memory_stats().cuda_mallocs == mallocs_after_warmup);
    const double err = max_abs_diff(all, plain);
    MESSAGE("graphs vs plain steps, batch " << B << ": max abs difference " << err);
    CHECK(err == 0.0);  // the same kernels with the same arguments
  }
}

TEST_CASE("sample: the small-batch bf16 products of decoding equal the CPU's emulated bf16 products" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // Both round x and W to bf16 and sum the products in f32; only the order of
  // the sums differs, so 1e-5 relative, as for cuBLAS's f32-output products.
  for (int64_t rows : {1, 3, 8})
    for (int64_t K : {512, 1368}) {
      CAPTURE(rows);
      CAPTURE(K);
      const Tensor x = random_tensor({rows, 1, K}, 51 + K);
      const Tensor w = random_tensor({520, K}, 52 + K, -0.2f, 0.2f), bias = random_tensor({520}, 53);
      const Tensor wg = w.to(Device::CUDA).to(DType::BF16), bg = bias.to(Device::CUDA), xg = x.to(Device::CUDA);
      const Tensor y = decode_product(xg, wg, bg, DType::BF16);
      CHECK(y.shape() == Shape{rows, 1, 520});
      CHECK(rel_l2(y.to_floats(), decode_product(x, w, bias, DType::BF16).to_floats()) <= 1e-5);
      CHECK(rel_l2(decode_product(xg, wg, Tensor(), DType::BF16).to_floats(),
                   decode_product(x, w, Tensor(), DType::BF16).to_floats()) <= 1e-5);
      // The gate over the two halves (260 units).
      const Tensor g = decode_product_swiglu(xg, wg, bg, DType::BF16);
      CHECK(g.shape() == Shape{rows, 1, 260});
      CHECK(rel_l2(g.to_floats(), decode_product_swiglu(x, w, bias, DType::BF16).to_floats()) <= 1e-5);
    }
  // More rows than either kernel takes (ops/cuda/small_product_mma.cu stops at 64):
  // cuBLAS, same contract.
  const Tensor x = random_tensor({70, 512}, 60), w = random_tensor({64, 512}, 61);
  CHECK(rel_l2(decode_product(x.to(Device::CUDA), w.to(Device::CUDA).to(DType::BF16), Tensor(), DType::BF16)
                   .to_floats(),
               decode_product(x, w, Tensor(), DType::BF16).to_floats()) <= 1e-5);
  // x too wide for the kernel's 48 KiB of shared memory (8 rows of 2048, a
  // d = 768 model's feed-forward width): cuBLAS again, not an error.
  const Tensor xw = random_tensor({8, 1, 2048}, 62), ww = random_tensor({64, 2048}, 63, -0.2f, 0.2f);
  CHECK(rel_l2(decode_product(xw.to(Device::CUDA), ww.to(Device::CUDA).to(DType::BF16), Tensor(), DType::BF16)
                   .to_floats(),
               decode_product(xw, ww, Tensor(), DType::BF16).to_floats()) <= 1e-5);
  // W's rows not 16-byte aligned (a view 4 bf16 into its storage): cuBLAS too.
  const Tensor wide = random_tensor({64 * 512 + 4}, 64, -0.2f, 0.2f).to(Device::CUDA).to(DType::BF16);
  const Tensor wv = wide.slice(0, 4, 64 * 512 + 4).view({64, 512});
  CHECK(rel_l2(decode_product(x.slice(0, 0, 2).contiguous().to(Device::CUDA), wv, Tensor(), DType::BF16).to_floats(),
               decode_product(x.slice(0, 0, 2).contiguous(), wv.to(DType::F32).to(Device::CPU), Tensor(), DType::BF16)
                   .to_floats()) <= 1e-5);
}

TEST_CASE("sample: the small-batch tensor-core products of decoding equal the CPU's emulated bf16 products" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // 9 .. 64 rows: mma.sync over a cluster that splits K. Rows that are not a
  // multiple of 16 (padded tiles), K = 64 (2 chunks of 32, a cluster of 2),
  // 512 and 1368 (not a multiple of 32: a zero-padded last chunk), N = 132 (a
  // partial tile of 64 and a partial 8-column tile), 520 and 1536. Same
  // contract as the GEMV: bf16 operands, f32 sums in another order, 1e-5.
  for (int64_t K : {64, 512, 1368})
    for (int64_t N : {132, 520, 1536}) {
      const Tensor w = random_tensor({N, K}, 70 + K + N, -0.2f, 0.2f), bias = random_tensor({N}, 71 + N);
      const Tensor wg = w.to(Device::CUDA).to(DType::BF16), bg = bias.to(Device::CUDA);
      for (int64_t rows : {9, 13, 16, 17, 33, 64}) {
        CAPTURE(K);
        CAPTURE(N);
        CAPTURE(rows);
        // Both layouts the step hands over: [rows, K] and [rows, 1, K].
        const Tensor x = rows % 2 ? random_tensor({rows, 1, K}, 72 + rows + K, -2.0f, 2.0f)
                                  : random_tensor({rows, K}, 72 + rows + K, -2.0f, 2.0f);
        const Tensor xg = x.to(Device::CUDA);
        Shape shape = x.shape();
        shape.back() = N;
        const Tensor y = decode_product(xg, wg, bg, DType::BF16);
        CHECK(y.shape() == shape);
        CHECK(rel_l2(y.to_floats(), decode_product(x, w, bias, DType::BF16).to_floats()) <= 1e-5);
        const Tensor y0 = decode_product(xg, wg, Tensor(), DType::BF16);
        CHECK(y0.shape() == shape);
        CHECK(rel_l2(y0.to_floats(), decode_product(x, w, Tensor(), DType::BF16).to_floats()) <= 1e-5);
        // The gate over the two halves (N / 2 units; 66 = a tile of 64 and one of 2).
        shape.back() = N / 2;
        const Tensor g = decode_product_swiglu(xg, wg, bg, DType::BF16);
        CHECK(g.shape() == shape);
        CHECK(rel_l2(g.to_floats(), decode_product_swiglu(x, w, bias, DType::BF16).to_floats()) <= 1e-5);
        if (rows == 17) {
          const Tensor g0 = decode_product_swiglu(xg, wg, Tensor(), DType::BF16);
          CHECK(g0.shape() == shape);
          CHECK(rel_l2(g0.to_floats(), decode_product_swiglu(x, w, Tensor(), DType::BF16).to_floats()) <= 1e-5);
        }
        // No atomics, the slices summed in a fixed order: the same bits every time.
        if (rows == 33) CHECK(max_abs_diff(decode_product(xg, wg, bg, DType::BF16), y) == 0.0);
      }
    }
  // Shared memory past the default 48 KiB (64 rows of K = 8192: slices of 1024
  // k, 132 KiB of bf16 x per block; the kernel walks its W 8 chunks at a time).
  const Tensor x = random_tensor({64, 8192}, 80), w = random_tensor({72, 8192}, 81, -0.2f, 0.2f);
  const Tensor b = random_tensor({72}, 82);
#ifdef IFLAME_CUDA
  CHECK(cuda::small_batch_mma_shared(64, 8192, false) > 48 * 1024);
  CHECK(cuda::small_batch_mma_shared(64, 8192, false) <= kSmallBatchMmaShared);
#endif
  const Tensor wg = w.to(Device::CUDA).to(DType::BF16), bg = b.to(Device::CUDA), xg = x.to(Device::CUDA);
  CHECK(rel_l2(decode_product(xg, wg, bg, DType::BF16).to_floats(),
               decode_product(x, w, b, DType::BF16).to_floats()) <= 1e-5);
  CHECK(rel_l2(decode_product_swiglu(xg, wg, bg, DType::BF16).to_floats(),
               decode_product_swiglu(x, w, b, DType::BF16).to_floats()) <= 1e-5);
  // x not 16-byte aligned (a view 2 floats into its storage): cuBLAS, not an error.
  const Tensor xs = random_tensor({20 * 512 + 2}, 83).to(Device::CUDA);
  const Tensor xv = xs.slice(0, 2, 20 * 512 + 2).view({20, 512});
  const Tensor w5 = random_tensor({40, 512}, 84, -0.2f, 0.2f);
  CHECK(rel_l2(decode_product(xv, w5.to(Device::CUDA).to(DType::BF16), Tensor(), DType::BF16).to_floats(),
               decode_product(xv.to(Device::CPU), w5, Tensor(), DType::BF16).to_floats()) <= 1e-5);
}
