// test_attention.cpp: causal softmax attention and decayed linear attention.
// CPU: gradients against finite differences, the decoding forms against the
// training forms, the alternative CPU algorithms against the definitions, small
// hand-computed cases, the tensor-core kernels' warp layouts and tile schedule
// (emulated), and the tensor-core linear attention's whole block emulated against
// the definition. GPU: kernels against the CPU references in f32 and bf16 at awkward
// sizes (the bf16 tensor-core paths at every tile and chunk edge), decoding steps, a
// long sequence, and the speed targets.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>

#include "core/allocator.h"
#include "core/bf16.h"
#include "core/device.h"
#include "core/error.h"
#include "ops/causal_attention.h"
#include "ops/kernel_choices.h"
#include "ops/cuda/flash_attention_bf16.h"
#include "ops/cuda/linear_attention_bf16.h"
#include "ops/cuda/mma_fragments.h"
#include "ops/linear_attention.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

namespace {

// A copy with every value multiplied by `factor` (a deliberately wrong gradient).
Tensor scaled(const Tensor& t, float factor) {
  std::vector<float> v = t.to_floats();
  for (float& x : v) x *= factor;
  return Tensor::from_floats(v, t.shape());
}

// What storing in bf16 does to an f32 tensor (values stay f32, on the CPU).
Tensor bf16_rounded(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

// max |a - ref| / max |ref|: the worst element error on the reference's scale.
double rel_max(const Tensor& a, const Tensor& ref) {
  std::vector<float> r = ref.to_floats();
  double m = 1e-30;
  for (float x : r) m = std::fmax(m, std::fabs(x));
  return max_abs_diff(a.to_floats(), r) / m;
}

// Rows [t0, t1) along the time axis (dim 1) as a contiguous tensor.
Tensor rows(const Tensor& t, int64_t t0, int64_t t1) { return t.slice(1, t0, t1).contiguous(); }

bool throws_naming(const std::function<void()>& f, const std::string& name) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).find(name) != std::string::npos) return true;
    MESSAGE("message does not name '" << name << "': " << std::string(e.what()));
    return false;
  }
  return false;
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// Causal softmax attention, CPU
// ----------------------------------------------------------------------------------------------

TEST_CASE("attn: causal attention hand-computed tiny case") {
  // T = 2, D = 1, scale 1: query 0 sees key 0 only; query 1 sees scores (2*0.5, 2*1) = (1, 2).
  Tensor q = Tensor::from_floats({1, 2}, {1, 2, 1, 1});
  Tensor k = Tensor::from_floats({0.5f, 1}, {1, 2, 1, 1});
  Tensor v = Tensor::from_floats({3, 5}, {1, 2, 1, 1});
  Tensor lse;
  Tensor o = ops::causal_attention_forward(q, k, v, 1.0f, &lse);
  const double e = std::exp(1.0);
  std::vector<float> got = o.to_floats(), got_lse = lse.to_floats();
  CHECK(got[0] == doctest::Approx(3.0));
  CHECK(got[1] == doctest::Approx((3 + 5 * e) / (1 + e)));
  CHECK(got_lse[0] == doctest::Approx(0.5));
  CHECK(got_lse[1] == doctest::Approx(std::log(e + e * e)));
}

TEST_CASE("attn: causal attention gradients match finite differences") {
  const int64_t B = 2, T = 11, H = 2, D = 8;
  const float scale = 1.0f / std::sqrt(float(D));
  Tensor q = random_tensor({B, T, H, D}, 11), k = random_tensor({B, T, H, D}, 12);
  Tensor v = random_tensor({B, T, H, D}, 13), r = random_tensor({B, T, H, D}, 14);
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
  ops::causal_attention_backward(r, q, k, v, o, lse, scale, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::causal_attention_forward(q, k, v, scale, nullptr), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss) < 1e-2);
  // The check has teeth: a gradient 10% off is rejected.
  CHECK(gradcheck_error(k, scaled(dk, 1.1f), loss) > 1e-2);
  CHECK(gradcheck_error(q, scaled(dq, 1.1f), loss) > 1e-2);
}

TEST_CASE("attn: causal attention gradients with fewer queries than keys") {
  const int64_t B = 2, Tq = 5, Tk = 11, H = 2, D = 8;
  const float scale = 0.4f;
  Tensor q = random_tensor({B, Tq, H, D}, 21), k = random_tensor({B, Tk, H, D}, 22);
  Tensor v = random_tensor({B, Tk, H, D}, 23), r = random_tensor({B, Tq, H, D}, 24);
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
  ops::causal_attention_backward(r, q, k, v, o, lse, scale, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::causal_attention_forward(q, k, v, scale, nullptr), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss, 40) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss, 40) < 1e-2);
}

TEST_CASE("attn: causal attention with fewer queries equals the last rows of the full one") {
  const int64_t B = 2, T = 13, H = 3, D = 5, Tq = 4;
  const float scale = 0.7f;
  Tensor q = random_tensor({B, T, H, D}, 31), k = random_tensor({B, T, H, D}, 32);
  Tensor v = random_tensor({B, T, H, D}, 33), r_last = random_tensor({B, Tq, H, D}, 34);
  Tensor lse_full, lse_last;
  Tensor o_full = ops::causal_attention_forward(q, k, v, scale, &lse_full);
  Tensor q_last = rows(q, T - Tq, T);
  Tensor o_last = ops::causal_attention_forward(q_last, k, v, scale, &lse_last);
  CHECK(max_abs_diff(o_last, rows(o_full, T - Tq, T)) < 1e-6);
  CHECK(max_abs_diff(lse_last, lse_full.slice(2, T - Tq, T).contiguous()) < 1e-6);

  // One decoding step (Tq = 1) is the last row.
  Tensor o_one = ops::causal_attention_forward(rows(q, T - 1, T), k, v, scale, nullptr);
  CHECK(max_abs_diff(o_one, rows(o_full, T - 1, T)) < 1e-6);

  // Backward: the same as the full backward with zero output gradient on the earlier rows.
  Tensor r_full = Tensor::zeros({B, T, H, D});
  r_full.slice(1, T - Tq, T).copy_from(r_last);
  Tensor dq_full, dk_full, dv_full, dq, dk, dv;
  ops::causal_attention_backward(r_full, q, k, v, o_full, lse_full, scale, dq_full, dk_full, dv_full);
  ops::causal_attention_backward(r_last, q_last, k, v, o_last, lse_last, scale, dq, dk, dv);
  CHECK(max_abs_diff(dq, rows(dq_full, T - Tq, T)) < 1e-6);
  CHECK(max_abs_diff(dk, dk_full) < 1e-6);
  CHECK(max_abs_diff(dv, dv_full) < 1e-6);
}

TEST_CASE("attn: causal attention rejects bad arguments, naming the op") {
  Tensor q = random_tensor({1, 4, 2, 8}, 1), k = random_tensor({1, 4, 2, 8}, 2);
  Tensor k_short = random_tensor({1, 3, 2, 8}, 3), k_heads = random_tensor({1, 4, 3, 8}, 4);
  const char* fwd = "causal_attention_forward";
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k_short, k_short, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k_heads, k_heads, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, k, k_heads, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.view({1, 4, 16}), k, k, 1, nullptr); }, fwd));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.to(DType::BF16), k.to(DType::BF16),
                                                          k.to(DType::BF16), 1, nullptr); },
                      "CPU reference takes f32"));
  CHECK(throws_naming([&] { ops::causal_attention_forward(q.transpose(1, 2), k, k, 1, nullptr); }, fwd));
  Tensor lse, dq, dk, dv;
  Tensor o = ops::causal_attention_forward(q, k, k, 1, &lse);
  CHECK(throws_naming([&] { ops::causal_attention_backward(o, q, k, k, o, lse.view({1, 4, 2}), 1,
                                                           dq, dk, dv); },
                      "causal_attention_backward: lse"));
}

// ----------------------------------------------------------------------------------------------
// Tensor-core causal attention (ops/cuda/flash_attention_bf16.cu): its warp-level layouts and
// tile schedule, checked on the CPU
// ----------------------------------------------------------------------------------------------

namespace {

namespace mma = ops::cuda::mma;
namespace flash = ops::cuda::flash;

// One warp's registers, [lane][register].
template <int N>
using WarpRegs = std::array<std::array<uint32_t, N>, 32>;
using WarpAcc = std::array<std::array<float, 4>, 32>;  // an m16n8 f32 accumulator

float bf16_half(uint32_t reg, int half) {
  return bf16_to_float(bf16{static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu)});
}

// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16 as the PTX ISA defines it, written out
// here independently of mma_fragments.h. Lanes 8m .. 8m+7 give the addresses (element
// offsets into `smem`) of rows 0..7 of matrix m; register m of lane l receives row l/4,
// columns 2(l%4) and 2(l%4)+1 of matrix m (low half first), or with .trans column l/4,
// rows 2(l%4) and 2(l%4)+1.
WarpRegs<4> ldmatrix_x4(const std::vector<uint16_t>& smem, const std::array<int, 32>& row_at,
                        bool trans) {
  WarpRegs<4> out{};
  for (int l = 0; l < 32; l++)
    for (int m = 0; m < 4; m++) {
      const int a = l / 4, b = 2 * (l % 4);
      uint32_t lo, hi;
      if (!trans) {
        lo = smem.at(row_at[8 * m + a] + b);
        hi = smem.at(row_at[8 * m + a] + b + 1);
      } else {
        lo = smem.at(row_at[8 * m + b] + a);
        hi = smem.at(row_at[8 * m + b + 1] + a);
      }
      out[l][m] = lo | (hi << 16);
    }
  return out;
}

// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, d += a b, as the PTX ISA's
// "Matrix Fragments for mma.m16n8k16 with floating point type" defines it, written out
// here independently of mma_fragments.h (sums in double). Checks that the fragments
// cover A and B exactly once (unless check_cover is false: the emulated linear
// attention block below runs it some 10^5 times, on layouts these checks have passed).
void mma_m16n8k16(WarpAcc& d, const WarpRegs<4>& a, const WarpRegs<2>& b, bool check_cover = true) {
  double A[16][16], B[16][8];
  int seen_a[16][16] = {}, seen_b[16][8] = {};
  for (int l = 0; l < 32; l++) {
    const int group = l >> 2, tig = l % 4;
    for (int i = 0; i < 8; i++) {  // a0 .. a7: register i / 2, half i % 2
      const int row = (i < 2 || (i >= 4 && i < 6)) ? group : group + 8;
      const int col = tig * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = bf16_half(a[l][i / 2], i % 2);
      seen_a[row][col]++;
    }
    for (int i = 0; i < 4; i++) {  // b0 .. b3
      const int row = tig * 2 + (i & 1) + (i >= 2 ? 8 : 0), col = group;
      B[row][col] = bf16_half(b[l][i / 2], i % 2);
      seen_b[row][col]++;
    }
  }
  if (check_cover) {
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 16; c++) REQUIRE(seen_a[r][c] == 1);
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 8; c++) REQUIRE(seen_b[r][c] == 1);
  }
  for (int l = 0; l < 32; l++) {
    const int group = l >> 2, tig = l % 4;
    for (int i = 0; i < 4; i++) {  // c0 .. c3
      const int row = group + (i >= 2 ? 8 : 0), col = tig * 2 + (i & 1);
      double s = d[l][i];
      for (int kk = 0; kk < 16; kk++) s += A[row][kk] * B[kk][col];
      d[l][i] = static_cast<float>(s);
    }
  }
}

WarpRegs<2> b_regs(const WarpRegs<4>& r, int first) {
  WarpRegs<2> out{};
  for (int l = 0; l < 32; l++) out[l] = {r[l][first], r[l][first + 1]};
  return out;
}

// A rows x cols matrix of random bf16 values, row-major with the given pitch (elements).
struct Bf16Matrix {
  int rows, cols, pitch;
  std::vector<uint16_t> bits;
  Bf16Matrix(int r, int c, int p, uint64_t seed) : rows(r), cols(c), pitch(p), bits(r * p, 0) {
    std::vector<float> x = random_tensor({r, c}, seed).to_floats();
    for (int i = 0; i < r; i++)
      for (int j = 0; j < c; j++) bits[i * p + j] = float_to_bf16(x[i * c + j]).bits;
  }
  double at(int r, int c) const { return bf16_to_float(bf16{bits.at(r * pitch + c)}); }
  uint32_t pair(int r, int c) const {  // elements (r, c) low and (r, c + 1) high
    return bits.at(r * pitch + c) | (uint32_t(bits.at(r * pitch + c + 1)) << 16);
  }
};

// ldmatrix row addresses: lane l points at row base_row + row_of(l), column base_col + col_of(l).
template <typename RowOf, typename ColOf>
std::array<int, 32> ldsm_rows(int pitch, int base_row, int base_col, RowOf row_of, ColOf col_of) {
  std::array<int, 32> at{};
  for (int l = 0; l < 32; l++) at[l] = (base_row + row_of(l)) * pitch + base_col + col_of(l);
  return at;
}

}  // namespace

TEST_CASE("attn: mma fragment helpers and ldmatrix addresses follow the PTX layouts (CPU warp emulation)") {
  const int pitch = flash::kSharedPitch;
  Bf16Matrix A(16, 16, pitch, 901);  // m x k
  Bf16Matrix Bt(8, 32, pitch, 902);  // n x k (B[k][n] = Bt[n][k]), two k-steps
  Bf16Matrix Bk(16, 16, pitch, 903);  // k x n, two n-blocks

  // Fragments built from the helpers, element by element.
  WarpRegs<4> a{};
  WarpRegs<2> b0{}, b1{}, bk0{}, bk1{};
  for (int l = 0; l < 32; l++) {
    for (int r = 0; r < 4; r++) a[l][r] = A.pair(mma::a_row(l, r), mma::a_col(l, r));
    for (int r = 0; r < 2; r++) {
      const int kk = mma::b_k(l, r), n = mma::b_n(l);
      auto bt_pair = [&](int k0) {  // B[k][n], B[k + 1][n] = Bt[n][k], Bt[n][k + 1]
        return Bt.pair(n, k0 + kk);
      };
      b0[l][r] = bt_pair(0);
      b1[l][r] = bt_pair(16);
      auto bk_pair = [&](int n0) {
        return uint32_t(Bk.bits[kk * pitch + n0 + n]) | (uint32_t(Bk.bits[(kk + 1) * pitch + n0 + n]) << 16);
      };
      bk0[l][r] = bk_pair(0);
      bk1[l][r] = bk_pair(8);
    }
  }

  SUBCASE("helper-built fragments give the plain product through the emulated mma") {
    WarpAcc d{};
    mma_m16n8k16(d, a, b0);  // A (16 x 16) times Bt[:, 0:16]^T
    double worst = 0;
    int hits[16][8] = {};
    for (int l = 0; l < 32; l++)
      for (int i = 0; i < 4; i++) {
        const int row = mma::c_row(l, i), col = mma::c_col(l, i);
        double want = 0;
        for (int kk = 0; kk < 16; kk++) want += A.at(row, kk) * Bt.at(col, kk);
        worst = std::fmax(worst, std::fabs(d[l][i] - want));
        hits[row][col]++;
      }
    CHECK(worst < 1e-5);
    for (int r = 0; r < 16; r++)
      for (int c = 0; c < 8; c++) CHECK(hits[r][c] == 1);
  }

  SUBCASE("ldmatrix.x4 at the helpers' addresses loads exactly those fragments") {
    WarpRegs<4> la = ldmatrix_x4(A.bits, ldsm_rows(pitch, 0, 0, mma::ldsm_block_row, mma::ldsm_block_col), false);
    WarpRegs<4> lb = ldmatrix_x4(Bt.bits, ldsm_rows(pitch, 0, 0, mma::ldsm_nmajor_row, mma::ldsm_nmajor_col), false);
    WarpRegs<4> lt = ldmatrix_x4(Bk.bits, ldsm_rows(pitch, 0, 0, mma::ldsm_block_row, mma::ldsm_block_col), true);
    int wrong = 0;
    for (int l = 0; l < 32; l++) {
      for (int r = 0; r < 4; r++) wrong += la[l][r] != a[l][r];
      for (int r = 0; r < 2; r++) {
        wrong += lb[l][r] != b0[l][r];
        wrong += lb[l][2 + r] != b1[l][r];
        wrong += lt[l][r] != bk0[l][r];
        wrong += lt[l][2 + r] != bk1[l][r];
      }
    }
    CHECK(wrong == 0);
  }

  SUBCASE("ldmatrix.x4.trans at the k-major A addresses loads the A fragment of the block's transpose") {
    // Bk read as k-major storage of A = Bk^T (A[m][k] = Bk[k][m]), as the linear
    // attention's state update reads b^T straight from the b tile.
    WarpRegs<4> la = ldmatrix_x4(Bk.bits, ldsm_rows(pitch, 0, 0, mma::ldsm_kmajor_a_row, mma::ldsm_kmajor_a_col), true);
    int wrong = 0;
    for (int l = 0; l < 32; l++)
      for (int r = 0; r < 4; r++) {
        const int m = mma::a_row(l, r), k = mma::a_col(l, r);
        const uint32_t want = uint32_t(Bk.bits[k * pitch + m]) | (uint32_t(Bk.bits[(k + 1) * pitch + m]) << 16);
        wrong += la[l][r] != want;
        wrong += mma::bf16x2_lo(la[l][r]) != float(Bk.at(k, m));
        wrong += mma::bf16x2_hi(la[l][r]) != float(Bk.at(k + 1, m));
      }
    CHECK(wrong == 0);
  }

  SUBCASE("two accumulators become the next product's A operand in place (c_pair_to_a)") {
    // M (16 x 16) as two accumulators (columns 0..7 and 8..15), then as A.
    std::vector<float> m = random_tensor({16, 16}, 904).to_floats();
    float c0[32][4], c1[32][4];
    for (int l = 0; l < 32; l++)
      for (int i = 0; i < 4; i++) {
        c0[l][i] = m[mma::c_row(l, i) * 16 + mma::c_col(l, i)];
        c1[l][i] = m[mma::c_row(l, i) * 16 + 8 + mma::c_col(l, i)];
      }
    int wrong = 0;
    for (int l = 0; l < 32; l++) {
      uint32_t got[4];
      mma::c_pair_to_a(c0[l], c1[l], got);
      for (int r = 0; r < 4; r++)
        for (int half = 0; half < 2; half++) {
          const float want = round_to_bf16(m[mma::a_row(l, r) * 16 + mma::a_col(l, r) + half]);
          wrong += bf16_half(got[r], half) != want;
        }
    }
    CHECK(wrong == 0);
  }
}

