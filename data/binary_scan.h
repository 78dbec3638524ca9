// binary_scan.h: bounds-checked little-endian reading over a byte buffer, for
// the binary mesh parsers (PMD, SPM, MD2). Every read past the end is an
// iflame::Error naming the file, the byte offset and what was being read; the
// parsers are fuzzed.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/error.h"

namespace iflame::scan {

struct ByteReader {
  std::string_view data;
  const std::string& name;
  size_t pos = 0;

  size_t left() const { return data.size() - pos; }
  void need(uint64_t n, const char* what) const {
    IFLAME_REQUIRE(n <= left(), name, ": file ends at byte ", data.size(), " inside ", what, " (at byte ", pos, ")");
  }
  void skip(uint64_t n, const char* what) {
    need(n, what);
    pos += static_cast<size_t>(n);
  }
  // The file starts with `magic`, or it is not `what` ("an MD2 file"); reads past it.
  void expect_magic(std::string_view magic, const char* what) {
    IFLAME_REQUIRE(data.substr(0, magic.size()) == magic, name, ": not ", what, " (no ", magic, " magic)");
    pos = magic.size();
  }
  template <typename T>
  T get(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data.data() + pos, sizeof(T));  // little-endian hosts only (x86, arm)
    pos += sizeof(T);
    return v;
  }
  uint8_t u8(const char* what) { return get<uint8_t>(what); }
  uint16_t u16(const char* what) { return get<uint16_t>(what); }
  uint32_t u32(const char* what) { return get<uint32_t>(what); }
  int32_t i32(const char* what) { return get<int32_t>(what); }
  float f32(const char* what) { return get<float>(what); }
  // n items of `item_bytes` each must still fit in the file (guards huge counts).
  void need_items(uint64_t n, uint64_t item_bytes, const char* what) const {
    IFLAME_REQUIRE(item_bytes == 0 || n <= left() / item_bytes, name, ": ", n, " ", what, " (", item_bytes,
                 " bytes each) at byte ", pos, " do not fit in the ", data.size(), "-byte file");
  }
};

}  // namespace iflame::scan
