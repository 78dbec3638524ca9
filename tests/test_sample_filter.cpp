// test_sample_filter.cpp: where constrained sampling applies top-k and top-p
// (SamplingConfig::filter_on, ops/sampling_core.h). FilterOn::Raw is written
// here again from its definition in plain loops (raw_reference) over the
// readable mask of infer/constrain.h, and the row sampler, generate() on the
// tiny golden model and ./sample --filter-on are held to it; FilterOn::Allowed
// keeps today's draws (the row sampler against sample_token() is in
// test_sample_device.cpp). The CUDA step's raw draws are compared with the CPU's
// there (the GPU DeviceSampler test runs both modes).
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/philox.h"
#include "core/tokens.h"
#include "infer/clean.h"
#include "infer/constrain.h"
#include "infer/decode.h"
#include "infer/generate.h"
#include "infer/sample_cli.h"
#include "infer/sampler.h"
#include "nn/state.h"
#include "ops/sample_step.h"
#include "tests/cli_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
using namespace iflame::test;
using iflame::ops::FilterOn;
using iflame::ops::cpu::sample_row;

namespace {

struct SerialCpu {  // as in test_sample.cpp: CPU decoding is faster on one thread
  int previous = omp_get_max_threads();
  SerialCpu() { omp_set_num_threads(1); }
  ~SerialCpu() { omp_set_num_threads(previous); }
};

std::vector<int32_t> start_row() { return std::vector<int32_t>(kTokensPerFace, kStartToken); }

std::vector<int32_t> with(std::vector<int32_t> seq, const std::vector<int32_t>& more) {
  seq.insert(seq.end(), more.begin(), more.end());
  return seq;
}

SamplingConfig config(float temperature, int top_k, float top_p, FilterOn filter_on) {
  SamplingConfig c;
  c.temperature = temperature, c.top_k = top_k, c.top_p = top_p, c.filter_on = filter_on;
  return c;
}

// What one raw draw did, for the tests' counts.
struct RawDraw {
  int32_t token = -1;
  int kept = 0;       // tokens top-k and top-p kept
  int dropped = 0;    // of them, forbidden
  bool fell_back = false;
};

// FilterOn::Raw from its definition: the unconstrained candidates (every token
// but PAD and START) most likely first, ties to the lower token; the k first;
// weights exp(logit / T - top / T) in double; token i stays while the weight
// before it is below top_p * (the k's total); of those, the forbidden ones
// dropped; the first remaining whose running weight exceeds u * (the remaining
// total) drawn. None remaining (or none of weight): the most likely allowed
// token. Greedy: the most likely allowed token. `allowed` as
// allowed_next_tokens() gives it (all false: every token allowed).
RawDraw raw_reference(const float* logits, int vocab, const SamplingConfig& cfg, float u, std::vector<bool> allowed) {
  if (std::find(allowed.begin(), allowed.end(), true) == allowed.end()) allowed.assign(vocab, true);
  RawDraw d;
  int32_t best_allowed = -1;
  for (int32_t t = 0; t < vocab; t++)
    if (allowed[t] && (best_allowed < 0 || logits[t] > logits[best_allowed])) best_allowed = t;
  if (cfg.temperature <= 0.0f || cfg.top_k == 1) {
    d.token = best_allowed;
    return d;
  }
  std::vector<int32_t> order;
  for (int32_t t = 0; t < vocab; t++)
    if (t != kPadToken && t != kStartToken) order.push_back(t);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  size_t k = order.size();
  if (cfg.top_k > 0 && size_t(cfg.top_k) < k) k = cfg.top_k;
  std::vector<double> w(k);
  double total = 0;
  for (size_t i = 0; i < k; i++) {
    w[i] = std::exp(double(logits[order[i]]) / cfg.temperature - double(logits[order[0]]) / cfg.temperature);
    total += w[i];
  }
  size_t kept = k;
  if (cfg.top_p < 1.0f) {
    double before = 0;
    kept = 0;
    while (kept < k && before < double(cfg.top_p) * total) before += w[kept++];
    kept = std::max<size_t>(kept, 1);
  }
  d.kept = int(kept);
  std::vector<int32_t> left;
  std::vector<double> left_w;
  double left_total = 0;
  for (size_t i = 0; i < kept; i++) {
    if (!allowed[order[i]]) {
      d.dropped++;
      continue;
    }
    left.push_back(order[i]);
    left_w.push_back(w[i]);
    left_total += w[i];
  }
  if (left.empty() || left_total <= 0) {
    d.fell_back = true;
    d.token = best_allowed;
    return d;
  }
  const double target = double(u) * left_total;
  double acc = 0;
  for (size_t i = 0; i < left.size(); i++) {
    acc += left_w[i];
    if (target < acc) {
      d.token = left[i];
      return d;
    }
  }
  d.token = left.back();
  return d;
}

// The O(1) constraint state after seq (which starts with the START row).
ops::ConstraintState state_after(const std::vector<int32_t>& seq) {
  ops::ConstraintState s = ops::constraint_start();
  for (size_t k = kTokensPerFace; k < seq.size(); k++) ops::constraint_push(s, seq[k]);
  return s;
}

// The tokens sample_row() draws from `logits` after `seq` over 1,000 evenly spread u.
std::set<int32_t> drawn_set(const std::vector<float>& logits, const SamplingConfig& cfg,
                            const std::vector<int32_t>& seq) {
  std::vector<int32_t> cand;
  std::vector<double> w;
  const ops::ConstraintState s = state_after(seq);
  std::set<int32_t> drawn;
  for (int i = 0; i < 1000; i++) drawn.insert(sample_row(logits.data(), kVocabSize, cfg, (i + 0.5f) / 1000, &s, cand, w));
  return drawn;
}

// A vertex v1 = (5, 7, 128) (written z, x, y) and v2's z = 3: v2's x must be 8..128.
std::vector<int32_t> narrow_prefix() { return with(start_row(), {5, 7, 128, 3}); }

}  // namespace

