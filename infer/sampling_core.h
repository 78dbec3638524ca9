// sampling_core.h: the per-row sampling rules as __host__ __device__ code, shared
// by the CPU sampler and the CUDA kernel of infer/device_sampler.h, so both
// devices run the same lines.
//
// Three parts:
//   - the draw: sampling_uniform(), the Philox number of (seed, position, sample id);
//   - the row sampler in pieces: which tokens are candidates, their order (most
//     likely first, ties to the lower token), how many top-k keeps, each kept
//     token's weight exp(logit / T - top / T) in double, and nucleus_pick(), the
//     top-p cut and the draw over the weights, summed one by one in candidate
//     order. Put together (DeviceSampler's CPU loop, or the kernel) they give
//     exactly infer/sampler.cpp's sample_token() for the same logits and u;
//   - constrained decoding with O(1) work per token: ConstraintState is updated by
//     constraint_push() as each token is appended, constraint_mask() turns it into
//     bounds on the vertex being written, and constraint_allows() tests one token
//     against them. The allowed set is exactly allowed_next_tokens() of
//     infer/constrain.h (the rules are written there), which rescans the sequence.
//
// Exactness across devices: every step here is an IEEE operation that rounds the
// same on the host and the GPU (integer work, float compares, double division,
// addition and multiplication, none of which nvcc can fuse into an fma here)
// except exp(): the host's libm and CUDA's exp(double) are both within 1 ulp and
// almost always agree, but are not promised to be identical. A token can differ
// only if the draw lands within ~1e-16 (relative) of a boundary between two
// candidates' cumulative weights, or the top-p sum ties top_p * total as closely.
#pragma once
#include <cmath>
#include <cstdint>

#include "core/bf16.h"  // IFLAME_HD
#include "core/philox.h"
#include "core/tokens.h"

