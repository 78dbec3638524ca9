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
  int64_t lo, hi = kKeys - 1, excluded = -1;
  if (slot == 0) {
    lo = row >= 1 ? vertex_key(face - kTokensPerFace) : 0;  // not before the previous face's first vertex
    hi = kKeys - 3;                                         // room for two larger vertices
  } else {
    lo = vertex_key(face) + 1;                        // after the face's first vertex
    if (slot == 2) excluded = vertex_key(face + 3);   // and not the second one again
  }
  int32_t vertex[3];
  std::copy(face + 3 * slot, face + 3 * slot + known, vertex);
  for (int32_t c = 0; c < kNumCoordinateTokens; c++) {
    vertex[known] = c;
    allowed[c] = completable(vertex, known + 1, lo, hi, excluded);
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
    if (faces > 0 && v1 < vertex(pos - kTokensPerFace))
      return fail(str("face ", faces, ": first vertex before the previous face's first vertex"));
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