TEST_CASE("attn: tensor-core attention's warp products, emulated on the CPU, equal plain matrix products") {
  // The data path of one warp in flash_forward_kernel, step by step as the kernel does it
  // (same helpers, same shared pitch and offsets): S = Q K^T over a 64-key tile
  // (mma_rows_by_tile_t), then O = P V with P rounded to bf16 (mma_acc_by_tile). The
  // backward's four other products use these two routines on other tiles.
  const int pitch = flash::kSharedPitch, D = flash::kHeadDim, N = flash::kTile;
  Bf16Matrix Q(16, D, pitch, 911), K(N, D, pitch, 912), V(N, D, pitch, 913);

  // load_a_frags: two k-steps of Q's 16 rows.
  WarpRegs<4> qa[2];
  for (int ks = 0; ks < 2; ks++)
    qa[ks] = ldmatrix_x4(Q.bits, ldsm_rows(pitch, 0, 16 * ks, mma::ldsm_block_row, mma::ldsm_block_col), false);

  // mma_rows_by_tile_t: S[nb] covers keys 8 nb .. 8 nb + 7.
  std::vector<WarpAcc> S(N / 8);
  for (int nb = 0; nb < N / 8; nb++) {
    WarpRegs<4> kb = ldmatrix_x4(K.bits, ldsm_rows(pitch, 8 * nb, 0, mma::ldsm_nmajor_row, mma::ldsm_nmajor_col), false);
    S[nb] = WarpAcc{};
    mma_m16n8k16(S[nb], qa[0], b_regs(kb, 0));
    mma_m16n8k16(S[nb], qa[1], b_regs(kb, 2));
  }
  double worst_s = 0;
  std::vector<double> P(16 * N, NAN);  // S as a matrix, scaled into moderate weights
  for (int nb = 0; nb < N / 8; nb++)
    for (int l = 0; l < 32; l++)
      for (int i = 0; i < 4; i++) {
        const int row = mma::c_row(l, i), key = 8 * nb + mma::c_col(l, i);
        double want = 0;
        for (int d = 0; d < D; d++) want += Q.at(row, d) * K.at(key, d);
        worst_s = std::fmax(worst_s, std::fabs(S[nb][l][i] - want));
        S[nb][l][i] *= 0.25f;
        P[row * N + key] = round_to_bf16(S[nb][l][i]);
      }
  CHECK(worst_s < 1e-5);
  for (double p : P) REQUIRE(!std::isnan(p));  // every (row, key) came out of exactly the fragments

  // mma_acc_by_tile: O (4 accumulators over the 32 dims) += P V.
  std::vector<WarpAcc> O(D / 8);
  for (int kk = 0; kk < N / 16; kk++) {
    WarpRegs<4> pa{};
    for (int l = 0; l < 32; l++) {
      uint32_t a[4];
      float c0[4], c1[4];
      for (int i = 0; i < 4; i++) c0[i] = S[2 * kk][l][i], c1[i] = S[2 * kk + 1][l][i];
      mma::c_pair_to_a(c0, c1, a);
      for (int r = 0; r < 4; r++) pa[l][r] = a[r];
    }
    for (int dn = 0; dn < D / 16; dn++) {
      WarpRegs<4> vb = ldmatrix_x4(V.bits, ldsm_rows(pitch, 16 * kk, 16 * dn, mma::ldsm_block_row, mma::ldsm_block_col), true);
      mma_m16n8k16(O[2 * dn], pa, b_regs(vb, 0));
      mma_m16n8k16(O[2 * dn + 1], pa, b_regs(vb, 2));
    }
  }
  double worst_o = 0, size_o = 0;
  for (int dn = 0; dn < D / 8; dn++)
    for (int l = 0; l < 32; l++)
      for (int i = 0; i < 4; i++) {
        const int row = mma::c_row(l, i), d = 8 * dn + mma::c_col(l, i);
        double want = 0;
        for (int key = 0; key < N; key++) want += P[row * N + key] * V.at(key, d);
        worst_o = std::fmax(worst_o, std::fabs(O[dn][l][i] - want));
        size_o = std::fmax(size_o, std::fabs(want));
      }
  MESSAGE("emulated warp: max |S - Q K^T| = " << worst_s << ", max |O - P V| = " << worst_o
                                              << " (|O| up to " << size_o << ")");
  CHECK(worst_o < 1e-5 * size_o);
}

TEST_CASE("attn: tensor-core attention's tile schedule visits every visible pair and masks where needed") {
  struct Case {
    int Tq, Tk;
  };
  const std::vector<Case> cases = {{1, 1},     {17, 17},   {63, 63},  {64, 64},  {65, 65},
                                   {130, 130}, {200, 200}, {5, 119},  {1, 130},  {70, 200},
                                   {129, 200}, {64, 129},  {1, 1000}, {16, 80}};
  const int R = flash::kWarpRows, T = flash::kTile;
  for (const Case& c : cases) {
    CAPTURE(c.Tq);
    CAPTURE(c.Tk);
    const int offset = c.Tk - c.Tq;
    int64_t missed = 0, unmasked_hidden = 0, extra_tiles = 0;
    // Forward and dQ: blocks of queries, warps of 16 rows, key tiles.
    for (int q0 = 0; q0 < c.Tq; q0 += flash::kBlockRows) {
      const int tiles = flash::key_tiles_for_queries(q0, c.Tq, c.Tk);
      const int last_query = std::min(q0 + flash::kBlockRows, c.Tq) - 1;
      extra_tiles += (tiles - 1) * T > last_query + offset;  // the last tile holds a seen key
      extra_tiles += (tiles - 1) * T >= c.Tk;
      for (int w = 0; w < flash::kWarps; w++) {
        const int r0 = q0 + w * R;
        if (r0 >= c.Tq) continue;  // the kernel skips warps past the queries
        for (int i = r0; i < std::min(r0 + R, c.Tq); i++)  // every seen key is in a visited tile
          missed += i + offset >= tiles * T;
        for (int t = 0; t < tiles; t++) {
          const int k0 = t * T;
          const bool sees = flash::warp_rows_see_tile(r0, k0, offset);
          const bool mask = flash::warp_rows_need_mask(r0, k0, offset, c.Tk);
          for (int i = r0; i < r0 + R; i++)
            for (int j = k0; j < k0 + T; j++) {
              const bool visible = i < c.Tq && j <= i + offset;
              missed += visible && !sees;
              // The mask agrees with the definition on real rows, and an unmasked tile
              // has no hidden or out-of-range key for any row, real or padding.
              if (i < c.Tq && j < c.Tk) missed += flash::masked_query_key(i, j, offset, c.Tk) == visible;
              unmasked_hidden += !mask && flash::masked_query_key(i, j, offset, c.Tk);
            }
        }
      }
    }
    // dK/dV: blocks of keys, warps of 16 keys, query tiles.
    for (int k0 = 0; k0 < c.Tk; k0 += flash::kBlockRows) {
      const int first = flash::first_query_tile(k0, offset), last = flash::query_tiles(c.Tq);
      REQUIRE(first < last);
      extra_tiles += std::min(first * T + T, c.Tq) - 1 + offset < k0;  // the first tile holds a query seeing key k0
      for (int i = 0; i < first * T; i++) missed += k0 <= i + offset;  // skipped queries see no key here
      for (int w = 0; w < flash::kWarps; w++) {
        const int kw0 = k0 + w * R;
        if (kw0 >= c.Tk) continue;
        for (int qt = first; qt < last; qt++) {
          const int q0 = qt * T;
          const bool sees = flash::warp_keys_see_tile(kw0, q0, c.Tq, offset);
          const bool mask = flash::warp_keys_need_mask(kw0, q0, c.Tq, offset);
          for (int j = kw0; j < kw0 + R; j++)
            for (int i = q0; i < q0 + T; i++) {
              const bool visible = i < c.Tq && j < c.Tk && j <= i + offset;
              missed += visible && !sees;
              if (i < c.Tq && j < c.Tk) missed += flash::masked_key_query(j, i, offset, c.Tq) == visible;
              unmasked_hidden += !mask && flash::masked_key_query(j, i, offset, c.Tq);
            }
        }
      }
    }
    CHECK(missed == 0);
    CHECK(unmasked_hidden == 0);
    CHECK(extra_tiles == 0);
  }
}

// ----------------------------------------------------------------------------------------------
// Decayed linear attention, CPU
// ----------------------------------------------------------------------------------------------

TEST_CASE("attn: linear attention slopes follow the reference's ALiBi rule") {
  std::vector<float> s16 = ops::linear_attention_slopes(16);
  REQUIRE(s16.size() == 16);
  for (int h = 0; h < 16; h++) CHECK(s16[h] == float(std::pow(2.0, -0.5 * (h + 1))));
  CHECK(s16[0] == doctest::Approx(0.70710678));
  CHECK(ops::linear_attention_slopes(2) == std::vector<float>{0.0625f, 0.00390625f});
  CHECK(ops::linear_attention_slopes(8) ==
        std::vector<float>{0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0.0078125f, 0.00390625f});
  // Not a power of two: the 4-head slopes, then the 8-head slopes 0 and 2.
  CHECK(ops::linear_attention_slopes(6) ==
        std::vector<float>{0.25f, 0.0625f, 0.015625f, 0.00390625f, 0.5f, 0.125f});
}

TEST_CASE("attn: linear attention hand-computed tiny case") {
  // T = 2, D = 1, exp(-s) = 1/2, q = (2, 3), k = (1, -1), v = (4, 5):
  //   o_0 = 2*1*4 = 8,  o_1 = 0.5*3*1*4 + 3*(-1)*5 = -9.
  // With grad_o = (1, 1): dq = (k0 v0, 0.5 k0 v0 + k1 v1) = (4, -3),
  //   dk = (q0 v0 + 0.5 q1 v0, q1 v1) = (14, 15), dv = (q0 k0 + 0.5 q1 k0, q1 k1) = (3.5, -3).
  Tensor q = Tensor::from_floats({2, 3}, {1, 2, 1, 1});
  Tensor k = Tensor::from_floats({1, -1}, {1, 2, 1, 1});
  Tensor v = Tensor::from_floats({4, 5}, {1, 2, 1, 1});
  Tensor g = Tensor::from_floats({1, 1}, {1, 2, 1, 1});
  const std::vector<float> slopes{float(std::log(2.0))};
  auto near = [](const Tensor& t, std::vector<float> want) {
    std::vector<float> got = t.to_floats();
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); i++) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
  };
  near(ops::linear_attention_forward(q, k, v, slopes), {8, -9});
  near(ops::cpu::linear_attention_forward_recurrent(q, k, v, slopes), {8, -9});
  near(ops::cpu::linear_attention_forward_chunked(q, k, v, slopes, 1), {8, -9});
  Tensor dq, dk, dv;
  ops::linear_attention_backward(g, q, k, v, slopes, dq, dk, dv);
  near(dq, {4, -3});
  near(dk, {14, 15});
  near(dv, {3.5f, -3});
  ops::cpu::linear_attention_backward_chunked(g, q, k, v, slopes, 1, dq, dk, dv);
  near(dq, {4, -3});
  near(dk, {14, 15});
  near(dv, {3.5f, -3});
}

TEST_CASE("attn: linear attention gradients match finite differences") {
  const int64_t B = 2, T = 11, H = 2, D = 8;
  const std::vector<float> slopes{0.3f, 1.1f};
  Tensor q = random_tensor({B, T, H, D}, 41), k = random_tensor({B, T, H, D}, 42);
  Tensor v = random_tensor({B, T, H, D}, 43), r = random_tensor({B, T, H, D}, 44);
  Tensor dq, dk, dv;
  ops::linear_attention_backward(r, q, k, v, slopes, dq, dk, dv);
  auto loss = [&] { return weighted_sum(ops::linear_attention_forward(q, k, v, slopes), r); };
  CHECK(gradcheck_error(q, dq, loss) < 1e-2);
  CHECK(gradcheck_error(k, dk, loss) < 1e-2);
  CHECK(gradcheck_error(v, dv, loss) < 1e-2);
  CHECK(gradcheck_error(v, scaled(dv, 1.1f), loss) > 1e-2);
  CHECK(gradcheck_error(k, scaled(dk, 1.1f), loss) > 1e-2);
}

