// checkpoint.cpp: writing and reading the native checkpoint format
// (docs/checkpoint.md). The writer computes the whole layout first (so the
// header can state the file size), then streams header and tensors once,
// updating the CRC as it goes. The reader validates the fixed header and the
// table before allocating anything, then streams the file once into the
// tensors, checking the CRC at the end.
#include "nn/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>

#include "core/crc32.h"
#include "core/error.h"

namespace iflame {

namespace {

constexpr char kMagic[8] = {'I', 'F', 'L', 'A', 'M', 'E', 'C', 'K'};
constexpr uint64_t kFixedSize = 32;  // magic, version, reserved, file size, header length
constexpr uint64_t kCrcSize = 4;
constexpr uint64_t kAlign = 64;
constexpr uint32_t kMaxDims = 16;

uint8_t dtype_code(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::BF16: return 1;
    case DType::I32: return 2;
  }
  return 255;
}

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

void put_u8(std::string& s, uint8_t v) { s.push_back(static_cast<char>(v)); }
void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; i++) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; i++) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct TableEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t offset = 0, nbytes = 0;
};

// --- writing ---------------------------------------------------------------

class FileWriter {
 public:
  explicit FileWriter(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    IFLAME_REQUIRE(fd_ >= 0, path, ": cannot create file: ", std::strerror(errno));
  }
  ~FileWriter() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(const void* data, uint64_t n, bool crc = true) {
    if (crc) crc_ = crc32_update(crc_, data, n);
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n > (1u << 30) ? (1u << 30) : n);
      if (w < 0 && errno == EINTR) continue;
      IFLAME_REQUIRE(w > 0, path_, ": write failed: ", std::strerror(errno));
      p += w;
      n -= static_cast<uint64_t>(w);
      pos_ += static_cast<uint64_t>(w);
    }
  }
  void pad_to(uint64_t offset) {
    static const char zeros[kAlign] = {};
    IFLAME_CHECK(offset >= pos_ && offset - pos_ <= kAlign, path_, ": internal error: bad padding");
    write(zeros, offset - pos_);
  }
  void sync_and_close() {
    IFLAME_REQUIRE(::fsync(fd_) == 0, path_, ": fsync failed: ", std::strerror(errno));
    int fd = fd_;
    fd_ = -1;
    IFLAME_REQUIRE(::close(fd) == 0, path_, ": close failed: ", std::strerror(errno));
  }
  uint32_t crc() const { return crc_; }
  uint64_t pos() const { return pos_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t pos_ = 0;
  uint32_t crc_ = 0;
};

void sync_directory_of(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // best effort: the rename itself has happened
  ::fsync(fd);
  ::close(fd);
}

void write_checkpoint_file(const std::string& tmp, const CheckpointData& data) {
  // Layout first: the header states every offset and the total size.
  std::vector<TableEntry> table;
  std::string header;
  put_u32(header, static_cast<uint32_t>(data.meta.size()));
  for (const auto& kv : data.meta) {
    put_u32(header, static_cast<uint32_t>(kv.first.size()));
    header += kv.first;
    put_u64(header, kv.second.size());
    header += kv.second;
  }
  put_u32(header, static_cast<uint32_t>(data.tensors.size()));
  uint64_t table_bytes = 0;
  for (const auto& nt : data.tensors)
    table_bytes += 4 + nt.first.size() + 2 + 8 * nt.second.shape().size() + 16;
  uint64_t offset = align_up(kFixedSize + header.size() + table_bytes);
  for (const auto& nt : data.tensors) {
    TableEntry e;
    e.name = nt.first;
    e.dtype = nt.second.dtype();
    e.shape = nt.second.shape();
    e.nbytes = nt.second.nbytes();
    e.offset = offset;
    offset = align_up(offset + e.nbytes);
    put_u32(header, static_cast<uint32_t>(e.name.size()));
    header += e.name;
    put_u8(header, dtype_code(e.dtype));
    put_u8(header, static_cast<uint8_t>(e.shape.size()));
    for (int64_t d : e.shape) put_u64(header, static_cast<uint64_t>(d));
    put_u64(header, e.offset);
    put_u64(header, e.nbytes);
    table.push_back(std::move(e));
  }
  IFLAME_CHECK(table.empty() || kFixedSize + header.size() <= table.front().offset, tmp,
               ": internal error: header overlaps the data");
  uint64_t data_end = table.empty() ? kFixedSize + header.size() : table.back().offset + table.back().nbytes;
  uint64_t file_size = data_end + kCrcSize;

  std::string fixed(kMagic, 8);
  put_u32(fixed, kCheckpointFormatVersion);
  put_u32(fixed, 0);
  put_u64(fixed, file_size);
  put_u64(fixed, header.size());

  FileWriter w(tmp);
  w.write(fixed.data(), 8, /*crc=*/false);  // the CRC covers everything after the magic
  w.write(fixed.data() + 8, fixed.size() - 8);
  w.write(header.data(), header.size());
  for (size_t i = 0; i < table.size(); i++) {
    w.pad_to(table[i].offset);
    Tensor host = data.tensors[i].second.to(Device::CPU).contiguous();
    w.write(host.raw_data(), table[i].nbytes);
  }
  IFLAME_CHECK(w.pos() == data_end, tmp, ": internal error: wrote ", w.pos(), " bytes, expected ", data_end);
  std::string crc;
  put_u32(crc, w.crc());
  w.write(crc.data(), crc.size(), false);
  w.sync_and_close();
}

