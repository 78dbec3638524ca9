// constrain.cpp: the token masks of constrained decoding and an independent
// checker of the canonical order (see constrain.h).
#include "infer/constrain.h"

#include <algorithm>
#include <array>
#include <tuple>

#include "core/error.h"
#include "core/tokens.h"

namespace iflame::infer {

namespace {

constexpr int64_t kLevels = kNumCoordinateTokens;            // 129
constexpr int64_t kKeys = kLevels * kLevels * kLevels;       // number of distinct vertices

// key = (y * 129 + x) * 129 + z for a vertex written (z, x, y).
int64_t vertex_key(const int32_t* t) { return (int64_t(t[2]) * kLevels + t[1]) * kLevels + t[0]; }

// Can a vertex whose first `known` written tokens are t[0 .. known) be
// completed to a key in [lo, hi] other than `excluded` (-1: none)? The keys
// of the completions are base + stride * m for m in [0, count): z known fixes
// the key modulo 129, z and x known fix it modulo 129^2.
bool completable(const int32_t* t, int known, int64_t lo, int64_t hi, int64_t excluded) {
  int64_t base = 0, stride = 1, count = kKeys;
  if (known == 1) base = t[0], stride = kLevels, count = kLevels * kLevels;
  else if (known == 2) base = t[0] + kLevels * t[1], stride = kLevels * kLevels, count = kLevels;
  else if (known == 3) base = vertex_key(t), stride = 1, count = 1;
  lo = std::max(lo, base);
  hi = std::min(hi, base + stride * (count - 1));
  if (lo > hi) return false;
  const int64_t m_lo = (lo - base + stride - 1) / stride, m_hi = (hi - base) / stride;
  if (m_lo > m_hi) return false;
  if (m_hi > m_lo) return true;  // two completions: one of them is not `excluded`
  return base + stride * m_lo != excluded;
}

// A face's place in the canonical order: its first vertex, then the lower and
// the higher of the other two (spec §1: faces sorted by their sorted vertices).
using FaceKey = std::tuple<int64_t, int64_t, int64_t>;
FaceKey face_key(int64_t v1, int64_t v2, int64_t v3) { return {v1, std::min(v2, v3), std::max(v2, v3)}; }

// The keys corner `slot` of the face being written may take, as [lo, hi] minus
// `excluded`: those from which the face can still be completed to a valid face
// after the previous one (`previous`, null for the first face). v1, v2: the
// corners already written.
struct KeyRange {
  int64_t lo, hi, excluded;
};
KeyRange corner_keys(int slot, int64_t v1, int64_t v2, const FaceKey* previous) {
  constexpr int64_t top = kKeys - 1;
  // The largest face completing the corners so far with w at `slot`: the
  // corners still to come take the largest keys. If it is not after the previous
  // face, no completion is.
  auto largest_completion = [&](int64_t w) {
    if (slot == 0) return face_key(w, top - 1, top);
    if (slot == 1) return face_key(v1, w, w == top ? top - 1 : top);
    return face_key(v1, v2, w);
  };
  // Which w make a valid face with the largest completion: an interval, less v2 for the last corner.
  KeyRange r{0, top, -1};
  if (slot == 0) r.hi = top - 2;
  if (slot >= 1) r.lo = v1 + 1;
  if (slot == 1 && v1 > top - 2) r.hi = -1;  // no two vertices above v1
  if (slot == 2) {
    r.excluded = v2;
    if (v2 <= v1) r.hi = -1;
  }
  if (previous == nullptr || r.lo > r.hi) return r;
  // The largest completion grows with w, so "after the previous face" holds from
  // some key on: the first such key in [lo, hi] by bisection (hi + 1: none).
  int64_t below = r.lo - 1, above = r.hi + 1;  // invariant: fails at below, holds at above (if in range)
  while (above - below > 1) {
    const int64_t mid = below + (above - below) / 2;
    if (largest_completion(mid) > *previous) above = mid;
    else below = mid;
  }
  r.lo = above;
  return r;
}

}  // namespace

std::vector<bool> allowed_next_tokens(const std::vector<int32_t>& seq, int vocab) {
  IFLAME_CHECK(vocab >= kVocabSize, "allowed_next_tokens: vocabulary of ", vocab, " is smaller than ", kVocabSize);
  IFLAME_CHECK(seq.size() >= size_t(kTokensPerFace) &&
                   std::all_of(seq.begin(), seq.begin() + kTokensPerFace, [](int32_t t) { return t == kStartToken; }),
               "allowed_next_tokens: the sequence must begin with the START row");
  std::vector<bool> allowed(vocab, false);
  const int32_t* body = seq.data() + kTokensPerFace;
  const int64_t n = int64_t(seq.size()) - kTokensPerFace;
  if (std::find(body, body + n, kEndToken) != body + n) {  // inside the END row: finish it
    allowed[kEndToken] = true;
    return allowed;
  }
  const int64_t row = n / kTokensPerFace, col = n % kTokensPerFace;
  allowed[kEndToken] = col == 0 && row >= 1;
  const int32_t* face = body + row * kTokensPerFace;
  const int slot = int(col / 3), known = int(col % 3);
  FaceKey previous;
  if (row >= 1) {
    const int32_t* p = face - kTokensPerFace;
    previous = face_key(vertex_key(p), vertex_key(p + 3), vertex_key(p + 6));
  }
  const KeyRange keys = corner_keys(slot, slot >= 1 ? vertex_key(face) : 0, slot == 2 ? vertex_key(face + 3) : 0,
                                    row >= 1 ? &previous : nullptr);
  int32_t vertex[3];
  std::copy(face + 3 * slot, face + 3 * slot + known, vertex);
  for (int32_t c = 0; c < kNumCoordinateTokens; c++) {
    vertex[known] = c;
    allowed[c] = completable(vertex, known + 1, keys.lo, keys.hi, keys.excluded);
  }
  if (std::find(allowed.begin(), allowed.end(), true) == allowed.end()) allowed[kEndToken] = true;  // a bad prompt
  return allowed;
}

std::vector<int32_t> constrained_banned_tokens(const std::vector<int32_t>& seq, int vocab) {
  const std::vector<bool> allowed = allowed_next_tokens(seq, vocab);
  std::vector<int32_t> banned;
  for (int32_t t = 0; t < vocab; t++)
    if (!allowed[t]) banned.push_back(t);
  return banned;
}

bool follows_canonical_order(const std::vector<int32_t>& seq, std::string* why) {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (seq.size() < size_t(kTokensPerFace)) return fail("shorter than the START row");
  for (int t = 0; t < kTokensPerFace; t++)
    if (seq[t] != kStartToken) return fail(str("token ", t, " is ", seq[t], ", not START"));
  // Vertex order: the written (z, x, y) compared as (y, x, z).
  auto vertex = [&](size_t at) { return std::make_tuple(seq[at + 2], seq[at + 1], seq[at]); };
  size_t pos = kTokensPerFace;
  int faces = 0;
  while (pos < seq.size() && seq[pos] != kEndToken) {
    for (size_t k = pos; k < std::min(seq.size(), pos + kTokensPerFace); k++)
      if (seq[k] < 0 || seq[k] >= kNumCoordinateTokens) return fail(str("token ", k, " is ", seq[k], " inside a row"));
    if (pos + kTokensPerFace > seq.size()) break;  // a row still being written
    const auto v1 = vertex(pos), v2 = vertex(pos + 3), v3 = vertex(pos + 6);
    if (!(v2 > v1) || !(v3 > v1)) return fail(str("face ", faces, ": its first vertex is not its lowest"));
    if (v3 == v2) return fail(str("face ", faces, ": degenerate (second and third vertex equal)"));
    if (faces > 0) {  // faces by (first vertex, lower, higher of the other two), strictly increasing
      const auto w1 = vertex(pos - kTokensPerFace), w2 = vertex(pos - 6), w3 = vertex(pos - 3);
      const auto mine = std::make_tuple(v1, std::min(v2, v3), std::max(v2, v3));
      const auto before = std::make_tuple(w1, std::min(w2, w3), std::max(w2, w3));
      if (mine == before) return fail(str("face ", faces, ": repeats the previous face"));
      if (mine < before) return fail(str("face ", faces, ": before the previous face in canonical order"));
    }
    faces++;
    pos += kTokensPerFace;
  }
  if (pos < seq.size() && seq[pos] == kEndToken) {
    if ((pos - kTokensPerFace) % kTokensPerFace != 0) return fail(str("END at token ", pos, ", inside a row"));
    if (faces == 0) return fail("END before the first face");
    if (seq.size() - pos > size_t(kTokensPerFace)) return fail("tokens after the END row");
    for (size_t k = pos; k < seq.size(); k++)
      if (seq[k] != kEndToken) return fail(str("token ", k, " is ", seq[k], " inside the END row"));
  }
  return true;
}

}  // namespace iflame::infer
