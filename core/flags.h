// flags.h: the one command-line parser of every program (./train, ./sample,
// ./evaluate, ./render, build_dataset), so that all of them read numbers the
// same checked way and word their errors alike. A bad flag is a UsageError
// naming the flag and the problem; run_program turns it into exit status 2 and
// any other error into 1.
//
// A program walks its arguments with a FlagReader; adding a flag is one line:
//
//   FlagReader f("sample", argc, argv);
//   while (f.next()) {
//     if (f.is("--batch")) o.batch = f.integer<int>(1, 1 << 16);   // [1, 65536]
//     else if (f.is("--top-p")) o.top_p = f.real<float>(0, 1, /*low_open=*/true);
//     else if (f.is("--format")) o.format = f.choice({"obj", "ply"});
//     else if (f.is("--overwrite")) o.overwrite = true;   // a switch takes no value
//     else f.positional_or_unknown(o.inputs);             // or f.unknown()
//   }
//
// and a line of the program's --help text.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"

namespace iflame {

// Bad command-line usage: an unknown flag, a missing or malformed value.
struct UsageError : InputError {
  using InputError::InputError;
};

// `text` as a whole decimal integer in [lo, hi]: no trailing junk, no leading
// space, and a value past the range of int64 is out of range, never wrapped.
int64_t flag_integer(const std::string& flag, const std::string& text, int64_t lo, int64_t hi);
// `text` as a whole, finite number in [lo, hi] (NaN and infinities refused);
// with low_open the low end is excluded: (lo, hi].
double flag_number(const std::string& flag, const std::string& text, double lo, double hi, bool low_open = false);

class FlagReader {
 public:
  FlagReader(const char* program, int argc, char** argv) : program_(program), argc_(argc), argv_(argv) {}

  // Moves to the next argument; false after the last.
  bool next() { return ++i_ < argc_; }
  const std::string& arg() const { return current_ = argv_[i_]; }
  bool is(const char* name) const { return arg() == name; }
  bool is_help() const { return is("-h") || is("--help"); }

  // The value of the current flag (the next argument).
  std::string text();
  // The value as an integer of type T in [lo, hi]; hi is at most T's largest
  // value (the default), so a value never wraps when narrowed to T.
  template <typename T>
  T integer(int64_t lo, int64_t hi = largest<T>()) {
    const std::string flag = arg();
    return static_cast<T>(flag_integer(flag, text(), lo, hi < largest<T>() ? hi : largest<T>()));
  }
  template <typename T = double>
  T real(double lo = -std::numeric_limits<double>::max(), double hi = std::numeric_limits<double>::max(),
         bool low_open = false) {
    const std::string flag = arg();
    return static_cast<T>(flag_number(flag, text(), lo, hi, low_open));
  }
  // One of `allowed`.
  std::string choice(std::initializer_list<const char*> allowed);

  // The current argument is not a known flag: a value without a dash goes to
  // `positional`; anything else is a UsageError.
  void positional_or_unknown(std::vector<std::string>& positional) const;
  [[noreturn]] void unknown() const;

  const char* program() const { return program_; }

 private:
  template <typename T>
  static constexpr int64_t largest() {
    return static_cast<uint64_t>(std::numeric_limits<T>::max()) > static_cast<uint64_t>(INT64_MAX)
               ? INT64_MAX
               : static_cast<int64_t>(std::numeric_limits<T>::max());
  }
  const char* program_;
  int argc_;
  char** argv_;
  int i_ = 0;
  mutable std::string current_;
};

// The words --precision takes in ./train and ./sample, and their help text
// (its lines after the first indented by `indent` spaces).
std::string precision_help(int indent);
std::string precision_flag(FlagReader& f);  // "bf16", "bf16-matmul" or "f32"
// The product type of a --precision value ("" = the default: bf16 on the GPU, f32 on the CPU).
DType precision_matmul(const std::string& precision, Device device);

// Runs a program's body: prints an error as "PROGRAM: message" on stderr and
// returns 2 for a UsageError, 1 for any other error; else body's status.
int run_program(const char* program, const std::function<int()>& body);

}  // namespace iflame
