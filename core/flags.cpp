// flags.cpp: checked number parsing, the flag reader, the --precision
// vocabulary and the exit-status convention shared by every program.
#include "core/flags.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace iflame {

int64_t flag_integer(const std::string& flag, const std::string& text, int64_t lo, int64_t hi) {
  const bool starts_like_a_number =
      !text.empty() && (std::isdigit(static_cast<unsigned char>(text[0])) || text[0] == '-' || text[0] == '+');
  char* end = nullptr;
  errno = 0;
  const long long v = starts_like_a_number ? std::strtoll(text.c_str(), &end, 10) : 0;
  if (!starts_like_a_number || end == text.c_str() || *end != '\0')
    throw UsageError(str(flag, ": '", text, "' is not an integer"));
  if (errno == ERANGE || v < lo || v > hi)
    throw UsageError(str(flag, ": ", text, " is outside [", lo, ", ", hi, "]"));
  return v;
}

double flag_number(const std::string& flag, const std::string& text, double lo, double hi, bool low_open) {
  const bool starts_like_a_number = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0]));
  char* end = nullptr;
  errno = 0;
  const double v = starts_like_a_number ? std::strtod(text.c_str(), &end) : 0;
  if (!starts_like_a_number || end == text.c_str() || *end != '\0' || !std::isfinite(v) || errno == ERANGE)
    throw UsageError(str(flag, ": '", text, "' is not a finite number"));
  if (v < lo || v > hi || (low_open && v == lo))
    throw UsageError(str(flag, ": ", text, " is outside ", low_open ? "(" : "[", lo, ", ", hi, "]"));
  return v;
}

std::string FlagReader::text() {
  const std::string flag = arg();
  if (i_ + 1 >= argc_) throw UsageError(str(flag, " needs a value (see --help)"));
  return argv_[++i_];
}

std::string FlagReader::choice(std::initializer_list<const char*> allowed) {
  const std::string flag = arg();
  const std::string v = text();
  std::string list;
  size_t k = 0;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += str(k == 0 ? "" : k + 1 == allowed.size() ? " or " : ", ", a);
    k++;
  }
  throw UsageError(str(flag, ": expected ", list, ", got '", v, "'"));
}

void FlagReader::positional_or_unknown(std::vector<std::string>& positional) const {
  const std::string& a = arg();
  if (a.size() > 1 && a[0] == '-') unknown();
  positional.push_back(a);
}

void FlagReader::unknown() const { throw UsageError(str("unknown flag '", arg(), "' (see --help)")); }

std::string precision_help(int indent) {
  const char* lines[] = {"bf16: bf16 products (f32 sums) and bf16 tensors inside the blocks",
                         "(./sample: bf16 weights and K/V caches); bf16-matmul: bf16 products",
                         "only (./sample: the same as bf16); f32: everything in f32",
                         "[bf16 on the GPU, f32 on the CPU]"};
  std::string out;
  for (const char* line : lines) out += (out.empty() ? "" : "\n" + std::string(indent, ' ')) + line;
  return out;
}

std::string precision_flag(FlagReader& f) { return f.choice({"bf16", "bf16-matmul", "f32"}); }

DType precision_matmul(const std::string& precision, Device device) {
  if (precision.empty()) return device == Device::CUDA ? DType::BF16 : DType::F32;
  return precision == "f32" ? DType::F32 : DType::BF16;
}

int run_program(const char* program, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", program, e.what());
    return 1;
  }
}

}  // namespace iflame
