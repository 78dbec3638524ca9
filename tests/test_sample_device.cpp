// test_sample_device.cpp: the device sampler (infer/device_sampler.h) and its
// per-row core (ops/sampling_core.h, ops/sample_step.h) against the host functions they replace.
//
// CPU: the O(1) constraint state gives allowed_next_tokens() on every prefix of
// the golden token vectors, of constrained walks under adversarial logits and of
// arbitrary (rule-breaking) sequences; the row sampler gives sample_token() over
// thousands of random logits and configurations, ties included; the CPU
// DeviceSampler gives the host loop's tokens step by step; and generate() gives
// the tokens of reference_generate(), the loop generate.cpp ran before (logits to
// the host every step, sample_tokens() / sample_token() with
// constrained_banned_tokens()), kept here verbatim.
// GPU: the CUDA DeviceSampler against the CPU one on the same logits, and
// generate() on CUDA against the CPU.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/npy.h"
#include "core/philox.h"
#include "core/tokens.h"
#include "infer/constrain.h"
#include "infer/decode.h"
#include "infer/device_sampler.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "ops/sampling_core.h"
#include "nn/state.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
using namespace iflame::ops;
using iflame::ops::cpu::sample_row;
using namespace iflame::test;

namespace {

struct SerialCpu {  // as in test_sample.cpp: CPU decoding is faster on one thread
  int previous = omp_get_max_threads();
  SerialCpu() { omp_set_num_threads(1); }
  ~SerialCpu() { omp_set_num_threads(previous); }
};

// The sampling loop as it was (generate.cpp before the device sampler), kept verbatim
// apart from the names: the reference generate() is checked against.
std::vector<GeneratedSequence> reference_generate(const IFlame& model, int batch, const std::vector<int32_t>& prompt_in,
                                                  const GenerateConfig& cfg, uint64_t first_sample_id,
                                                  int64_t* steps = nullptr) {
  std::vector<int32_t> prompt = prompt_in;
  if (prompt.empty()) prompt.assign(kTokensPerFace, kStartToken);
  const int64_t capacity = int64_t(kTokensPerFace) * (cfg.max_faces + 1);
  const int vocab = model.config().vocab;
  std::vector<GeneratedSequence> seqs(batch);
  for (auto& s : seqs) s.tokens = prompt;
  std::vector<bool> active(batch, true);
  std::vector<uint64_t> ids(batch);
  for (int b = 0; b < batch; b++) ids[b] = first_sample_id + b;
  int remaining = batch;
  DecodeState st = begin(model, batch, capacity, cfg.ctx);
  Tensor feed = Tensor::empty({batch}, DType::I32, Device::CPU);
  for (int64_t pos = 0; remaining > 0; pos++) {
    int32_t* f = feed.data<int32_t>();
    for (int b = 0; b < batch; b++) f[b] = seqs[b].tokens[std::min<size_t>(pos, seqs[b].tokens.size() - 1)];
    Tensor logits = step(st, feed);
    if (pos + 1 < static_cast<int64_t>(prompt.size())) continue;
    std::vector<float> host = logits.to_floats();
    std::vector<int32_t> next;
    if (cfg.constrained) {
      next.assign(batch, -1);
      for (int b = 0; b < batch; b++)
        if (active[b])
          next[b] = sample_token(host.data() + size_t(b) * vocab, vocab, cfg.sampling,
                                 sampling_uniform(cfg.sampling.seed, pos + 1, ids[b]),
                                 constrained_banned_tokens(seqs[b].tokens, vocab));
    } else {
      next = sample_tokens(host, vocab, cfg.sampling, pos + 1, ids, active);
    }
    for (int b = 0; b < batch; b++) {
      if (!active[b]) continue;
      const bool at_limit = pos + 1 == capacity;
      if (next[b] == kEndToken) {
        seqs[b].tokens.push_back(kEndToken);
        seqs[b].ended = true;
      } else if (!at_limit) {
        seqs[b].tokens.push_back(next[b]);
        continue;
      }
      active[b] = false;
      remaining--;
    }
  }
  if (steps) *steps = st.pos;
  return seqs;
}

struct GenerateCase {
  const char* name;
  SamplingConfig sampling;
  bool constrained;
  int max_faces, batch;
  uint64_t first_id;
  int prompt_faces;  // -1: no prompt; else the first faces of the golden tatami
};


std::vector<int32_t> start_row() { return std::vector<int32_t>(kTokensPerFace, kStartToken); }

const SamplingConfig kPublished{1.0f, 50, 0.95f, 0};

// The temperatures, top-k and top-p of the row sampler tests: every combination.
std::vector<SamplingConfig> config_grid() {
  std::vector<SamplingConfig> out;
  for (float t : {0.0f, 0.7f, 1.0f, 1.3f})
    for (int k : {0, 1, 5, 50})
      for (float p : {0.5f, 0.95f, 1.0f}) out.push_back({t, k, p, 0});
  return out;
}

std::string describe(const SamplingConfig& c) {
  return str("T ", c.temperature, ", top-k ", c.top_k, ", top-p ", c.top_p, ", seed ", c.seed);
}

// The mask of the O(1) state.
std::vector<bool> incremental_allowed(const ConstraintState& s, int vocab) {
  const ConstraintMask m = constraint_mask(s);
  std::vector<bool> a(vocab);
  for (int t = 0; t < vocab; t++) a[t] = constraint_allows(m, t);
  return a;
}

std::string list_of(const std::vector<bool>& a) {
  std::string out;
  for (size_t t = 0; t < a.size(); t++)
    if (a[t]) out += std::to_string(t) + " ";
  return out;
}

// Compares the state's mask with allowed_next_tokens() on every prefix of seq
// (which starts with the START row), the whole of seq included. Returns the
// prefixes compared; the first difference goes to *first_mismatch.
int compare_every_prefix(const std::vector<int32_t>& seq, int vocab, int& mismatches, std::string* first_mismatch) {
  ConstraintState s = constraint_start();
  std::vector<int32_t> prefix(seq.begin(), seq.begin() + kTokensPerFace);
  int compared = 0;
  for (size_t k = kTokensPerFace;; k++) {
    const std::vector<bool> got = incremental_allowed(s, vocab), want = allowed_next_tokens(prefix, vocab);
    compared++;
    if (got != want) {
      if (mismatches++ == 0 && first_mismatch)
        *first_mismatch = str("after ", prefix.size(), " tokens: state allows {", list_of(got),
                              "}, allowed_next_tokens {", list_of(want), "}");
    }
    if (k == seq.size()) break;
    constraint_push(s, seq[k]);
    prefix.push_back(seq[k]);
  }
  return compared;
}

constexpr int kLogitModes = 7;

// Logits of row `row` at step `step`, shaped by `mode`, from Philox(seed).
//   0 random in [0, 8);  1 integers 0..3 (ties everywhere);  2 random, END favoured;
//   3 PAD and START far ahead, END far behind;  4 extremes: 0 and 128 high, -inf and
//   -1e30 for many;  5 all equal;  6 wide, in [-15, 15), END low.
void fill_logits(float* l, int vocab, uint64_t seed, int64_t step, int row, int mode) {
  for (int t = 0; t < vocab; t++) {
    const Philox4 r = philox_draw(seed * 7919 + uint64_t(row), uint64_t(step), uint64_t(t));
    const float u = philox_unit_float(r.v[0]);
    switch (mode) {
      case 0: case 2: l[t] = 8.0f * u; break;
      case 1: l[t] = float(r.v[1] % 4); break;
      case 3: l[t] = 8.0f * u; break;
      case 4: l[t] = u < 0.3f ? -INFINITY : u < 0.5f ? -1e30f : 3.0f * u; break;
      case 5: l[t] = 1.0f; break;
      default: l[t] = 30.0f * u - 15.0f; break;
    }
  }
  if (mode == 2) l[kEndToken] += 6.0f;
  if (mode == 3) l[kPadToken] = l[kStartToken] = 40.0f, l[kEndToken] = -40.0f;
  if (mode == 4) l[0] = l[128] = 12.0f, l[kEndToken] = -1e30f;
  if (mode == 6) l[kEndToken] = -5.0f;
}

// The host loop generate.cpp ran before the device sampler, driven by logits
// from a function instead of a model: tokens per row, done flags, and the feed
// it would give at each position.
struct HostLoop {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<bool> active, ended;
  std::vector<uint64_t> ids;
  int remaining;
  int64_t draws = 0;
  HostLoop(int B, const std::vector<int32_t>& prompt, uint64_t first_id)
      : tokens(B, prompt), active(B, true), ended(B, false), ids(B), remaining(B) {
    for (int b = 0; b < B; b++) ids[b] = first_id + b;
  }
  std::vector<int32_t> feed(int64_t pos) const {
    std::vector<int32_t> f;
    for (const auto& t : tokens) f.push_back(t[std::min<size_t>(pos, t.size() - 1)]);
    return f;
  }
  void step(const std::vector<float>& host, int vocab, const SamplingConfig& cfg, bool constrained, int64_t pos,
            int64_t capacity, size_t prompt_size) {
    if (pos + 1 < static_cast<int64_t>(prompt_size)) return;
    const int B = static_cast<int>(tokens.size());
    std::vector<int32_t> next;
    if (constrained) {
      next.assign(B, -1);
      for (int b = 0; b < B; b++)
        if (active[b])
          next[b] = sample_token(host.data() + size_t(b) * vocab, vocab, cfg, sampling_uniform(cfg.seed, pos + 1, ids[b]),
                                 constrained_banned_tokens(tokens[b], vocab));
    } else {
      next = sample_tokens(host, vocab, cfg, pos + 1, ids, active);
    }
    for (int b = 0; b < B; b++) {
      if (!active[b]) continue;
      draws++;
      const bool at_limit = pos + 1 == capacity;
      if (next[b] == kEndToken) {
        tokens[b].push_back(kEndToken);
        ended[b] = true;
      } else if (!at_limit) {
        tokens[b].push_back(next[b]);
        continue;
      }
      active[b] = false;
      remaining--;
    }
  }
};

struct LoopCase {
  const char* name;
  SamplingConfig cfg;
  bool constrained;
  int max_faces;
  int prompt_faces;  // faces of the golden tatami after the START row (0: START only)
  int extra_tokens;  // and this many tokens of the next face (a prompt ending mid-row)
};

const LoopCase kLoopCases[] = {
    {"published, plain", {1.0f, 50, 0.95f, 11}, false, 25, 0, 0},
    {"published, constrained", {1.0f, 50, 0.95f, 12}, true, 25, 0, 0},
    {"T 1.3, no top-k, top-p 1, plain, prompt of 2 faces and 4 tokens", {1.3f, 0, 1.0f, 13}, false, 25, 2, 4},
    {"T 0.7, top-k 5, top-p 0.5, constrained, prompt of 3 faces", {0.7f, 5, 0.5f, 14}, true, 25, 3, 0},
    {"greedy, constrained, prompt of 1 face and 7 tokens", {0.0f, 50, 0.95f, 15}, true, 24, 1, 7},
    {"top-k 1, plain", {1.0f, 1, 0.95f, 16}, false, 23, 0, 0},
};

std::vector<int32_t> loop_prompt(const LoopCase& c) {
  const std::vector<int32_t> tatami = read_npy(golden("tokens_tatami.npy")).to_ints();
  return std::vector<int32_t>(tatami.begin(), tatami.begin() + kTokensPerFace * (1 + c.prompt_faces) + c.extra_tokens);
}

std::vector<float> step_logits(int B, int vocab, uint64_t seed, int64_t pos) {
  std::vector<float> l(size_t(B) * vocab);
  for (int b = 0; b < B; b++) fill_logits(l.data() + size_t(b) * vocab, vocab, seed, pos, b, b % kLogitModes);
  return l;
}

// The CUDA step's way to the token (ops/cuda/sample_step.cu), one thread after another:
// flags and their count, places by candidate_rank() instead of a sort, the kept
// ones scattered to their places, weights, nucleus_pick() (or, filtering the raw
// distribution, raw_filter_draw() with the allowed tokens flagged apart).
// *collisions counts places claimed twice or left empty (there must be none).
int32_t kernel_path_sample(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                           const ConstraintState* constraint, int* collisions) {
  std::vector<unsigned char> flag(vocab), allowed(vocab);
  const ConstraintMask mask = constraint ? constraint_mask(*constraint) : ConstraintMask{};
  const bool raw = filters_raw(cfg, constraint != nullptr);
  int n = 0, n_allowed = 0;
  for (int t = 0; t < vocab; t++) {
    n += flag[t] = constraint && !raw ? constraint_allows(mask, t) : plain_allows(t);
    if (raw) n_allowed += allowed[t] = constraint_allows(mask, t);
  }
  if (n == 0) std::fill(flag.begin(), flag.end(), 1), n = vocab;
  if (raw && n_allowed == 0) std::fill(allowed.begin(), allowed.end(), 1);
  const bool greedy = sampling_is_greedy(cfg);
  const int keep = greedy ? 1 : sampling_keep(cfg, n);
  std::vector<int32_t> sorted(keep, -1);
  for (int t = 0; t < vocab; t++) {
    if (!flag[t]) continue;
    const int rank = candidate_rank(logits, flag.data(), vocab, t, keep);
    if (rank < keep) {
      *collisions += sorted[rank] != -1;
      sorted[rank] = t;
    }
  }
  for (int32_t t : sorted) *collisions += t == -1;
  if (greedy) return sorted[0];
  std::vector<double> w(keep);
  for (int i = 0; i < keep; i++) w[i] = candidate_weight(logits[sorted[i]], logits[sorted[0]], cfg.temperature);
  if (raw)
    return raw_filter_draw(logits, vocab, sorted.data(), w.data(), keep, cfg.top_p, u,
                           [&](int32_t t) { return allowed[t] != 0; });
  return sorted[nucleus_pick(w.data(), keep, cfg.top_p, u)];
}

// generate()'s loop with the decode step and the draws replayed from CUDA graphs
// (infer/decode.h's DecodeGraphs; on the CPU it just calls both every step).
std::vector<GeneratedSequence> graph_generate(const IFlame& model, int batch, const GenerateConfig& cfg,
                                              uint64_t first_id, int* graphs_captured, int64_t* steps) {
  const int64_t capacity = int64_t(kTokensPerFace) * (cfg.max_faces + 1);
  DeviceSampler sampler(model.device(), batch, start_row(), capacity, model.config().vocab, cfg.sampling,
                        cfg.constrained, first_id);
  DecodeState st = begin(model, batch, capacity, cfg.ctx);
  DecodeGraphs graphs;
  for (int64_t pos = 0; pos < capacity; pos++) {
    graphs.step(st, sampler.feed(), [&] { sampler.queue_draws(st.logits); });
    sampler.count_step(pos);
    if (sampler.finished()) break;
  }
  *graphs_captured = graphs.graphs_captured();
  *steps = st.pos;
  return sampler.results();
}

bool same_rows(const std::vector<SampleRow>& a, const std::vector<SampleRow>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(SampleRow)) == 0;
}

