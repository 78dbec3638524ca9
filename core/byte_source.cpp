// byte_source.cpp: bounds-checked reads from files and memory.
#include "core/byte_source.h"

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/paths.h"

namespace iflame {

void ByteSource::read(uint64_t offset, uint64_t n, void* dst, const char* what) const {
  uint64_t total = size();
  IFLAME_REQUIRE(offset <= total && n <= total - offset, name_, ": truncated or corrupt: ", what, " needs bytes [",
               offset, ", ", offset + n, ") but the file has ", total, " bytes");
  if (n > 0) read_unchecked(offset, n, dst);
}

FileSource::FileSource(const std::string& path) : ByteSource(path) {
  require_readable_file(path);
  f_ = std::fopen(path.c_str(), "rb");
  IFLAME_REQUIRE(f_ != nullptr, path, ": cannot open file: ", std::strerror(errno));
  if (std::fseek(f_, 0, SEEK_END) != 0) {
    std::fclose(f_);
    IFLAME_REJECT(path, ": cannot seek: ", std::strerror(errno));
  }
  long long end = ftello(f_);
  if (end < 0) {
    std::fclose(f_);
    IFLAME_REJECT(path, ": cannot tell the file size: ", std::strerror(errno));
  }
  size_ = static_cast<uint64_t>(end);
}

FileSource::~FileSource() {
  if (f_) std::fclose(f_);
}

void FileSource::read_unchecked(uint64_t offset, uint64_t n, void* dst) const {
  IFLAME_REQUIRE(fseeko(f_, static_cast<off_t>(offset), SEEK_SET) == 0, name(), ": cannot seek to ", offset, ": ",
               std::strerror(errno));
  size_t got = std::fread(dst, 1, n, f_);
  IFLAME_REQUIRE(got == n, name(), ": short read at offset ", offset, ": wanted ", n, " bytes, got ", got,
               " (file changed while reading?)");
}

void MemorySource::read_unchecked(uint64_t offset, uint64_t n, void* dst) const {
  std::memcpy(dst, bytes_.data() + offset, n);
}

}  // namespace iflame
