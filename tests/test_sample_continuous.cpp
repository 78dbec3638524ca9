// test_sample_continuous.cpp: continuous batching (infer/generate.h's
// generate_samples, DeviceSampler with more samples than rows, the decoder's
// per-row positions, row resets and dead rows).
//
// CPU: the sampler alone on logits that depend only on (sample, position):
// every sample is written once, done rows take the next sample at a face
// boundary and are flagged for the decoder, each sample's tokens are those of
// a lockstep sampler holding all samples at once, and the live flags follow
// the rows (done and idle rows dead, refilled ones live); the per-row decoding
// ops equal one row at a time; zero_flagged_rows clears exactly the flagged
// rows; generate_samples on the tiny golden model (as trained, and with its
// END logit raised so that samples end at very different lengths and rows die
// mid-run) gives the meshes of one-by-one sampling at B = 1 and B = 3,
// constrained and not; ./sample -n 5 --batch 2 writes every file once and
// prints the run's tokens/s, meshes/s and how busy the rows were.
// GPU (skipped without one): the CUDA sampler with refills equals the CPU one
// on the same logits, its live flags too; the per-row ops and the row reset
// equal the CPU; and generate_samples on the GPU writes every sample once, the
// same with and without CUDA graphs.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <omp.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/philox.h"
#include "core/tokens.h"
#include "infer/constrain.h"
#include "infer/decode.h"
#include "infer/device_sampler.h"
#include "infer/generate.h"
#include "infer/sample_cli.h"
#include "nn/model_weights.h"
#include "nn/state.h"
#include "ops/cached_attention.h"
#include "ops/decode_position.h"
#include "ops/rope.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
using namespace iflame::test;

namespace {

// How far the END logit is raised to make the tiny model's samples end early and unevenly.
constexpr float kEndBias = 3.0f;

struct SerialCpu {  // CPU decoding is faster on one thread (test_sample.cpp)
  int previous = omp_get_max_threads();
  SerialCpu() { omp_set_num_threads(1); }
  ~SerialCpu() { omp_set_num_threads(previous); }
};

// Logits that depend on the sample and the position only, so any batch layout
// sees the same ones for a sample: END likely after a sample-dependent number of
// faces (mid-face too when unconstrained), otherwise random.
void sample_logits(float* l, uint64_t sample, int64_t position) {
  for (int t = 0; t < kVocabSize; t++) l[t] = 3.0f * philox_unit_float(philox_draw(sample, position, t).v[0]);
  const int64_t faces = position / kTokensPerFace;
  l[kEndToken] = faces >= 1 + int64_t(sample % 5) ? 6.0f : -4.0f;
}

// One step's logits for the sampler's rows: each row's sample at its position.
Tensor rows_logits(const std::vector<SampleRow>& rows, uint64_t first_id) {
  std::vector<float> l(rows.size() * kVocabSize);
  for (size_t b = 0; b < rows.size(); b++) sample_logits(&l[b * kVocabSize], rows[b].sample_id - first_id, rows[b].position);
  return Tensor::from_floats(l, {int64_t(rows.size()), kVocabSize});
}

struct SamplerRun {
  std::vector<GeneratedSequence> results;
  int64_t steps = 0, refills = 0, sampled = 0;
  std::vector<int64_t> refill_positions;  // each row's position when flagged (must be 0)
  // The live flags (DeviceSampler::live) against the rows' state, before the first step and after each:
  int64_t live_mismatches = 0;   // a flag other than "not done" (an idle row is done)
  int64_t refilled_live = 0;     // a row that took a new sample, flagged live
  int64_t revived = 0;           // a row flagged dead at one step and live at the next (a refill after a wait)
  int64_t idle_dead = 0;         // row-steps of idle rows, flagged dead
  std::vector<int> live_rows;    // live rows after each step
};

// Runs a DeviceSampler with `rows` rows over `samples` samples to the end,
// counting the rows flagged for restart and checking the live flags.
SamplerRun run_sampler(Device device, int rows, int64_t samples, const std::vector<int32_t>& prompt, int max_faces,
                       bool constrained, uint64_t first_id) {
  const int64_t capacity = int64_t(kTokensPerFace) * (max_faces + 1);
  SamplingConfig cfg;
  cfg.seed = 9;
  DeviceSampler ds(device, rows, prompt, capacity, kVocabSize, cfg, constrained, first_id, samples);
  SamplerRun run;
  std::vector<int32_t> live_before = ds.live().to_ints();
  const std::vector<SampleRow> first = ds.rows();
  for (int b = 0; b < rows; b++) {
    run.live_mismatches += live_before[b] != (b < samples ? 1 : 0);  // rows with a sample start live
    run.live_mismatches += live_before[b] != !first[b].done;
  }
  for (int64_t pos = 0; pos < 100000; pos++) {
    ds.step(rows_logits(ds.rows(), first_id).to(device), pos);
    const std::vector<int32_t> flags = ds.restarts().to_ints(), live = ds.live().to_ints();
    const std::vector<SampleRow> now = ds.rows();
    int live_rows = 0;
    for (int b = 0; b < rows; b++) {
      if (flags[b]) {
        run.refills++;
        run.refill_positions.push_back(now[b].position);
      }
      run.live_mismatches += live[b] != !now[b].done;
      run.refilled_live += flags[b] && !now[b].idle && live[b];
      run.revived += !live_before[b] && live[b];
      run.idle_dead += now[b].idle && !live[b];
      live_rows += live[b];
    }
    run.live_rows.push_back(live_rows);
    live_before = live;
    run.steps = pos + 1;
    if (ds.finished()) break;
  }
  run.results = ds.results();
  run.sampled = ds.sampled_tokens();
  return run;
}

int run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "sample");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return sample_main(int(argv.size()), argv.data());
}

