// profiler.h: an op-level profiler: where the time of a training or decoding
// step goes, op by op, against each op's FLOP and byte floor.
//
// Off by default. When on, every op entry point (ops/*.cpp, infer/, and
// Tensor's copies and fills: rows "copy", "copy_to_device", "copy_to_host",
// "fill") opens a scope with one line,
//
//   PROFILE_OP("linear_forward", 2.0 * rows * in * out, bytes, x.device(), compute);
//
// naming the op, its FLOPs (2 per multiply-add of its matrix products and
// attention; element-wise work counts 0: its floor is its bytes), the bytes it
// must move (reads + writes of its inputs and outputs at their dtypes; scratch
// not counted), the device, and the dtype its products run in (which peak
// applies). When off, a scope costs one branch: the FLOP and byte expressions
// are not even evaluated.
//
// Timing. An op on CUDA tensors records a CUDA event before and after it on
// cuda_stream() (events come from a pool; none is created per call once the
// pool has grown to what is in flight); its time is the time between the two
// events: its kernels, plus any gap in which the GPU waited for the host to
// queue them (so a launch-bound op shows its launch cost). An op on the CPU is
// timed by the wall clock. Nested ops (an op whose implementation calls
// another entry point, a copy inside an op) count in the outermost op only,
// so the rows add up to the profiled work without double counting.
// While cuda_stream() is being captured into a CUDA graph nothing is recorded
// (an event in a capture cannot be timed). Host-device transfers are floored
// against device memory bandwidth like everything else, which overstates their
// time / floor (the bus is much slower than HBM).
//
// Ops are assumed to be called from one thread at a time (training and
// sampling do); collect() and reset() are called between ops, not inside one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace iflame::profiler {

namespace detail {
extern bool g_enabled;
// open() returns a token for close(); kNested when the scope records nothing
// (an inner op, or a graph capture in progress).
constexpr int kOff = -1, kNested = -2;
int open(const char* name, double flops, double bytes, Device device, DType math);
void close(int token) noexcept;
}  // namespace detail

inline bool enabled() { return detail::g_enabled; }
void set_enabled(bool on);

// One row of the profile: every call of one op name on one device with one
// product dtype (math: BF16 -> tensor-core peak, otherwise the f32 peak).
struct OpStats {
  std::string name;
  Device device = Device::CPU;
  DType math = DType::F32;
  int64_t calls = 0;
  double ms = 0;     // total time: CUDA events on the GPU, wall clock on the CPU
  double flops = 0;  // total FLOPs of all calls
  double bytes = 0;  // total bytes moved by all calls
};

// Waits for the GPU (when anything was recorded there), resolves the events,
// and returns the totals since the last reset(), slowest op first.
std::vector<OpStats> collect();
// Forgets everything recorded so far (events go back to the pool).
void reset();

// Peak rates the floors are computed against. Defaults: one NVIDIA H100 SXM5
// (80 GB HBM3), from NVIDIA's H100 Tensor Core GPU datasheet: BF16 tensor core
// 1,979 TFLOP/s with 2:4 sparsity, so 989 TFLOP/s dense; FP32 (CUDA cores, no
// tensor cores) 67 TFLOP/s; HBM3 bandwidth 3.35 TB/s.
struct Peaks {
  double bf16_tflops = 989;  // dense bf16 tensor-core products (f32 accumulation)
  double f32_tflops = 67;    // f32 FMA on the CUDA cores (what f32 products without TF32 use)
  double hbm_gbs = 3350;     // device memory bandwidth, GB/s
  std::string source = "H100 SXM5, NVIDIA datasheet";
};

// An op's floor in ms: max(flops / peak_flops(math), bytes / bandwidth), from
// the row's totals (a lower bound of the sum of its calls' own floors).
double floor_ms(const OpStats& row, const Peaks& peaks = Peaks());

// The table: op, device, product dtype, calls, total ms, ms per call, share of
// the total time, achieved TFLOP/s and GB/s, floor ms, and time / floor; a
// total line and the peaks used.
std::string format_table(const std::vector<OpStats>& rows, const Peaks& peaks = Peaks());

// RAII scope behind PROFILE_OP.
class Scope {
 public:
  explicit Scope(int token) : token_(token) {}
  ~Scope() {
    if (token_ != detail::kOff) detail::close(token_);
  }
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  int token_;
};

}  // namespace iflame::profiler

#define IFLAME_PROFILE_CAT2(a, b) a##b
#define IFLAME_PROFILE_CAT(a, b) IFLAME_PROFILE_CAT2(a, b)
// Profiles the rest of the enclosing block as one call of op `name` (a string
// literal). The other arguments are evaluated only when profiling is on.
#define PROFILE_OP(name, flops, bytes, device, math)                                               \
  ::iflame::profiler::Scope IFLAME_PROFILE_CAT(profile_scope_, __LINE__)(                          \
      ::iflame::profiler::enabled()                                                                \
          ? ::iflame::profiler::detail::open((name), double(flops), double(bytes), (device), (math)) \
          : ::iflame::profiler::detail::kOff)