TEST_CASE("attn: linear attention recurrent and chunked forms equal the direct sum") {
  struct Case {
    int64_t B, T, H, D;
    int chunk;
    std::vector<float> slopes;
  };
  const std::vector<Case> cases = {
      {2, 37, 3, 8, 1, {0.05f, 0.5f, 2.0f}},
      {2, 37, 3, 8, 5, {0.05f, 0.5f, 2.0f}},
      {1, 37, 3, 8, 64, {0.05f, 0.5f, 2.0f}},           // one partial chunk
      {1, 117, 2, 32, 64, ops::linear_attention_slopes(2)},  // the GPU's chunk and head dim
      {1, 130, 1, 4, 64, {0.0f}},                       // no decay at all, three chunks
  };
  for (const Case& c : cases) {
    CAPTURE(c.T);
    CAPTURE(c.chunk);
    const Shape shape{c.B, c.T, c.H, c.D};
    Tensor q = random_tensor(shape, 51), k = random_tensor(shape, 52);
    Tensor v = random_tensor(shape, 53), g = random_tensor(shape, 54);
    Tensor o = ops::cpu::linear_attention_forward(q, k, v, c.slopes);
    CHECK(rel_max(ops::cpu::linear_attention_forward_recurrent(q, k, v, c.slopes), o) < 1e-6);
    CHECK(rel_max(ops::cpu::linear_attention_forward_chunked(q, k, v, c.slopes, c.chunk), o) < 1e-5);
    Tensor dq, dk, dv, dq2, dk2, dv2;
    ops::cpu::linear_attention_backward(g, q, k, v, c.slopes, dq, dk, dv);
    ops::cpu::linear_attention_backward_recurrent(g, q, k, v, c.slopes, dq2, dk2, dv2);
    CHECK(rel_max(dq2, dq) < 1e-6);
    CHECK(rel_max(dk2, dk) < 1e-6);
    CHECK(rel_max(dv2, dv) < 1e-6);
    ops::cpu::linear_attention_backward_chunked(g, q, k, v, c.slopes, c.chunk, dq2, dk2, dv2);
    CHECK(rel_max(dq2, dq) < 1e-5);
    CHECK(rel_max(dk2, dk) < 1e-5);
    CHECK(rel_max(dv2, dv) < 1e-5);
  }
}

TEST_CASE("attn: linear attention step token by token equals the parallel forward") {
  const int64_t B = 2, T = 9, H = 3, D = 8;
  const std::vector<float> slopes{0.1f, 0.7f, 0.02f};
  Tensor q = random_tensor({B, T, H, D}, 61), k = random_tensor({B, T, H, D}, 62);
  Tensor v = random_tensor({B, T, H, D}, 63);
  Tensor o = ops::linear_attention_forward(q, k, v, slopes);
  Tensor state = Tensor::zeros({B, H, D, D});
  for (int64_t t = 0; t < T; t++) {
    CAPTURE(t);
    Tensor o_t = ops::linear_attention_step(q.select(1, t).contiguous(), k.select(1, t).contiguous(),
                                            v.select(1, t).contiguous(), state, slopes);
    CHECK(max_abs_diff(o_t, o.select(1, t).contiguous()) < 1e-5);
  }
}

TEST_CASE("attn: linear attention rejects bad arguments, naming the op") {
  Tensor q = random_tensor({1, 4, 2, 8}, 1);
  const std::vector<float> slopes{0.5f, 0.25f};
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q, q, {0.5f}); }, "linear_attention_forward"));
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q, q, {0.5f, NAN}); }, "slope 1"));
  CHECK(throws_naming([&] { ops::linear_attention_forward(q, q.view({1, 4, 1, 16}), q, slopes); },
                      "linear_attention_forward: k"));
  Tensor dq, dk, dv;
  CHECK(throws_naming([&] { ops::linear_attention_backward(q.slice(1, 0, 2).contiguous(), q, q, q,
                                                           slopes, dq, dk, dv); },
                      "linear_attention_backward: grad_o"));
  Tensor x = random_tensor({1, 2, 8}, 2);
  Tensor bad_state = Tensor::zeros({1, 2, 8, 4});
  CHECK(throws_naming([&] { ops::linear_attention_step(x, x, x, bad_state, slopes); },
                      "linear_attention_step: state"));
}

// ----------------------------------------------------------------------------------------------
// Tensor-core linear attention (ops/cuda/linear_attention_bf16.cu): its layout of the work, and
// the whole block emulated on the CPU
// ----------------------------------------------------------------------------------------------

namespace {

namespace lin = ops::cuda::linear_bf16;

Tensor abs_of(const Tensor& t) {
  std::vector<float> v = t.to_floats();
  for (float& x : v) x = std::fabs(x);
  return Tensor::from_floats(v, t.shape());
}

// The tensor-core kernel's error bound, element by element (the roundings are listed in
// ops/cuda/linear_attention_bf16.cu). With u = 2^-8, the unit roundoff of bf16, and
// A_p = sum_{p' <= p} w |a_p| . |b_p'| |c_p'| (the same product of the absolute values:
// `abs_sum`): |out_p - ref_p| <= 2u A_p (each rounded operand costs at most u A_p: P over the
// chunk's own rows; the state's bf16 copy and the update's decayed keys over earlier rows)
// + u |ref_p| (the output's own rounding) + 1e-4 A_p (f32 sums and powers of the f32 decays
// over up to a hundred chunks: a few 1e-5 at most). Returns the worst |out - ref| / bound,
// so at most 1 passes; a NaN or infinity counts as infinite.
double worst_over_bf16_bound(const Tensor& got, const Tensor& ref, const Tensor& abs_sum) {
  const double u = std::ldexp(1.0, -8);
  const std::vector<float> g = got.to_floats(), r = ref.to_floats(), a = abs_sum.to_floats();
  REQUIRE(g.size() == r.size());
  REQUIRE(a.size() == r.size());
  double worst = 0;
  for (size_t i = 0; i < g.size(); i++) {
    const double bound = (2 * u + 1e-4) * a[i] + u * std::fabs(r[i]) + 1e-30;
    const double err = std::fabs(double(g[i]) - double(r[i]));
    worst = std::fmax(worst, std::isfinite(err) ? err / bound : INFINITY);
  }
  return worst;
}

const Tensor& pass_operand(lin::Operand which, const Tensor& grad_o, const Tensor& q, const Tensor& k,
                           const Tensor& v) {
  switch (which) {
    case lin::Operand::GradO: return grad_o;
    case lin::Operand::Q: return q;
    case lin::Operand::K: return k;
    case lin::Operand::V: return v;
  }
  return q;
}

// decayed_product_kernel of ops/cuda/linear_attention_bf16.cu for every (b, h), step by step
// as the kernel does it: the same helpers, the same shared tiles, pitch and offsets, ldmatrix
// and mma emulated as the PTX ISA defines them (above). a, b, c: [B, T, H, 32] f32 holding
// bf16 values. Returns out as the kernel stores it (bf16 values); `rewritten` counts the
// elements stored more than once (the staged 16-byte writes are a copy of these rows).
Tensor emulate_linear_bf16_pass(const Tensor& a, const Tensor& b, const Tensor& c,
                                const std::vector<float>& slopes, bool reverse, int64_t& rewritten) {
  const int64_t B = a.size(0), T = a.size(1), H = a.size(2), D = lin::kHeadDim;
  REQUIRE(a.size(3) == D);
  const int pitch = lin::kSharedPitch, N = lin::kChunk;
  const std::vector<float> av = a.to_floats(), bv = b.to_floats(), cv = c.to_floats();
  std::vector<float> out(av.size(), NAN);
  for (int64_t bi = 0; bi < B; bi++)
    for (int64_t h = 0; h < H; h++) {
      auto at = [&](int p) { return ((bi * T + lin::time_of(p, int(T), reverse)) * H + h) * D; };
      std::vector<float> decay(N + 1);  // the kernel: expf(-s * (float)n)
      for (int n = 0; n <= N; n++) decay[n] = std::exp(-slopes[h] * float(n));
      std::vector<uint16_t> tA(N * pitch, 0), tB(N * pitch, 0), tC(N * pitch, 0), sS(D * pitch, 0);
      std::array<std::array<WarpAcc, 2>, lin::kWarps> state{};
      const int n_chunks = lin::chunk_count(int(T));
      for (int ch = 0; ch < n_chunks; ch++) {
        const int c0 = ch * N;
        for (int r = 0; r < N; r++)  // load_tile_async: zero rows past T
          for (int d = 0; d < D; d++) {
            const bool valid = c0 + r < T;
            tA[r * pitch + d] = valid ? float_to_bf16(av[at(c0 + r) + d]).bits : 0;
            tB[r * pitch + d] = valid ? float_to_bf16(bv[at(c0 + r) + d]).bits : 0;
            tC[r * pitch + d] = valid ? float_to_bf16(cv[at(c0 + r) + d]).bits : 0;
          }
        for (int w = 0; w < lin::kWarps; w++) {
          const int r0 = lin::warp_first_row(w);
          WarpRegs<4> af[2];
          for (int ks = 0; ks < 2; ks++)
            af[ks] = ldmatrix_x4(tA, ldsm_rows(pitch, r0, 16 * ks, mma::ldsm_block_row, mma::ldsm_block_col), false);
          // 1. out = decay[r+1] (a S), S from the bf16 copy.
          std::array<WarpAcc, 4> acc{};
          if (ch > 0) {
            for (int ks = 0; ks < 2; ks++)
              for (int dn = 0; dn < 2; dn++) {
                WarpRegs<4> sb = ldmatrix_x4(sS, ldsm_rows(pitch, 16 * ks, 16 * dn, mma::ldsm_block_row, mma::ldsm_block_col), true);
                mma_m16n8k16(acc[2 * dn], af[ks], b_regs(sb, 0), false);
                mma_m16n8k16(acc[2 * dn + 1], af[ks], b_regs(sb, 2), false);
              }
            for (int dn = 0; dn < 4; dn++)
              for (int l = 0; l < 32; l++)
                for (int i = 0; i < 4; i++) acc[dn][l][i] *= decay.at(lin::inter_decay_index(r0 + mma::c_row(l, i)));
          }
          // 2. decayed, masked scores.
          std::array<WarpAcc, 8> p{};
          for (int nb = 0; nb < lin::score_blocks(w); nb++) {
            WarpRegs<4> kb = ldmatrix_x4(tB, ldsm_rows(pitch, 8 * nb, 0, mma::ldsm_nmajor_row, mma::ldsm_nmajor_col), false);
            mma_m16n8k16(p[nb], af[0], b_regs(kb, 0), false);
            mma_m16n8k16(p[nb], af[1], b_regs(kb, 2), false);
            const bool masked = lin::score_block_needs_mask(w, nb);
            for (int l = 0; l < 32; l++)
              for (int i = 0; i < 4; i++) {
                const int r = r0 + mma::c_row(l, i), j = 8 * nb + mma::c_col(l, i);
                p[nb][l][i] = (!masked || lin::chunk_sees(r, j)) ? p[nb][l][i] * decay.at(r - j) : 0.0f;
              }
          }
          // 3. out += P c, P rounded to bf16 in place.
          for (int kk = 0; kk < lin::value_steps(w); kk++) {
            WarpRegs<4> pa{};
            for (int l = 0; l < 32; l++) {
              float lo[4], hi[4];
              uint32_t x[4];
              for (int i = 0; i < 4; i++) lo[i] = p[2 * kk][l][i], hi[i] = p[2 * kk + 1][l][i];
              mma::c_pair_to_a(lo, hi, x);
              for (int r = 0; r < 4; r++) pa[l][r] = x[r];
            }
            for (int dn = 0; dn < 2; dn++) {
              WarpRegs<4> vb = ldmatrix_x4(tC, ldsm_rows(pitch, 16 * kk, 16 * dn, mma::ldsm_block_row, mma::ldsm_block_col), true);
              mma_m16n8k16(acc[2 * dn], pa, b_regs(vb, 0), false);
              mma_m16n8k16(acc[2 * dn + 1], pa, b_regs(vb, 2), false);
            }
          }
          // 4. stored as bf16, rows past T never.
          for (int dn = 0; dn < 4; dn++)
            for (int l = 0; l < 32; l++)
              for (int i = 0; i < 4; i++) {
                const int r = r0 + mma::c_row(l, i);
                if (c0 + r >= T) continue;
                float& o = out[at(c0 + r) + 8 * dn + mma::c_col(l, i)];
                rewritten += !std::isnan(o);
                o = round_to_bf16(acc[dn][l][i]);
              }
        }
        // 5. The state update (after every warp's step 1: the kernel's S is double-buffered).
        if (ch + 1 < n_chunks) {
          for (int w = 0; w < lin::kWarps; w++) {
            const int e0 = lin::state_block_row(w), d0 = lin::state_block_col(w);
            for (int n = 0; n < 2; n++)
              for (int l = 0; l < 32; l++)
                for (int i = 0; i < 4; i++) state[w][n][l][i] *= decay[N];
            for (int kk = 0; kk < N / 16; kk++) {
              WarpRegs<4> ab = ldmatrix_x4(tB, ldsm_rows(pitch, 16 * kk, e0, mma::ldsm_kmajor_a_row, mma::ldsm_kmajor_a_col), true);
              for (int l = 0; l < 32; l++)
                for (int r = 0; r < 4; r++) {
                  const int j = 16 * kk + mma::a_col(l, r);
                  ab[l][r] = mma::pack_bf16x2(mma::bf16x2_lo(ab[l][r]) * decay.at(lin::state_decay_index(j)),
                                              mma::bf16x2_hi(ab[l][r]) * decay.at(lin::state_decay_index(j + 1)));
                }
              WarpRegs<4> cb = ldmatrix_x4(tC, ldsm_rows(pitch, 16 * kk, d0, mma::ldsm_block_row, mma::ldsm_block_col), true);
              mma_m16n8k16(state[w][0], ab, b_regs(cb, 0), false);
              mma_m16n8k16(state[w][1], ab, b_regs(cb, 2), false);
            }
            for (int n = 0; n < 2; n++)
              for (int l = 0; l < 32; l++)
                for (int i = 0; i < 4; i++)
                  sS.at((e0 + mma::c_row(l, i)) * pitch + d0 + 8 * n + mma::c_col(l, i)) =
                      float_to_bf16(state[w][n][l][i]).bits;
          }
        }
      }
    }
  return Tensor::from_floats(out, a.shape());
}

}  // namespace