std::vector<int32_t> start_row() { return std::vector<int32_t>(kTokensPerFace, kStartToken); }

}  // namespace

TEST_CASE("sample: continuous batching refills done rows at a face boundary and writes every sample once") {
  const std::vector<int32_t> tatami_prompt = [] {
    std::vector<int32_t> p = start_row();
    for (int32_t t : {0, 0, 0, 1, 0, 0, 0, 0, 1, 0}) p.push_back(t);  // a face and one token
    return p;
  }();
  for (bool constrained : {true, false}) {
    for (const std::vector<int32_t>& prompt : {start_row(), tatami_prompt}) {
      CAPTURE(constrained);
      CAPTURE(prompt.size());
      const int64_t N = 11;
      const SamplerRun lockstep = run_sampler(Device::CPU, int(N), N, prompt, 6, constrained, 4);
      const SamplerRun refilled = run_sampler(Device::CPU, 3, N, prompt, 6, constrained, 4);
      REQUIRE(refilled.results.size() == size_t(N));
      int ended = 0;
      for (int64_t i = 0; i < N; i++) {
        CAPTURE(i);
        CHECK(refilled.results[i].tokens == lockstep.results[i].tokens);
        CHECK(refilled.results[i].ended == lockstep.results[i].ended);
        CHECK(refilled.results[i].tokens.size() > prompt.size());  // every sample was written
        if (constrained) CHECK(follows_canonical_order(refilled.results[i].tokens));
        ended += refilled.results[i].ended;
      }
      CHECK(ended >= N - 2);
      CHECK(refilled.sampled == lockstep.sampled);
      // The 8 samples past the first three each start in a refilled row; rows
      // that find no sample left go idle (flagged too, at most 3 at a time).
      CHECK(refilled.refills >= N - 3);
      for (int64_t p : refilled.refill_positions) CHECK(p == 0);
      // Lockstep would take the longest of each group of 3 samples; refilling takes fewer steps.
      CHECK(refilled.steps < 4 * int64_t(kTokensPerFace) * 7);
      // The live flags follow the rows: done rows dead, refilled ones live again, idle ones dead.
      CHECK(lockstep.live_mismatches == 0);
      CHECK(refilled.live_mismatches == 0);
      CHECK(refilled.refilled_live >= N - 3);
      // Unconstrained, samples also end mid-face and wait, dead, for the face boundary.
      if (!constrained) CHECK(refilled.revived > 0);
      MESSAGE("refilled live " << refilled.refilled_live << ", revived " << refilled.revived << ", idle dead "
                               << refilled.idle_dead);
      CHECK(refilled.idle_dead > 0);
      CHECK(refilled.live_rows.back() == 0);
    }
  }
  // One row for all: samples one after another.
  const SamplerRun one = run_sampler(Device::CPU, 1, 5, start_row(), 4, true, 0);
  const SamplerRun all = run_sampler(Device::CPU, 5, 5, start_row(), 4, true, 0);
  for (int i = 0; i < 5; i++) CHECK(one.results[i].tokens == all.results[i].tokens);
  CHECK(one.refills >= 4);
  CHECK(one.live_mismatches == 0);
  // Fewer samples than rows: the rows past them are idle, dead from the start.
  const SamplerRun spare = run_sampler(Device::CPU, 5, 2, start_row(), 4, true, 0);
  CHECK(spare.live_mismatches == 0);
  CHECK(spare.idle_dead >= 3 * spare.steps);
  CHECK(spare.live_rows.front() <= 2);
}

