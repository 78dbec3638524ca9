// zip_reader.h: random access to the entries of a zip archive (the container of
// PyTorch checkpoints). Only what PyTorch writes is supported: stored (method 0)
// entries, with or without zip64 records and data descriptors; a compressed or
// encrypted entry is an error naming the archive and the entry when it is read.
// Every offset and length in the archive is checked against the file size, so a
// truncated or corrupt archive is an iflame::Error saying what was wrong, never
// a crash or a huge allocation. Entry bytes are CRC-checked when read whole.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/byte_source.h"

namespace iflame {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 = stored; anything else is refused on read
  uint16_t flags = 0;   // general-purpose bits; bit 0 = encrypted
  uint32_t crc32 = 0;   // from the central directory
  uint64_t compressed_size = 0;
  uint64_t size = 0;         // uncompressed size
  uint64_t data_offset = 0;  // where the entry's bytes start in the archive
};

class ZipReader {
 public:
  // Opens and indexes an archive (reads the central directory and every local header).
  explicit ZipReader(const std::string& path);
  // The same over any byte source (e.g. a MemorySource in tests).
  explicit ZipReader(std::unique_ptr<ByteSource> source);

  // The archive's file name, for messages.
  const std::string& path() const { return source_->name(); }
  // Entries in central-directory order.
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry called `name`, or nullptr.
  const ZipEntry* find(const std::string& name) const;
  // The entry called `name`; throws if there is none.
  const ZipEntry& entry(const std::string& name) const;

  // The whole entry's bytes (CRC-checked).
  std::string read(const std::string& name) const;
  // The whole entry into dst (entry.size bytes, CRC-checked).
  void read(const ZipEntry& entry, void* dst) const;
  // Bytes [offset, offset + n) of a stored entry into dst (no CRC check).
  void read_range(const ZipEntry& entry, uint64_t offset, uint64_t n, void* dst) const;

 private:
  void index();
  void check_readable(const ZipEntry& e) const;

  std::unique_ptr<ByteSource> source_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

// True if the file starts with a zip local-header signature ("PK\3\4").
bool has_zip_magic(const std::string& path);

}  // namespace iflame
