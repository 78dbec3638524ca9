// byte_source.h: random-access reading of a file, or of bytes already in
// memory, behind one interface. The zip reader and the checkpoint loaders read
// through it, so the same parsing code runs on files and (in the fuzz tests) on
// mutated in-memory copies. Every read is bounds-checked: a read past the end
// is an iflame::Error naming the source and what was being read.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>

namespace iflame {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Total size in bytes.
  virtual uint64_t size() const = 0;
  // Copies [offset, offset + n) into dst; throws (naming `what`) if that range
  // is not inside the source.
  void read(uint64_t offset, uint64_t n, void* dst, const char* what) const;
  // The file name (or a label for in-memory bytes) for error messages.
  const std::string& name() const { return name_; }

 protected:
  explicit ByteSource(std::string name) : name_(std::move(name)) {}
  virtual void read_unchecked(uint64_t offset, uint64_t n, void* dst) const = 0;

 private:
  std::string name_;
};

// A file opened for reading (closed on destruction).
class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  uint64_t size() const override { return size_; }

 protected:
  void read_unchecked(uint64_t offset, uint64_t n, void* dst) const override;

 private:
  std::FILE* f_ = nullptr;
  uint64_t size_ = 0;
};

// Bytes held in memory (a copy is kept), labelled `name` in messages.
class MemorySource : public ByteSource {
 public:
  MemorySource(std::string bytes, std::string name) : ByteSource(std::move(name)), bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }

 protected:
  void read_unchecked(uint64_t offset, uint64_t n, void* dst) const override;

 private:
  std::string bytes_;
};

// Little-endian field decoding from a byte buffer.
inline uint16_t load_u16le(const unsigned char* p) { return uint16_t(p[0] | (p[1] << 8)); }
inline uint32_t load_u32le(const unsigned char* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t load_u64le(const unsigned char* p) {
  return uint64_t(load_u32le(p)) | uint64_t(load_u32le(p + 4)) << 32;
}

}  // namespace iflame