TEST_CASE("sample: the decoding ops with a position per row equal one row at a time (CPU)") {
  const int64_t B = 3, H = 2, D = 8, capacity = 12;
  const Tensor qkv = random_tensor({B, 3 * H * D}, 5);
  const Tensor positions = Tensor::from_ints({4, 0, 10}, {B});
  Tensor k = Tensor::zeros({B, capacity, H, D}), v = Tensor::zeros({B, capacity, H, D});
  const Tensor q = ops::qkv_rope_step(qkv, H, positions, 1, k, v);
  const Tensor o = ops::cached_attention_at(q, k, v, positions, 1, 0.3f);
  Tensor group = random_tensor({B, 3, D}, 6);
  const Tensor group_before = group.clone();
  const Tensor x = random_tensor({B, 1, D}, 7);
  ops::write_group_slot(group, x, positions, 3);  // slots (4/3)%3 = 1, 0, (10/3)%3 = 0
  for (int64_t b = 0; b < B; b++) {
    CAPTURE(b);
    const int32_t p = positions.to_ints()[b];
    const Tensor pb = Tensor::from_ints({p}, {1});
    Tensor kb = Tensor::zeros({1, capacity, H, D}), vb = Tensor::zeros({1, capacity, H, D});
    const Tensor qb = ops::qkv_rope_step(qkv.slice(0, b, b + 1).contiguous(), H, pb, 1, kb, vb);
    CHECK(max_abs_diff(q.slice(0, b, b + 1).contiguous(), qb) == 0);
    CHECK(max_abs_diff(k.slice(0, b, b + 1).contiguous(), kb) == 0);
    CHECK(max_abs_diff(v.slice(0, b, b + 1).contiguous(), vb) == 0);
    CHECK(max_abs_diff(o.slice(0, b, b + 1).contiguous(), ops::cached_attention_at(qb, kb, vb, pb, 1, 0.3f)) == 0);
    const int64_t slot = p / 3 % 3;
    for (int64_t s = 0; s < 3; s++) {
      const Tensor got = group.slice(0, b, b + 1).slice(1, s, s + 1).contiguous();
      const Tensor want = s == slot ? x.slice(0, b, b + 1).contiguous()
                                    : group_before.slice(0, b, b + 1).slice(1, s, s + 1).contiguous();
      CHECK(max_abs_diff(got, want) == 0);
    }
  }
  Tensor counter = positions.clone();
  ops::advance_position(counter);
  CHECK(counter.to_ints() == std::vector<int32_t>{5, 1, 11});
}

TEST_CASE("sample: zero_flagged_rows clears the flagged rows and nothing else") {
  std::vector<Device> devices = {Device::CPU};
  if (cuda_available()) devices.push_back(Device::CUDA);
  for (Device device : devices) {
    CAPTURE(device_name(device));
    const Tensor a0 = random_tensor({5, 3, 7}, 1), b0 = Tensor::from_ints({1, 2, 3, 4, 5}, {5});
    Tensor a = a0.to(device).clone(), b = b0.to(device).clone();
    const Tensor flags = Tensor::from_ints({0, 1, 0, 0, 1}, {5}).to(device);
    ops::zero_flagged_rows({a, b}, flags);
    const std::vector<float> got = a.to_floats(), was = a0.to_floats();
    int wrong = 0;
    for (int64_t i = 0; i < 5 * 21; i++) {
      const bool flagged = i / 21 == 1 || i / 21 == 4;
      wrong += got[i] != (flagged ? 0.0f : was[i]);
    }
    CHECK(wrong == 0);
    CHECK(b.to_ints() == std::vector<int32_t>{1, 0, 3, 4, 0});
    CHECK(contains(error_of([&] { ops::zero_flagged_rows({random_tensor({4, 2}, 1).to(device)}, flags); }), "[5, ...]"));
  }
}

