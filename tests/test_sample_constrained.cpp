// test_sample_constrained.cpp: constrained decoding (infer/constrain.h): the
// masks on hand-made prefixes, canonical token vectors pass them token by
// token, random and adversarial logits always give canonical sequences, and
// ./sample --constrained on the tiny golden model.
#include <doctest/doctest.h>
#include <omp.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/npy.h"
#include "core/philox.h"
#include "core/tokens.h"
#include "infer/constrain.h"
#include "infer/generate.h"
#include "infer/sample_cli.h"
#include "infer/sampler.h"
#include "nn/state.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::infer;
using namespace iflame::test;

namespace {

std::vector<int32_t> start_row() { return std::vector<int32_t>(kTokensPerFace, kStartToken); }

// seq + the given tokens.
std::vector<int32_t> with(std::vector<int32_t> seq, const std::vector<int32_t>& more) {
  seq.insert(seq.end(), more.begin(), more.end());
  return seq;
}

std::vector<int32_t> allowed_list(const std::vector<int32_t>& seq) {
  const std::vector<bool> a = allowed_next_tokens(seq, kVocabSize);
  std::vector<int32_t> out;
  for (int32_t t = 0; t < kVocabSize; t++)
    if (a[t]) out.push_back(t);
  return out;
}

std::vector<int32_t> range(int32_t lo, int32_t hi) {  // [lo, hi]
  std::vector<int32_t> out;
  for (int32_t t = lo; t <= hi; t++) out.push_back(t);
  return out;
}

struct SerialCpu {
  int previous = omp_get_max_threads();
  SerialCpu() { omp_set_num_threads(1); }
  ~SerialCpu() { omp_set_num_threads(previous); }
};

}  // namespace

TEST_CASE("sample: constrained masks on hand-made prefixes") {
  // After START: any coordinate (the first vertex is bounded only by the top three keys); no END, PAD, START.
  CHECK(allowed_list(start_row()) == range(0, 128));
  // A face (v1, v2, v3) = (0,0,0) (1,0,0) (0,0,1), written (z, x, y).
  const std::vector<int32_t> face = {0, 0, 0, 1, 0, 0, 0, 0, 1};
  const std::vector<int32_t> one = with(start_row(), face);
  CHECK(follows_canonical_order(one));
  std::vector<int32_t> want = range(0, 128);
  want.push_back(kEndToken);
  CHECK(allowed_list(one) == want);  // row boundary after a face: END or any first vertex >= (0,0,0)
  for (int col = 1; col < 9; col++) {
    const std::vector<int32_t> mid = with(one, std::vector<int32_t>(face.begin(), face.begin() + col));
    CHECK_FALSE(allowed_next_tokens(mid, kVocabSize)[kEndToken]);  // no END inside a row
  }
  // Inside the END row only END.
  CHECK(allowed_list(with(one, {kEndToken})) == std::vector<int32_t>{kEndToken});

  // v1 = (z, x, y) = (5, 7, 128). v2 must be above it in (y, x, z) order: y = 128 is forced
  // later, so any z; then with z = 3, x must be > 7 (x = 7 would give (128, 7, 3) < (128, 7, 5)).
  const std::vector<int32_t> v1 = with(start_row(), {5, 7, 128});
  CHECK(allowed_list(v1) == range(0, 128));
  CHECK(allowed_list(with(v1, {3})) == range(8, 128));
  CHECK(allowed_list(with(v1, {3, 8})) == std::vector<int32_t>{128});
  CHECK(allowed_list(with(v1, {6, 7})) == std::vector<int32_t>{128});  // (128, 7, 6) > (128, 7, 5)
  CHECK(allowed_list(with(v1, {5})) == range(8, 128));                // x = 7 would need z > 5
  CHECK(allowed_list(with(v1, {5, 7})).empty() == false);
  // v3 != v2: v1 = (0,0,0), v2 = (1,0,0); v3 = (1, 0, y) may not take y = 0.
  const std::vector<int32_t> v12 = with(start_row(), {0, 0, 0, 1, 0, 0});
  CHECK(allowed_list(with(v12, {1, 0})) == range(1, 128));
  CHECK(allowed_list(with(v12, {2, 0})) == range(0, 128));
  // v1 may not pass the third-largest vertex, and not go below the previous face's v1.
  const std::vector<int32_t> top = with(start_row(), {126, 128, 128, 127, 128, 128, 128, 128, 128});
  CHECK(follows_canonical_order(top));
  // (126,128,128) (127,128,128) (128,128,128): the three largest vertices, the last face there is:
  // only END may follow (no dead end), and after a prompt that writes on anyway, END.
  CHECK(allowed_list(top) == std::vector<int32_t>{kEndToken});
  CHECK(allowed_list(with(top, {126, 128})) == std::vector<int32_t>{kEndToken});
  const std::vector<int32_t> low = with(start_row(), {9, 4, 20, 0, 0, 21, 0, 0, 22});
  CHECK(allowed_list(with(low, {0, 0})) == range(21, 128));  // (y, 0, 0) >= (20, 4, 9) needs y > 20
  CHECK(allowed_list(with(low, {9, 4})) == range(20, 128));   // equal first vertices are allowed
  CHECK(allowed_list(with(low, {8, 4})) == range(21, 128));
}

