// dtype.h: element types and devices a Tensor can have.
#pragma once
#include <cstddef>
#include <cstdint>

namespace iflame {

enum class DType { F32, BF16, I32 };
enum class Device { CPU, CUDA };

inline size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : 4; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::I32: return "i32";
  }
  return "?";
}
inline const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

}  // namespace iflame
