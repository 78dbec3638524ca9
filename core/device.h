// device.h: is there a usable GPU, and the one CUDA stream all our work runs on.
// A CPU-only build (no nvcc) or a machine whose driver refuses us both answer
// "no GPU"; callers then take the CPU path. Nothing here needs CUDA headers.
#pragma once
#include <string>

namespace iflame {

// True when the build has CUDA and cudaGetDeviceCount succeeds with at least one device.
bool cuda_available();
// Why cuda_available() is false, as "no usable NVIDIA GPU: <cause>" (driver not
// found, driver too old, no device, built without CUDA, the runtime's error).
std::string cuda_unavailable_reason();
// How many GPUs this process sees (0 without CUDA or a usable driver).
int cuda_device_count();
// Makes GPU `index` the current one. Call before any other GPU work (the stream
// and cuBLAS handle are made on the device current at their first use); data
// parallel runs pick their GPU with it. Throws without CUDA.
void cuda_set_device(int index);
// Waits for all queued GPU work (no-op without CUDA).
void cuda_synchronize();
// Name and memory of the current GPU, for logs ("NVIDIA H100 80GB HBM3, 79.1 GiB").
std::string cuda_device_description();
// The current GPU's multiprocessor count (read once; 1 without a GPU): for sizing grids.
int cuda_multiprocessors();

}  // namespace iflame