TEST_CASE("sample: --filter-on raw draws only what the raw top-k / top-p keep and the order allows") {
  const std::vector<int32_t> seq = narrow_prefix();
  const std::vector<bool> allowed = allowed_next_tokens(seq, kVocabSize);
  for (int32_t t = 0; t < kVocabSize; t++) REQUIRE(allowed[t] == (t >= 8 && t <= 128));
  // The model wants x in 0..7 (forbidden); of the allowed ones 8 and 9 are likely, 10 less.
  std::vector<float> logits(kVocabSize, 0.0f);
  for (int32_t t = 0; t <= 7; t++) logits[t] = 10.0f;
  logits[8] = logits[9] = 9.0f;
  logits[10] = 7.0f;
  const SamplingConfig raw = config(1.0f, 50, 0.99f, FilterOn::Raw), allowed_mode = config(1.0f, 50, 0.99f, FilterOn::Allowed);
  // Raw: top-k and top-p of the whole row keep 0..9 (10 would pass 0.99 of the
  // mass); 0..7 are forbidden, so 8 and 9, equally likely, are all that is left.
  CHECK(drawn_set(logits, raw, seq) == std::set<int32_t>{8, 9});
  // Allowed: the candidates are 8..128 and top-p over them keeps 8, 9 and 10.
  CHECK(drawn_set(logits, allowed_mode, seq) == std::set<int32_t>{8, 9, 10});
  // Within the raw set the weights are the model's: 8 for u below one half, 9 above.
  std::vector<int32_t> cand;
  std::vector<double> w;
  const ops::ConstraintState s = state_after(seq);
  int mismatches = 0;
  for (int i = 0; i < 1000; i++) {
    const float u = (i + 0.5f) / 1000;
    const int32_t got = sample_row(logits.data(), kVocabSize, raw, u, &s, cand, w);
    mismatches += got != (u < 0.5f ? 8 : 9);
    mismatches += got != raw_reference(logits.data(), kVocabSize, raw, u, allowed).token;
  }
  CHECK(mismatches == 0);
  // The same logits unconstrained: the field changes nothing.
  for (int i = 0; i < 200; i++) {
    const float u = (i + 0.5f) / 200;
    CHECK(sample_row(logits.data(), kVocabSize, raw, u, nullptr, cand, w) ==
          sample_row(logits.data(), kVocabSize, allowed_mode, u, nullptr, cand, w));
  }
}

TEST_CASE("sample: --filter-on raw falls back to the most likely allowed token; greedy is the same in both modes") {
  const std::vector<int32_t> seq = narrow_prefix();
  const ops::ConstraintState s = state_after(seq);
  std::vector<float> logits(kVocabSize, 0.0f);
  for (int32_t t = 0; t <= 7; t++) logits[t] = 10.0f;  // all the mass on forbidden tokens
  logits[kEndToken] = 11.0f;                             // END too, forbidden inside a row
  logits[77] = 3.0f;                                     // the most likely allowed token
  logits[90] = 2.5f;
  std::vector<int32_t> cand;
  std::vector<double> w;
  const SamplingConfig raw = config(1.0f, 50, 0.95f, FilterOn::Raw);
  CHECK(drawn_set(logits, raw, seq) == std::set<int32_t>{77});
  CHECK(raw_reference(logits.data(), kVocabSize, raw, 0.3f, allowed_next_tokens(seq, kVocabSize)).fell_back);
  // Allowed draws among 8..128 (77, 90 and the rest): more than the one token.
  CHECK(drawn_set(logits, config(1.0f, 50, 0.95f, FilterOn::Allowed), seq).size() > 1);
  // Greedy (temperature 0, or top-k 1): the most likely allowed token in both modes.
  for (FilterOn f : {FilterOn::Allowed, FilterOn::Raw})
    for (const SamplingConfig& c : {config(0.0f, 50, 0.95f, f), config(1.0f, 1, 0.95f, f), config(0.0f, 0, 1.0f, f)}) {
      CHECK(sample_row(logits.data(), kVocabSize, c, 0.7f, &s, cand, w) == 77);
      // and where the most likely token is allowed, that one
      std::vector<float> l2 = logits;
      l2[100] = 50.0f;
      CHECK(sample_row(l2.data(), kVocabSize, c, 0.7f, &s, cand, w) == 100);
    }
}