TEST_CASE("sample: a decoder row started over (row_resets) decodes exactly as a fresh state's row") {
  // Row 0 decodes 18 tokens, is flagged, and decodes 9 more from position 0
  // while row 1 goes on; a fresh state fed those 9 tokens must give row 0 the
  // same logits, bit for bit (the same kernels at the same shapes; a row's
  // numbers never depend on another row's).
  std::vector<Device> devices = {Device::CPU};
  if (cuda_available()) devices.push_back(Device::CUDA);
  for (Device device : devices) {
    CAPTURE(device_name(device));
    std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), device);
    const int64_t V = model->config().vocab;
    auto token = [](int64_t row, int64_t t) {
      return t < kTokensPerFace ? kStartToken : int32_t(philox_draw(row, t, 1).v[0] % kNumCoordinateTokens);
    };
    auto row0_logits = [&](const Tensor& logits) {
      return logits.to(Device::CPU).slice(0, 0, 1).contiguous().to_floats();
    };
    DecodeState reset = begin(*model, 2, 27);
    reset.row_resets = Tensor::zeros({2}, DType::I32, device);
    std::vector<std::vector<float>> after_reset;
    for (int64_t t = 0; t < 27; t++) {
      reset.row_resets.copy_from(Tensor::from_ints({t == 18 ? 1 : 0, 0}, {2}));
      const int32_t first = t < 18 ? token(7, t) : token(9, t - 18);
      const Tensor logits = step(reset, Tensor::from_ints({first, token(8, t)}, {2}).to(device));
      if (t >= 18) after_reset.push_back(row0_logits(logits));
    }
    CHECK(reset.position.to_ints() == std::vector<int32_t>{9, 27});
    DecodeState fresh = begin(*model, 2, 27);
    int differing = 0;
    for (int64_t t = 0; t < 9; t++) {
      const Tensor logits = step(fresh, Tensor::from_ints({token(9, t), token(3, t)}, {2}).to(device));
      differing += row0_logits(logits) != after_reset[t];
    }
    CHECK(differing == 0);
    CHECK(V == kVocabSize);
  }
}

TEST_CASE("sample: continuous batching on the CPU gives the meshes of one-by-one sampling, at any batch") {
  SerialCpu serial;
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  // The tiny model as it is (its samples run to the face limit), and with its
  // END logit raised (samples of very different lengths, so rows die and are
  // refilled all through the run).
  const ModelWeights as_trained = *model;
  const ModelWeights ending_weights = with_end_bias(*model, kEndBias);
  const ModelWeights& ending = ending_weights;
  for (const ModelWeights* weights : {&as_trained, &ending}) {
    for (bool constrained : {true, false}) {
      CAPTURE(constrained);
      CAPTURE(weights == &ending);
      GenerateConfig cfg;
      cfg.max_faces = 5;
      cfg.constrained = constrained;
      cfg.sampling.seed = 11;
      cfg.compact_drain = false;  // every row to the end: the dead rows below (the drain's test is further down)
      const int64_t N = 7;
      GenerateStats s1, s3;
      const std::vector<GeneratedSequence> b1 = generate_samples(*weights, N, 1, {}, cfg, 2, &s1);
      const std::vector<GeneratedSequence> b3 = generate_samples(*weights, N, 3, {}, cfg, 2, &s3);
      REQUIRE(b1.size() == size_t(N));
      REQUIRE(b3.size() == size_t(N));
      int distinct = 0;
      for (int64_t i = 0; i < N; i++) {
        CAPTURE(i);
        const std::vector<GeneratedSequence> alone = generate(*weights, 1, {}, cfg, 2 + i);
        CHECK(b1[i].tokens == alone[0].tokens);
        CHECK(b3[i].tokens == alone[0].tokens);
        CHECK(b3[i].ended == alone[0].ended);
        if (constrained) CHECK(follows_canonical_order(b3[i].tokens));
        distinct += i > 0 && b3[i].tokens != b3[i - 1].tokens;
      }
      CHECK(distinct >= N - 2);  // not one sample written N times
      CHECK(s3.sampled_tokens == s1.sampled_tokens);
      CHECK(s3.steps < s1.steps);
      // The batched run had dead rows (DecodeState::row_live: done or idle rows
      // skip the cached attention) while others went on, so equal meshes mean
      // dead rows change nothing. A sample is live for the positions it feeds up
      // to its last draw: length - 1 of them when it ended, capacity when it
      // stopped at the face limit (that draw dropped).
      int64_t live_row_steps = 0;
      size_t shortest = b3[0].tokens.size(), longest = 0;
      for (const GeneratedSequence& g : b3) {
        live_row_steps += int64_t(g.tokens.size()) - (g.ended ? 1 : 0);
        shortest = std::min(shortest, g.tokens.size());
        longest = std::max(longest, g.tokens.size());
      }
      CHECK(s3.row_steps == 3 * s3.steps);
      const int64_t dead_row_steps = s3.row_steps - live_row_steps;
      MESSAGE("batch 3: " << s3.steps << " steps, " << dead_row_steps << " dead row-steps; samples of " << shortest
                          << " to " << longest << " tokens");
      CHECK(dead_row_steps >= 2 * int64_t(kTokensPerFace));  // at least the drain's idle rows
      if (weights == &ending) CHECK(longest >= shortest + 2 * kTokensPerFace);
    }
  }
}