TEST_CASE("attn: tensor-core linear attention's layout covers each chunk's causal pairs, the state and the passes") {
  int64_t missed = 0, unmasked_hidden = 0, extra = 0;
  for (int w = 0; w < lin::kWarps; w++) {
    const int r0 = lin::warp_first_row(w), r_last = r0 + lin::kWarpRows - 1;
    CHECK(16 * lin::value_steps(w) == 8 * lin::score_blocks(w));  // P c consumes exactly the scores
    extra += (lin::score_blocks(w) - 1) * 8 > r_last;             // the last block holds a seen key
    CHECK(lin::score_blocks(w) <= lin::kChunk / 8);
    for (int r = r0; r <= r_last; r++)
      for (int j = 0; j < lin::kChunk; j++) {
        const bool visible = j <= r, computed = j / 8 < lin::score_blocks(w);
        missed += visible != lin::chunk_sees(r, j);
        missed += visible && !computed;
        unmasked_hidden += computed && !lin::score_block_needs_mask(w, j / 8) && !visible;
      }
  }
  CHECK(missed == 0);
  CHECK(unmasked_hidden == 0);
  CHECK(extra == 0);
  // Decay indices stay inside the table [0, kChunk].
  for (int r = 0; r < lin::kChunk; r++) {
    CHECK(lin::inter_decay_index(r) >= 1);
    CHECK(lin::inter_decay_index(r) <= lin::kChunk);
    CHECK(lin::state_decay_index(r) >= 0);
    CHECK(lin::state_decay_index(r) < lin::kChunk);
  }
  // The warps' 16 x 16 state blocks tile the 32 x 32 state exactly once.
  int cover[32][32] = {};
  for (int w = 0; w < lin::kWarps; w++)
    for (int e = 0; e < 16; e++)
      for (int d = 0; d < 16; d++) cover[lin::state_block_row(w) + e][lin::state_block_col(w) + d]++;
  int wrong = 0;
  for (auto& row : cover)
    for (int n : row) wrong += n != 1;
  CHECK(wrong == 0);
  // Blocks of a launch map onto (pass, head) one to one.
  for (int passes : {1, 3}) {
    const int heads = 7;
    std::vector<int> seen(passes * heads, 0);
    for (int x = 0; x < passes * heads; x++) {
      const int pass = lin::pass_of_block(x, passes), head = lin::head_of_block(x, passes);
      REQUIRE(pass < passes);
      REQUIRE(head < heads);
      seen[head * passes + pass]++;
    }
    CHECK(std::count(seen.begin(), seen.end(), 1) == passes * heads);
  }
  // Chunks and positions.
  CHECK(lin::chunk_count(1) == 1);
  CHECK(lin::chunk_count(64) == 1);
  CHECK(lin::chunk_count(65) == 2);
  CHECK(lin::time_of(0, 10, true) == 9);
  CHECK(lin::time_of(3, 10, false) == 3);
}

TEST_CASE("attn: tensor-core linear attention, its block emulated on the CPU, stays within bf16 rounding of the definition") {
  // Forward and the backward's three passes (the kernel's pass table), at one position, a
  // warp's rows plus one, a chunk minus, equal and plus one, and several chunks with a
  // partial last one; no decay, the model's weakest and strongest, and one so strong that
  // the in-chunk decays underflow.
  struct Case {
    int64_t B, T, H;
    std::vector<float> slopes;
  };
  const std::vector<Case> cases = {
      {2, 1, 3, {0.0f, 0.0625f, 0.7071f}}, {1, 17, 2, {0.00390625f, 2.0f}},
      {2, 63, 3, {0.9f, 0.0f, 0.03f}},     {1, 64, 2, ops::linear_attention_slopes(2)},
      {2, 65, 3, {0.0f, 0.7071f, 0.2f}},   {1, 200, 3, {0.0f, 0.00390625f, 0.7071f}},
  };
  uint64_t seed = 1500;
  for (const Case& c : cases) {
    CAPTURE(c.B);
    CAPTURE(c.T);
    CAPTURE(c.H);
    const Shape shape{c.B, c.T, c.H, lin::kHeadDim};
    Tensor q = bf16_rounded(random_tensor(shape, seed++)), k = bf16_rounded(random_tensor(shape, seed++));
    Tensor v = bf16_rounded(random_tensor(shape, seed++)), g = bf16_rounded(random_tensor(shape, seed++));
    int64_t rewritten = 0;
    auto run = [&](const lin::PassSpec& spec) {
      return emulate_linear_bf16_pass(pass_operand(spec.a, g, q, k, v), pass_operand(spec.b, g, q, k, v),
                                      pass_operand(spec.c, g, q, k, v), c.slopes, spec.reverse, rewritten);
    };
    const Tensor o = run(lin::kForwardPass);
    const Tensor o_ref = ops::cpu::linear_attention_forward(q, k, v, c.slopes);
    const Tensor o_abs = ops::cpu::linear_attention_forward(abs_of(q), abs_of(k), abs_of(v), c.slopes);
    const Tensor grads[3] = {run(lin::kBackwardPasses[0]), run(lin::kBackwardPasses[1]), run(lin::kBackwardPasses[2])};
    Tensor ref[3], bound[3];
    ops::cpu::linear_attention_backward(g, q, k, v, c.slopes, ref[0], ref[1], ref[2]);
    ops::cpu::linear_attention_backward(abs_of(g), abs_of(q), abs_of(k), abs_of(v), c.slopes, bound[0], bound[1],
                                        bound[2]);
    CHECK(rewritten == 0);
    const double worst_o = worst_over_bf16_bound(o, o_ref, o_abs);
    double worst_g[3];
    for (int i = 0; i < 3; i++) worst_g[i] = worst_over_bf16_bound(grads[i], ref[i], bound[i]);
    MESSAGE("emulated tensor-core linear attention T=" << c.T << ": error / bf16 bound o " << worst_o << ", dq "
            << worst_g[0] << ", dk " << worst_g[1] << ", dv " << worst_g[2] << "; rel_l2 o " << rel_l2(o, o_ref)
            << ", dq " << rel_l2(grads[0], ref[0]) << ", dk " << rel_l2(grads[1], ref[1]) << ", dv "
            << rel_l2(grads[2], ref[2]));
    CHECK(worst_o <= 1);
    for (int i = 0; i < 3; i++) {
      CAPTURE(i);
      CHECK(worst_g[i] <= 1);
      CHECK(rel_l2(grads[i], ref[i]) < 1e-2);
    }
    CHECK(rel_l2(o, o_ref) < 1e-2);
    // The bound is not vacuous: 10% off fails it.
    CHECK(worst_over_bf16_bound(scaled(o_ref, 1.1f), o_ref, o_abs) > 1);
  }
}

