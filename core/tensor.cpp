// tensor.cpp: Tensor views, host copies and conversions; GPU work is in tensor_copy.cu.
#include "core/tensor.h"

#include <cstring>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "core/profiler.h"
#include "core/tensor_copy.h"

namespace iflame {

std::string shape_str(const Shape& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int i = static_cast<int>(s.size()) - 1; i >= 0; i--) {
    st[i] = acc;
    acc *= s[i];
  }
  return st;
}

Storage::Storage(size_t b, Device d) : bytes(b), device(d) { ptr = alloc_bytes(b, d); }
Storage::~Storage() { free_bytes(ptr, bytes, device); }

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) IFLAME_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  if (device == Device::CUDA)
    IFLAME_CHECK(cuda_available(), "cannot create a GPU tensor: ", cuda_unavailable_reason());
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
                                         device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.zero_();
  return t;
}

Tensor Tensor::full(const Shape& shape, float value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  t.fill_(value);
  return t;
}

Tensor Tensor::from_floats(const std::vector<float>& values, const Shape& shape, Device device) {
  IFLAME_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_floats: ",
               values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::F32, Device::CPU);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  return t.to(device);
}

Tensor Tensor::from_ints(const std::vector<int32_t>& values, const Shape& shape, Device device) {
  IFLAME_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_ints: ",
               values.size(), " values for shape ", shape_str(shape));
  Tensor t = empty(shape, DType::I32, Device::CPU);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * 4);
  return t.to(device);
}

int64_t Tensor::size(int dim) const {
  if (dim < 0) dim += ndim();
  IFLAME_CHECK(dim >= 0 && dim < ndim(), "dimension ", dim, " out of range for ", describe());
  return shape_[dim];
}

