// reference_forward_f64.cpp: the float64 iFlame forward of spec §2 (see the header).
// Activations are row-major [positions x width] vectors of doubles; each function
// below is one step of the hourglass diagram in nn/iflame.h, written as the
// formula reads.
#include "tests/reference_forward_f64.h"

#include <cmath>
#include <limits>

#include "core/bf16.h"
#include "core/error.h"
#include "core/tokens.h"

namespace iflame::test {

namespace {

using Rows = std::vector<double>;

std::vector<double> widen(const Tensor& t) {
  std::vector<float> f = t.to_floats();
  return std::vector<double>(f.begin(), f.end());
}

struct Linear64 {
  std::vector<double> weight, bias;  // [out, in], [out] or empty
  int64_t in = 0, out = 0;
};
Linear64 widen(const LinearWeights& l) { return {widen(l.weight), l.bias.defined() ? widen(l.bias) : Rows{}, l.in, l.out}; }

struct Norm64 {
  std::vector<double> weight;
  double eps = 0;  // the model's float32 eps, widened
};
Norm64 widen(const NormWeights& n) { return {widen(n.weight), double(n.eps)}; }

// A deterministic uniform draw in [-1, 1) from (seed, op, index): the same noise
// whatever the thread count.
double noise_draw(uint64_t seed, uint64_t op, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + op * 0xBF58476D1CE4E5B9ull + index * 0x94D049BB133111EBull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-52 - 1.0;
}

class Reference {
 public:
  Reference(const ModelWeights& w, const ReferenceOptions& options) : w_(w), options_(options) {
    IFLAME_CHECK(w.device() == Device::CPU, "the float64 reference reads CPU weights");
    dim_ = w.config().dim;
    embedding_ = widen(w.embedding);
    norm_ = widen(w.norm);
    skip_ = widen(w.skip_weights);
    output_ = widen(w.output_proj);
  }

  std::vector<double> logits(const std::vector<int32_t>& tokens) {
    const int64_t T = (int64_t(tokens.size()) + kTokensPerFace - 1) / kTokensPerFace * kTokensPerFace;
    Rows x(T * dim_);
    for (int64_t t = 0; t < T; t++) {  // embedding; padding positions read token 0
      const int64_t token = t < int64_t(tokens.size()) ? tokens[t] : 0;
      IFLAME_CHECK(token >= 0 && token < w_.config().vocab, "token ", token, " at ", t, " is outside the vocabulary");
      for (int64_t c = 0; c < dim_; c++) x[t * dim_ + c] = embedding_[token * dim_ + c];
    }
    x = rms_norm(x, norm_);
    x = stage(0, x);
    const Rows skip0 = x;
    x = stage(1, pool3(x));
    const Rows skip1 = x;
    x = stage(2, pool3(x));
    x = stage(3, x);
    x = skip_add(repeat3_shift2(x), skip_[0], skip1);
    x = stage(4, x);
    x = skip_add(repeat3_shift2(x), skip_[1], skip0);
    x = stage(5, x);
    return linear(x, output_);
  }

 private:
  int64_t rows(const Rows& x, int64_t width) const { return int64_t(x.size()) / width; }

  // The noise of float32 rounding (header): y *= 1 + u sqrt(n) e, n the length
  // of the sum behind row r's values (sum_length(r)).
  template <typename SumLength>
  void round_rows_like_f32(Rows& y, int64_t width, SumLength sum_length) {
    if (!options_.rounding_noise) return;
    const uint64_t op = ++ops_;
    const double u = std::ldexp(1.0, -24);
    const int64_t n = rows(y, width);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n; r++) {
      const double amplitude = u * std::sqrt(double(sum_length(r)));
      for (int64_t c = 0; c < width; c++)
        y[r * width + c] *= 1.0 + amplitude * noise_draw(options_.noise_seed, op, uint64_t(r * width + c));
    }
  }
  void round_like_f32(Rows& y, int64_t width, int64_t sum_length) {
    round_rows_like_f32(y, width, [sum_length](int64_t) { return sum_length; });
  }

