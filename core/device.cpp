// device.cpp: GPU discovery, the stream and the cuBLAS handle.
#include "core/device.h"

#include <mutex>

#include "core/error.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#endif

namespace iflame {

namespace {
struct Probe {
  bool ok = false;
  std::string reason;
};
const Probe& probe() {
  static Probe p = [] {
    Probe r;
#ifdef IFLAME_CUDA
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      // The runtime says "CUDA driver version is insufficient" both when there is
      // no driver at all (the usual machine without a GPU) and when it is too old.
      int driver = 0, runtime = 0;
      cudaDriverGetVersion(&driver);
      cudaRuntimeGetVersion(&runtime);
      auto version = [](int v) { return str(v / 1000, ".", (v % 1000) / 10); };
      if (err == cudaErrorInsufficientDriver && driver == 0)
        r.reason = "no usable NVIDIA GPU: driver not found";
      else if (err == cudaErrorInsufficientDriver)
        r.reason = str("no usable NVIDIA GPU: the driver supports CUDA ", version(driver), ", older than this build's ",
                       version(runtime));
      else if (err == cudaErrorNoDevice)
        r.reason = "no usable NVIDIA GPU: no CUDA device found";
      else
        r.reason = str("no usable NVIDIA GPU: ", cudaGetErrorString(err));
      cudaGetLastError();  // clear the sticky error so later queries are clean
    } else if (n == 0) {
      r.reason = "no usable NVIDIA GPU: no CUDA device found";
    } else {
      r.ok = true;
    }
#else
    r.reason = "no usable NVIDIA GPU: built without CUDA (no nvcc at build time)";
#endif
    return r;
  }();
  return p;
}
}  // namespace

bool cuda_available() { return probe().ok; }
std::string cuda_unavailable_reason() { return probe().ok ? "" : probe().reason; }

#ifdef IFLAME_CUDA
int cuda_device_count() {
  if (!cuda_available()) return 0;
  int n = 0;
  CUDA_CHECK(cudaGetDeviceCount(&n));
  return n;
}

void cuda_set_device(int index) {
  IFLAME_CHECK(cuda_available(), "cannot select GPU ", index, ": ", cuda_unavailable_reason());
  int n = cuda_device_count();
  IFLAME_CHECK(index >= 0 && index < n, "GPU ", index, " does not exist (", n, " visible)");
  CUDA_CHECK(cudaSetDevice(index));
}

cudaStream_t cuda_stream() {
  static cudaStream_t s = [] {
    IFLAME_CHECK(cuda_available(), cuda_unavailable_reason());
    cudaStream_t st;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    return st;
  }();
  return s;
}

cublasHandle_t cublas_handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t hh;
    CUBLAS_CHECK(cublasCreate(&hh));
    CUBLAS_CHECK(cublasSetStream(hh, cuda_stream()));
    // A workspace of our own, allocated once (32 MiB, what cuBLAS asks for on
    // Hopper): cuBLAS then allocates nothing per call, so products captured in
    // a CUDA graph (infer/decode.h) hold no memory nodes and pick the same
    // kernels as outside a capture. Never freed: the handle lives as long.
    constexpr size_t kWorkspace = size_t(32) << 20;
    void* workspace = nullptr;
    CUDA_CHECK(cudaMalloc(&workspace, kWorkspace));
    CUBLAS_CHECK(cublasSetWorkspace(hh, workspace, kWorkspace));
    return hh;
  }();
  return h;
}

void cuda_synchronize() {
  if (cuda_available()) CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
}

std::string cuda_device_description() {
  if (!cuda_available()) return cuda_unavailable_reason();
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  char buf[64];
  snprintf(buf, sizeof buf, "%.1f GiB", prop.totalGlobalMem / double(1ull << 30));
  return str(prop.name, ", ", buf, ", sm_", prop.major, prop.minor);
}
int cuda_multiprocessors() {
  static const int count = [] {
    if (!cuda_available()) return 1;
    int dev = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return sms > 0 ? sms : 1;
  }();
  return count;
}
#else
int cuda_device_count() { return 0; }
int cuda_multiprocessors() { return 1; }
void cuda_set_device(int index) { IFLAME_FAIL("cannot select GPU ", index, ": ", cuda_unavailable_reason()); }
void cuda_synchronize() {}
std::string cuda_device_description() { return cuda_unavailable_reason(); }
#endif

}  // namespace iflame