// --- reading ---------------------------------------------------------------

// Reads a source front to back, keeping a CRC of what it has read.
class SequentialReader {
 public:
  explicit SequentialReader(const ByteSource& src) : src_(src) {}
  void read(void* dst, uint64_t n, const char* what, bool crc = true) {
    src_.read(pos_, n, dst, what);
    if (crc) crc_ = crc32_update(crc_, dst, n);
    pos_ += n;
  }
  void skip_to(uint64_t offset, const char* what) {
    unsigned char buf[4096];
    while (pos_ < offset) read(buf, std::min<uint64_t>(sizeof buf, offset - pos_), what);
  }
  uint64_t pos() const { return pos_; }
  uint32_t crc() const { return crc_; }

 private:
  const ByteSource& src_;
  uint64_t pos_ = 0;
  uint32_t crc_ = 0;
};

// Bounds-checked parsing of the header bytes.
class HeaderCursor {
 public:
  HeaderCursor(const std::string& h, const std::string& file) : h_(h), file_(file) {}
  const unsigned char* take(uint64_t n, const char* what) {
    IFLAME_REQUIRE(n <= h_.size() - pos_, file_, ": corrupt checkpoint header: ", what, " at header byte ", pos_,
                 " runs past the header (", h_.size(), " bytes)");
    const unsigned char* p = reinterpret_cast<const unsigned char*>(h_.data()) + pos_;
    pos_ += n;
    return p;
  }
  uint8_t u8(const char* what) { return *take(1, what); }
  uint32_t u32(const char* what) { return load_u32le(take(4, what)); }
  uint64_t u64(const char* what) { return load_u64le(take(8, what)); }
  std::string bytes(uint64_t n, const char* what) { return std::string(reinterpret_cast<const char*>(take(n, what)), n); }
  bool done() const { return pos_ == h_.size(); }
  uint64_t pos() const { return pos_; }

 private:
  const std::string& h_;
  const std::string& file_;
  uint64_t pos_ = 0;
};