TEST_CASE("sample: the row sampler's raw draws equal the definition over random rows, states and settings") {
  const std::vector<int32_t> tatami = read_npy(golden("tokens_tatami.npy")).to_ints();
  std::vector<int32_t> cand;
  std::vector<double> w;
  std::vector<float> logits(kVocabSize);
  int compared = 0, mismatches = 0, plain_mismatches = 0, dropped = 0, fell_back = 0, full_keep = 0;
  std::string first;
  int c = 0;
  for (float temperature : {0.0f, 0.7f, 1.0f, 1.3f})
    for (int top_k : {0, 1, 5, 50})
      for (float top_p : {0.5f, 0.95f, 1.0f}) {
        const SamplingConfig cfg = config(temperature, top_k, top_p, FilterOn::Raw);
        const SamplingConfig plain = config(temperature, top_k, top_p, FilterOn::Allowed);
        c++;
        for (int trial = 0; trial < 120; trial++) {
          // A state: a prefix of the tatami (whole faces, or mid-face).
          const size_t cut = kTokensPerFace + size_t(trial * 13 + c) % (tatami.size() - kTokensPerFace);
          const std::vector<int32_t> prefix(tatami.begin(), tatami.begin() + cut);
          const std::vector<bool> allowed = allowed_next_tokens(prefix, kVocabSize);
          // Logits: random; forbidden tokens favoured by 3 or 30; integer ties; -inf for many.
          const int mode = trial % 5;
          for (int t = 0; t < kVocabSize; t++) {
            const Philox4 r = philox_draw(900 + c, trial, t);
            const float x = philox_unit_float(r.v[0]);
            logits[t] = mode == 3 ? float(r.v[1] % 4) : mode == 4 && x < 0.4f ? -INFINITY : 8.0f * x;
            if (!allowed[t] && mode == 1) logits[t] += 3.0f;
            if (!allowed[t] && mode == 2) logits[t] += 30.0f;
          }
          float u = sampling_uniform(c, trial, 7);
          if (trial % 31 == 0) u = 0.0f;
          if (trial % 31 == 1) u = 0.99999994f;
          const ops::ConstraintState s = state_after(prefix);
          const RawDraw want = raw_reference(logits.data(), kVocabSize, cfg, u, allowed);
          const int32_t got = sample_row(logits.data(), kVocabSize, cfg, u, &s, cand, w);
          compared++;
          dropped += want.dropped > 0 && !want.fell_back;
          fell_back += want.fell_back;
          full_keep += want.kept > 0 && want.dropped == 0;
          if (got != want.token && mismatches++ == 0)
            first = str("T ", temperature, ", top-k ", top_k, ", top-p ", top_p, ", mode ", mode, ", u ", u, ", after ",
                        cut, " tokens: row sampler ", got, ", definition ", want.token);
          // Unconstrained: the field changes nothing.
          plain_mismatches += sample_row(logits.data(), kVocabSize, cfg, u, nullptr, cand, w) !=
                              sample_row(logits.data(), kVocabSize, plain, u, nullptr, cand, w);
        }
      }
  MESSAGE(compared << " raw draws: " << dropped << " drew after dropping forbidden tokens, " << fell_back
                   << " fell back to the most likely allowed token, " << full_keep << " kept only allowed ones");
  CHECK_MESSAGE(mismatches == 0, first);
  CHECK(plain_mismatches == 0);
  CHECK(dropped > 300);    // every branch taken many times
  CHECK(fell_back > 100);
  CHECK(full_keep > 100);
}

