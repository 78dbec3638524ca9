// constrain.h: constrained decoding (./sample's default; --unconstrained turns
// it off): before each draw, the tokens that would break the canonical order of
// spec §1 are masked, so every sample is a well-formed sequence in canonical
// order whatever the model predicts.
//
// A vertex is written (z, x, y) and ordered by key(v) = (y * 129 + x) * 129 + z
// (the written triple read right to left: y first, then x, then z). With the
// body (everything after the START row) cut into rows of 9 tokens = faces of
// three vertices v1 v2 v3, the rules are:
//   - PAD and START are never allowed;
//   - END only at a row boundary (a whole END row: generation stops at the
//     first END and the writer adds the rest of the row), and only after at
//     least one face (an empty mesh is not a sample);
//   - coordinates (0..128) only inside rows, such that the face being written
//     can still be completed to
//       a valid face: v2 > v1, v3 > v1 (the lowest vertex first), v2 != v3
//       (no two corners at one position: no degenerate face), and
//       a face after the previous one: the face key (v1, min(v2, v3),
//       max(v2, v3)) strictly above the previous face's, lexicographically.
//     This is the whole canonical order (faces sorted by their sorted vertex
//     indices), so no face is written twice.
// The test is exact, token by token: a coordinate is allowed iff some choice of
// the face's remaining tokens meets the rules, so decoding never reaches a
// position where nothing is allowed (at a row boundary END always is; inside a
// row some completion exists). Canonical sequences (the tokenizer's output,
// golden/tokens_*.npy) pass every step.
//
// allowed_next_tokens() rescans the sequence: it is the readable definition.
// Sampling uses the O(1) twin in ops/sampling_core.h (ConstraintState,
// constraint_mask, constraint_allows), on the model's device; the tests hold the
// two equal prefix by prefix. The code is kept apart on purpose, so the test
// compares two implementations, not one with itself.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace iflame::infer {

// For a sequence starting with the START row (prompt and sampled tokens so far),
// allowed[t] for every token t of the vocabulary (size >= 132): may t come next?
std::vector<bool> allowed_next_tokens(const std::vector<int32_t>& seq, int vocab);

// The complement, as a banned list for sample_token (infer/sampler.h).
std::vector<int32_t> constrained_banned_tokens(const std::vector<int32_t>& seq, int vocab);

// Whether a whole sequence (START row, rows, optionally END) obeys the rules
// above; `why` (if given) says where it does not. Written without the masks.
bool follows_canonical_order(const std::vector<int32_t>& seq, std::string* why = nullptr);

}  // namespace iflame::infer
