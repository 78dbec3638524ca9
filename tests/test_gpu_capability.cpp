// test_gpu_capability.cpp: the GPU capability query (core/gpu_capability.h):
// the messages for GPUs this build cannot run on, and, on a GPU, that the
// Hopper-only paths are chosen exactly when the GPU and the code allow them.
#include "core/device.h"
#include "core/gpu_capability.h"
#include "ops/small_product.h"
#include "tests/test_util.h"

using namespace iflame;
using namespace iflame::test;

TEST_CASE("gpu capability: a GPU older than sm_80 is named, with what is needed and --device cpu") {
  const std::string m = gpu_support_message(1, "Tesla V100-SXM2-16GB", 7, 0, GpuCode::Runs);
  CHECK(m.find("GPU 1 (Tesla V100-SXM2-16GB, sm_70)") != std::string::npos);
  CHECK(m.find("8.0 or newer") != std::string::npos);
  CHECK(m.find("--device cpu") != std::string::npos);
  // Older than sm_80 wins over whatever loading the code gave.
  CHECK(gpu_support_message(0, "Tesla T4", 7, 5, GpuCode::None).find("8.0 or newer") != std::string::npos);
}

TEST_CASE("gpu capability: a GPU the binary has no code for, or whose driver cannot compile its PTX") {
  CHECK(gpu_support_message(0, "NVIDIA H100 80GB HBM3", 9, 0, GpuCode::Runs).empty());
  const std::string none = gpu_support_message(0, "NVIDIA GeForce RTX 5090", 12, 0, GpuCode::None);
  CHECK(none.find("no code for GPU 0 (NVIDIA GeForce RTX 5090, sm_120)") != std::string::npos);
  CHECK(none.find(gpu_code_built()) != std::string::npos);
  CHECK(none.find("make CUDA_ARCH=sm_120") != std::string::npos);
  CHECK(none.find("--device cpu") != std::string::npos);
  const std::string ptx =
      gpu_support_message(2, "NVIDIA A100-SXM4-80GB", 8, 0, GpuCode::PtxTooNew, "the provided PTX was compiled with an unsupported toolchain.");
  CHECK(ptx.find("GPU 2 (NVIDIA A100-SXM4-80GB, sm_80)") != std::string::npos);
  CHECK(ptx.find("unsupported toolchain") != std::string::npos);
  CHECK(ptx.find("driver is older") != std::string::npos);
  const std::string other = gpu_support_message(0, "NVIDIA L4", 8, 9, GpuCode::Other, "out of memory");
  CHECK(other.find("out of memory") != std::string::npos);
  CHECK(other.find("sm_89") != std::string::npos);
}

TEST_CASE("gpu capability: the programs' default device") {
  // A usable GPU or none: no error, and the default follows the probe (a GPU
  // this build cannot run on would throw instead; no test machine has one).
  CHECK(cuda_default_device() == cuda_available());
}

TEST_CASE("gpu capability: the current GPU's limits and the paths chosen from them" * needs_gpu()) {
  SKIP_WITHOUT_GPU();
  const GpuCapability& c = gpu_capability();
  MESSAGE(c.name << ", sm_" << c.arch() << ": " << gpu_paths_description());
  CHECK(gpu_support_problem(c.device).empty());
  CHECK(c.arch() >= 80);
  CHECK(c.code_arch >= 80);
  CHECK(c.code_arch <= c.arch());  // code for a newer GPU never runs on an older one
  CHECK(c.multiprocessors == cuda_multiprocessors());
  CHECK(c.shared_per_block >= 99 * 1024);  // the least of sm_80 .. sm_120 (sm_86, sm_89, sm_120)
  CHECK(c.shared_per_multiprocessor >= c.shared_per_block);
  const bool hopper = c.major >= 9 && c.code_arch >= 90;
  CHECK(c.clusters == hopper);
  CHECK(c.pdl == hopper);
  CHECK(&gpu_capability() == &c);  // cached
  // The cluster kernel of decoding: offered exactly when clusters are there and
  // its shared memory fits a block of this GPU.
#ifdef IFLAME_CUDA
  CHECK((ops::cuda::small_batch_mma_shared(16, 512, false) > 0) == c.clusters);
  // 64 rows of K = 8192 (with the gate): slices of 32 chunks, x_pitch 32 x 33,
  // 64 x 1056 bf16 = 132 KiB: past an RTX 4090's or 5090's 99 KiB, within an
  // A100's 163 and an H100's 227.
  const int64_t need = 64 * 1056 * 2;
  CHECK(ops::cuda::small_batch_mma_shared(64, 8192, true) == (c.clusters && c.shared_per_block >= need ? need : -1));
#endif
}
