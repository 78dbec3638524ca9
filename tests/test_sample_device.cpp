// test_sample_device.cpp: generate() against the host sampling loop it replaced.
//
// reference_generate() below is the loop infer/generate.cpp ran before the
// device sampler (infer/device_sampler.h): logits to the host every step,
// sample_tokens() / sample_token() with constrained_banned_tokens() (the host
// functions of infer/sampler.h and infer/constrain.h). generate() must give the
// same tokens, token for token, on the CPU.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/tokens.h"
#include "infer/constrain.h"
#include "infer/decode.h"
#include "infer/generate.h"
#include "infer/sampler.h"
#include "nn/state.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
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
                                                  const GenerateConfig& cfg, uint64_t first_sample_id) {
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
    CAPTURE(c.name);
    GenerateConfig cfg;
    cfg.sampling = c.sampling;
    cfg.constrained = c.constrained;
    cfg.max_faces = c.max_faces;
    std::vector<int32_t> prompt;
    if (c.prompt_faces >= 0) prompt.assign(tatami.begin(), tatami.begin() + kTokensPerFace * (1 + c.prompt_faces));
    const std::vector<GeneratedSequence> want = reference_generate(*model, c.batch, prompt, cfg, c.first_id);
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
  }
  MESSAGE(ended << " rows ended with END, " << at_limit << " reached the face limit");
  CHECK(ended > 0);
  CHECK(at_limit > 0);
}
