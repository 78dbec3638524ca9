// checkpoint.h: the project's own checkpoint file (format in docs/checkpoint.md).
// A generic container of text key/values (config, step, RNG state, data
// position ...) and named tensors (parameters under "param/<name>", optimizer
// state under e.g. "adamw.m/<name>"), any dtype, saved from host copies.
// Saving goes through <path>.tmp, fsync and rename, so `path` is never left
// half-written. Loading checks the magic, the version, the length, every offset
// and a CRC-32 over the whole file, and refuses anything wrong with a message
// naming the file and the reason.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/byte_source.h"
#include "core/tensor.h"

namespace iflame {

constexpr uint32_t kCheckpointFormatVersion = 1;

struct CheckpointData {
  std::vector<std::pair<std::string, std::string>> meta;  // insertion order kept
  std::vector<std::pair<std::string, Tensor>> tensors;    // loaded back as CPU tensors

  // Lookups (linear); nullptr if absent.
  const std::string* find_meta(const std::string& key) const;
  const Tensor* find_tensor(const std::string& name) const;
  // The same, throwing an Error naming the key if absent.
  const std::string& meta_at(const std::string& key) const;
  const Tensor& tensor_at(const std::string& name) const;
  // A meta entry as a whole decimal integer in [lo, hi]; an absent entry or
  // any other text is an InputError naming `source`, the key and the value.
  int64_t meta_integer(const std::string& key, const std::string& source, int64_t lo = INT64_MIN,
                       int64_t hi = INT64_MAX) const;
};

// Writes `data` to path + ".tmp", fsyncs it and renames it to `path`.
// Names and meta keys must be unique; every tensor must be defined.
void save_checkpoint(const std::string& path, const CheckpointData& data);
// Reads a checkpoint written by save_checkpoint.
CheckpointData load_checkpoint(const std::string& path);
// The same over any byte source (the fuzz tests use mutated in-memory copies).
CheckpointData load_checkpoint(std::unique_ptr<ByteSource> source);

// True if the file starts with the native magic "IFLAMECK".
bool looks_like_native_checkpoint(const std::string& path);

}  // namespace iflame