// The smallest distance of a sampling decision from a boundary where a small
// change of the logits would change the token: the gap between neighbouring
// candidates' logits (order, top-k cut), and, relative to the total, the gaps
// between the draw and the cumulative weights and at the top-p cut.
double decision_margin(const float* logits, int vocab, const SamplingConfig& cfg, float u,
                       const ConstraintState* constraint) {
  std::vector<int32_t> cand;
  const ConstraintMask mask = constraint ? constraint_mask(*constraint) : ConstraintMask{};
  for (int t = 0; t < vocab; t++)
    if (constraint ? constraint_allows(mask, t) : plain_allows(t)) cand.push_back(t);
  std::sort(cand.begin(), cand.end(), [&](int32_t a, int32_t b) { return candidate_before(logits[a], a, logits[b], b); });
  const int n = int(cand.size()), keep = sampling_is_greedy(cfg) ? 1 : sampling_keep(cfg, n);
  double margin = INFINITY;
  for (int i = 0; i + 1 < n && i < keep; i++) margin = std::min(margin, double(logits[cand[i]]) - logits[cand[i + 1]]);
  if (sampling_is_greedy(cfg)) return margin;
  std::vector<double> w(keep);
  double total = 0;
  for (int i = 0; i < keep; i++) total += w[i] = candidate_weight(logits[cand[i]], logits[cand[0]], cfg.temperature);
  int kept = keep;
  if (cfg.top_p < 1.0f) {  // the nucleus cut, as nucleus_pick makes it
    double before = 0;
    int m = 0;
    while (m < keep) {
      margin = std::min(margin, std::fabs(before - double(cfg.top_p) * total) / total);
      if (!(before < double(cfg.top_p) * total)) break;
      before += w[m++];
    }
    kept = std::max(m, 1);
    total = 0;
    for (int i = 0; i < kept; i++) total += w[i];
  }
  double acc = 0;
  for (int i = 0; i < kept; i++) {
    acc += w[i];
    margin = std::min(margin, std::fabs(acc - double(u) * total) / total);
  }
  return margin;
}

}  // namespace

