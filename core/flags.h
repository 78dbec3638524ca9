// flags.h: numbers from command-line flags, shared by the programs
// (./train, ./sample, ./evaluate). A bad value is a UsageError naming the flag,
// which the programs turn into exit code 2.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace iflame {

struct UsageError : Error {
  using Error::Error;
};

// `text` as a whole integer in [lo, hi].
inline int64_t flag_integer(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0') throw UsageError(str(flag, ": '", text, "' is not an integer"));
  if (v < lo || v > hi) throw UsageError(str(flag, ": ", v, " is outside [", lo, ", ", hi, "]"));
  return v;
}

// `text` as a whole, finite number.
inline double flag_number(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v))
    throw UsageError(str(flag, ": '", text, "' is not a number"));
  return v;
}

}  // namespace iflame