TEST_CASE("sample: generate() with --filter-on raw on the tiny golden model: valid meshes, the definition's tokens") {
  SerialCpu serial;
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  const int vocab = model->config().vocab;
  GenerateConfig cfg;
  cfg.max_faces = 12;
  cfg.constrained = true;
  cfg.sampling.filter_on = FilterOn::Raw;
  const int64_t capacity = int64_t(kTokensPerFace) * (cfg.max_faces + 1);
  int differs_from_allowed = 0, dropped = 0, fell_back = 0, draws = 0;
  for (uint64_t seed : {3, 4}) {
    cfg.sampling.seed = seed;
    const std::vector<GeneratedSequence> got = generate(*model, 3, {}, cfg, 0);
    GenerateConfig allowed_cfg = cfg;
    allowed_cfg.sampling.filter_on = FilterOn::Allowed;
    const std::vector<GeneratedSequence> allowed = generate(*model, 3, {}, allowed_cfg, 0);
    for (int r = 0; r < 3; r++) {
      CAPTURE(seed);
      CAPTURE(r);
      // The definition, one sample at a time, the logits from the cached decoder.
      std::vector<int32_t> seq = start_row();
      DecodeState st = begin(*model, 1, capacity, cfg.ctx);
      for (int64_t pos = 0;; pos++) {
        const std::vector<float> l = step(st, Tensor::from_ints({seq[pos]}, {1})).to_floats();
        if (pos + 1 < int64_t(seq.size())) continue;
        const RawDraw d = raw_reference(l.data(), vocab, cfg.sampling, sampling_uniform(seed, pos + 1, r),
                                        allowed_next_tokens(seq, vocab));
        draws++;
        dropped += d.dropped > 0;
        fell_back += d.fell_back;
        if (d.token == kEndToken || pos + 1 < capacity) seq.push_back(d.token);
        if (d.token == kEndToken || pos + 1 == capacity) break;
      }
      CHECK(got[r].tokens == seq);
      CHECK(got[r].ended == (seq.back() == kEndToken));
      std::string why;
      CHECK_MESSAGE(follows_canonical_order(got[r].tokens, &why), why);
      const SampleStatus status = clean_sample(got[r].tokens).status;
      CHECK((status == SampleStatus::Complete || status == SampleStatus::Truncated));
      differs_from_allowed += got[r].tokens != allowed[r].tokens;
    }
  }
  MESSAGE(draws << " draws: " << dropped << " dropped forbidden tokens from the raw top-k / top-p, " << fell_back
                << " fell back; " << differs_from_allowed << " of 6 samples differ from --filter-on allowed");
  CHECK(dropped > 0);
  CHECK(differs_from_allowed > 0);
}

TEST_CASE("sample: ./sample --filter-on raw runs and says so; a bad value or --unconstrained is refused by name") {
  SerialCpu serial;
  const std::string out = "build/test_sample_filter";
  std::filesystem::remove_all(out);
  const std::string ckpt = golden("tiny_checkpoint.pth");
  const ProgramRun ok = run_program_main(sample_main, "sample",
                                         {"--ckpt", ckpt, "-n", "3", "--batch", "2", "--max-faces", "6", "--seed", "2",
                                          "--filter-on", "raw", "--out", out, "--device", "cpu"});
  CHECK(ok.status == 0);
  CHECK(contains(ok.out, "constrained, --filter-on raw"));
  const std::string jsonl = read_text(out + "/samples.jsonl");
  int lines = 0, clean = 0;
  for (size_t p = 0; (p = jsonl.find("\"status\": \"", p)) != std::string::npos; p++, lines++)
    clean += jsonl.compare(p + 11, 8, "complete") == 0 || jsonl.compare(p + 11, 9, "truncated") == 0;
  CHECK(lines == 3);
  CHECK(clean == 3);
  const ProgramRun dflt = run_program_main(sample_main, "sample",
                                           {"--ckpt", ckpt, "--max-faces", "4", "--out", out, "--overwrite",
                                            "--device", "cpu"});
  CHECK(dflt.status == 0);
  CHECK(contains(dflt.out, "constrained, --filter-on allowed"));
  const ProgramRun bad = run_program_main(sample_main, "sample", {"--ckpt", ckpt, "--filter-on", "sideways"});
  CHECK(bad.status == 2);
  CHECK(contains(bad.err, "--filter-on"));
  CHECK(contains(bad.err, "allowed or raw"));
  CHECK(contains(bad.err, "sideways"));
  const ProgramRun both =
      run_program_main(sample_main, "sample", {"--ckpt", ckpt, "--filter-on", "raw", "--unconstrained"});
  CHECK(both.status == 2);
  CHECK(contains(both.err, "--filter-on raw"));
  CHECK(contains(both.err, "--unconstrained"));
  const ProgramRun help = run_program_main(sample_main, "sample", {"--help"});
  CHECK(contains(help.out, "--filter-on"));
}
