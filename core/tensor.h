// tensor.h: the n-dimensional array everything else is written in terms of.
//
// A Tensor is a view (shape, strides in elements, offset) on a reference-counted
// Storage that lives on the host or on the GPU. Element types: f32, bf16, i32.
// Views (view, slice, select, transpose) share storage; contiguous(), clone(),
// to(device) and to(dtype) copy. Most ops want contiguous inputs and say so.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/dtype.h"

namespace iflame {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 360, 132]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

struct Storage {
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device = Device::CPU;
};

class Tensor {
 public:
  Tensor() = default;

  // Creation. Values of empty() are uninitialised.
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, float value, DType dtype = DType::F32,
                     Device device = Device::CPU);
  static Tensor from_floats(const std::vector<float>& values, const Shape& shape,
                            Device device = Device::CPU);
  static Tensor from_ints(const std::vector<int32_t>& values, const Shape& shape,
                          Device device = Device::CPU);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t offset() const { return offset_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int dim) const;  // negative dims count from the end
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }
  bool is_cuda() const { return device() == Device::CUDA; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  // Pointer to the first element of this view.
  void* raw_data() const;
  // Typed pointer; T must match the dtype (float, bf16, int32_t).
  template <typename T>
  T* data() const;

  // Views (no copy).
  Tensor view(const Shape& shape) const;  // needs contiguous; one dim may be -1
  Tensor slice(int dim, int64_t start, int64_t end) const;
  Tensor select(int dim, int64_t index) const;  // removes dim
  Tensor transpose(int d0, int d1) const;

  // Copies.
  Tensor reshape(const Shape& shape) const;  // view if contiguous, else copy
  Tensor contiguous() const;                 // self if already contiguous
  Tensor clone() const;
  Tensor to(Device device) const;  // self if already there
  Tensor to(DType dtype) const;    // self if already that type
  // Copies src into this tensor (same shape), converting dtype and device as needed.
  void copy_from(const Tensor& src);

  void fill_(float value);  // needs contiguous
  void zero_() { fill_(0.0f); }

  // Host copies, converted; for tests, logs and file writing.
  std::vector<float> to_floats() const;
  std::vector<int32_t> to_ints() const;
  float item() const;  // a one-element tensor's value

  std::string describe() const;  // "f32[2, 360, 132] cuda"

  // True when no other Tensor (view or copy of the handle) shares this one's
  // storage: writing into it in place can then be seen through this handle only.
  bool sole_owner() const { return storage_ != nullptr && storage_.use_count() == 1; }

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_, strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::F32;
};

// Throws unless t is defined, on `device`, of `dtype` and contiguous; `what` names it.
void check_tensor(const Tensor& t, const char* what, DType dtype, Device device);
// Throws unless two tensors have the same shape.
void check_same_shape(const Tensor& a, const Tensor& b, const char* what);

}  // namespace iflame