// ----------------------------------------------------------------------------------------------
// GPU against the CPU references
// ----------------------------------------------------------------------------------------------

namespace {

struct AttentionSize {
  int64_t B, Tq, Tk, H;
};
// Awkward sizes: not multiples of the tiles (64, 128), B*H not a power of two,
// one case shorter than a tile, decoding-style queries (Tq < Tk, Tq = 1).
const std::vector<AttentionSize> kGpuSizes = {
    {1, 37, 37, 3}, {3, 117, 117, 1}, {2, 119, 119, 5}, {1, 300, 300, 3},
    {2, 5, 119, 3}, {3, 1, 130, 2},   {1, 129, 200, 3},
};
constexpr int64_t kD = 32;

Tensor gpu(const Tensor& t, DType dtype) { return t.to(dtype).to(Device::CUDA); }

// GPU causal attention in `dtype` against the CPU reference on the same (rounded) inputs.
// f32: the kernels differ from the double reference only by f32 accumulation order:
//   a few 1e-6 relative; we allow 1e-4 on the worst element.
// bf16: the inputs are rounded for both sides, and the backward is given the GPU's own
//   o and lse, so the remaining difference is f32 accumulation plus the final rounding of
//   each output to bf16 (relative 2^-9 = 0.2% per element): about 3e-3 in rel_l2; we
//   allow 2e-2 (rel_l2) so only a real indexing or masking error fails.
void check_causal_gpu(const AttentionSize& n, DType dtype, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.Tq);
  CAPTURE(n.Tk);
  CAPTURE(n.H);
  CAPTURE(dtype_name(dtype));
  const float scale = 1.0f / std::sqrt(float(kD));
  // Inputs roughly as in the model (post-RMSNorm projections): scores of order a few.
  Tensor q = random_tensor({n.B, n.Tq, n.H, kD}, seed, -2, 2);
  Tensor k = random_tensor({n.B, n.Tk, n.H, kD}, seed + 1, -2, 2);
  Tensor v = random_tensor({n.B, n.Tk, n.H, kD}, seed + 2);
  Tensor g = random_tensor({n.B, n.Tq, n.H, kD}, seed + 3);
  if (dtype == DType::BF16) {
    q = bf16_rounded(q), k = bf16_rounded(k), v = bf16_rounded(v), g = bf16_rounded(g);
  }
  Tensor lse_gpu, lse_cpu;
  Tensor o_gpu = ops::causal_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), scale, &lse_gpu);
  Tensor o_cpu = ops::causal_attention_forward(q, k, v, scale, &lse_cpu);
  REQUIRE(o_gpu.dtype() == dtype);
  REQUIRE(o_gpu.is_cuda());
  REQUIRE(lse_gpu.dtype() == DType::F32);
  CHECK(max_abs_diff(lse_gpu, lse_cpu) < 1e-4);

  Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
  ops::causal_attention_backward(gpu(g, dtype), gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), o_gpu,
                                 lse_gpu, scale, dq_g, dk_g, dv_g);
  REQUIRE(dq_g.dtype() == dtype);
  if (dtype == DType::F32) {
    CHECK(rel_max(o_gpu, o_cpu) < 1e-4);
    ops::causal_attention_backward(g, q, k, v, o_cpu, lse_cpu, scale, dq_c, dk_c, dv_c);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  } else {
    CHECK(rel_l2(o_gpu, o_cpu) < 2e-2);
    Tensor o_used = o_gpu.to(Device::CPU).to(DType::F32), lse_used = lse_gpu.to(Device::CPU);
    ops::causal_attention_backward(g, q, k, v, o_used, lse_used, scale, dq_c, dk_c, dv_c);
    CHECK(rel_l2(dq_g, dq_c) < 2e-2);
    CHECK(rel_l2(dk_g, dk_c) < 2e-2);
    CHECK(rel_l2(dv_g, dv_c) < 2e-2);
  }
}

struct LinearSize {
  int64_t B, T, H;
  std::vector<float> slopes;
};
// T around the 64-position chunk (63, 64, 65), several chunks with a partial last one,
// B*H not a power of two, strong and weak decay, and the model's slopes.
const std::vector<LinearSize> kLinearSizes = {
    {1, 37, 3, {0.05f, 0.5f, 2.0f}},
    {3, 117, 1, {0.01f}},
    {2, 119, 5, {0.9f, 0.2f, 0.0f, 0.03f, 0.004f}},
    {1, 63, 2, ops::linear_attention_slopes(2)},
    {1, 64, 2, ops::linear_attention_slopes(2)},
    {2, 65, 3, ops::linear_attention_slopes(3)},
    {1, 300, 16, ops::linear_attention_slopes(16)},
};

// Tolerances as for check_causal_gpu; the chunked kernel sums in a different order
// (through the carried state) than the direct double sum.
void check_linear_gpu(const LinearSize& n, DType dtype, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.T);
  CAPTURE(n.H);
  CAPTURE(dtype_name(dtype));
  const Shape shape{n.B, n.T, n.H, kD};
  Tensor q = random_tensor(shape, seed), k = random_tensor(shape, seed + 1);
  Tensor v = random_tensor(shape, seed + 2), g = random_tensor(shape, seed + 3);
  if (dtype == DType::BF16) {
    q = bf16_rounded(q), k = bf16_rounded(k), v = bf16_rounded(v), g = bf16_rounded(g);
  }
  Tensor o_gpu = ops::linear_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), n.slopes);
  Tensor o_cpu = ops::linear_attention_forward(q, k, v, n.slopes);
  REQUIRE(o_gpu.dtype() == dtype);
  Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
  ops::linear_attention_backward(gpu(g, dtype), gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), n.slopes,
                                 dq_g, dk_g, dv_g);
  ops::linear_attention_backward(g, q, k, v, n.slopes, dq_c, dk_c, dv_c);
  REQUIRE(dk_g.dtype() == dtype);
  if (dtype == DType::F32) {
    CHECK(rel_max(o_gpu, o_cpu) < 1e-4);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  } else {
    CHECK(rel_l2(o_gpu, o_cpu) < 2e-2);
    CHECK(rel_l2(dq_g, dq_c) < 2e-2);
    CHECK(rel_l2(dk_g, dk_c) < 2e-2);
    CHECK(rel_l2(dv_g, dv_c) < 2e-2);
  }
}

}  // namespace

TEST_CASE("attn: GPU causal attention matches the CPU reference (f32)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (const AttentionSize& n : kGpuSizes) check_causal_gpu(n, DType::F32, seed += 10);
}

TEST_CASE("attn: GPU causal attention matches the CPU reference (bf16)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 200;
  for (const AttentionSize& n : kGpuSizes) check_causal_gpu(n, DType::BF16, seed += 10);
}

namespace {

// The bf16 tensor-core path (flash_attention_bf16.cu: 64-row blocks of four 16-row
// warps, 64-row tiles): one position, a warp's rows (17), one tile minus, equal and plus
// one (63, 64, 65), several tiles with a partial last one (200, 1000, 2307), and cached
// decoding shapes (Tq < Tk, Tq = 1, Tk - Tq not a multiple of 16 or 64). {B, Tq, Tk, H}.
const std::vector<AttentionSize> kFlashSizes = {
    {2, 1, 1, 3},    {1, 17, 17, 4},     {2, 63, 63, 3},      {1, 64, 64, 5},
    {3, 65, 65, 2},  {2, 200, 200, 3},   {1, 1000, 1000, 2},  {1, 2307, 2307, 2},
    {2, 70, 200, 3}, {1, 1, 1000, 4},    {2, 65, 129, 2},     {1, 128, 191, 1},
};

// How many elements are NaN or infinite (max_abs_diff's fmax would pass over a NaN).
int64_t nonfinite(const Tensor& t) {
  std::vector<float> v = t.to_floats();
  return std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
}

// Leaves NaN-filled device blocks of these sizes in the caching allocator (alone: the
// cache is emptied first), so the outputs allocated next start as NaN and an element
// a kernel never writes shows up as non-finite.
void poison_device_cache(const std::vector<std::pair<Shape, DType>>& blocks) {
  release_cached_device_memory();
  std::vector<Tensor> held;
  for (const auto& b : blocks) {
    held.push_back(Tensor::empty(b.first, b.second, Device::CUDA));
    held.back().fill_(NAN);
  }
  cuda_synchronize();
}

// The tensor-core path against the CPU reference run in f32 on the same bf16-rounded
// inputs (so only the kernels' own roundings differ):
//  - lse: the scores are exact products of bf16 values summed in f32 (q is not
//    pre-scaled in bf16), and the row sums use the f32 probabilities: f32 rounding
//    only, as in the f32 kernels: we allow 1e-4 absolute.
//  - o: |v| <= 1, so |o| <= 1. P is rounded to bf16 before P V (relative error at most
//    2^-9 per weight, the weights summing to 1: at most 2^-9 = 2.0e-3 on o, far less
//    where many keys share the weight, their errors having random signs), and o is
//    stored in bf16 (half an ulp: at most 2^-9 for |o| in [0.5, 1)). Worst case 3.9e-3;
//    we allow 5e-3 on the worst element.
//  - gradients (the CPU backward is given the GPU's o and lse, as for the other bf16
//    test): P, dS and the outputs are each rounded to bf16 (2^-9 relative, random
//    signs), a few 1e-3 in rel_l2; we allow 1e-2.
// Outputs start as NaN (poison_device_cache): every element must have been written.
void check_flash_gpu(const AttentionSize& n, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.Tq);
  CAPTURE(n.Tk);
  CAPTURE(n.H);
  const float scale = 1.0f / std::sqrt(float(kD));
  const Shape q_shape{n.B, n.Tq, n.H, kD}, k_shape{n.B, n.Tk, n.H, kD}, stat_shape{n.B, n.H, n.Tq};
  Tensor q = bf16_rounded(random_tensor(q_shape, seed, -2, 2));
  Tensor k = bf16_rounded(random_tensor(k_shape, seed + 1, -2, 2));
  Tensor v = bf16_rounded(random_tensor(k_shape, seed + 2));
  Tensor g = bf16_rounded(random_tensor(q_shape, seed + 3));
  const DType bf = DType::BF16;
  Tensor qg = gpu(q, bf), kg = gpu(k, bf), vg = gpu(v, bf), gg = gpu(g, bf);

