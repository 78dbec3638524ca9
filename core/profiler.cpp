// profiler.cpp: the op profiler's records, its event pool and its table (see profiler.h).
#include "core/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <tuple>

#include "core/error.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#endif

namespace iflame::profiler {

namespace detail {
bool g_enabled = false;
}  // namespace detail

namespace {

using Clock = std::chrono::steady_clock;

// One open or finished call whose time has not been added to its row yet.
struct Pending {
  int row = 0;
  bool cuda = false;
  bool done = false;  // time added to the row (or given up on)
  Clock::time_point t0;
#ifdef IFLAME_CUDA
  cudaEvent_t start = nullptr, stop = nullptr;
#endif
};

struct State {
  std::mutex mu;
  std::vector<OpStats> rows;
  // Row index by (name pointer, device, math): names are string literals, so
  // the pointer is a cheap key; rows of equal names are merged by collect().
  std::map<std::tuple<const char*, Device, DType>, int> index;
  std::vector<Pending> pending;
  int open_scopes = 0;     // scopes opened and not closed yet (on any thread)
  int64_t opens_since_poll = 0;
#ifdef IFLAME_CUDA
  std::vector<cudaEvent_t> free_events;
#endif
};

// Never destroyed: pooled events must not be destroyed after the CUDA runtime
// has shut down at exit.
State& state() {
  static State* s = new State;
  return *s;
}

// Nesting depth of open scopes on this thread: only the outermost op records.
thread_local int t_depth = 0;

// How many opens between non-blocking sweeps of finished GPU records.
constexpr int64_t kPollEvery = 512;

int row_for(State& s, const char* name, Device device, DType math) {
  auto key = std::make_tuple(name, device, math);
  auto it = s.index.find(key);
  if (it != s.index.end()) return it->second;
  OpStats row;
  row.name = name;
  row.device = device;
  row.math = math;
  s.rows.push_back(row);
  const int i = int(s.rows.size()) - 1;
  s.index.emplace(key, i);
  return i;
}

#ifdef IFLAME_CUDA
cudaEvent_t take_event(State& s) {
  if (!s.free_events.empty()) {
    cudaEvent_t e = s.free_events.back();
    s.free_events.pop_back();
    return e;
  }
  cudaEvent_t e;
  CUDA_CHECK(cudaEventCreate(&e));
  return e;
}

// Adds a finished GPU record's time to its row and pools its events.
void finish_cuda(State& s, Pending& p) {
  float ms = 0;
  if (cudaEventElapsedTime(&ms, p.start, p.stop) == cudaSuccess) s.rows[p.row].ms += ms;
  else cudaGetLastError();  // a record that cannot be timed adds nothing
  s.free_events.push_back(p.start);
  s.free_events.push_back(p.stop);
  p.done = true;
}
#endif

// Resolves finished records; `wait` first waits for the GPU, otherwise only
// records whose stop event has completed are taken (stopping at the first that
// has not). Drops the resolved prefix when no scope is open.
void resolve(State& s, bool wait) {
#ifdef IFLAME_CUDA
  bool any_cuda = false;
  for (const Pending& p : s.pending) any_cuda |= p.cuda && !p.done;
  if (wait && any_cuda) CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
#endif
  size_t resolved = 0;
  for (Pending& p : s.pending) {
#ifdef IFLAME_CUDA
    if (p.cuda && !p.done) {
      if (!wait) {
        const cudaError_t e = cudaEventQuery(p.stop);
        if (e == cudaErrorNotReady) break;
        if (e != cudaSuccess) cudaGetLastError();
      }
      finish_cuda(s, p);
    }
#endif
    if (!p.done) break;
    resolved++;
  }
  if (s.open_scopes == 0) s.pending.erase(s.pending.begin(), s.pending.begin() + resolved);
}

}  // namespace

void set_enabled(bool on) { detail::g_enabled = on; }

namespace detail {

int open(const char* name, double flops, double bytes, Device device, DType math) {
  if (t_depth++ > 0) return kNested;  // an op inside an op: its time is the outer op's
  try {
    const bool cuda = device == Device::CUDA;
#ifdef IFLAME_CUDA
    if (cuda) {
      cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
      CUDA_CHECK(cudaStreamIsCapturing(cuda_stream(), &capture));
      if (capture != cudaStreamCaptureStatusNone) return kNested;
    }
#else
    IFLAME_CHECK(!cuda, "profiler: a CUDA op in a build without CUDA");
#endif
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    if (++s.opens_since_poll >= kPollEvery && s.open_scopes == 0) {
      s.opens_since_poll = 0;
      resolve(s, /*wait=*/false);
    }
    Pending p;
    p.row = row_for(s, name, device, math);
    OpStats& row = s.rows[p.row];
    row.calls++;
    row.flops += flops;
    row.bytes += bytes;
    p.cuda = cuda;
#ifdef IFLAME_CUDA
    if (cuda) {
      p.start = take_event(s);
      p.stop = take_event(s);
      CUDA_CHECK(cudaEventRecord(p.start, cuda_stream()));
    }
#endif
    s.pending.push_back(p);
    s.open_scopes++;
    s.pending.back().t0 = Clock::now();
    return int(s.pending.size()) - 1;
  } catch (...) {
    t_depth--;
    throw;
  }
}

void close(int token) noexcept {
  t_depth--;
  if (token < 0) return;
  const Clock::time_point t1 = Clock::now();
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  Pending& p = s.pending[size_t(token)];
  s.open_scopes--;
  if (!p.cuda) {
    s.rows[p.row].ms += std::chrono::duration<double, std::milli>(t1 - p.t0).count();
    p.done = true;
    return;
  }
#ifdef IFLAME_CUDA
  if (cudaEventRecord(p.stop, cuda_stream()) != cudaSuccess) {
    // Cannot throw from a destructor: the call keeps its count, not its time.
    cudaGetLastError();
    s.free_events.push_back(p.start);
    s.free_events.push_back(p.stop);
    p.done = true;
  }
#endif
}

}  // namespace detail

std::vector<OpStats> collect() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  IFLAME_CHECK(s.open_scopes == 0, "profiler::collect() called inside an op");
  resolve(s, /*wait=*/true);
  // Merge rows whose names are equal strings at different addresses.
  std::map<std::tuple<std::string, Device, DType>, OpStats> merged;
  for (const OpStats& r : s.rows) {
    OpStats& m = merged[std::make_tuple(r.name, r.device, r.math)];
    if (m.calls == 0) m = r;
    else {
      m.calls += r.calls;
      m.ms += r.ms;
      m.flops += r.flops;
      m.bytes += r.bytes;
    }
  }
  std::vector<OpStats> out;
  for (auto& kv : merged) out.push_back(kv.second);
  std::stable_sort(out.begin(), out.end(), [](const OpStats& a, const OpStats& b) { return a.ms > b.ms; });
  return out;
}

