// test_sample_drain.cpp: the drain of a sampling run on fewer rows
// (infer/generate.h): compact_rows (infer/decode.h) and DeviceSampler::keep_rows
// (infer/device_sampler.h), the pieces the loop uses.
//
// CPU (and the GPU too where there is one): compact_rows copies exactly the
// chosen rows of every cache, state and buffer, and on the CPU the compacted
// state then decodes those rows bit for bit as the full one does; keep_rows
// keeps exactly the chosen rows of the sampler, and a run that lets its done
// rows go gives the results and the draw count of one that keeps them; both
// reject empty lists, rows outside the batch and rows listed twice.
// GPU (skipped without one): generate_samples with and without the drain's
// compactions gives the same meshes in f32 (graphs on and off), and with bf16
// and the Auto step (layered at 16 rows, persistent from 8) writes every
// sample once.
// The meshes of whole CPU runs with compactions against one-by-one sampling are
// in test_sample_continuous.cpp.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/philox.h"
#include "core/tokens.h"
#include "infer/constrain.h"
#include "infer/decode.h"
#include "infer/device_sampler.h"
#include "infer/generate.h"
#include "nn/model_weights.h"
#include "nn/state.h"
#include "tests/model_fixtures.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
using namespace iflame::test;

namespace {

std::vector<Device> devices_here() {
  std::vector<Device> d = {Device::CPU};
  if (cuda_available()) d.push_back(Device::CUDA);
  return d;
}

// Row `row` of t as host floats (any dtype).
std::vector<float> row_of(const Tensor& t, int64_t row) { return t.slice(0, row, row + 1).to(DType::F32).to_floats(); }

// Every per-row tensor of a decode state, named.
std::vector<std::pair<std::string, Tensor>> row_tensors(const DecodeState& st) {
  std::vector<std::pair<std::string, Tensor>> t = {
      {"position", st.position.to(DType::F32)}, {"group0", st.group0}, {"group1", st.group1}, {"skip0", st.skip0},
      {"skip1", st.skip1}, {"out1", st.out1}, {"out2", st.out2}, {"logits", st.logits}};
  for (int s = 0; s < ModelWeights::kStages; s++)
    for (size_t i = 0; i < st.caches[s].size(); i++) {
      const std::string block = "stage " + std::to_string(s) + " block " + std::to_string(i);
      const BlockCache& c = st.caches[s][i];
      if (c.k.defined()) t.push_back({block + " k", c.k});
      if (c.v.defined()) t.push_back({block + " v", c.v});
      if (c.state.defined()) t.push_back({block + " state", c.state});
    }
  return t;
}

// Logits that depend on the sample and the position only: random, END unlikely,
// then certain for even samples from position 12 and for every sample from 30.
Tensor drain_logits(const std::vector<SampleRow>& rows) {
  std::vector<float> l(rows.size() * kVocabSize);
  for (size_t b = 0; b < rows.size(); b++) {
    float* row = &l[b * kVocabSize];
    const uint64_t id = rows[b].sample_id;
    const int64_t p = rows[b].position;
    for (int t = 0; t < kVocabSize; t++) row[t] = 4.0f * philox_unit_float(philox_draw(id, p, t).v[0]);
    row[kEndToken] = (id % 2 == 0 && p >= 12) || p >= 30 ? 40.0f : -40.0f;
  }
  return Tensor::from_floats(l, {int64_t(rows.size()), kVocabSize});
}

}  // namespace