  poison_device_cache({{q_shape, bf}, {stat_shape, DType::F32}});
  Tensor lse_gpu, lse_cpu;
  Tensor o_gpu = ops::causal_attention_forward(qg, kg, vg, scale, &lse_gpu);
  Tensor o_cpu = ops::causal_attention_forward(q, k, v, scale, &lse_cpu);
  REQUIRE(o_gpu.dtype() == bf);
  CHECK(nonfinite(o_gpu) == 0);
  CHECK(nonfinite(lse_gpu) == 0);
  CHECK(max_abs_diff(lse_gpu, lse_cpu) < 1e-4);
  CHECK(max_abs_diff(o_gpu, o_cpu) < 5e-3);

  poison_device_cache({{q_shape, bf}, {k_shape, bf}, {k_shape, bf}, {stat_shape, DType::F32}});
  Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
  ops::causal_attention_backward(gg, qg, kg, vg, o_gpu, lse_gpu, scale, dq_g, dk_g, dv_g);
  REQUIRE(dq_g.dtype() == bf);
  REQUIRE(dk_g.dtype() == bf);
  CHECK(nonfinite(dq_g) == 0);
  CHECK(nonfinite(dk_g) == 0);
  CHECK(nonfinite(dv_g) == 0);
  Tensor o_used = o_gpu.to(Device::CPU).to(DType::F32), lse_used = lse_gpu.to(Device::CPU);
  ops::causal_attention_backward(g, q, k, v, o_used, lse_used, scale, dq_c, dk_c, dv_c);
  const double e_dq = rel_l2(dq_g, dq_c), e_dk = rel_l2(dk_g, dk_c), e_dv = rel_l2(dv_g, dv_c);
  MESSAGE("bf16 tensor cores B=" << n.B << " Tq=" << n.Tq << " Tk=" << n.Tk << " H=" << n.H
          << ": o max abs " << max_abs_diff(o_gpu, o_cpu) << ", lse " << max_abs_diff(lse_gpu, lse_cpu)
          << "; rel_l2 dq " << e_dq << ", dk " << e_dk << ", dv " << e_dv);
  CHECK(e_dq < 1e-2);
  CHECK(e_dk < 1e-2);
  CHECK(e_dv < 1e-2);
}

}  // namespace

TEST_CASE("attn: GPU bf16 tensor-core attention matches the CPU reference at tile edges" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 800;
  for (const AttentionSize& n : kFlashSizes) check_flash_gpu(n, seed += 10);
}

TEST_CASE("attn: GPU bf16 tensor-core backward is deterministic" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // No atomics: the same inputs give the same bits, run after run.
  const int64_t B = 2, T = 1000, H = 3;
  const float scale = 1.0f / std::sqrt(float(kD));
  Tensor q = gpu(random_tensor({B, T, H, kD}, 951, -2, 2), DType::BF16);
  Tensor k = gpu(random_tensor({B, T, H, kD}, 952, -2, 2), DType::BF16);
  Tensor v = gpu(random_tensor({B, T, H, kD}, 953), DType::BF16);
  Tensor g = gpu(random_tensor({B, T, H, kD}, 954), DType::BF16);
  Tensor lse;
  Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
  Tensor dq1, dk1, dv1, dq2, dk2, dv2;
  ops::causal_attention_backward(g, q, k, v, o, lse, scale, dq1, dk1, dv1);
  ops::causal_attention_backward(g, q, k, v, o, lse, scale, dq2, dk2, dv2);
  CHECK(dq1.to_floats() == dq2.to_floats());
  CHECK(dk1.to_floats() == dk2.to_floats());
  CHECK(dv1.to_floats() == dv2.to_floats());
  CHECK(ops::causal_attention_forward(q, k, v, scale, nullptr).to_floats() == o.to_floats());
}

namespace {

// The bf16 tensor-core linear attention (linear_attention_bf16.cu: chunks of 64 rows, four
// 16-row warps): one position, a warp's rows plus one (17), a chunk minus, equal and plus one
// (63, 64, 65), several chunks with a partial last one (200, 1000, 2307), B*H > 1; no decay
// (the state only grows), the model's slopes, and decays strong enough to underflow inside a
// chunk. {B, T, H, slopes}.
const std::vector<LinearSize> kLinearMmaSizes = {
    {2, 1, 3, {0.0f, 0.0625f, 0.7071f}},  {1, 17, 4, ops::linear_attention_slopes(4)},
    {2, 63, 3, {0.9f, 0.0f, 0.03f}},      {1, 64, 5, ops::linear_attention_slopes(5)},
    {3, 65, 2, ops::linear_attention_slopes(2)}, {2, 200, 3, {0.0f, 0.00390625f, 2.0f}},
    {1, 1000, 2, {0.7071f, 0.00390625f}}, {1, 2307, 2, {0.0f, 0.00390625f}},
};

// The tensor-core path against the CPU definition run in f32 (double sums) on the same
// bf16-rounded inputs, element by element within worst_over_bf16_bound (each rounded operand
// u = 2^-8 relative, bounded by the product of the absolute values; see there and the
// rounding list in linear_attention_bf16.cu), and in rel_l2 within 1e-2 (random signs: a few
// 1e-3 expected). Outputs start as NaN (poison_device_cache): every element must be written.
void check_linear_mma_gpu(const LinearSize& n, uint64_t seed) {
  CAPTURE(n.B);
  CAPTURE(n.T);
  CAPTURE(n.H);
  const Shape shape{n.B, n.T, n.H, kD};
  const DType bf = DType::BF16;
  Tensor q = bf16_rounded(random_tensor(shape, seed)), k = bf16_rounded(random_tensor(shape, seed + 1));
  Tensor v = bf16_rounded(random_tensor(shape, seed + 2)), g = bf16_rounded(random_tensor(shape, seed + 3));
  Tensor qg = gpu(q, bf), kg = gpu(k, bf), vg = gpu(v, bf), gg = gpu(g, bf);

  poison_device_cache({{shape, bf}});
  Tensor o_gpu = ops::linear_attention_forward(qg, kg, vg, n.slopes);
  REQUIRE(o_gpu.dtype() == bf);
  CHECK(nonfinite(o_gpu) == 0);
  const Tensor o_ref = ops::linear_attention_forward(q, k, v, n.slopes);
  const double worst_o = worst_over_bf16_bound(o_gpu, o_ref,
                                               ops::linear_attention_forward(abs_of(q), abs_of(k), abs_of(v), n.slopes));

  poison_device_cache({{shape, bf}, {shape, bf}, {shape, bf}});
  Tensor grads[3];
  ops::linear_attention_backward(gg, qg, kg, vg, n.slopes, grads[0], grads[1], grads[2]);
  Tensor ref[3], bound[3];
  ops::linear_attention_backward(g, q, k, v, n.slopes, ref[0], ref[1], ref[2]);
  ops::linear_attention_backward(abs_of(g), abs_of(q), abs_of(k), abs_of(v), n.slopes, bound[0], bound[1], bound[2]);
  double worst_g[3], l2_g[3];
  for (int i = 0; i < 3; i++) {
    CAPTURE(i);
    REQUIRE(grads[i].dtype() == bf);
    CHECK(nonfinite(grads[i]) == 0);
    worst_g[i] = worst_over_bf16_bound(grads[i], ref[i], bound[i]);
    l2_g[i] = rel_l2(grads[i], ref[i]);
    CHECK(worst_g[i] <= 1);
    CHECK(l2_g[i] < 1e-2);
  }
  MESSAGE("bf16 tensor-core linear attention B=" << n.B << " T=" << n.T << " H=" << n.H << ": error / bf16 bound o "
          << worst_o << ", dq " << worst_g[0] << ", dk " << worst_g[1] << ", dv " << worst_g[2] << "; rel_l2 o "
          << rel_l2(o_gpu, o_ref) << ", dq " << l2_g[0] << ", dk " << l2_g[1] << ", dv " << l2_g[2]);
  CHECK(worst_o <= 1);
  CHECK(rel_l2(o_gpu, o_ref) < 1e-2);
}

}  // namespace

TEST_CASE("attn: GPU bf16 tensor-core linear attention matches the CPU reference at chunk edges" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 1600;
  for (const LinearSize& n : kLinearMmaSizes) check_linear_mma_gpu(n, seed += 10);
}

TEST_CASE("attn: GPU bf16 tensor-core linear attention is deterministic" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  // No atomics: the same inputs give the same bits, run after run.
  const int64_t B = 2, T = 1000, H = 3;
  const std::vector<float> slopes = ops::linear_attention_slopes(int(H));
  Tensor q = gpu(random_tensor({B, T, H, kD}, 1701), DType::BF16);
  Tensor k = gpu(random_tensor({B, T, H, kD}, 1702), DType::BF16);
  Tensor v = gpu(random_tensor({B, T, H, kD}, 1703), DType::BF16);
  Tensor g = gpu(random_tensor({B, T, H, kD}, 1704), DType::BF16);
  Tensor dq1, dk1, dv1, dq2, dk2, dv2;
  ops::linear_attention_backward(g, q, k, v, slopes, dq1, dk1, dv1);
  ops::linear_attention_backward(g, q, k, v, slopes, dq2, dk2, dv2);
  CHECK(dq1.to_floats() == dq2.to_floats());
  CHECK(dk1.to_floats() == dk2.to_floats());
  CHECK(dv1.to_floats() == dv2.to_floats());
  CHECK(ops::linear_attention_forward(q, k, v, slopes).to_floats() ==
        ops::linear_attention_forward(q, k, v, slopes).to_floats());
}

