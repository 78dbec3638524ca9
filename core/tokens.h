// tokens.h: the token values of spec §1, shared by the data layer and the model.
#pragma once
#include <cstdint>

namespace iflame {

constexpr int kNumCoordinateTokens = 129;  // 0..128: a quantized coordinate
constexpr int32_t kPadToken = 129;         // ignored by the loss
constexpr int32_t kStartToken = 130;       // a row of 9 opens every sequence
constexpr int32_t kEndToken = 131;         // a row of 9 closes a complete mesh
constexpr int kVocabSize = 132;
constexpr int kTokensPerFace = 9;

}  // namespace iflame