TEST_CASE("sample: compact_rows copies exactly the chosen rows, and they decode on as before") {
  std::unique_ptr<IFlame> cpu_model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  for (Device device : devices_here()) {
    CAPTURE(device_name(device));
    std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), device);
    // 14 positions (the START row, then 5 tokens that differ by row): every level has run.
    const int64_t B = 5, steps = 14;
    const Tensor tokens = random_tokens(B, steps + 4, 17);
    DecodeState st = begin(*model, B, 40);
    for (int64_t p = 0; p < steps; p++) step(st, tokens.select(1, p).contiguous());
    const std::vector<int> keep = {3, 0, 4};
    DecodeState small = compact_rows(st, keep);
    CHECK(small.batch == 3);
    CHECK(small.pos == st.pos);
    CHECK(small.max_len == st.max_len);
    const auto full_rows = row_tensors(st), kept_rows = row_tensors(small);
    REQUIRE(full_rows.size() == kept_rows.size());
    int differing = 0, compared = 0;
    for (size_t t = 0; t < full_rows.size(); t++)
      for (size_t i = 0; i < keep.size(); i++) {
        CAPTURE(full_rows[t].first);
        CHECK(kept_rows[t].second.shape()[0] == 3);
        differing += row_of(kept_rows[t].second, i) != row_of(full_rows[t].second, keep[i]);
        compared++;
      }
    CHECK(differing == 0);
    CHECK(compared >= 3 * 10);
    // The rows differ from each other (else "the right row" proves nothing).
    CHECK(row_of(st.logits, 3) != row_of(st.logits, 0));
    // Decoding on: on the CPU a row's numbers do not depend on the batch, so the
    // compacted rows give the full state's logits bit for bit (through level 1
    // at 14 and the bottleneck at 17).
    if (device == Device::CPU) {
      for (int64_t p = steps; p < steps + 4; p++) {
        CAPTURE(p);
        const Tensor column = tokens.select(1, p).contiguous();
        std::vector<int32_t> kept_tokens;
        for (int r : keep) kept_tokens.push_back(column.to_ints()[r]);
        const Tensor full_logits = step(st, column).clone();
        const Tensor small_logits = step(small, Tensor::from_ints(kept_tokens, {3}));
        for (size_t i = 0; i < keep.size(); i++) CHECK(row_of(small_logits, i) == row_of(full_logits, keep[i]));
      }
    }
    CHECK(contains(error_of([&] { compact_rows(st, {}); }), "compact_rows: the list of rows to keep is empty"));
    CHECK(contains(error_of([&] { compact_rows(st, {1, 5}); }), "compact_rows: row 5 is outside the batch of 5"));
    CHECK(contains(error_of([&] { compact_rows(st, {-1}); }), "compact_rows: row -1 is outside the batch of 5"));
    CHECK(contains(error_of([&] { compact_rows(st, {2, 0, 2}); }), "compact_rows: row 2 is listed twice"));
  }
}

TEST_CASE("sample: keep_rows keeps exactly the chosen sampler rows, and letting done rows go changes no sample") {
  for (Device device : devices_here()) {
    CAPTURE(device_name(device));
    const int rows = 5;
    const int64_t capacity = int64_t(kTokensPerFace) * 6;
    SamplingConfig cfg;
    cfg.seed = 3;
    const std::vector<int32_t> prompt(kTokensPerFace, kStartToken);
    DeviceSampler kept(device, rows, prompt, capacity, kVocabSize, cfg, false, 100, rows);
    DeviceSampler full(device, rows, prompt, capacity, kVocabSize, cfg, false, 100, rows);
    // Step both until the even samples (rows 0, 2, 4) are done and the odd ones still draw.
    int64_t pos = 0;
    for (; pos < 20; pos++) {
      kept.step(drain_logits(kept.rows()).to(device), pos);
      full.step(drain_logits(full.rows()).to(device), pos);
    }
    REQUIRE(kept.live_rows() == std::vector<int>{1, 3});
    const std::vector<SampleRow> before = kept.rows();
    const std::vector<int32_t> feed = kept.feed().to_ints(), restarts = kept.restarts().to_ints(),
                               live = kept.live().to_ints();
    const int64_t draws = kept.sampled_tokens();
    const std::vector<int> keep = {3, 1};
    kept.keep_rows(keep);
    REQUIRE(kept.batch() == 2);
    const std::vector<SampleRow> after = kept.rows();
    for (size_t i = 0; i < keep.size(); i++) {
      CAPTURE(i);
      CHECK(std::memcmp(&after[i], &before[keep[i]], sizeof(SampleRow)) == 0);
      CHECK(kept.feed().to_ints()[i] == feed[keep[i]]);
      CHECK(kept.restarts().to_ints()[i] == restarts[keep[i]]);
      CHECK(kept.live().to_ints()[i] == live[keep[i]]);
    }
    CHECK(after[0].sample_id != after[1].sample_id);
    CHECK(kept.sampled_tokens() == draws);  // the draws of rows let go still count
    // No sample waits; the CPU reads the counters, the GPU has not polled them yet (finished() does).
    CHECK(kept.drain_rows() == (device == Device::CPU ? 2 : -1));
    for (; pos < capacity; pos++) {
      kept.step(drain_logits(kept.rows()).to(device), pos);
      full.step(drain_logits(full.rows()).to(device), pos);
      if (kept.finished() && full.finished()) break;
    }
    CHECK(kept.active_rows() == 0);
    const std::vector<GeneratedSequence> a = kept.results(), b = full.results();
    REQUIRE(a.size() == size_t(rows));
    for (int i = 0; i < rows; i++) {
      CAPTURE(i);
      CHECK(a[i].tokens == b[i].tokens);
      CHECK(a[i].ended);
      CHECK(a[i].tokens.size() > size_t(kTokensPerFace) + 3);
    }
    CHECK(a[0].tokens.size() < a[1].tokens.size());  // even samples end first
    CHECK(kept.sampled_tokens() == full.sampled_tokens());
    CHECK(contains(error_of([&] { kept.keep_rows({}); }), "DeviceSampler::keep_rows: the list of rows to keep is empty"));
    CHECK(contains(error_of([&] { kept.keep_rows({2}); }), "DeviceSampler::keep_rows: row 2 is outside the batch of 2"));
    CHECK(contains(error_of([&] { kept.keep_rows({0, 0}); }), "DeviceSampler::keep_rows: row 0 is listed twice"));
  }
}