namespace iflame::infer {

struct SamplingConfig {
  float temperature = 1.0f;  // <= 0: greedy (argmax)
  int top_k = 50;            // <= 0: no top-k filter
  float top_p = 0.95f;       // >= 1: no nucleus filter
  uint64_t seed = 0;
};

// The uniform draw in [0, 1) for (seed, position, sample_id): the position is the
// index of the token being drawn.
IFLAME_HD float sampling_uniform(uint64_t seed, uint64_t position, uint64_t sample_id) {
  return philox_unit_float(philox_draw(seed, position, sample_id).v[0]);
}

// ------------------------------------------------------------------ the row sampler

// Unconstrained sampling: every token but PAD and START.
IFLAME_HD bool plain_allows(int32_t token) { return token != kPadToken && token != kStartToken; }

// Candidate order: does token a (logit la) come before token b (logit lb)? Most
// likely first, ties to the lower token: the order std::stable_sort by logit gives
// sample_token() (logits are never NaN).
IFLAME_HD bool candidate_before(float la, int32_t a, float lb, int32_t b) { return la > lb || (la == lb && a < b); }

// Candidate t's place in candidate order among the tokens flagged in
// candidate[0 .. vocab): how many come before it, counted up to `limit` (only
// places below the kept number matter). What the CUDA step computes per token in
// parallel instead of sorting; for every flagged t the places are 0, 1, 2, ...
IFLAME_HD int candidate_rank(const float* logits, const unsigned char* candidate, int vocab, int32_t t, int limit) {
  const float lt = logits[t];
  int rank = 0;
  for (int s = 0; s < vocab && rank < limit; s++) rank += candidate[s] && candidate_before(logits[s], s, lt, t);
  return rank;
}

// Greedy sampling takes the first candidate (no weights, no draw).
IFLAME_HD bool sampling_is_greedy(const SamplingConfig& cfg) { return cfg.temperature <= 0.0f || cfg.top_k == 1; }

// How many of n candidates top-k keeps.
IFLAME_HD int sampling_keep(const SamplingConfig& cfg, int n) { return cfg.top_k > 0 && cfg.top_k < n ? cfg.top_k : n; }

// The unnormalised probability of a kept candidate: exp(logit / T - top / T) in
// double, with top the first candidate's logit.
IFLAME_HD double candidate_weight(float logit, float top_logit, float temperature) {
  const double top = double(top_logit) / temperature;
  return ::exp(double(logit) / temperature - top);
}

// The top-p cut and the draw over the weights of the kept candidates, in
// candidate order: returns the index of the chosen one. Candidate i stays while
// the weight before it is below top_p * total (at least one stays); then the first
// i whose cumulative weight exceeds u * (total of those kept) is chosen. Sums run
// one by one in order, as in sample_token().
IFLAME_HD int nucleus_pick(const double* weight, int keep, float top_p, float u) {
  double total = 0;
  for (int i = 0; i < keep; i++) total += weight[i];
  if (top_p < 1.0f) {
    double before = 0;
    int n = 0;
    while (n < keep && before < double(top_p) * total) before += weight[n++];
    keep = n > 1 ? n : 1;
    total = 0;
    for (int i = 0; i < keep; i++) total += weight[i];
  }
  const double target = double(u) * total;
  double acc = 0;
  for (int i = 0; i < keep; i++) {
    acc += weight[i];
    if (target < acc) return i;
  }
  return keep - 1;
}

// ------------------------------------------------------------------ constrained decoding

constexpr int64_t kCoordinateLevels = kNumCoordinateTokens;                             // 129
constexpr int64_t kVertexKeys = kCoordinateLevels * kCoordinateLevels * kCoordinateLevels;  // distinct vertices

// key = (y * 129 + x) * 129 + z for a vertex written (z, x, y).
IFLAME_HD int64_t vertex_key(const int32_t* t) {
  return (int64_t(t[2]) * kCoordinateLevels + t[1]) * kCoordinateLevels + t[0];
}

// Can a vertex whose first `known` written tokens are t[0 .. known) be completed
// to a key in [lo, hi] other than `excluded` (-1: none)? The keys of the
// completions are base + stride * m for m in [0, count): z known fixes the key
// modulo 129, z and x known fix it modulo 129^2. (infer/constrain.cpp's test.)
IFLAME_HD bool vertex_completable(const int32_t* t, int known, int64_t lo, int64_t hi, int64_t excluded) {
  int64_t base = 0, stride = 1, count = kVertexKeys;
  if (known == 1) {
    base = t[0], stride = kCoordinateLevels, count = kCoordinateLevels * kCoordinateLevels;
  } else if (known == 2) {
    base = t[0] + kCoordinateLevels * t[1], stride = kCoordinateLevels * kCoordinateLevels, count = kCoordinateLevels;
  } else if (known == 3) {
    base = vertex_key(t), stride = 1, count = 1;
  }
  if (lo < base) lo = base;
  if (hi > base + stride * (count - 1)) hi = base + stride * (count - 1);
  if (lo > hi) return false;
  const int64_t m_lo = (lo - base + stride - 1) / stride, m_hi = (hi - base) / stride;
  if (m_lo > m_hi) return false;
  if (m_hi > m_lo) return true;  // two completions: one of them is not `excluded`
  return base + stride * m_lo != excluded;
}

// What constrained decoding needs of the sequence so far, updated in O(1) per
// token: the body (tokens after the START row) cut into rows of 9.
struct ConstraintState {
  int64_t previous_first_key;  // key of the last completed row's first vertex (rows >= 1)
  int32_t body;                // tokens after the START row
  int32_t has_end;             // an END token is in the body
  int32_t row[kTokensPerFace];  // the row being written: its first body % 9 tokens
  int32_t unused;               // keeps the size a multiple of 8 with no hidden padding
};

// The state right after the START row.
IFLAME_HD ConstraintState constraint_start() {
  ConstraintState s;
  s.previous_first_key = 0;
  s.body = 0;
  s.has_end = 0;
  for (int i = 0; i < kTokensPerFace; i++) s.row[i] = 0;
  s.unused = 0;
  return s;
}

// Appends one token to the body.
IFLAME_HD void constraint_push(ConstraintState& s, int32_t token) {
  if (token == kEndToken) s.has_end = 1;
  const int col = s.body % kTokensPerFace;
  s.row[col] = token;
  s.body++;
  if (col == kTokensPerFace - 1) s.previous_first_key = vertex_key(s.row);
}

// The rules at the next position, as bounds on the vertex being written:
// a coordinate c is allowed iff the vertex's known tokens followed by c can be
// completed to a key in [lo, hi] other than `excluded`.
struct ConstraintMask {
  int64_t lo, hi, excluded;
  int32_t vertex[3];    // the vertex's known tokens (the first `known`)
  int32_t known;        // 0, 1 or 2
  int32_t end_only;     // inside the END row: only END
  int32_t end_allowed;  // at a row boundary after a face (or, for a bad prompt, when nothing else is)
};

IFLAME_HD ConstraintMask constraint_mask(const ConstraintState& s) {
  ConstraintMask m;
  const int32_t row = s.body / kTokensPerFace, col = s.body % kTokensPerFace;
  const int slot = col / 3;
  m.known = col % 3;
  m.end_only = s.has_end;
  m.end_allowed = col == 0 && row >= 1;
  m.excluded = -1;
  if (slot == 0) {
    m.lo = row >= 1 ? s.previous_first_key : 0;  // not before the previous face's first vertex
    m.hi = kVertexKeys - 3;                      // room for two larger vertices
  } else {
    m.lo = vertex_key(s.row) + 1;                          // after the face's first vertex
    m.hi = kVertexKeys - 1;
    if (slot == 2) m.excluded = vertex_key(s.row + 3);     // and not the second one again
  }
  for (int i = 0; i < 3; i++) m.vertex[i] = i < m.known ? s.row[3 * slot + i] : 0;
  // Some coordinate is allowed iff the vertex can be completed as it stands: the
  // completions after one more token c, over all c in 0..128, are exactly the
  // completions now. When none is (only after a prompt that breaks the rules),
  // END is allowed, as allowed_next_tokens() does.
  if (!vertex_completable(m.vertex, m.known, m.lo, m.hi, m.excluded)) m.end_allowed = 1;
  return m;
}

IFLAME_HD bool constraint_allows(const ConstraintMask& m, int32_t token) {
  if (m.end_only) return token == kEndToken;
  if (token == kEndToken) return m.end_allowed != 0;
  if (token < 0 || token >= kNumCoordinateTokens) return false;
  const int32_t v[3] = {m.known == 0 ? token : m.vertex[0], m.known == 1 ? token : m.vertex[1],
                        m.known == 2 ? token : m.vertex[2]};  // no indexing by a variable: stays in registers
  return vertex_completable(v, m.known + 1, m.lo, m.hi, m.excluded);
}

// ------------------------------------------------------------------ one row's progress

// A sequence being sampled. Its tokens live in a history row of capacity + 1
// slots (capacity = the positions that can be fed; the step at capacity - 1
// predicts token `capacity`, kept only if it is END). Each row counts its own
// steps (`position`), so a step's device work takes no position argument and
// one block per row never reads another block's row: graph-safe.
struct SampleRow {
  ConstraintState constraint;  // of the tokens in the history (kept up to date when unconstrained too)
  uint64_t sample_id;          // names the row's draws
  int32_t position;            // the position fed by the step whose logits come next
  int32_t length;              // tokens in the history: prompt + accepted draws
  int32_t done;                // no more draws: END drawn or face limit reached
  int32_t ended;               // END drawn
  int32_t draws;               // tokens drawn, END and a draw dropped at the face limit included
  int32_t unused;              // keeps the size a multiple of 8 with no hidden padding
};

// Does the row draw from the logits of the step that fed `position`? Only while
// active, and only when the token they predict (position + 1) is the next unknown
// one: while the prompt is being fed it is already known.
IFLAME_HD bool row_draws_at(const SampleRow& r, int64_t position) { return !r.done && r.length == position + 1; }

// Takes the token drawn at the step that fed `position`: appended unless the
// face limit is reached (position + 1 == capacity), where only END is kept.
// Returns true when the row is done with this draw.
IFLAME_HD bool accept_draw(SampleRow& r, int32_t* history_row, int32_t token, int64_t position, int64_t capacity) {
  r.draws++;
  if (token == kEndToken || position + 1 < capacity) {
    history_row[r.length++] = token;
    constraint_push(r.constraint, token);
    if (token != kEndToken) return false;
    r.ended = 1;
  }
  r.done = 1;
  return true;
}

// The token to feed at position + 1: the row's token there, or its last token
// once the row is done (done rows keep being fed so the batch stays in lockstep).
IFLAME_HD int32_t next_feed(const SampleRow& r, const int32_t* history_row, int64_t position) {
  const int64_t last = r.length - 1;
  return history_row[position + 1 < last ? position + 1 : last];
}

// The end of a step for the row, drawn or not: its next feed token, and its step
// count moves on.
IFLAME_HD int32_t finish_step(SampleRow& r, const int32_t* history_row) {
  const int32_t feed = next_feed(r, history_row, r.position);
  r.position++;
  return feed;
}

}  // namespace iflame::infer