TEST_CASE("sample: generate() on the CPU gives the tokens of the host sampling loop it replaced") {
  SerialCpu serial;
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  const std::vector<int32_t> tatami = read_npy(golden("tokens_tatami.npy")).to_ints();
  const GenerateCase cases[] = {
      {"published (T 1, top-k 50, top-p 0.95), seed 0", {1.0f, 50, 0.95f, 0}, false, 6, 3, 0, -1},
      {"published, seed 7, sample ids from 5", {1.0f, 50, 0.95f, 7}, false, 5, 4, 5, -1},
      {"published, constrained, seed 3", {1.0f, 50, 0.95f, 3}, true, 8, 3, 0, -1},
      {"T 1.3, no top-k, top-p 1, constrained, seed 11", {1.3f, 0, 1.0f, 11}, true, 5, 2, 2, -1},
      {"T 0.7, top-k 5, top-p 0.5, seed 1", {0.7f, 5, 0.5f, 1}, false, 5, 2, 0, -1},
      {"greedy (T 0)", {0.0f, 50, 0.95f, 0}, false, 4, 2, 0, -1},
      {"tatami prompt of 3 faces, seed 2", {1.0f, 50, 0.95f, 2}, false, 6, 2, 0, 3},
      {"tatami prompt of 3 faces, constrained, seed 4", {1.0f, 50, 0.95f, 4}, true, 6, 2, 0, 3},
      {"prompt fills the face limit", {1.0f, 50, 0.95f, 5}, false, 3, 2, 0, 3},
  };
  int ended = 0, at_limit = 0;
  for (const GenerateCase& c : cases) {
    CAPTURE(std::string(c.name));
    GenerateConfig cfg;
    cfg.sampling = c.sampling;
    cfg.constrained = c.constrained;
    cfg.max_faces = c.max_faces;
    std::vector<int32_t> prompt;
    if (c.prompt_faces >= 0) prompt.assign(tatami.begin(), tatami.begin() + kTokensPerFace * (1 + c.prompt_faces));
    int64_t steps = 0;
    const std::vector<GeneratedSequence> want = reference_generate(*model, c.batch, prompt, cfg, c.first_id, &steps);
    GenerateStats stats;
    const std::vector<GeneratedSequence> got = generate(*model, c.batch, prompt, cfg, c.first_id, &stats);
    REQUIRE(got.size() == want.size());
    int64_t drawn = 0;
    for (size_t b = 0; b < got.size(); b++) {
      CAPTURE(b);
      CHECK(got[b].tokens == want[b].tokens);
      CHECK(got[b].ended == want[b].ended);
      ended += want[b].ended;
      at_limit += !want[b].ended;
      // Every draw is counted: the tokens kept, plus the draw a row makes at the face limit.
      drawn += int64_t(want[b].tokens.size()) - int64_t(std::max(prompt.size(), size_t(kTokensPerFace))) +
               (want[b].ended ? 0 : 1);
    }
    CHECK(stats.sampled_tokens == drawn);
    CHECK(stats.steps == steps);  // on the CPU finished() is exact: no step past the last row's end
  }
  MESSAGE(ended << " rows ended with END, " << at_limit << " reached the face limit");
  CHECK(ended > 0);
  CHECK(at_limit > 0);
}