TEST_CASE("sample: the drain's compactions on the GPU change no mesh in f32, and work with bf16 and the Auto step" *
          needs_gpu()) {
  SKIP_WITHOUT_GPU();
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CUDA);
  const ModelWeights ending = with_end_bias(*model, 3.0f);
  GenerateConfig cfg;
  cfg.max_faces = 8;
  cfg.sampling.seed = 7;
  cfg.ctx.matmul = DType::F32;
  const int64_t N = 23;
  // f32: the same meshes with and without compaction, graphs on and off. Exact
  // if the f32 products give a row the same numbers at any batch (if this fails
  // while the CPU test passes, they do not: a sample may then differ after a
  // position where its two most likely tokens were within rounding).
  std::vector<GeneratedSequence> reference;
  for (bool graphs : {false, true})
    for (bool compact : {false, true}) {
      CAPTURE(graphs);
      CAPTURE(compact);
      cfg.cuda_graphs = graphs;
      cfg.compact_drain = compact;
      GenerateStats stats;
      const std::vector<GeneratedSequence> got = generate_samples(ending, N, 8, {}, cfg, 0, &stats);
      REQUIRE(got.size() == size_t(N));
      if (compact) CHECK(stats.compactions >= 1);
      if (!compact) CHECK(stats.compactions == 0);
      CHECK(stats.sampled_tokens <= stats.row_steps);
      if (reference.empty()) reference = got;
      int differing = 0;
      for (int64_t i = 0; i < N; i++) {
        if (got[i].tokens == reference[i].tokens) continue;
        differing++;
        size_t p = 0;
        while (p < got[i].tokens.size() && p < reference[i].tokens.size() && got[i].tokens[p] == reference[i].tokens[p])
          p++;
        MESSAGE("sample " << i << " differs from token " << p << " of " << reference[i].tokens.size());
      }
      CHECK(differing == 0);
    }
  // bf16 with the Auto step: layered at 16 rows, the persistent kernel once
  // compacted to 8 or fewer; every sample written once, valid.
  cfg.ctx.matmul = DType::BF16;
  cfg.decode_step = DecodeStep::Auto;
  cfg.cuda_graphs = true;
  cfg.compact_drain = true;
  GenerateStats stats;
  const std::vector<GeneratedSequence> got = generate_samples(ending, 40, 16, {}, cfg, 0, &stats);
  REQUIRE(got.size() == 40);
  MESSAGE("bf16, Auto: " << stats.compactions << " compactions, 16 -> " << stats.last_rows << " rows");
  CHECK(stats.compactions >= 2);
  CHECK(stats.last_rows <= 4);
  int distinct = 0;
  for (size_t i = 0; i < got.size(); i++) {
    CAPTURE(i);
    CHECK(got[i].tokens.size() > size_t(kTokensPerFace));
    CHECK((got[i].ended || got[i].tokens.size() == size_t(kTokensPerFace) * (cfg.max_faces + 1)));
    CHECK(follows_canonical_order(got[i].tokens));
    distinct += i > 0 && got[i].tokens != got[i - 1].tokens;
  }
  CHECK(distinct >= 36);
}
