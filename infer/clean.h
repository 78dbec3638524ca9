// clean.h: turning a sampled token sequence into a mesh that is safe to write.
//
// A sample is START x9, rows of 9 coordinate tokens, and (when the model
// finished) an END token. Cleaning keeps the rows that make a triangle:
//   - tokens after the first END are ignored; an incomplete final row is dropped;
//   - a row with a token outside 0..128 is dropped;
//   - a degenerate row (two of its three vertices equal) is dropped;
//   - a row whose vertex set repeats an earlier row's (any order) is dropped.
// The result is START x9, the kept rows, END x9: canonical enough for
// decode_tokens (data/tokenize.h). The header uses only standard types so it can
// be included next to the model headers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace iflame::infer {

enum class SampleStatus {
  Complete,   // ended with END at a row boundary, nothing dropped
  Truncated,  // reached the face limit without END, nothing dropped
  Cleaned,    // something was dropped (incomplete row, degenerate, duplicate, invalid)
  Empty,      // no face left
};
const char* sample_status_name(SampleStatus s);

struct CleanedSample {
  std::vector<int32_t> tokens;  // START row, kept rows, END row
  int faces = 0;
  int dropped_incomplete = 0;   // tokens of an incomplete final row
  int dropped_invalid = 0;      // rows with a non-coordinate token
  int dropped_degenerate = 0;
  int dropped_duplicate = 0;
  bool ended = false;           // an END token was seen
  SampleStatus status = SampleStatus::Empty;
};

// seq: the sampled sequence (leading START tokens are skipped).
CleanedSample clean_sample(const std::vector<int32_t>& seq);

// Decodes a cleaned sample (decode_tokens) and writes it as OBJ or PLY
// ("obj" / "ply"), ascii. Throws naming the path when it cannot be written.
void write_sample_mesh(const std::string& path, const CleanedSample& sample, const std::string& format);

// The canonical tokens of a mesh file without the END row: a prompt to continue.
std::vector<int32_t> prompt_tokens_from_mesh(const std::string& path);

}  // namespace iflame::infer