// ------------------------------------------------------------------ the O(1) constraint state

TEST_CASE("sample: the incremental constraint state equals allowed_next_tokens() on every prefix of the golden tokens") {
  int vectors = 0, compared = 0, mismatches = 0;
  std::string first;
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("tokens_", 0) != 0 || entry.path().extension() != ".npy") continue;
    CAPTURE(name);
    const std::vector<int32_t> tokens = read_npy(entry.path().string()).to_ints();
    REQUIRE(follows_canonical_order(tokens));
    compared += compare_every_prefix(tokens, kVocabSize, mismatches, &first);
    compared += compare_every_prefix(tokens, kVocabSize + 5, mismatches, &first);  // tokens past 131: never
    vectors++;
  }
  MESSAGE(vectors << " golden token vectors, " << compared << " prefixes compared");
  CHECK(vectors >= 7);
  CHECK_MESSAGE(mismatches == 0, first);
}

TEST_CASE("sample: the incremental constraint state equals allowed_next_tokens() along constrained walks under adversarial logits") {
  // Each walk draws with the CPU row sampler under the state's mask and, beside
  // it, with sample_token() and constrained_banned_tokens(): the two must agree,
  // and the masks must agree at every prefix, through the END row.
  const std::vector<SamplingConfig> grid = config_grid();
  int compared = 0, mismatches = 0, draw_mismatches = 0, ended = 0, walks = 0;
  std::string first;
  std::vector<int32_t> cand;
  std::vector<double> w;
  std::vector<float> logits(kVocabSize);
  for (int trial = 0; trial < 1500; trial++) {
    SamplingConfig cfg = grid[trial % grid.size()];
    cfg.seed = trial;
    const int mode = trial % kLogitModes;
    const int max_faces = 1 + trial % 23;
    std::vector<int32_t> seq = start_row();
    ConstraintState s = constraint_start();
    for (int64_t pos = kTokensPerFace - 1; pos + 1 < kTokensPerFace * (max_faces + 1); pos++) {
      fill_logits(logits.data(), kVocabSize, 1000 + trial, pos, 0, mode);
      if (mode == 0 && trial % 3 == 0) logits[kEndToken] = 9.0f;  // END as soon as it is allowed, often
      const float u = sampling_uniform(cfg.seed, pos + 1, 0);
      const int32_t got = sample_row(logits.data(), kVocabSize, cfg, u, &s, cand, w);
      const int32_t want = sample_token(logits.data(), kVocabSize, cfg, u, constrained_banned_tokens(seq, kVocabSize));
      draw_mismatches += got != want;
      if (incremental_allowed(s, kVocabSize) != allowed_next_tokens(seq, kVocabSize) && mismatches++ == 0)
        first = str("walk ", trial, " after ", seq.size(), " tokens");
      compared++;
      seq.push_back(want);
      constraint_push(s, want);
      if (want == kEndToken) break;
    }
    if (seq.back() == kEndToken) {
      ended++;
      for (int k = 1; k < kTokensPerFace; k++) {  // inside the END row: only END
        CHECK(incremental_allowed(s, kVocabSize) == allowed_next_tokens(seq, kVocabSize));
        seq.push_back(kEndToken);
        constraint_push(s, kEndToken);
      }
    }
    std::string why;
    CHECK_MESSAGE(follows_canonical_order(seq, &why), why);
    walks++;
  }
  MESSAGE(walks << " walks (" << ended << " closed by END), " << compared << " prefixes compared");
  CHECK_MESSAGE(mismatches == 0, first);
  CHECK(draw_mismatches == 0);
  CHECK(ended > 100);
  CHECK(ended < walks - 100);
}