TEST_CASE("sample: the drain's compactions to fewer rows change no mesh (CPU)") {
  SerialCpu serial;
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  const ModelWeights ending = with_end_bias(*model, kEndBias);
  for (bool constrained : {true, false}) {
    CAPTURE(constrained);
    GenerateConfig cfg;
    cfg.max_faces = 8;
    cfg.constrained = constrained;
    cfg.sampling.seed = 5;
    const int64_t N = 11;
    const int batch = 8;
    // Continuous batching (11 samples through 8 rows) and one batch of 8 (generate()).
    GenerateStats on, off, once_on, once_off;
    const std::vector<GeneratedSequence> compacted = generate_samples(ending, N, batch, {}, cfg, 40, &on);
    const std::vector<GeneratedSequence> batch_compacted = generate(ending, batch, {}, cfg, 40, &once_on);
    cfg.compact_drain = false;
    const std::vector<GeneratedSequence> kept = generate_samples(ending, N, batch, {}, cfg, 40, &off);
    const std::vector<GeneratedSequence> batch_kept = generate(ending, batch, {}, cfg, 40, &once_off);
    REQUIRE(compacted.size() == size_t(N));
    REQUIRE(kept.size() == size_t(N));
    REQUIRE(batch_compacted.size() == size_t(batch));
    size_t shortest = compacted[0].tokens.size(), longest = 0;
    for (int64_t i = 0; i < N; i++) {
      CAPTURE(i);
      const std::vector<GeneratedSequence> alone = generate(ending, 1, {}, cfg, 40 + i);
      CHECK(compacted[i].tokens == alone[0].tokens);
      CHECK(compacted[i].ended == alone[0].ended);
      CHECK(kept[i].tokens == alone[0].tokens);
      if (i < batch) {
        CHECK(batch_compacted[i].tokens == alone[0].tokens);
        CHECK(batch_kept[i].tokens == alone[0].tokens);
      }
      if (constrained) CHECK(follows_canonical_order(compacted[i].tokens));
      shortest = std::min(shortest, compacted[i].tokens.size());
      longest = std::max(longest, compacted[i].tokens.size());
    }
    MESSAGE("11 samples at batch 8: " << on.compactions << " compactions, 8 -> " << on.last_rows << " rows, "
                                      << on.row_steps << " row-steps against " << off.row_steps
                                      << " without; one batch of 8: " << once_on.compactions
                                      << " compactions; samples of " << shortest << " to " << longest << " tokens");
    CHECK(longest >= shortest + 3 * kTokensPerFace);  // lengths differ a lot: the drain is long
    // Several compactions happened (8 rows -> at most 4 -> at most 2 -> 1), and none without.
    CHECK(on.compactions >= 2);
    CHECK(once_on.compactions >= 2);
    CHECK(on.first_rows == batch);
    CHECK(on.last_rows >= 1);
    CHECK(on.last_rows <= 2);
    CHECK(off.compactions == 0);
    CHECK(off.last_rows == batch);
    // The same draws in fewer row-steps; "rows busy" stays a fraction.
    CHECK(on.sampled_tokens == off.sampled_tokens);
    CHECK(once_on.sampled_tokens == once_off.sampled_tokens);
    CHECK(on.row_steps < off.row_steps);
    CHECK(off.row_steps == int64_t(batch) * off.steps);
    for (const GenerateStats* s : {&on, &off, &once_on, &once_off}) {
      CHECK(s->sampled_tokens > 0);
      CHECK(s->sampled_tokens <= s->row_steps);
    }
  }
}