  // y = x / sqrt(mean(x^2) + eps) * weight, per row.
  Rows rms_norm(const Rows& x, const Norm64& n) {
    const int64_t width = int64_t(n.weight.size()), count = rows(x, width);
    Rows y(x.size());
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < count; r++) {
      double sum_squares = 0;
      for (int64_t c = 0; c < width; c++) sum_squares += x[r * width + c] * x[r * width + c];
      const double inverse_rms = 1.0 / std::sqrt(sum_squares / double(width) + n.eps);
      for (int64_t c = 0; c < width; c++) y[r * width + c] = x[r * width + c] * inverse_rms * n.weight[c];
    }
    round_like_f32(y, width, width);
    return y;
  }

  // y = x W^T + b.
  Rows linear(const Rows& x, const Linear64& l) {
    const int64_t count = rows(x, l.in);
    Rows y(count * l.out);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < count; r++)
      for (int64_t o = 0; o < l.out; o++) {
        double s = l.bias.empty() ? 0.0 : l.bias[o];
        for (int64_t i = 0; i < l.in; i++) s += x[r * l.in + i] * l.weight[o * l.in + i];
        y[r * l.out + o] = s;
      }
    round_like_f32(y, l.out, l.in);
    return y;
  }

  // RoPE of every head of x [T, heads * D] at positions 0..T-1 of this level.
  // Frequencies and angles in float32 (spec §2), cos and sin in double.
  Rows rope(const Rows& x, int64_t heads, int64_t D) {
    const int64_t T = rows(x, heads * D), half = D / 2, quarter = D / 4;
    std::vector<float> frequency(half, 0.0f);
    for (int64_t j = 0; j < quarter; j++)
      frequency[j] = float(std::pow(1.0 / 1024.0, double(float(j) / float(quarter - 1))));
    Rows y(x.size());
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++)
      for (int64_t h = 0; h < heads; h++) {
        const int64_t at = (t * heads + h) * D;
        for (int64_t j = 0; j < half; j++) {
          const float angle = float(t) * frequency[j];  // a float32 product
          const double c = std::cos(double(angle)), s = std::sin(double(angle));
          const double x1 = x[at + j], x2 = x[at + half + j];
          y[at + j] = x1 * c + x2 * s;
          y[at + half + j] = x2 * c - x1 * s;
        }
      }
    round_like_f32(y, heads * D, 2);
    return y;
  }

  // Causal softmax attention per head: o_t = sum_{j<=t} softmax_j(scale q_t.k_j) v_j.
  Rows causal_attention(const Rows& q, const Rows& k, const Rows& v, int64_t heads, int64_t D) {
    const int64_t width = heads * D, T = rows(q, width);
    const double scale = double(1.0f / std::sqrt(float(D)));  // the model's float32 scale
    Rows o(q.size(), 0.0);
#pragma omp parallel
    {
      std::vector<double> weight(T);
#pragma omp for schedule(dynamic, 16) collapse(2)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t t = 0; t < T; t++) {
          const double* qt = &q[t * width + h * D];
          double highest = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j <= t; j++) {
            const double* kj = &k[j * width + h * D];
            double s = 0;
            for (int64_t d = 0; d < D; d++) s += qt[d] * kj[d];
            weight[j] = scale * s;
            highest = std::fmax(highest, weight[j]);
          }
          double total = 0;
          for (int64_t j = 0; j <= t; j++) total += (weight[j] = std::exp(weight[j] - highest));
          double* ot = &o[t * width + h * D];
          for (int64_t j = 0; j <= t; j++) {
            const double p = weight[j] / total, *vj = &v[j * width + h * D];
            for (int64_t d = 0; d < D; d++) ot[d] += p * vj[d];
          }
        }
    }
    round_rows_like_f32(o, width, [](int64_t t) { return t + 1; });
    return o;
  }

  // Decayed linear attention per head as its recurrence: S = e^{-s_h} S + k_t^T v_t,
  // o_t = q_t S (spec §2), the state in double over the whole sequence.
  Rows linear_attention(const Rows& q, const Rows& k, const Rows& v, int64_t heads, int64_t D) {
    const int64_t width = heads * D, T = rows(q, width);
    Rows o(q.size(), 0.0);
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < heads; h++) {
      // ALiBi slopes for a power-of-two head count, r^(h+1) with r = 2^(-8/heads),
      // rounded to float32 as the model holds them.
      const float slope = float(std::pow(2.0, -8.0 / double(heads) * double(h + 1)));
      const double decay = options_.decay_in_bf16 ? double(bf16_to_float(float_to_bf16(std::exp(-slope))))
                                                  : std::exp(-double(slope));
      std::vector<double> S(D * D, 0.0);
      for (int64_t t = 0; t < T; t++) {
        const double *qt = &q[t * width + h * D], *kt = &k[t * width + h * D], *vt = &v[t * width + h * D];
        for (int64_t e = 0; e < D; e++)
          for (int64_t d = 0; d < D; d++) S[e * D + d] = decay * S[e * D + d] + kt[e] * vt[d];
        double* ot = &o[t * width + h * D];
        for (int64_t e = 0; e < D; e++)
          for (int64_t d = 0; d < D; d++) ot[d] += qt[e] * S[e * D + d];
      }
    }
    round_rows_like_f32(o, width, [](int64_t t) { return t + 1; });
    return o;
  }

  Rows attention(const BlockWeights& b, const Rows& x) {
    const int64_t H = b.heads, D = b.head_dim;
    IFLAME_CHECK((H & (H - 1)) == 0, "the float64 reference knows the slopes of power-of-two head counts only");
    const Rows q = rope(linear(x, widen(b.q_proj)), H, D);
    const Rows k = rope(linear(x, widen(b.k_proj)), H, D);
    const Rows v = linear(x, widen(b.v_proj));
    const Rows o = b.full ? causal_attention(q, k, v, H, D) : rms_norm(linear_attention(q, k, v, H, D), widen(b.attn_norm));
    return linear(o, widen(b.out_proj));
  }

  // proj3(silu(proj1 x) * proj2 x)
  Rows feed_forward(const BlockWeights& b, const Rows& x) {
    Rows gate = linear(x, widen(b.proj1));
    const Rows up = linear(x, widen(b.proj2));
    for (size_t i = 0; i < gate.size(); i++) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    round_like_f32(gate, b.proj1.out, 1);
    return linear(gate, widen(b.proj3));
  }

  Rows add(const Rows& a, const Rows& b) {
    Rows y(a.size());
    for (size_t i = 0; i < a.size(); i++) y[i] = a[i] + b[i];
    round_like_f32(y, dim_, 1);
    return y;
  }

  Rows stage(int s, Rows x) {
    for (const BlockWeights& b : w_.stages[s]) {
      const Rows h = add(x, attention(b, rms_norm(x, widen(b.norm1))));
      x = add(h, feed_forward(b, rms_norm(h, widen(b.norm2))));
    }
    return x;
  }

  // Mean of each group of 3 positions.
  Rows pool3(const Rows& x) {
    const int64_t n = rows(x, dim_) / 3;
    Rows y(n * dim_);
    for (int64_t p = 0; p < n; p++)
      for (int64_t c = 0; c < dim_; c++)
        y[p * dim_ + c] = (x[(3 * p) * dim_ + c] + x[(3 * p + 1) * dim_ + c] + x[(3 * p + 2) * dim_ + c]) / 3.0;
    round_like_f32(y, dim_, 3);
    return y;
  }

  // Each position repeated 3 times, shifted right by 2: y[p] = x[(p - 2) / 3], 0 for p < 2.
  Rows repeat3_shift2(const Rows& x) {
    const int64_t n = 3 * rows(x, dim_);
    Rows y(n * dim_, 0.0);
    for (int64_t p = 2; p < n; p++)
      for (int64_t c = 0; c < dim_; c++) y[p * dim_ + c] = x[((p - 2) / 3) * dim_ + c];
    return y;
  }

  // y = weight * up + skip
  Rows skip_add(const Rows& up, double weight, const Rows& skip) {
    Rows y(up.size());
    for (size_t i = 0; i < up.size(); i++) y[i] = weight * up[i] + skip[i];
    round_like_f32(y, dim_, 2);
    return y;
  }

  const ModelWeights& w_;
  ReferenceOptions options_;
  int64_t dim_ = 0;
  uint64_t ops_ = 0;
  std::vector<double> embedding_, skip_;
  Norm64 norm_;
  Linear64 output_;
};

}  // namespace

std::vector<double> reference_logits_f64(const ModelWeights& weights, const std::vector<int32_t>& tokens,
                                         const ReferenceOptions& options) {
  Reference reference(weights, options);
  return reference.logits(tokens);
}

}  // namespace iflame::test