TEST_CASE("sample: the incremental constraint state equals allowed_next_tokens() after rule-breaking prompts") {
  // Arbitrary bodies (PAD, START and END inside rows, faces out of order, vertex
  // keys near the top) reach the fallback where nothing but END is allowed.
  int compared = 0, mismatches = 0, fallbacks = 0;
  std::string first;
  for (int trial = 0; trial < 600; trial++) {
    std::vector<int32_t> seq = start_row();
    const int n = 1 + trial % 50;
    for (int k = 0; k < n; k++) {
      const Philox4 r = philox_draw(77, trial, k);
      const uint32_t kind = r.v[0] % 100;
      int32_t t;
      if (kind < 55) t = int32_t(r.v[1] % kNumCoordinateTokens);
      else if (kind < 85) t = 124 + int32_t(r.v[1] % 5);  // near the top: 124..128
      else if (kind < 93) t = int32_t(r.v[1] % 3);        // near the bottom
      else if (kind < 96) t = kPadToken;
      else if (kind < 99) t = kStartToken;
      else t = kEndToken;
      seq.push_back(t);
    }
    compared += compare_every_prefix(seq, kVocabSize, mismatches, &first);
    // How often the walk reached "nothing but END" inside a row (the fallback).
    ConstraintState s = constraint_start();
    for (size_t k = kTokensPerFace; k < seq.size(); k++) {
      constraint_push(s, seq[k]);
      const std::vector<bool> a = incremental_allowed(s, kVocabSize);
      fallbacks += !s.has_end && s.body % kTokensPerFace != 0 && a[kEndToken];
    }
  }
  MESSAGE(compared << " prefixes compared, " << fallbacks << " of them inside a row with nothing but END allowed");
  CHECK_MESSAGE(mismatches == 0, first);
  CHECK(fallbacks > 0);
}

TEST_CASE("sample: the full face order under walks that keep copying the previous face (ties, repeats, the top)") {
  // Logits favour the token written 9 back (the same corner of the previous
  // face) and the extremes 0, 1, 127, 128, so faces keep sharing their first
  // vertex, their low corner, or all three corners, and vertices crowd the top
  // keys: every branch of the face order. The masks must agree with the
  // rescanning definition at every prefix, some token must always be allowed
  // (inside a row a coordinate: no dead end), and the walks stay canonical. The
  // same walks, rule-breaking (copying with the mask off), check the fallback.
  int compared = 0, mismatches = 0, ties = 0, dead_ends = 0, repeat_chances = 0, repeats_allowed = 0;
  std::string first;
  std::vector<int32_t> cand;
  std::vector<double> w;
  std::vector<float> logits(kVocabSize);
  for (int trial = 0; trial < 800; trial++) {
    SamplingConfig cfg = kPublished;
    cfg.seed = trial;
    cfg.temperature = trial % 3 == 0 ? 0.0f : 1.0f;
    const bool follow_rules = trial % 4 != 3;
    std::vector<int32_t> seq = start_row();
    ConstraintState s = constraint_start();
    for (int64_t pos = kTokensPerFace - 1; pos + 1 < kTokensPerFace * 30; pos++) {
      for (int t = 0; t < kVocabSize; t++) logits[t] = 2.0f * philox_unit_float(philox_draw(trial, pos, t).v[0]);
      for (int32_t t : {0, 1, 127, 128}) logits[t] += 4.0f;
      if (seq.size() >= size_t(2 * kTokensPerFace)) logits[seq[seq.size() - kTokensPerFace]] += 6.0f;
      logits[kEndToken] = trial % 5 == 0 ? 5.0f : -20.0f;
      const std::vector<bool> want = allowed_next_tokens(seq, kVocabSize);
      if (incremental_allowed(s, kVocabSize) != want && mismatches++ == 0)
        first = str("walk ", trial, " after ", seq.size(), " tokens");
      compared++;
      const bool inside_row = (seq.size() - kTokensPerFace) % kTokensPerFace != 0 && seq.back() != kEndToken;
      if (follow_rules && inside_row && !std::any_of(want.begin(), want.begin() + kNumCoordinateTokens,
                                                     [](bool a) { return a; }))
        dead_ends++;
      int32_t token;
      if (follow_rules) {
        token = sample_row(logits.data(), kVocabSize, cfg, sampling_uniform(cfg.seed, pos + 1, 0), &s, cand, w);
        const int32_t copy = seq.size() >= size_t(2 * kTokensPerFace) ? seq[seq.size() - kTokensPerFace] : -1;
        // The last corner of a face whose first 8 tokens copy the previous face: copying is refused.
        if ((seq.size() - kTokensPerFace) % kTokensPerFace == 8 &&
            std::equal(seq.end() - 8, seq.end(), seq.end() - kTokensPerFace - 8)) {
          repeat_chances++;
          repeats_allowed += want[copy];
        }
      } else {
        token = sample_row(logits.data(), kVocabSize, cfg, sampling_uniform(cfg.seed, pos + 1, 0), nullptr, cand, w);
      }
      if ((seq.size() - kTokensPerFace) % kTokensPerFace == 2 && seq.size() >= size_t(2 * kTokensPerFace) &&
          std::equal(seq.end() - 2, seq.end(), seq.end() - kTokensPerFace - 2) && token == seq[seq.size() - kTokensPerFace])
        ties++;  // this face's first vertex is the previous face's
      seq.push_back(token);
      constraint_push(s, token);
      if (token == kEndToken) break;
    }
    if (follow_rules) {
      std::string why;
      CHECK_MESSAGE(follows_canonical_order(seq, &why), str("walk ", trial, ": ", why));
    }
  }
  MESSAGE(compared << " prefixes compared; " << ties << " faces shared the previous first vertex; "
                   << repeat_chances << " faces one token from repeating the previous one");
  CHECK_MESSAGE(mismatches == 0, first);
  CHECK(dead_ends == 0);
  CHECK(ties > 500);
  CHECK(repeat_chances > 20);
  CHECK(repeats_allowed == 0);
}