void parse_header(const std::string& header, const std::string& file, uint64_t data_start, uint64_t data_end,
                  CheckpointData& out, std::vector<TableEntry>& table) {
  HeaderCursor c(header, file);
  uint32_t n_meta = c.u32("the meta count");
  IFLAME_REQUIRE(n_meta <= header.size() / 12, file, ": corrupt checkpoint header: ", n_meta, " meta entries");
  std::set<std::string> keys;
  for (uint32_t i = 0; i < n_meta; i++) {
    std::string key = c.bytes(c.u32("a meta key length"), "a meta key");
    std::string value = c.bytes(c.u64("a meta value length"), "a meta value");
    IFLAME_REQUIRE(keys.insert(key).second, file, ": corrupt checkpoint: meta key '", key, "' appears twice");
    out.meta.emplace_back(std::move(key), std::move(value));
  }
  uint32_t n_tensors = c.u32("the tensor count");
  IFLAME_REQUIRE(n_tensors <= header.size() / 22, file, ": corrupt checkpoint header: ", n_tensors, " tensors");
  std::set<std::string> names;
  uint64_t next_free = data_start;  // tensors are stored in table order, without overlap
  for (uint32_t i = 0; i < n_tensors; i++) {
    TableEntry e;
    e.name = c.bytes(c.u32("a tensor name length"), "a tensor name");
    uint8_t code = c.u8("a dtype");
    IFLAME_REQUIRE(code <= 2, file, ": corrupt checkpoint: tensor '", e.name, "' has unknown dtype code ", int(code));
    e.dtype = code == 0 ? DType::F32 : code == 1 ? DType::BF16 : DType::I32;
    uint8_t ndim = c.u8("a dimension count");
    IFLAME_REQUIRE(ndim <= kMaxDims, file, ": corrupt checkpoint: tensor '", e.name, "' has ", int(ndim), " dims");
    uint64_t numel = 1;
    for (uint8_t d = 0; d < ndim; d++) {
      uint64_t dim = c.u64("a dimension");
      IFLAME_REQUIRE(dim <= data_end, file, ": corrupt checkpoint: tensor '", e.name, "' has dimension ", dim);
      e.shape.push_back(static_cast<int64_t>(dim));
      numel = (numel == 0 || dim == 0) ? 0 : (numel > data_end / dim ? data_end + 1 : numel * dim);
    }
    e.offset = c.u64("a tensor offset");
    e.nbytes = c.u64("a tensor length");
    IFLAME_REQUIRE(numel <= data_end && e.nbytes == numel * dtype_size(e.dtype), file, ": corrupt checkpoint: tensor '",
                 e.name, "' ", dtype_name(e.dtype), shape_str(e.shape), " has length ", e.nbytes);
    IFLAME_REQUIRE(e.offset % kAlign == 0 && e.offset >= next_free && e.offset <= data_end &&
                     e.nbytes <= data_end - e.offset,
                 file, ": corrupt checkpoint: tensor '", e.name, "' at [", e.offset, ", +", e.nbytes,
                 ") is outside the data region [", next_free, ", ", data_end, ") or misaligned");
    next_free = e.offset + e.nbytes;
    IFLAME_REQUIRE(names.insert(e.name).second, file, ": corrupt checkpoint: tensor '", e.name, "' appears twice");
    table.push_back(std::move(e));
  }
  IFLAME_REQUIRE(c.done(), file, ": corrupt checkpoint header: ", header.size() - c.pos(), " unexpected trailing bytes");
}

uint32_t whole_file_crc(const ByteSource& src, uint64_t end) {
  SequentialReader r(src);
  unsigned char magic[8];
  r.read(magic, 8, "the magic", false);
  r.skip_to(end, "the checksummed bytes");
  return r.crc();
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

}  // namespace