TEST_CASE("sample: ./sample -n 5 --batch 2 writes every sample once and reports the run's speed") {
  SerialCpu serial;
  const std::string out = "build/test_sample_continuous";
  std::filesystem::remove_all(out);
  // The summary goes to stdout: point file descriptor 1 at a file for the run.
  std::filesystem::create_directories(out);
  const std::string log = out + "/run.log";
  std::fflush(stdout);
  const int saved = dup(1);
  const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  REQUIRE(saved >= 0);
  REQUIRE(fd >= 0);
  dup2(fd, 1);
  close(fd);
  const int rc = run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "-n", "5", "--batch", "2", "--max-faces", "6",
                          "--seed", "3", "--out", out, "--device", "cpu"});
  std::fflush(stdout);
  dup2(saved, 1);
  close(saved);
  CHECK(rc == 0);
  std::ifstream f(log);
  std::stringstream text;
  text << f.rdbuf();
  CHECK(contains(text.str(), "tokens/s"));
  CHECK(contains(text.str(), "meshes/s"));
  // How busy the rows were: tokens drawn over steps x rows, a percentage in (0, 100).
  const size_t busy = text.str().find("rows busy: ");
  REQUIRE(busy != std::string::npos);
  const double busy_percent = std::atof(text.str().c_str() + busy + 11);
  CHECK(busy_percent > 0.0);
  CHECK(busy_percent < 100.0);
  CHECK(contains(text.str().substr(busy), "% of row-steps"));
  // The drain's line: 5 samples through 2 rows leave one sample alone at the end.
  const size_t drain = text.str().find("drain: ");
  REQUIRE(drain != std::string::npos);
  CHECK(std::atoi(text.str().c_str() + drain + 7) >= 1);
  CHECK(contains(text.str().substr(drain), "compaction"));
  CHECK(contains(text.str().substr(drain), ", 2 -> 1 rows"));
  CHECK(contains(text.str(), "constrained"));
  for (int i = 0; i < 5; i++) {
    char name[64];
    std::snprintf(name, sizeof name, "/sample_%04d.obj", i);
    CHECK(std::filesystem::exists(out + name));
  }
  CHECK_FALSE(std::filesystem::exists(out + "/sample_0005.obj"));
  std::ifstream jsonl(out + "/samples.jsonl");
  std::set<std::string> lines;
  std::string line;
  int count = 0;
  int needed_cleaning = 0;
  while (std::getline(jsonl, line)) {
    lines.insert(line.substr(0, line.find(',')));
    count++;
    needed_cleaning += !contains(line, "\"status\": \"complete\"") && !contains(line, "\"status\": \"truncated\"");
  }
  CHECK(count == 5);
  CHECK(needed_cleaning == 0);  // constrained by default: valid by construction
  CHECK(lines.size() == 5);
  // --unconstrained is accepted (and --constrained, the default, too); the folder
  // holds this test's earlier samples, so each later run asks for --overwrite.
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "-n", "2", "--max-faces", "4", "--unconstrained", "--out",
                 out, "--overwrite", "--device", "cpu", "--no-compact"}) == 0);
  CHECK(run_cli({"--ckpt", golden("tiny_checkpoint.pth"), "-n", "1", "--max-faces", "4", "--constrained", "--out",
                 out, "--overwrite", "--device", "cpu"}) == 0);
}

// ------------------------------------------------------------------ the GPU