// ------------------------------------------------------------------ the row sampler

TEST_CASE("sample: the row sampler, and the CUDA step's path to the token, draw the token sample_token() draws") {
  const std::vector<SamplingConfig> grid = config_grid();
  const std::vector<int32_t> tatami = read_npy(golden("tokens_tatami.npy")).to_ints();
  std::vector<int32_t> cand;
  std::vector<double> w;
  std::vector<float> logits(kVocabSize);
  const std::vector<int32_t> plain_banned = {kPadToken, kStartToken};
  int compared = 0, mismatches = 0, kernel_mismatches = 0, raw_kernel_mismatches = 0, collisions = 0;
  std::string first;
  for (size_t c = 0; c < grid.size(); c++)
    for (int trial = 0; trial < 110; trial++) {
      const SamplingConfig& cfg = grid[c];
      const int mode = trial % kLogitModes;
      fill_logits(logits.data(), kVocabSize, 5000 + c, trial, 0, mode);
      float u = sampling_uniform(c, trial, 1);
      if (trial % 37 == 0) u = 0.0f;
      if (trial % 37 == 1) u = 0.99999994f;  // the largest float below 1
      // Plain, and constrained at a prefix of the tatami (a random cut).
      const size_t cut = kTokensPerFace + size_t(trial * 7) % (tatami.size() - kTokensPerFace);
      const std::vector<int32_t> prefix(tatami.begin(), tatami.begin() + cut);
      ConstraintState s = constraint_start();
      for (size_t k = kTokensPerFace; k < cut; k++) constraint_push(s, prefix[k]);
      const int32_t pairs[2][2] = {
          {sample_row(logits.data(), kVocabSize, cfg, u, nullptr, cand, w),
           sample_token(logits.data(), kVocabSize, cfg, u, plain_banned)},
          {sample_row(logits.data(), kVocabSize, cfg, u, &s, cand, w),
           sample_token(logits.data(), kVocabSize, cfg, u, constrained_banned_tokens(prefix, kVocabSize))}};
      for (const auto& p : pairs) {
        compared++;
        if (p[0] != p[1] && mismatches++ == 0)
          first = str(describe(cfg), ", logits mode ", mode, ", u ", u, ": row sampler ", p[0], ", sample_token ", p[1]);
      }
      kernel_mismatches += kernel_path_sample(logits.data(), kVocabSize, cfg, u, nullptr, &collisions) != pairs[0][1];
      kernel_mismatches += kernel_path_sample(logits.data(), kVocabSize, cfg, u, &s, &collisions) != pairs[1][1];
      // --filter-on raw: the kernel's path against the row sampler (test_sample_filter.cpp holds that to its definition).
      SamplingConfig raw = cfg;
      raw.filter_on = FilterOn::Raw;
      raw_kernel_mismatches += kernel_path_sample(logits.data(), kVocabSize, raw, u, &s, &collisions) !=
                               sample_row(logits.data(), kVocabSize, raw, u, &s, cand, w);
    }
  MESSAGE(compared << " draws compared over " << grid.size() << " configurations");
  CHECK_MESSAGE(mismatches == 0, first);
  CHECK(kernel_mismatches == 0);
  CHECK(raw_kernel_mismatches == 0);
  CHECK(collisions == 0);
}

TEST_CASE("sample: the row sampler breaks ties toward the lower token, like sample_token()") {
  std::vector<int32_t> cand;
  std::vector<double> w;
  std::vector<float> logits(kVocabSize, 0.0f);
  logits[7] = logits[3] = logits[90] = 5.0f;  // a three-way tie on top
  const SamplingConfig greedy{0.0f, 50, 0.95f, 0}, top2{1.0f, 2, 1.0f, 0};
  CHECK(sample_row(logits.data(), kVocabSize, greedy, 0.5f, nullptr, cand, w) == 3);
  // top-2 keeps 3 and 7 (not 90), each with half the weight.
  CHECK(sample_row(logits.data(), kVocabSize, top2, 0.49f, nullptr, cand, w) == 3);
  CHECK(sample_row(logits.data(), kVocabSize, top2, 0.51f, nullptr, cand, w) == 7);
  for (float u : {0.0f, 0.49f, 0.51f, 0.99f})
    CHECK(sample_row(logits.data(), kVocabSize, top2, u, nullptr, cand, w) ==
          sample_token(logits.data(), kVocabSize, top2, u, {kPadToken, kStartToken}));
  // Everything banned but nothing allowed: not possible under the rules (END is the
  // fallback), and PAD / START never win even when far ahead.
  logits[kPadToken] = logits[kStartToken] = 100.0f;
  CHECK(sample_row(logits.data(), kVocabSize, greedy, 0.5f, nullptr, cand, w) == 3);
}

// ------------------------------------------------------------------ DeviceSampler on the CPU

