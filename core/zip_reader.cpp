// zip_reader.cpp: end-of-central-directory search, zip64 records, central
// directory and local headers, each field checked before it is trusted.
#include "core/zip_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/crc32.h"
#include "core/error.h"

namespace iflame {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kEndSize = 22, kZip64EndSize = 56, kZip64LocatorSize = 20;
constexpr uint64_t kCentralSize = 46, kLocalSize = 30;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

ZipReader::ZipReader(const std::string& path) : source_(std::make_unique<FileSource>(path)) { index(); }

ZipReader::ZipReader(std::unique_ptr<ByteSource> source) : source_(std::move(source)) {
  IFLAME_REQUIRE(source_ != nullptr, "ZipReader: null byte source");
  index();
}

void ZipReader::index() {
  const std::string& file = source_->name();
  const uint64_t size = source_->size();
  IFLAME_REQUIRE(size >= kEndSize, file, ": not a zip archive (", size, " bytes, too small)");

  // End of central directory: the last 22-byte record whose comment reaches
  // exactly to the end of the file (the comment is at most 65535 bytes).
  uint64_t tail_len = std::min<uint64_t>(size, kEndSize + 65535);
  std::vector<unsigned char> tail(tail_len);
  source_->read(size - tail_len, tail_len, tail.data(), "the end of the archive");
  int64_t end_at = -1;  // offset in `tail`
  for (int64_t i = int64_t(tail_len - kEndSize); i >= 0; i--) {
    const unsigned char* p = tail.data() + i;
    if (load_u32le(p) == kEndSig && uint64_t(i) + kEndSize + load_u16le(p + 20) == tail_len) {
      end_at = i;
      break;
    }
  }
  IFLAME_REQUIRE(end_at >= 0, file, ": not a zip archive or truncated (no end-of-central-directory record)");
  const unsigned char* end = tail.data() + end_at;
  const uint64_t end_offset = size - tail_len + uint64_t(end_at);
  uint64_t count = load_u16le(end + 10);
  uint64_t cd_size = load_u32le(end + 12);
  uint64_t cd_offset = load_u32le(end + 16);
  uint16_t disk = load_u16le(end + 4), cd_disk = load_u16le(end + 6);

  // zip64: a locator right before the end record points at the zip64 end record.
  if (end_offset >= kZip64LocatorSize) {
    unsigned char loc[kZip64LocatorSize];
    source_->read(end_offset - kZip64LocatorSize, kZip64LocatorSize, loc, "the zip64 locator");
    if (load_u32le(loc) == kZip64LocatorSig) {
      uint64_t rec_offset = load_u64le(loc + 8);
      unsigned char rec[kZip64EndSize];
      source_->read(rec_offset, kZip64EndSize, rec, "the zip64 end-of-central-directory record");
      IFLAME_REQUIRE(load_u32le(rec) == kZip64EndSig, file, ": corrupt zip64 end record at offset ", rec_offset,
                   " (signature ", hex32(load_u32le(rec)), ")");
      disk = static_cast<uint16_t>(load_u32le(rec + 16) != 0);
      cd_disk = static_cast<uint16_t>(load_u32le(rec + 20) != 0);
      count = load_u64le(rec + 32);
      cd_size = load_u64le(rec + 40);
      cd_offset = load_u64le(rec + 48);
    }
  }
  IFLAME_REQUIRE(disk == 0 && cd_disk == 0, file, ": multi-disk zip archives are not supported");
  IFLAME_REQUIRE(cd_offset <= end_offset && cd_size <= end_offset - cd_offset, file,
               ": corrupt zip: central directory [", cd_offset, ", +", cd_size, ") does not end before ",
               "the end record at ", end_offset);
  IFLAME_REQUIRE(count <= cd_size / kCentralSize, file, ": corrupt zip: ", count, " entries cannot fit in a ",
               cd_size, "-byte central directory");

  std::vector<unsigned char> cd(cd_size);
  source_->read(cd_offset, cd_size, cd.data(), "the central directory");
  entries_.reserve(count);
  uint64_t pos = 0;
  for (uint64_t k = 0; k < count; k++) {
    const uint64_t at = cd_offset + pos;
    IFLAME_REQUIRE(cd_size - pos >= kCentralSize, file, ": corrupt zip: central directory entry ", k,
                 " at offset ", at, " runs past the directory");
    const unsigned char* p = cd.data() + pos;
    IFLAME_REQUIRE(load_u32le(p) == kCentralSig, file, ": corrupt zip: bad central directory signature ",
                 hex32(load_u32le(p)), " for entry ", k, " at offset ", at);
    ZipEntry e;
    e.flags = load_u16le(p + 8);
    e.method = load_u16le(p + 10);
    e.crc32 = load_u32le(p + 16);
    e.compressed_size = load_u32le(p + 20);
    e.size = load_u32le(p + 24);
    uint64_t name_len = load_u16le(p + 28), extra_len = load_u16le(p + 30), comment_len = load_u16le(p + 32);
    uint64_t local = load_u32le(p + 42);
    IFLAME_REQUIRE(cd_size - pos - kCentralSize >= name_len + extra_len + comment_len, file,
                 ": corrupt zip: central directory entry ", k, " at offset ", at, " runs past the directory");
    e.name.assign(reinterpret_cast<const char*>(p + kCentralSize), name_len);

    // zip64 extended information: the 64-bit values of the fields saturated at 0xffffffff, in order.
    const unsigned char* x = p + kCentralSize + name_len;
    const unsigned char* x_end = x + extra_len;
    while (x_end - x >= 4) {
      uint16_t id = load_u16le(x), len = load_u16le(x + 2);
      IFLAME_REQUIRE(x_end - x - 4 >= len, file, ": corrupt zip: extra field of entry '", e.name,
                   "' runs past its record");
      if (id == 0x0001) {
        const unsigned char* f = x + 4;
        const unsigned char* f_end = f + len;
        uint64_t* fields[3] = {&e.size, &e.compressed_size, &local};
        for (uint64_t* field : fields) {
          if (*field != 0xffffffffu) continue;
          IFLAME_REQUIRE(f_end - f >= 8, file, ": corrupt zip: short zip64 field in entry '", e.name, "'");
          *field = load_u64le(f);
          f += 8;
        }
      }
      x += 4 + len;
    }
    pos += kCentralSize + name_len + extra_len + comment_len;

    unsigned char lh[kLocalSize];
    source_->read(local, kLocalSize, lh, "a local file header");
    IFLAME_REQUIRE(load_u32le(lh) == kLocalSig, file, ": corrupt zip: bad local header signature ",
                 hex32(load_u32le(lh)), " for entry '", e.name, "' at offset ", local);
    uint64_t lname = load_u16le(lh + 26), lextra = load_u16le(lh + 28);
    std::string local_name(lname, '\0');
    source_->read(local + kLocalSize, lname, &local_name[0], "a local file name");
    IFLAME_REQUIRE(local_name == e.name, file, ": corrupt zip: entry '", e.name, "' has the name '", local_name,
                 "' in its local header at offset ", local);
    e.data_offset = local + kLocalSize + lname + lextra;
    IFLAME_REQUIRE(e.data_offset <= size && e.compressed_size <= size - e.data_offset, file,
                 ": truncated or corrupt zip: entry '", e.name, "' claims bytes [", e.data_offset, ", +",
                 e.compressed_size, ") but the file has ", size, " bytes");
    IFLAME_REQUIRE(e.method != 0 || e.compressed_size == e.size, file, ": corrupt zip: stored entry '", e.name,
                 "' has compressed size ", e.compressed_size, " but size ", e.size);
    IFLAME_REQUIRE(by_name_.emplace(e.name, entries_.size()).second, file, ": corrupt zip: entry '", e.name,
                 "' appears twice");
    entries_.push_back(std::move(e));
  }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const ZipEntry& ZipReader::entry(const std::string& name) const {
  const ZipEntry* e = find(name);
  IFLAME_REQUIRE(e != nullptr, path(), ": zip archive has no entry '", name, "'");
  return *e;
}

void ZipReader::check_readable(const ZipEntry& e) const {
  IFLAME_REQUIRE((e.flags & 1) == 0, path(), ": zip entry '", e.name, "' is encrypted (not supported)");
  IFLAME_REQUIRE(e.method == 0, path(), ": zip entry '", e.name, "' is compressed (method ", e.method,
               "); only stored entries are supported, as PyTorch writes them");
}

std::string ZipReader::read(const std::string& name) const {
  const ZipEntry& e = entry(name);
  std::string bytes(e.size, '\0');
  read(e, &bytes[0]);
  return bytes;
}

void ZipReader::read(const ZipEntry& e, void* dst) const {
  check_readable(e);
  source_->read(e.data_offset, e.size, dst, "a zip entry");
  uint32_t crc = crc32(dst, e.size);
  IFLAME_REQUIRE(crc == e.crc32, path(), ": zip entry '", e.name, "' is corrupt (CRC-32 ", hex32(crc),
               ", the directory says ", hex32(e.crc32), ")");
}

void ZipReader::read_range(const ZipEntry& e, uint64_t offset, uint64_t n, void* dst) const {
  check_readable(e);
  IFLAME_REQUIRE(offset <= e.size && n <= e.size - offset, path(), ": read of bytes [", offset, ", +", n,
               ") is outside zip entry '", e.name, "' (", e.size, " bytes)");
  source_->read(e.data_offset + offset, n, dst, "a zip entry");
}

bool has_zip_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char m[4] = {0, 0, 0, 0};
  size_t got = std::fread(m, 1, 4, f);
  std::fclose(f);
  return got == 4 && load_u32le(m) == kLocalSig;
}

}  // namespace iflame