TEST_CASE("attn: GPU causal attention refuses a head dim other than 32" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  Tensor q = random_tensor({1, 4, 2, 16}, 1).to(Device::CUDA);
  CHECK(throws_naming([&] { ops::causal_attention_forward(q, q, q, 1, nullptr); }, "head dim 32"));
}

TEST_CASE("attn: GPU linear attention matches the CPU reference (f32)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 300;
  for (const LinearSize& n : kLinearSizes) check_linear_gpu(n, DType::F32, seed += 10);
}

TEST_CASE("attn: GPU linear attention matches the CPU reference (bf16)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  uint64_t seed = 400;
  for (const LinearSize& n : kLinearSizes) check_linear_gpu(n, DType::BF16, seed += 10);
}

TEST_CASE("attn: GPU linear attention steps match the CPU steps and the GPU forward" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 3, T = 21, H = 5;
  const std::vector<float> slopes{0.9f, 0.2f, 0.0f, 0.03f, 0.7071f};
  for (DType dtype : {DType::F32, DType::BF16}) {
    CAPTURE(dtype_name(dtype));
    Tensor q = bf16_rounded(random_tensor({B, T, H, kD}, 501));
    Tensor k = bf16_rounded(random_tensor({B, T, H, kD}, 502));
    Tensor v = bf16_rounded(random_tensor({B, T, H, kD}, 503));
    Tensor o_parallel = ops::linear_attention_forward(gpu(q, dtype), gpu(k, dtype), gpu(v, dtype), slopes);
    Tensor state_gpu = Tensor::zeros({B, H, kD, kD}, DType::F32, Device::CUDA);
    Tensor state_cpu = Tensor::zeros({B, H, kD, kD});
    for (int64_t t = 0; t < T; t++) {
      CAPTURE(t);
      Tensor qt = q.select(1, t).contiguous(), kt = k.select(1, t).contiguous();
      Tensor vt = v.select(1, t).contiguous();
      Tensor o_gpu = ops::linear_attention_step(gpu(qt, dtype), gpu(kt, dtype), gpu(vt, dtype), state_gpu, slopes);
      Tensor o_cpu = ops::linear_attention_step(qt, kt, vt, state_cpu, slopes);
      REQUIRE(o_gpu.dtype() == dtype);
      const double tol = dtype == DType::F32 ? 1e-5 : 1e-2;  // bf16: the output's own rounding
      CHECK(rel_max(o_gpu, o_cpu) < tol);
      CHECK(rel_max(o_gpu, o_parallel.select(1, t).contiguous()) < tol);
    }
    CHECK(rel_max(state_gpu, state_cpu) < 1e-5);  // the state is f32 either way
  }
}

TEST_CASE("attn: GPU attention on a long sequence (T = 2307)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 2, T = 2307, H = 4, m = 64;
  const float scale = 1.0f / std::sqrt(float(kD));
  Tensor q = random_tensor({B, T, H, kD}, 601, -2, 2), k = random_tensor({B, T, H, kD}, 602, -2, 2);
  Tensor v = random_tensor({B, T, H, kD}, 603), g = random_tensor({B, T, H, kD}, 604);
  Tensor qg = gpu(q, DType::F32), kg = gpu(k, DType::F32), vg = gpu(v, DType::F32), gg = gpu(g, DType::F32);

  SUBCASE("causal: row windows against the CPU, with the queries as the last rows of a shorter cache") {
    Tensor lse_g, dq_g, dk_g, dv_g;
    Tensor o_g = ops::causal_attention_forward(qg, kg, vg, scale, &lse_g);
    ops::causal_attention_backward(gg, qg, kg, vg, o_g, lse_g, scale, dq_g, dk_g, dv_g);
    Tensor o_all = o_g.to(Device::CPU), lse_all = lse_g.to(Device::CPU);
    for (int64_t end : {m, int64_t(1000), T}) {
      CAPTURE(end);
      // Queries [end - m, end) see keys [0, end): the CPU with Tq = m, Tk = end.
      Tensor q_w = rows(q, end - m, end), k_w = rows(k, 0, end), v_w = rows(v, 0, end);
      Tensor lse_c;
      Tensor o_c = ops::causal_attention_forward(q_w, k_w, v_w, scale, &lse_c);
      CHECK(rel_max(rows(o_all, end - m, end), o_c) < 1e-4);
      CHECK(max_abs_diff(lse_all.slice(2, end - m, end).contiguous(), lse_c) < 1e-4);
      // dq of these rows depends only on them; with end == T the last m keys are seen
      // by these queries only, so their dk, dv are complete too.
      Tensor dq_c, dk_c, dv_c;
      ops::causal_attention_backward(rows(g, end - m, end), q_w, k_w, v_w, o_c, lse_c, scale, dq_c,
                                     dk_c, dv_c);
      CHECK(rel_max(rows(dq_g, end - m, end), dq_c) < 1e-4);
      if (end == T) {
        CHECK(rel_max(rows(dk_g, T - m, T), rows(dk_c, T - m, T)) < 1e-4);
        CHECK(rel_max(rows(dv_g, T - m, T), rows(dv_c, T - m, T)) < 1e-4);
      }
    }
    // Whole-tensor identities: each row of P sums to 1, so sum_j dv_j = sum_i do_i, and
    // sum_j dS_ij = 0, so sum_j dk_j = 0 (per batch and head).
    std::vector<float> dv = dv_g.to_floats(), dk = dk_g.to_floats(), gv = g.to_floats();
    double worst_v = 0, worst_k = 0, size_k = 0;
    for (int64_t b = 0; b < B; b++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t d = 0; d < kD; d++) {
          double sum_dv = 0, sum_g = 0, sum_dk = 0;
          for (int64_t t = 0; t < T; t++) {
            const int64_t at = ((b * T + t) * H + h) * kD + d;
            sum_dv += dv[at], sum_g += gv[at], sum_dk += dk[at];
            size_k = std::fmax(size_k, std::fabs(dk[at]));
          }
          worst_v = std::fmax(worst_v, std::fabs(sum_dv - sum_g));
          worst_k = std::fmax(worst_k, std::fabs(sum_dk));
        }
    CHECK(worst_v < 1e-2);
    CHECK(worst_k < 1e-3 * size_k * std::sqrt(double(T)));
  }

  SUBCASE("linear: against the CPU recurrence") {
    const std::vector<float> slopes = ops::linear_attention_slopes(H);
    Tensor o_g = ops::linear_attention_forward(qg, kg, vg, slopes);
    CHECK(rel_max(o_g, ops::cpu::linear_attention_forward_recurrent(q, k, v, slopes)) < 1e-4);
    Tensor dq_g, dk_g, dv_g, dq_c, dk_c, dv_c;
    ops::linear_attention_backward(gg, qg, kg, vg, slopes, dq_g, dk_g, dv_g);
    ops::cpu::linear_attention_backward_recurrent(g, q, k, v, slopes, dq_c, dk_c, dv_c);
    CHECK(rel_max(dq_g, dq_c) < 1e-4);
    CHECK(rel_max(dk_g, dk_c) < 1e-4);
    CHECK(rel_max(dv_g, dv_c) < 1e-4);
  }
}

TEST_CASE("attn: GPU speed at the published length (T = 6921, B*H = 256, bf16)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 16, T = 6921, H = 16;
  const float scale = 1.0f / std::sqrt(float(kD));
  auto make = [&](uint64_t seed) {
    Tensor t = Tensor::empty({B, T, H, kD}, DType::BF16, Device::CUDA);
    Generator gen(seed);
    fill_uniform(t, gen, -1, 1);
    return t;
  };
  Tensor q = make(701), k = make(702), v = make(703), g = make(704);
  const std::vector<float> slopes = ops::linear_attention_slopes(H);
  // Median of five timed runs after a warm-up (allocator, first launch).
  auto seconds = [](const std::function<void()>& f) {
    f();
    cuda_synchronize();
    std::vector<double> times;
    for (int i = 0; i < 5; i++) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      cuda_synchronize();
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(times.begin(), times.end());
    return times[2];
  };
  const double forward = seconds([&] {
    Tensor lse;
    ops::causal_attention_forward(q, k, v, scale, &lse);
  });
  const double causal = seconds([&] {
    Tensor lse, dq, dk, dv;
    Tensor o = ops::causal_attention_forward(q, k, v, scale, &lse);
    ops::causal_attention_backward(g, q, k, v, o, lse, scale, dq, dk, dv);
  });
  const double linear_forward = seconds([&] { ops::linear_attention_forward(q, k, v, slopes); });
  const double linear = seconds([&] {
    Tensor dq, dk, dv;
    Tensor o = ops::linear_attention_forward(q, k, v, slopes);
    ops::linear_attention_backward(g, q, k, v, slopes, dq, dk, dv);
  });
  // Work: the forward's two products over the causal half, 4 B H (T^2 / 2) D; the
  // backward counts 2.5 times that. Linear attention moves bytes rather than FLOPs: its
  // forward reads 3 tensors and writes 1, its backward reads 4 and writes 3.
  const double forward_flop = 4.0 * B * H * (double(T) * T / 2) * kD;
  const double tensor_bytes = 2.0 * B * T * H * kD;
  MESSAGE("causal attention (bf16, tensor cores) forward " << forward * 1e3 << " ms ("
          << forward_flop / forward / 1e12 << " TFLOP/s), fwd+bwd " << causal * 1e3 << " ms ("
          << 3.5 * forward_flop / causal / 1e12 << " TFLOP/s); linear attention forward "
          << linear_forward * 1e3 << " ms (" << 4 * tensor_bytes / linear_forward / 1e9 << " GB/s), fwd+bwd "
          << linear * 1e3 << " ms (" << 11 * tensor_bytes / linear / 1e9
          << " GB/s, each tensor counted once) (" << cuda_device_description() << ")");
  // The f32-arithmetic kernels took 145 ms here (cuDNN: 12.9 ms); 100 ms fails if the
  // tensor-core path is not taken, without making a slow-but-right kernel flaky.
  const bool tensor_cores = ops::kernel_choices().flash_attention;
  CHECK(causal < (tensor_cores ? 0.1 : 1.0));
  // Linear attention: the f32-arithmetic kernel took 4.7 ms (docs/perf.md; the reference's
  // Triton kernel 2.34 ms); 3 ms fails if the tensor-core path is not taken.
  const bool linear_mma = ops::kernel_choices().linear_attention_mma;
  CHECK(linear < (linear_mma ? 3e-3 : 1.0));
}
