// npy.h: NumPy .npy files in and out (format versions 1, 2 and 3).
// Read: little-endian f4 and i4 as they are; i8 (NumPy's default integer) is
// narrowed to i32 when every value fits; C order only. Anything else (other
// dtypes, Fortran order, a truncated file, a malformed header) is an error that
// names the file and what was wrong. Write: f32 and i32 (bf16 is written as f4).
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace iflame {

struct NpyHeader {
  std::string descr;     // "<f4", "<i4", ...
  Shape shape;
  size_t data_offset = 0;  // bytes from the start of the file to the first element
  size_t item_size = 0;
};

// Parses the header only (for memory-mapping large arrays).
NpyHeader read_npy_header(const std::string& path);
// Reads the whole array into a CPU tensor (f32 or i32).
Tensor read_npy(const std::string& path);
// Writes a tensor (any device) as .npy, through a temporary file and a rename.
void write_npy(const std::string& path, const Tensor& t);

}  // namespace iflame
