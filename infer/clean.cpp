// clean.cpp: cleaning sampled sequences, writing them as meshes, reading prompts.
// (data/tokenize.h lives only here: its token constants clash with nn/config.h's.)
#include "infer/clean.h"

#include <algorithm>
#include <array>
#include <set>

#include "core/error.h"
#include "data/mesh.h"
#include "data/tokenize.h"

namespace iflame::infer {

const char* sample_status_name(SampleStatus s) {
  switch (s) {
    case SampleStatus::Complete: return "complete";
    case SampleStatus::Truncated: return "truncated";
    case SampleStatus::Cleaned: return "cleaned";
    case SampleStatus::Empty: return "empty";
  }
  return "?";
}

CleanedSample clean_sample(const std::vector<int32_t>& seq) {
  CleanedSample out;
  size_t i = 0;
  while (i < seq.size() && seq[i] == kStartToken) i++;
  size_t end = i;
  while (end < seq.size() && seq[end] != kEndToken) end++;
  out.ended = end < seq.size();
  const size_t body = end - i;
  out.dropped_incomplete = static_cast<int>(body % kTokensPerFace);
  out.tokens.assign(kTokensPerFace, kStartToken);
  std::set<std::array<int32_t, 9>> seen;
  for (size_t r = i; r + kTokensPerFace <= end; r += kTokensPerFace) {
    const int32_t* row = seq.data() + r;
    bool valid = true;
    for (int t = 0; t < kTokensPerFace; t++) valid = valid && row[t] >= 0 && row[t] < kCoordLevels;
    if (!valid) {
      out.dropped_invalid++;
      continue;
    }
    std::array<std::array<int32_t, 3>, 3> v;
    for (int c = 0; c < 3; c++) v[c] = {row[3 * c], row[3 * c + 1], row[3 * c + 2]};
    if (v[0] == v[1] || v[1] == v[2] || v[0] == v[2]) {
      out.dropped_degenerate++;
      continue;
    }
    std::sort(v.begin(), v.end());
    std::array<int32_t, 9> key;
    for (int c = 0; c < 3; c++)
      for (int a = 0; a < 3; a++) key[3 * c + a] = v[c][a];
    if (!seen.insert(key).second) {
      out.dropped_duplicate++;
      continue;
    }
    out.tokens.insert(out.tokens.end(), row, row + kTokensPerFace);
    out.faces++;
  }
  out.tokens.insert(out.tokens.end(), kTokensPerFace, kEndToken);
  const bool dropped = out.dropped_incomplete || out.dropped_invalid || out.dropped_degenerate ||
                       out.dropped_duplicate;
  if (out.faces == 0)
    out.status = SampleStatus::Empty;
  else if (dropped)
    out.status = SampleStatus::Cleaned;
  else
    out.status = out.ended ? SampleStatus::Complete : SampleStatus::Truncated;
  return out;
}

void write_sample_mesh(const std::string& path, const CleanedSample& sample, const std::string& format) {
  Mesh mesh = decode_tokens(sample.tokens);
  if (format == "obj")
    write_obj(path, mesh);
  else if (format == "ply")
    write_ply(path, mesh, false);
  else
    IFLAME_FAIL("unknown mesh format '", format, "' (expected obj or ply)");
}

std::vector<int32_t> prompt_tokens_from_mesh(const std::string& path) {
  std::vector<int32_t> tokens = tokenize_mesh(read_mesh(path));
  IFLAME_CHECK(tokens.size() >= 2 * kTokensPerFace && tokens.back() == kEndToken,
               "prompt ", path, ": tokenization gave no END row");
  tokens.resize(tokens.size() - kTokensPerFace);
  return tokens;
}

}  // namespace iflame::infer