TEST_CASE("sample: the CPU DeviceSampler gives the host loop's tokens, feeds and counts, step by step") {
  const int B = 37;
  for (const LoopCase& c : kLoopCases) {
    CAPTURE(std::string(c.name));
    const std::vector<int32_t> prompt = loop_prompt(c);
    const int64_t capacity = int64_t(kTokensPerFace) * (c.max_faces + 1);
    DeviceSampler ds(Device::CPU, B, prompt, capacity, kVocabSize, c.cfg, c.constrained, 3);
    HostLoop host(B, prompt, 3);
    int feed_mismatches = 0, finished_mismatches = 0;
    int64_t pos = 0;
    for (; pos < capacity; pos++) {
      feed_mismatches += ds.feed().to_ints() != host.feed(pos);
      const std::vector<float> logits = step_logits(B, kVocabSize, c.cfg.seed, pos);
      if (pos % 2 == 0) {
        ds.step(Tensor::from_floats(logits, {B, kVocabSize}), pos);
      } else {  // the halves a CUDA graph replay uses
        ds.queue_draws(Tensor::from_floats(logits, {B, kVocabSize}));
        ds.count_step(pos);
      }
      host.step(logits, kVocabSize, c.cfg, c.constrained, pos, capacity, prompt.size());
      finished_mismatches += ds.finished() != (host.remaining == 0);
      if (host.remaining == 0) break;
    }
    MESSAGE(std::string(c.name) << ": " << pos + 1 << " steps");
    CHECK(pos >= 200);
    CHECK(feed_mismatches == 0);
    CHECK(finished_mismatches == 0);
    CHECK(ds.active_rows() == 0);
    CHECK(ds.sampled_tokens() == host.draws);
    const std::vector<GeneratedSequence> got = ds.results();
    int ended = 0;
    for (int b = 0; b < B; b++) {
      CAPTURE(b);
      CHECK(got[b].tokens == host.tokens[b]);
      CHECK(got[b].ended == host.ended[b]);
      ended += host.ended[b];
      if (c.constrained) CHECK(follows_canonical_order(got[b].tokens));
    }
    CHECK(ended > 0);
    CHECK(ended < B);
    // Steps past the end (the GPU loop learns of it late) change nothing; every
    // row feeds its last token.
    for (int64_t extra = pos + 1; extra < std::min(capacity, pos + 1 + 2 * DeviceSampler::kPollEvery); extra++) {
      ds.step(Tensor::from_floats(step_logits(B, kVocabSize, 99, extra), {B, kVocabSize}), extra);
      std::vector<int32_t> last;
      for (const auto& t : host.tokens) last.push_back(t.back());
      CHECK(ds.feed().to_ints() == last);
    }
    const std::vector<GeneratedSequence> after = ds.results();
    for (int b = 0; b < B; b++) CHECK(after[b].tokens == got[b].tokens);
    CHECK(ds.sampled_tokens() == host.draws);
  }
}

TEST_CASE("sample: DeviceSampler checks its arguments") {
  const std::vector<int32_t> prompt = start_row();
  CHECK(contains(error_of([&] { DeviceSampler(Device::CPU, 2, {1, 2, 3}, 90, kVocabSize, kPublished, false, 0); }),
                 "START row"));
  CHECK(contains(error_of([&] { DeviceSampler(Device::CPU, 2, prompt, 5, kVocabSize, kPublished, false, 0); }),
                 "capacity"));
  CHECK(contains(error_of([&] { DeviceSampler(Device::CPU, 2, prompt, 90, 100, kPublished, false, 0); }),
                 "vocabulary"));
  DeviceSampler ds(Device::CPU, 2, prompt, 90, kVocabSize, kPublished, false, 0);
  CHECK(ds.feed().to_ints() == std::vector<int32_t>{kStartToken, kStartToken});
  const Tensor logits = Tensor::zeros({2, kVocabSize});
  CHECK(contains(error_of([&] { ds.step(logits, 1); }), "expected 0"));
  CHECK(contains(error_of([&] { ds.step(Tensor::zeros({3, kVocabSize}), 0); }), "logits must be"));
  ds.step(logits, 0);
  CHECK(ds.next_position() == 1);
  CHECK(ds.rows()[1].position == 1);
  CHECK_FALSE(ds.finished());
  CHECK(contains(error_of([&] { ds.count_step(0); }), "expected 1"));
}

// ------------------------------------------------------------------ the GPU

TEST_CASE("sample: the CUDA DeviceSampler equals the CPU one on the same logits (GPU)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int B = 37;
  // Constrained cases also with top-k / top-p on the raw distribution (--filter-on raw; greedy draws the same).
  for (FilterOn filter_on : {FilterOn::Allowed, FilterOn::Raw})
  for (const LoopCase& c : kLoopCases) {
    SamplingConfig cfg = c.cfg;
    cfg.filter_on = filter_on;
    if (filter_on == FilterOn::Raw && !filters_raw(cfg, c.constrained)) continue;
    CAPTURE(std::string(c.name));
    CAPTURE(filter_on_name(filter_on));
    const std::vector<int32_t> prompt = loop_prompt(c);
    const int64_t capacity = int64_t(kTokensPerFace) * (c.max_faces + 1);
    DeviceSampler cpu(Device::CPU, B, prompt, capacity, kVocabSize, cfg, c.constrained, 3);
    DeviceSampler gpu(Device::CUDA, B, prompt, capacity, kVocabSize, cfg, c.constrained, 3);
    int feed_mismatches = 0, state_mismatches = 0, live_mismatches = 0;
    int64_t pos = 0, cpu_done_at = -1;
    std::vector<GeneratedSequence> at_done;  // the CPU's results when its last row finished
    for (; pos < capacity; pos++) {
      const std::vector<float> logits = step_logits(B, kVocabSize, c.cfg.seed, pos);
      feed_mismatches += gpu.feed().to_ints() != cpu.feed().to_ints();
      cpu.step(Tensor::from_floats(logits, {B, kVocabSize}), pos);
      gpu.step(Tensor::from_floats(logits, {B, kVocabSize}).to(Device::CUDA), pos);
      if (pos % 50 == 0) state_mismatches += !same_rows(gpu.rows(), cpu.rows());
      live_mismatches += gpu.live().to_ints() != cpu.live().to_ints();  // the decoder's dead-row flags
      if (cpu_done_at < 0 && cpu.finished()) cpu_done_at = pos, at_done = cpu.results();
      if (gpu.finished()) break;
    }
    MESSAGE(std::string(c.name) << ", --filter-on " << filter_on_name(filter_on) << ": every row done after step "
                                << cpu_done_at << ", the GPU loop saw it after step " << pos);
    CHECK(cpu_done_at >= 200);
    CHECK(pos >= cpu_done_at);
    CHECK(pos <= cpu_done_at + 2 * DeviceSampler::kPollEvery);
    CHECK(feed_mismatches == 0);
    CHECK(state_mismatches == 0);
    CHECK(live_mismatches == 0);
    CHECK(same_rows(gpu.rows(), cpu.rows()));
    CHECK(gpu.active_rows() == 0);
    CHECK(gpu.sampled_tokens() == cpu.sampled_tokens());
    const std::vector<GeneratedSequence> a = gpu.results(), b = cpu.results();
    REQUIRE(at_done.size() == size_t(B));
    for (int r = 0; r < B; r++) {
      CHECK(a[r].tokens == b[r].tokens);
      CHECK(a[r].ended == b[r].ended);
      CHECK(b[r].tokens == at_done[r].tokens);  // the steps past the end changed nothing
    }
  }
}