TEST_CASE("sample: constrained masks order faces that share a first vertex, and never repeat a face") {
  // Face 1: v1 = (0,0,0), then y = 5 and y = 3 (z = x = 0): key (v1, y3, y5).
  const std::vector<int32_t> one = with(start_row(), {0, 0, 0, 0, 0, 5, 0, 0, 3});
  CHECK(follows_canonical_order(one));
  const std::vector<int32_t> again = with(one, {0, 0, 0});  // the same first vertex again
  CHECK(allowed_list(again) == range(0, 128));
  CHECK(allowed_list(with(again, {0, 0})) == range(3, 128));   // min(v2, v3) >= y3: v2 below it is refused
  CHECK(allowed_list(with(again, {1, 0})) == range(3, 128));   // (z=1) at y = 3 is above (0,0,3)
  // v2 = the previous low corner: v3 must pass the previous high corner.
  CHECK(allowed_list(with(again, {0, 0, 3, 0, 0})) == range(6, 128));
  CHECK(allowed_list(with(again, {0, 0, 3, 1, 0})) == range(5, 128));  // (5,0,1) > (5,0,0)
  // v2 = the previous high corner: v3 above the low one; y = 3 would repeat face 1, y = 5 is degenerate.
  std::vector<int32_t> want = {4};
  for (int32_t y : range(6, 128)) want.push_back(y);
  CHECK(allowed_list(with(again, {0, 0, 5, 0, 0})) == want);
  // v2 between the two: v3 above the low corner, not v2.
  CHECK(allowed_list(with(again, {0, 0, 4, 0, 0})) == range(5, 128));
  // v2 above the high corner: v3 may be the low corner itself.
  want = range(3, 5);
  for (int32_t y : range(7, 128)) want.push_back(y);
  CHECK(allowed_list(with(again, {0, 0, 6, 0, 0})) == want);
  // Writing face 1 again, in either corner order, is refused at its last token, and the checker says why.
  CHECK_FALSE(allowed_next_tokens(with(again, {0, 0, 5, 0, 0}), kVocabSize)[3]);
  CHECK_FALSE(allowed_next_tokens(with(again, {0, 0, 3, 0, 0}), kVocabSize)[5]);
  std::string why;
  CHECK_FALSE(follows_canonical_order(with(one, {0, 0, 0, 0, 0, 3, 0, 0, 5}), &why));
  CHECK(why.find("repeats") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(one, {0, 0, 0, 0, 0, 4, 0, 0, 2}), &why));  // (v1, y2, y4) < (v1, y3, y5)
  CHECK(why.find("before the previous face") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(one, {0, 0, 0, 0, 0, 4, 0, 0, 3})));  // (v1, y3, y4) < (v1, y3, y5)
  CHECK(follows_canonical_order(with(one, {0, 0, 0, 0, 0, 6, 0, 0, 3})));        // (v1, y3, y6) > (v1, y3, y5)
}

TEST_CASE("sample: the canonical-order checker names what is wrong") {
  std::string why;
  const std::vector<int32_t> s = start_row();
  CHECK_FALSE(follows_canonical_order(with(s, {0, 0, 1, 0, 0, 0, 0, 0, 2}), &why));  // v2 below v1
  CHECK(why.find("lowest") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(s, {0, 0, 0, 0, 0, 1, 0, 0, 1}), &why));
  CHECK(why.find("degenerate") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(s, {0, 0, 5, 0, 0, 6, 0, 0, 7, 0, 0, 4, 0, 0, 8, 0, 0, 9}), &why));
  CHECK(why.find("previous face") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(s, {0, 0, 0, 1, kEndToken}), &why));
  CHECK_FALSE(follows_canonical_order(with(s, {kEndToken}), &why));
  CHECK(why.find("first face") != std::string::npos);
  CHECK_FALSE(follows_canonical_order(with(s, {0, 0, 0, 1, 0, 0, 0, 0, 1, kEndToken, 3}), &why));
  CHECK_FALSE(follows_canonical_order(with(s, {0, kPadToken}), &why));
  CHECK(follows_canonical_order(with(s, {0, 0, 0, 1, 0, 0, 0, 0, 1, kEndToken})));
  CHECK(follows_canonical_order(with(s, {0, 0, 0, 1, 0})));  // a row being written
}