const std::string* CheckpointData::find_meta(const std::string& key) const {
  for (const auto& kv : meta)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Tensor* CheckpointData::find_tensor(const std::string& name) const {
  for (const auto& nt : tensors)
    if (nt.first == name) return &nt.second;
  return nullptr;
}

const std::string& CheckpointData::meta_at(const std::string& key) const {
  const std::string* v = find_meta(key);
  IFLAME_REQUIRE(v != nullptr, "checkpoint has no meta entry '", key, "'");
  return *v;
}

const Tensor& CheckpointData::tensor_at(const std::string& name) const {
  const Tensor* t = find_tensor(name);
  IFLAME_REQUIRE(t != nullptr, "checkpoint has no tensor '", name, "'");
  return *t;
}

int64_t CheckpointData::meta_integer(const std::string& key, const std::string& source, int64_t lo,
                                     int64_t hi) const {
  const std::string* v = find_meta(key);
  IFLAME_REQUIRE(v != nullptr, source, ": checkpoint has no '", key, "' entry");
  char* end = nullptr;
  errno = 0;
  const long long x = v->empty() ? 0 : std::strtoll(v->c_str(), &end, 10);
  IFLAME_REQUIRE(!v->empty() && *end == '\0' && errno != ERANGE && x >= lo && x <= hi, source,
                 ": checkpoint entry '", key, "' = '", *v, "' is not an integer in [", lo, ", ", hi, "]");
  return x;
}

void save_checkpoint(const std::string& path, const CheckpointData& data) {
  std::set<std::string> seen;
  for (const auto& kv : data.meta) {
    IFLAME_REQUIRE(seen.insert(kv.first).second, path, ": cannot save: meta key '", kv.first, "' appears twice");
    IFLAME_REQUIRE(kv.first.size() < (1ull << 32), path, ": cannot save: meta key too long");
  }
  seen.clear();
  for (const auto& nt : data.tensors) {
    IFLAME_REQUIRE(seen.insert(nt.first).second, path, ": cannot save: tensor '", nt.first, "' appears twice");
    IFLAME_REQUIRE(nt.second.defined(), path, ": cannot save: tensor '", nt.first, "' is undefined");
    IFLAME_REQUIRE(nt.second.ndim() <= int(kMaxDims), path, ": cannot save: tensor '", nt.first, "' has ",
                 nt.second.ndim(), " dims");
    IFLAME_REQUIRE(nt.first.size() < (1ull << 32), path, ": cannot save: tensor name too long");
  }
  const std::string tmp = path + ".tmp";
  try {
    write_checkpoint_file(tmp, data);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    IFLAME_REJECT(path, ": cannot rename ", tmp, " into place: ", std::strerror(err));
  }
  sync_directory_of(path);
}

CheckpointData load_checkpoint(const std::string& path) { return load_checkpoint(std::make_unique<FileSource>(path)); }

CheckpointData load_checkpoint(std::unique_ptr<ByteSource> source) {
  const ByteSource& src = *source;
  const std::string& file = src.name();
  const uint64_t size = src.size();
  SequentialReader r(src);

  unsigned char fixed[kFixedSize];
  IFLAME_REQUIRE(size >= 8, file, ": not an iflame checkpoint (bad magic: only ", size, " bytes)");
  r.read(fixed, 8, "the magic", false);
  IFLAME_REQUIRE(std::memcmp(fixed, kMagic, 8) == 0, file, ": not an iflame checkpoint (bad magic)");
  IFLAME_REQUIRE(size >= kFixedSize + kCrcSize, file, ": truncated checkpoint: ", size, " bytes");
  r.read(fixed + 8, kFixedSize - 8, "the fixed header");
  const uint32_t version = load_u32le(fixed + 8);
  const uint64_t file_size = load_u64le(fixed + 16);
  const uint64_t header_len = load_u64le(fixed + 24);
  // A newer format still states its own size; garbage after the magic does not.
  IFLAME_REQUIRE(version <= kCheckpointFormatVersion || file_size != size, file, ": checkpoint format version ",
                 version, " is newer than this program reads (", kCheckpointFormatVersion, "); update the program");
  IFLAME_REQUIRE(version >= 1 && version <= kCheckpointFormatVersion, file,
                 ": corrupt checkpoint: the bytes after the magic are not a checkpoint header (format version ",
                 version, ", stated size ", file_size, " bytes, the file has ", size, ")");
  IFLAME_REQUIRE(size >= file_size, file, ": truncated checkpoint: ", size, " bytes, its header says ", file_size);
  IFLAME_REQUIRE(size == file_size, file, ": corrupt checkpoint: ", size, " bytes, its header says ", file_size,
               " (trailing data?)");
  const uint64_t data_end = file_size - kCrcSize;

  // Header and table. If they do not parse, the CRC says whether the file is damaged.
  CheckpointData out;
  std::vector<TableEntry> table;
  try {
    IFLAME_REQUIRE(header_len <= data_end - kFixedSize, file, ": corrupt checkpoint: header length ", header_len,
                 " exceeds the file");
    std::string header(header_len, '\0');
    r.read(&header[0], header_len, "the header");
    parse_header(header, file, kFixedSize + header_len, data_end, out, table);
  } catch (const Error& e) {
    uint32_t stored;
    unsigned char b[4];
    src.read(data_end, 4, b, "the CRC");
    stored = load_u32le(b);
    uint32_t computed = whole_file_crc(src, data_end);
    if (stored != computed)
      IFLAME_REJECT(file, ": checkpoint is corrupt: CRC-32 mismatch (stored ", hex32(stored), ", computed ",
                  hex32(computed), "); parsing it failed with: ", e.what());
    throw;
  }

  for (const TableEntry& e : table) {
    r.skip_to(e.offset, "padding");
    Tensor t = Tensor::empty(e.shape, e.dtype);
    r.read(t.raw_data(), e.nbytes, "tensor data");
    out.tensors.emplace_back(e.name, std::move(t));
  }
  r.skip_to(data_end, "padding");
  unsigned char b[4];
  r.read(b, 4, "the CRC", false);
  const uint32_t stored = load_u32le(b);
  IFLAME_REQUIRE(stored == r.crc(), file, ": checkpoint is corrupt: CRC-32 mismatch (stored ", hex32(stored),
               ", computed ", hex32(r.crc()), ")");
  return out;
}

bool looks_like_native_checkpoint(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char m[8] = {};
  size_t got = std::fread(m, 1, 8, f);
  std::fclose(f);
  return got == 8 && std::memcmp(m, kMagic, 8) == 0;
}

}  // namespace iflame