TEST_CASE("sample: generate() on CUDA gives the CPU's sequences for the tiny golden model (GPU)" * needs_gpu()) {
  // The two devices' logits differ: for this model by up to ~1.3e-4 (docs/testing.md:
  // it turns f32 rounding into differences of that size, and cuBLAS sums a 4-row
  // product in another order than the CPU). So a token can differ where the
  // decision sits on a near-tie: two candidates' logits, the draw and a cumulative
  // weight, or the top-p sum and its threshold, within a few times that (weights
  // move by 2x the logit difference, relative). Where sequences part, the logits
  // there must be that close (recomputed for the common prefix on both devices,
  // generously: <= 1e-3) and the CPU's decision a near-tie (margin <= 1e-3); every
  // other sequence must be identical. The sampler itself is exact across devices
  // on equal logits (the test above).
  SerialCpu serial;
  SKIP_WITHOUT_GPU();
  std::unique_ptr<IFlame> cpu_model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  std::unique_ptr<IFlame> gpu_model = load_model(golden("tiny_checkpoint.pth"), Device::CUDA);
  int identical = 0, parted = 0;
  for (uint64_t seed : {0, 1, 2, 3}) {
    for (bool constrained : {false, true}) {
      CAPTURE(seed);
      CAPTURE(constrained);
      GenerateConfig cfg;
      cfg.sampling.seed = seed;
      cfg.max_faces = 12;
      cfg.constrained = constrained;
      const std::vector<GeneratedSequence> a = generate(*gpu_model, 4, {}, cfg, 0);
      const std::vector<GeneratedSequence> b = generate(*cpu_model, 4, {}, cfg, 0);
      for (int r = 0; r < 4; r++) {
        if (constrained) CHECK(follows_canonical_order(a[r].tokens));
        if (a[r].tokens == b[r].tokens) {
          CHECK(a[r].ended == b[r].ended);
          identical++;
          continue;
        }
        parted++;
        size_t p = kTokensPerFace;
        while (p < a[r].tokens.size() && p < b[r].tokens.size() && a[r].tokens[p] == b[r].tokens[p]) p++;
        REQUIRE(p < std::max(a[r].tokens.size(), b[r].tokens.size()));
        const std::vector<int32_t> prefix(b[r].tokens.begin(), b[r].tokens.begin() + p);
        const Tensor tokens = Tensor::from_ints(prefix, {1, int64_t(p)});
        const std::vector<float> lc = full_cached_logits(*cpu_model, tokens).to_floats();
        const std::vector<float> lg = full_cached_logits(*gpu_model, tokens).to_floats();
        const std::vector<float> at_c(lc.end() - kVocabSize, lc.end()), at_g(lg.end() - kVocabSize, lg.end());
        ConstraintState s = constraint_start();
        for (size_t k = kTokensPerFace; k < p; k++) constraint_push(s, prefix[k]);
        const double margin = decision_margin(at_c.data(), kVocabSize, cfg.sampling,
                                              sampling_uniform(seed, p, r), constrained ? &s : nullptr);
        MESSAGE("seed " << seed << (constrained ? " constrained" : "") << ", row " << r << ": parted at token " << p
                        << "; max |logit difference| there " << max_abs_diff(at_c, at_g)
                        << ", decision margin " << margin);
        CHECK(max_abs_diff(at_c, at_g) <= 1e-3);
        CHECK(margin <= 1e-3);
      }
    }
  }
  MESSAGE(identical << " of " << identical + parted << " sequences identical on CUDA and the CPU");
  CHECK(identical >= parted);
}

TEST_CASE("sample: the device sampler's draws captured with the decode step (DecodeGraphs) give generate()'s tokens") {
  // On the CPU DecodeGraphs calls the step and the draws in turn; on the GPU it
  // captures both in one graph per phase and replays them, while the host only
  // counts steps (count_step) and polls finished().
  SerialCpu serial;
  std::vector<Device> devices = {Device::CPU};
  if (cuda_available()) devices.push_back(Device::CUDA);
  else MESSAGE("GPU part skipped (needs a GPU): " << cuda_unavailable_reason());
  for (Device device : devices) {
    CAPTURE(device_name(device));
    std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), device);
    for (bool constrained : {false, true}) {
      GenerateConfig cfg;
      cfg.sampling.seed = 21;
      cfg.max_faces = 10;
      cfg.constrained = constrained;
      int captured = 0;
      int64_t steps = 0;
      const std::vector<GeneratedSequence> a = graph_generate(*model, 3, cfg, 4, &captured, &steps);
      const std::vector<GeneratedSequence> c = generate(*model, 3, {}, cfg, 4);  // graphs on the GPU
      cfg.cuda_graphs = false;
      const std::vector<GeneratedSequence> b = generate(*model, 3, {}, cfg, 4);  // kernels one by one
      for (int r = 0; r < 3; r++) {
        CHECK(a[r].tokens == b[r].tokens);
        CHECK(a[r].ended == b[r].ended);
        CHECK(c[r].tokens == b[r].tokens);
        CHECK(c[r].ended == b[r].ended);
      }
      // A phase is captured the second time it comes: positions 1 (p % 3 < 2),
      // 5 (p % 3 == 2) and 17 (p % 9 == 8).
      if (device == Device::CUDA) CHECK(captured == int(steps >= 2) + int(steps >= 6) + int(steps >= 18));
    }
  }
}