void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  IFLAME_CHECK(s.open_scopes == 0, "profiler::reset() called inside an op");
  resolve(s, /*wait=*/true);  // returns the events to the pool
  s.pending.clear();
  s.rows.clear();
  s.index.clear();
  s.opens_since_poll = 0;
}

double floor_ms(const OpStats& row, const Peaks& peaks) {
  const double peak_flops = (row.math == DType::BF16 ? peaks.bf16_tflops : peaks.f32_tflops) * 1e12;
  return 1e3 * std::max(row.flops / peak_flops, row.bytes / (peaks.hbm_gbs * 1e9));
}

namespace {
// A rate with about three significant digits and no exponent where avoidable:
// "1234", "56.7", "8.91", "0.0123".
std::string rate(double v) {
  char b[32];
  if (v >= 100) std::snprintf(b, sizeof b, "%.0f", v);
  else if (v >= 10) std::snprintf(b, sizeof b, "%.1f", v);
  else if (v >= 1) std::snprintf(b, sizeof b, "%.2f", v);
  else if (v > 0) std::snprintf(b, sizeof b, "%.3g", v);
  else std::snprintf(b, sizeof b, "0");
  return b;
}
}  // namespace

std::string format_table(const std::vector<OpStats>& rows, const Peaks& peaks) {
  size_t width = 5;
  double total_ms = 0, total_floor = 0, total_flops = 0, total_bytes = 0;
  int64_t total_calls = 0;
  for (const OpStats& r : rows) {
    width = std::max(width, r.name.size());
    total_ms += r.ms;
    total_floor += floor_ms(r, peaks);
    total_flops += r.flops;
    total_bytes += r.bytes;
    total_calls += r.calls;
  }
  const int w = int(width);
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-*s %-4s %-4s %8s %11s %11s %6s %8s %8s %10s %8s\n", w, "op", "dev", "math",
                "calls", "total ms", "ms/call", "share", "TFLOP/s", "GB/s", "floor ms", "x floor");
  out += line;
  auto row_line = [&](const std::string& name, const char* dev, const char* math, int64_t calls, double ms,
                      double flops, double bytes, double floor, bool per_call) {
    const double s = ms / 1e3;
    char ratio[32] = "-", each[32] = "";
    if (floor > 0) std::snprintf(ratio, sizeof ratio, "%.1f", ms / floor);
    if (per_call && calls > 0) std::snprintf(each, sizeof each, "%.4f", ms / calls);
    std::snprintf(line, sizeof line, "%-*s %-4s %-4s %8lld %11.3f %11s %5.1f%% %8s %8s %10.4f %8s\n", w,
                  name.c_str(), dev, math, static_cast<long long>(calls), ms, each,
                  total_ms > 0 ? 100 * ms / total_ms : 0.0, flops > 0 ? rate(s > 0 ? flops / s / 1e12 : 0.0).c_str() : "-",
                  rate(s > 0 ? bytes / s / 1e9 : 0.0).c_str(), floor, ratio);
    out += line;
  };
  for (const OpStats& r : rows)
    row_line(r.name, device_name(r.device), r.flops > 0 ? dtype_name(r.math) : "-", r.calls, r.ms, r.flops, r.bytes,
             floor_ms(r, peaks), true);
  row_line("total", "", "", total_calls, total_ms, total_flops, total_bytes, total_floor, false);
  std::snprintf(line, sizeof line,
                "floor = max(FLOPs / peak, bytes / bandwidth) at %g TFLOP/s bf16 tensor core, %g TFLOP/s f32, "
                "%g GB/s (%s)\n",
                peaks.bf16_tflops, peaks.f32_tflops, peaks.hbm_gbs, peaks.source.c_str());
  out += line;
  return out;
}

}  // namespace iflame::profiler