TEST_CASE("sample: canonical token vectors pass the constrained masks token by token") {
  for (const char* name : {"box", "tetra", "tatami", "ammoBox", "pallet", "bedsideTable2", "upperShelves"}) {
    CAPTURE(name);
    const std::vector<int32_t> tokens = read_npy(golden(std::string("tokens_") + name + ".npy")).to_ints();
    std::string why;
    CHECK_MESSAGE(follows_canonical_order(tokens, &why), why);
    int refused = 0;
    std::vector<int32_t> prefix(tokens.begin(), tokens.begin() + kTokensPerFace);
    for (size_t k = kTokensPerFace; k < tokens.size(); k++) {
      refused += !allowed_next_tokens(prefix, kVocabSize)[tokens[k]];
      prefix.push_back(tokens[k]);
    }
    CHECK(refused == 0);
  }
}

TEST_CASE("sample: constrained draws from random and adversarial logits are always canonical") {
  SamplingConfig cfg;  // temperature 1, top-k 50, top-p 0.95
  int unconstrained_ok = 0, forced_ends = 0;
  for (int trial = 0; trial < 60; trial++) {
    CAPTURE(trial);
    const int mode = trial % 4;  // 0 random, 1 END favoured, 2 PAD/START favoured, 3 extremes (0 and 128)
    std::vector<int32_t> seq = start_row(), free_seq = start_row();
    std::vector<float> logits(kVocabSize);
    for (int64_t pos = kTokensPerFace; pos < kTokensPerFace * 41; pos++) {
      for (int t = 0; t < kVocabSize; t++) {
        const Philox4 r = philox_draw(trial, pos, t);
        logits[t] = 4.0f * philox_unit_float(r.v[0]);
      }
      if (mode == 1) logits[kEndToken] = 20;
      if (mode == 0 || mode == 3) logits[kEndToken] = -30;  // run to the face limit
      if (mode == 2) logits[kPadToken] = logits[kStartToken] = 30;
      if (mode == 3) logits[0] = logits[128] = 25;
      const float u = sampling_uniform(trial, pos, 0);
      if (seq.back() != kEndToken) seq.push_back(sample_token(logits.data(), kVocabSize, cfg, u,
                                                                constrained_banned_tokens(seq, kVocabSize)));
      if (free_seq.back() != kEndToken)
        free_seq.push_back(sample_token(logits.data(), kVocabSize, cfg, u, {kPadToken, kStartToken}));
    }
    std::string why;
    CHECK_MESSAGE(follows_canonical_order(seq, &why), why);
    if (mode == 1) CHECK(seq.size() == size_t(2 * kTokensPerFace + 1));  // one face, then END at once
    if (mode == 0 || mode == 3) {
      // 40 faces and no END, unless the faces climbed to the last one the order
      // allows (the three largest vertices): then END was the only token left.
      if (seq.size() != size_t(41 * kTokensPerFace)) {
        REQUIRE(seq.back() == kEndToken);
        CHECK(allowed_list(std::vector<int32_t>(seq.begin(), seq.end() - 1)) == std::vector<int32_t>{kEndToken});
        forced_ends++;
      }
    }
    if (mode == 2) CHECK(seq.size() > size_t(kTokensPerFace));
    unconstrained_ok += follows_canonical_order(free_seq);
  }
  CHECK(unconstrained_ok < 10);  // the checker is not vacuous: free draws break the order
  MESSAGE(forced_ends << " of 30 walks without END reached the last face the order allows");
}

TEST_CASE("sample: ./sample --constrained on the tiny golden model gives canonical sequences") {
  SerialCpu serial;
  std::unique_ptr<IFlame> model = load_model(golden("tiny_checkpoint.pth"), Device::CPU);
  GenerateConfig cfg;
  cfg.max_faces = 12;
  cfg.constrained = true;
  cfg.sampling.seed = 3;
  const std::vector<GeneratedSequence> seqs = generate(*model, 3, {}, cfg, 0);
  for (const GeneratedSequence& s : seqs) {
    std::string why;
    CHECK_MESSAGE(follows_canonical_order(s.tokens, &why), why);
    CHECK(s.tokens.size() >= size_t(2 * kTokensPerFace));
  }
  const std::string out = "build/test_sample_constrained";
  std::filesystem::remove_all(out);
  std::vector<std::string> args = {"sample", "--ckpt", golden("tiny_checkpoint.pth"), "-n", "2", "--max-faces", "8",
                                   "--constrained", "--out", out, "--device", "cpu"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  CHECK(sample_main(int(argv.size()), argv.data()) == 0);
  CHECK(std::filesystem::exists(out + "/sample_0001.obj"));
}
