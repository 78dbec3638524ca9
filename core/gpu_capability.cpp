// gpu_capability.cpp: the GPU's compute capability and limits, and which of
// this build's code runs on it (core/gpu_capability.h).
#include "core/gpu_capability.h"

#include <map>
#include <mutex>

#include "core/error.h"
#ifdef IFLAME_CUDA
#include "core/cuda_check.h"
#include "core/gpu_probe.h"
#endif

// The build's architecture list (the Makefile and CMakeLists.txt pass it).
#ifndef IFLAME_CUDA_ARCHS
#define IFLAME_CUDA_ARCHS "unknown"
#endif

namespace iflame {

std::string gpu_support_message(int device, const std::string& name, int major, int minor, GpuCode code,
                                const std::string& error) {
  const std::string gpu = str("GPU ", device, " (", name, ", sm_", major, minor, ")");
  if (major < 8)
    return str(gpu, " is older than this program supports: its kernels need compute capability 8.0 or newer ",
               "(A100, A10, A40, L4, L40S, RTX 30/40/50 series, H100, H200, B200); run with --device cpu");
  const std::string rebuild = str("rebuild with `make CUDA_ARCH=sm_", major, minor, "` (CMake: -DIFLAME_CUDA_ARCH=sm_",
                                  major, minor, "), or run with --device cpu");
  switch (code) {
    case GpuCode::Runs: return "";
    case GpuCode::None: return str("this build has no code for ", gpu, ": it carries ", gpu_code_built(), "; ", rebuild);
    case GpuCode::PtxTooNew:
      return str("the NVIDIA driver cannot compile this build's PTX (", gpu_code_built(), ") for ", gpu, ": ", error,
                 "; the driver is older than the CUDA this program was built with: update it, or ", rebuild);
    case GpuCode::Other: break;
  }
  return str("cannot run this build's kernels on ", gpu, ": ", error, "; ", rebuild);
}

#ifdef IFLAME_CUDA
const char* gpu_code_built() { return IFLAME_CUDA_ARCHS; }

namespace {
// Sets GPU `device` current for the scope, then restores the previous one.
struct DeviceScope {
  int previous = 0;
  explicit DeviceScope(int device) {
    CUDA_CHECK(cudaGetDevice(&previous));
    CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceScope() { cudaSetDevice(previous); }
};

}  // namespace

std::string gpu_support_problem(int device, bool load_code) {
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  GpuCode code = GpuCode::Runs;
  cudaError_t err = cudaSuccess;
  if (prop.major >= 8 && load_code) {
    DeviceScope scope(device);
    cudaFuncAttributes attributes;
    err = gpu_probe_attributes(&attributes);
    cudaGetLastError();  // not sticky: clear it so later calls are clean
    code = err == cudaSuccess                                                                     ? GpuCode::Runs
           : err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction      ? GpuCode::None
           : err == cudaErrorUnsupportedPtxVersion || err == cudaErrorInvalidPtx ||
                   err == cudaErrorJitCompilerNotFound                                            ? GpuCode::PtxTooNew
                                                                                                  : GpuCode::Other;
  }
  return gpu_support_message(device, prop.name, prop.major, prop.minor, code,
                             err == cudaSuccess ? "" : cudaGetErrorString(err));
}

const GpuCapability& gpu_capability() {
  static std::mutex mutex;
  static std::map<int, GpuCapability> known;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  auto it = known.find(device);
  if (it != known.end()) return it->second;
  GpuCapability c;
  c.device = device;
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  c.name = prop.name;
  c.major = prop.major;
  c.minor = prop.minor;
  c.multiprocessors = prop.multiProcessorCount;
  c.shared_per_block = int64_t(prop.sharedMemPerBlockOptin);
  c.shared_per_multiprocessor = int64_t(prop.sharedMemPerMultiprocessor);
  cudaFuncAttributes attributes;
  CUDA_CHECK(gpu_probe_attributes(&attributes));
  c.code_arch = attributes.ptxVersion;
  c.binary_arch = attributes.binaryVersion;
  const bool hopper_code = c.major >= 9 && c.code_arch >= 90;
  c.clusters = hopper_code;
  c.pdl = hopper_code;
  return known.emplace(device, c).first->second;
}

std::string gpu_paths_description() {
  const GpuCapability& c = gpu_capability();
  const std::string code =
      c.code_arch == c.binary_arch
          ? str("sm_", c.code_arch, " code")
          : str("compute_", c.code_arch, " code run as sm_", c.binary_arch, c.binary_arch == c.arch() ? " (PTX through the driver's JIT)" : "");
  return str(code, " (built: ", gpu_code_built(), "); ",
             c.clusters ? "thread-block clusters and programmatic dependent launch on"
                        : str("no thread-block clusters or programmatic dependent launch (",
                              c.major < 9 ? "the GPU is older than sm_90" : "the code is older than sm_90",
                              "): portable paths"),
             "; ", c.shared_per_block / 1024, " KiB shared memory per block, ", c.multiprocessors, " multiprocessors");
}
#else
const char* gpu_code_built() { return "none (CPU-only build)"; }
std::string gpu_support_problem(int, bool) { return ""; }
const GpuCapability& gpu_capability() { IFLAME_FAIL("gpu_capability: built without CUDA"); }
std::string gpu_paths_description() { return "no GPU code (CPU-only build)"; }
#endif

}  // namespace iflame