bool Tensor::is_contiguous() const {
  int64_t acc = 1;
  for (int i = ndim() - 1; i >= 0; i--) {
    if (shape_[i] != 1 && strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  IFLAME_CHECK(defined(), "use of an undefined tensor");
  return static_cast<char*>(storage_->ptr) + offset_ * static_cast<int64_t>(dtype_size(dtype_));
}

template <>
float* Tensor::data<float>() const {
  IFLAME_CHECK(dtype_ == DType::F32, "expected an f32 tensor, got ", describe());
  return static_cast<float*>(raw_data());
}
template <>
bf16* Tensor::data<bf16>() const {
  IFLAME_CHECK(dtype_ == DType::BF16, "expected a bf16 tensor, got ", describe());
  return static_cast<bf16*>(raw_data());
}
template <>
int32_t* Tensor::data<int32_t>() const {
  IFLAME_CHECK(dtype_ == DType::I32, "expected an i32 tensor, got ", describe());
  return static_cast<int32_t*>(raw_data());
}

Tensor Tensor::view(const Shape& shape) const {
  IFLAME_CHECK(is_contiguous(), "view of a non-contiguous tensor ", describe());
  Shape s = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < s.size(); i++) {
    if (s[i] == -1) {
      IFLAME_CHECK(infer < 0, "view: more than one -1 in ", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= s[i];
    }
  }
  if (infer >= 0) {
    IFLAME_CHECK(known > 0 && numel() % known == 0, "view: cannot view ", describe(), " as ",
                 shape_str(shape));
    s[infer] = numel() / known;
  }
  IFLAME_CHECK(shape_numel(s) == numel(), "view: cannot view ", describe(), " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = s;
  t.strides_ = contiguous_strides(s);
  return t;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t end) const {
  if (dim < 0) dim += ndim();
  IFLAME_CHECK(dim >= 0 && dim < ndim(), "slice: bad dimension for ", describe());
  IFLAME_CHECK(0 <= start && start <= end && end <= shape_[dim], "slice [", start, ", ", end,
               ") out of range for dimension ", dim, " of ", describe());
  Tensor t = *this;
  t.offset_ += start * strides_[dim];
  t.shape_[dim] = end - start;
  return t;
}

Tensor Tensor::select(int dim, int64_t index) const {
  if (dim < 0) dim += ndim();
  Tensor t = slice(dim, index, index + 1);
  t.shape_.erase(t.shape_.begin() + dim);
  t.strides_.erase(t.strides_.begin() + dim);
  return t;
}

Tensor Tensor::transpose(int d0, int d1) const {
  if (d0 < 0) d0 += ndim();
  if (d1 < 0) d1 += ndim();
  IFLAME_CHECK(d0 >= 0 && d0 < ndim() && d1 >= 0 && d1 < ndim(), "transpose: bad dims for ",
               describe());
  Tensor t = *this;
  std::swap(t.shape_[d0], t.shape_[d1]);
  std::swap(t.strides_[d0], t.strides_[d1]);
  return t;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return is_contiguous() ? view(shape) : contiguous().view(shape);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor t = empty(shape_, dtype_, d);
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype_) return *this;
  Tensor t = empty(shape_, dt, device());
  t.copy_from(*this);
  return t;
}

namespace {
float load_as_float(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::F32: return static_cast<const float*>(base)[i];
    case DType::BF16: return bf16_to_float(static_cast<const bf16*>(base)[i]);
    case DType::I32: return static_cast<float>(static_cast<const int32_t*>(base)[i]);
  }
  return 0;
}

// Host strided copy with conversion; walks the index space with a counter.
void cpu_copy_convert(Tensor& dst, const Tensor& src) {
  const int nd = src.ndim();
  const int64_t n = src.numel();
  std::vector<int64_t> idx(nd, 0);
  const char* sb = static_cast<const char*>(src.raw_data());
  char* db = static_cast<char*>(dst.raw_data());
  for (int64_t lin = 0; lin < n; lin++) {
    int64_t so = 0, dof = 0;
    for (int d = 0; d < nd; d++) {
      so += idx[d] * src.strides()[d];
      dof += idx[d] * dst.strides()[d];
    }
    if (src.dtype() == dst.dtype()) {
      size_t es = dtype_size(src.dtype());
      std::memcpy(db + dof * es, sb + so * es, es);
    } else {
      float v = load_as_float(sb, src.dtype(), so);
      switch (dst.dtype()) {
        case DType::F32: reinterpret_cast<float*>(db)[dof] = v; break;
        case DType::BF16: reinterpret_cast<bf16*>(db)[dof] = float_to_bf16(v); break;
        case DType::I32: reinterpret_cast<int32_t*>(db)[dof] = static_cast<int32_t>(v); break;
      }
    }
    for (int d = nd - 1; d >= 0; d--) {
      if (++idx[d] < src.shape()[d]) break;
      idx[d] = 0;
    }
  }
}

// The profiler's row for a copy into `to` from `from`: on one device, a copy
// that changes the dtype is a "convert" (the f32 <-> bf16 casts around bf16
// work), one that keeps it a "copy" (contiguous(), clone(), strided writes).
const char* copy_op_name(Device to, Device from, bool same_dtype) {
  if (to == from) return same_dtype ? "copy" : "convert";
  return to == Device::CUDA ? "copy_to_device" : "copy_to_host";
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  IFLAME_CHECK(defined() && src.defined(), "copy_from with an undefined tensor");
  IFLAME_CHECK(shape_ == src.shape(), "copy_from: shape ", src.describe(), " into ", describe());
  if (numel() == 0) return;
  // A copy on one device reads src and writes this; a transfer moves src's bytes
  // across the bus (timed on the GPU stream it is queued on).
  const bool across = device() != src.device();
  PROFILE_OP(copy_op_name(device(), src.device(), dtype_ == src.dtype()), 0, across ? src.nbytes() : src.nbytes() + nbytes(),
             across ? Device::CUDA : device(), DType::F32);
  if (device() == src.device()) {
    if (device() == Device::CPU) {
      if (is_contiguous() && src.is_contiguous() && dtype_ == src.dtype())
        std::memcpy(raw_data(), src.raw_data(), nbytes());
      else
        cpu_copy_convert(*this, src);
    } else {
      cuda_copy_convert(*this, src);
    }
    return;
  }
  // Across devices: move a contiguous copy of src in its own dtype, then convert on arrival.
  Tensor s = src.contiguous();
  bool direct = is_contiguous() && dtype_ == s.dtype();
  Tensor staging = direct ? *this : empty(shape_, s.dtype(), device());
  if (device() == Device::CUDA)
    cuda_memcpy_to_device(staging.raw_data(), s.raw_data(), s.nbytes());
  else
    cuda_memcpy_to_host(staging.raw_data(), s.raw_data(), s.nbytes());
  if (!direct) copy_from(staging);
}

void Tensor::fill_(float value) {
  IFLAME_CHECK(is_contiguous(), "fill_ needs a contiguous tensor, got ", describe());
  if (numel() == 0) return;
  PROFILE_OP("fill", 0, nbytes(), device(), DType::F32);  // writes every element once
  if (is_cuda()) {
    cuda_fill(*this, value);
    return;
  }
  int64_t n = numel();
  switch (dtype_) {
    case DType::F32: {
      float* p = data<float>();
      for (int64_t i = 0; i < n; i++) p[i] = value;
      break;
    }
    case DType::BF16: {
      bf16* p = data<bf16>();
      bf16 h = float_to_bf16(value);
      for (int64_t i = 0; i < n; i++) p[i] = h;
      break;
    }
    case DType::I32: {
      int32_t* p = data<int32_t>();
      for (int64_t i = 0; i < n; i++) p[i] = static_cast<int32_t>(value);
      break;
    }
  }
}

std::vector<float> Tensor::to_floats() const {
  Tensor h = to(Device::CPU).to(DType::F32).contiguous();
  std::vector<float> v(static_cast<size_t>(h.numel()));
  if (!v.empty()) std::memcpy(v.data(), h.raw_data(), v.size() * 4);
  return v;
}

std::vector<int32_t> Tensor::to_ints() const {
  IFLAME_CHECK(dtype_ == DType::I32, "to_ints on ", describe());
  Tensor h = to(Device::CPU).contiguous();
  std::vector<int32_t> v(static_cast<size_t>(h.numel()));
  if (!v.empty()) std::memcpy(v.data(), h.raw_data(), v.size() * 4);
  return v;
}

float Tensor::item() const {
  IFLAME_CHECK(numel() == 1, "item() on ", describe());
  return to_floats()[0];
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return str(dtype_name(dtype_), shape_str(shape_), " ", device_name(device()));
}

void check_tensor(const Tensor& t, const char* what, DType dtype, Device device) {
  IFLAME_CHECK(t.defined(), what, ": undefined tensor");
  IFLAME_CHECK(t.dtype() == dtype, what, ": expected ", dtype_name(dtype), ", got ", t.describe());
  IFLAME_CHECK(t.device() == device, what, ": expected a ", device_name(device), " tensor, got ",
               t.describe());
  IFLAME_CHECK(t.is_contiguous(), what, ": expected a contiguous tensor, got ", t.describe());
}

void check_same_shape(const Tensor& a, const Tensor& b, const char* what) {
  IFLAME_CHECK(a.shape() == b.shape(), what, ": shapes differ: ", a.describe(), " vs ", b.describe());
}

#ifndef IFLAME_CUDA
void cuda_copy_convert(Tensor&, const Tensor&) { IFLAME_FAIL("built without CUDA"); }
void cuda_fill(Tensor&, float) { IFLAME_FAIL("built without CUDA"); }
void cuda_memcpy_to_device(void*, const void*, size_t) { IFLAME_FAIL("built without CUDA"); }
void cuda_memcpy_to_host(void*, const void*, size_t) { IFLAME_FAIL("built without CUDA"); }
#endif

}  // namespace iflame
