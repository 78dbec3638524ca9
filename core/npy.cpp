// npy.cpp: .npy parsing and writing.
#include "core/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/paths.h"

namespace iflame {

namespace {

// Finds `'key':` in the header dict and returns the text of its value.
std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
  size_t k = header.find("'" + key + "'");
  IFLAME_REQUIRE(k != std::string::npos, path, ": .npy header has no '", key, "' entry: ", header);
  size_t colon = header.find(':', k);
  IFLAME_REQUIRE(colon != std::string::npos, path, ": malformed .npy header: ", header);
  size_t start = header.find_first_not_of(' ', colon + 1);
  IFLAME_REQUIRE(start != std::string::npos, path, ": malformed .npy header: ", header);
  size_t end;
  if (header[start] == '(') {
    end = header.find(')', start);
    IFLAME_REQUIRE(end != std::string::npos, path, ": malformed shape in .npy header: ", header);
    return header.substr(start, end - start + 1);
  }
  if (header[start] == '\'') {
    end = header.find('\'', start + 1);
    IFLAME_REQUIRE(end != std::string::npos, path, ": malformed .npy header: ", header);
    return header.substr(start + 1, end - start - 1);
  }
  end = header.find_first_of(",}", start);
  IFLAME_REQUIRE(end != std::string::npos, path, ": malformed .npy header: ", header);
  return header.substr(start, end - start);
}

Shape parse_shape(const std::string& text, const std::string& path) {
  Shape shape;
  std::string inner = text.substr(1, text.size() - 2);
  size_t pos = 0;
  while (pos < inner.size()) {
    size_t comma = inner.find(',', pos);
    std::string item = inner.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t a = item.find_first_not_of(' '), b = item.find_last_not_of(' ');
    if (a != std::string::npos) {
      item = item.substr(a, b - a + 1);
      char* endp = nullptr;
      long long v = std::strtoll(item.c_str(), &endp, 10);
      IFLAME_REQUIRE(endp && *endp == 0 && v >= 0, path, ": bad dimension '", item, "' in .npy shape ", text);
      shape.push_back(v);
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return shape;
}

}  // namespace

NpyHeader read_npy_header(const std::string& path) {
  require_readable_file(path);
  std::ifstream f(path, std::ios::binary);
  IFLAME_REQUIRE(f.good(), path, ": cannot open file");
  char magic[8];
  f.read(magic, 8);
  IFLAME_REQUIRE(f.gcount() == 8 && std::memcmp(magic, "\x93NUMPY", 6) == 0, path,
               ": not a .npy file (bad magic)");
  int major = static_cast<unsigned char>(magic[6]);
  IFLAME_REQUIRE(major >= 1 && major <= 3, path, ": unsupported .npy format version ", major);
  uint32_t header_len = 0;
  size_t prefix;
  if (major == 1) {
    unsigned char b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    IFLAME_REQUIRE(f.gcount() == 2, path, ": truncated .npy header");
    header_len = b[0] | (b[1] << 8);
    prefix = 10;
  } else {
    unsigned char b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    IFLAME_REQUIRE(f.gcount() == 4, path, ": truncated .npy header");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<uint32_t>(b[3]) << 24);
    prefix = 12;
  }
  IFLAME_REQUIRE(header_len < (1u << 20), path, ": implausible .npy header length ", header_len);
  std::string header(header_len, '\0');
  f.read(&header[0], header_len);
  IFLAME_REQUIRE(f.gcount() == static_cast<std::streamsize>(header_len), path, ": truncated .npy header");

  NpyHeader h;
  h.descr = header_value(header, "descr", path);
  std::string fortran = header_value(header, "fortran_order", path);
  IFLAME_REQUIRE(fortran.find("False") != std::string::npos, path,
               ": Fortran-ordered .npy arrays are not supported");
  h.shape = parse_shape(header_value(header, "shape", path), path);
  h.data_offset = prefix + header_len;
  if (h.descr == "<f4" || h.descr == "<i4") h.item_size = 4;
  else if (h.descr == "<i8") h.item_size = 8;
  else if (h.descr == "<u2") h.item_size = 2;  // the indexed dataset layout (data/dataset.h); not read_npy's
  else IFLAME_REJECT(path, ": unsupported .npy dtype '", h.descr, "' (expected <f4, <i4, <i8 or <u2)");

  f.seekg(0, std::ios::end);
  size_t file_size = static_cast<size_t>(f.tellg());
  size_t need = h.data_offset + static_cast<size_t>(shape_numel(h.shape)) * h.item_size;
  IFLAME_REQUIRE(file_size >= need, path, ": truncated .npy file: ", file_size, " bytes, the header ",
               "promises ", need, " (", h.descr, " ", shape_str(h.shape), ")");
  return h;
}

Tensor read_npy(const std::string& path) {
  NpyHeader h = read_npy_header(path);
  IFLAME_CHECK(h.descr != "<u2", path, ": uint16 arrays (an indexed mesh dataset?) cannot be read as a tensor");
  std::ifstream f(path, std::ios::binary);
  IFLAME_REQUIRE(f.good(), path, ": cannot open file");
  f.seekg(static_cast<std::streamoff>(h.data_offset));
  int64_t n = shape_numel(h.shape);
  if (h.descr == "<i8") {
    std::vector<int64_t> wide(static_cast<size_t>(n));
    f.read(reinterpret_cast<char*>(wide.data()), n * 8);
    IFLAME_REQUIRE(f.gcount() == n * 8, path, ": truncated .npy data");
    Tensor t = Tensor::empty(h.shape, DType::I32);
    for (int64_t i = 0; i < n; i++) {
      IFLAME_REQUIRE(wide[i] >= std::numeric_limits<int32_t>::min() &&
                       wide[i] <= std::numeric_limits<int32_t>::max(),
                   path, ": int64 value ", wide[i], " at element ", i, " does not fit in int32");
      t.data<int32_t>()[i] = static_cast<int32_t>(wide[i]);
    }
    return t;
  }
  Tensor t = Tensor::empty(h.shape, h.descr == "<f4" ? DType::F32 : DType::I32);
  f.read(static_cast<char*>(t.raw_data()), n * 4);
  IFLAME_REQUIRE(f.gcount() == n * 4, path, ": truncated .npy data");
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  Tensor h = t.to(Device::CPU);
  if (h.dtype() == DType::BF16) h = h.to(DType::F32);
  h = h.contiguous();
  std::string shape = "(";
  for (size_t i = 0; i < h.shape().size(); i++) shape += std::to_string(h.shape()[i]) + ", ";
  if (h.shape().size() > 1) shape.resize(shape.size() - 2);  // "(3,)" keeps its comma
  if (h.shape().size() == 1) shape.resize(shape.size() - 1);
  shape += ")";
  std::string header = str("{'descr': '", h.dtype() == DType::F32 ? "<f4" : "<i4",
                           "', 'fortran_order': False, 'shape': ", shape, ", }");
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    IFLAME_REQUIRE(f.good(), tmp, ": cannot open for writing");
    f.write("\x93NUMPY\x01\x00", 8);
    unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                            static_cast<unsigned char>(header.size() >> 8)};
    f.write(reinterpret_cast<char*>(len), 2);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    f.write(static_cast<const char*>(h.raw_data()), static_cast<std::streamsize>(h.nbytes()));
    f.flush();
    IFLAME_REQUIRE(f.good(), tmp, ": write failed (disk full?)");
  }
  IFLAME_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path);
}

}  // namespace iflame