TEST_CASE("sample: the CUDA sampler's refills equal the CPU's on the same logits (GPU)" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  for (bool constrained : {true, false}) {
    CAPTURE(constrained);
    const SamplerRun cpu = run_sampler(Device::CPU, 4, 13, start_row(), 6, constrained, 1);
    const SamplerRun gpu = run_sampler(Device::CUDA, 4, 13, start_row(), 6, constrained, 1);
    REQUIRE(gpu.results.size() == cpu.results.size());
    for (size_t i = 0; i < cpu.results.size(); i++) {
      CHECK(gpu.results[i].tokens == cpu.results[i].tokens);
      CHECK(gpu.results[i].ended == cpu.results[i].ended);
    }
    CHECK(gpu.sampled == cpu.sampled);
    CHECK(gpu.refills >= 13 - 4);
    for (int64_t p : gpu.refill_positions) CHECK(p == 0);
    // The live flags: each row's its state's; which row takes which sample may
    // differ (an atomic counter), the number of live rows at every step may not.
    // The GPU loop learns that every row is done up to 2 * kPollEvery steps late
    // (DeviceSampler::finished), so its record may go on past the CPU's with no live row.
    CHECK(gpu.live_mismatches == 0);
    CHECK(cpu.live_mismatches == 0);
    REQUIRE(gpu.live_rows.size() >= cpu.live_rows.size());
    CHECK(gpu.live_rows.size() <= cpu.live_rows.size() + 2 * DeviceSampler::kPollEvery);
    CHECK(std::vector<int>(gpu.live_rows.begin(), gpu.live_rows.begin() + cpu.live_rows.size()) == cpu.live_rows);
    for (size_t i = cpu.live_rows.size(); i < gpu.live_rows.size(); i++) CHECK(gpu.live_rows[i] == 0);
  }
}

TEST_CASE("sample: the decoding ops with a position per row on the GPU equal the CPU" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const int64_t B = 5, H = 4, D = 32, capacity = 40;
  const Tensor qkv = random_tensor({B, 3 * H * D}, 8);
  const Tensor positions = Tensor::from_ints({0, 7, 39, 3, 20}, {B});
  Tensor kc = random_tensor({B, capacity, H, D}, 9), vc = random_tensor({B, capacity, H, D}, 10);
  Tensor kg = kc.to(Device::CUDA).clone(), vg = vc.to(Device::CUDA).clone();
  const Tensor qc = ops::qkv_rope_step(qkv, H, positions, 1, kc, vc);
  const Tensor qg = ops::qkv_rope_step(qkv.to(Device::CUDA), H, positions.to(Device::CUDA), 1, kg, vg);
  CHECK(max_abs_diff(qc, qg.to(Device::CPU)) < 1e-5);
  CHECK(max_abs_diff(kc, kg.to(Device::CPU)) < 1e-5);
  CHECK(max_abs_diff(vc, vg.to(Device::CPU)) == 0);
  const Tensor oc = ops::cached_attention_at(qc, kc, vc, positions, 1, 0.2f);
  const Tensor og = ops::cached_attention_at(qg, kg, vg, positions.to(Device::CUDA), 1, 0.2f);
  CHECK(max_abs_diff(oc, og.to(Device::CPU)) < 1e-5);
  Tensor gc = random_tensor({B, 3, 16}, 11), gg = gc.to(Device::CUDA).clone();
  const Tensor x = random_tensor({B, 1, 16}, 12);
  ops::write_group_slot(gc, x, positions, 3);
  ops::write_group_slot(gg, x.to(Device::CUDA), positions.to(Device::CUDA), 3);
  CHECK(max_abs_diff(gc, gg.to(Device::CPU)) == 0);
  Tensor pg = positions.to(Device::CUDA).clone();
  ops::advance_position(pg);
  CHECK(pg.to_ints() == std::vector<int32_t>{1, 8, 40, 4, 21});
}

TEST_CASE("sample: continuous batching on the GPU writes every sample once, the same with and without CUDA graphs" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CUDA);
  for (bool constrained : {true, false}) {
    CAPTURE(constrained);
    GenerateConfig cfg;
    cfg.max_faces = 8;
    cfg.constrained = constrained;
    cfg.sampling.seed = 21;
    const int64_t N = 23;
    cfg.cuda_graphs = true;
    const std::vector<GeneratedSequence> graphs = generate_samples(*model, N, 4, {}, cfg, 0);
    cfg.cuda_graphs = false;
    const std::vector<GeneratedSequence> plain = generate_samples(*model, N, 4, {}, cfg, 0);
    REQUIRE(graphs.size() == size_t(N));
    int distinct = 0;
    for (int64_t i = 0; i < N; i++) {
      CAPTURE(i);
      CHECK(graphs[i].tokens == plain[i].tokens);
      CHECK(graphs[i].tokens.size() > size_t(kTokensPerFace));
      CHECK((graphs[i].ended || graphs[i].tokens.size() == size_t(kTokensPerFace) * (cfg.max_faces + 1)));
      if (constrained) CHECK(follows_canonical_order(graphs[i].tokens));
      distinct += i > 0 && graphs[i].tokens != graphs[i - 1].tokens;
    }
    CHECK(distinct >= N - 3);
  }
}
