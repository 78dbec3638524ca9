// loader.h: batches of token sequences from a MeshDataset, built by background
// threads (augmentation + tokenization) while the caller trains.
//
// What a batch holds is a pure function of (seed, epoch, rank, options): the
// epoch's order is a philox-seeded shuffle, each mesh's augmentation is drawn
// from (seed, epoch, mesh index), and threads only change when a batch is ready,
// never its contents.
//
// Order of an epoch: shuffle the meshes; optionally bucket by length (within
// windows of `bucket_window` global batches, sort by face count, cut into
// batches, shuffle those batches); cut into global batches of batch_size x
// world_size meshes; rank r takes items r, r + world, ... of each. The tail that
// does not divide evenly among ranks is left out so every rank gets the same
// number of batches (with drop_last, a short final batch is left out too).
//
// tokens: int32 [B, T], each row START, faces, END, then PAD (129) up to T, the
// longest sequence in the batch (a multiple of 9).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "core/tensor.h"
#include "data/augment.h"
#include "data/dataset.h"

namespace iflame {

struct LoaderOptions {
  int batch_size = 8;
  uint64_t seed = 0;
  int rank = 0, world_size = 1;
  bool shuffle = true;
  bool augment = true;
  bool drop_last = false;
  int bucket_window = 0;  // > 0: length bucketing over this many global batches
  int threads = 2;        // background workers (0: build batches on the caller's thread)
  int prefetch = 4;       // batches built ahead of the caller
  AugmentOptions augment_options;
};

struct Batch {
  Tensor tokens;                // int32 [B, T]
  std::vector<int64_t> meshes;  // dataset index of each row
  int64_t epoch = 0, index = 0;
};

// Tokens of mesh i of the dataset, augmented with the draw for (seed, epoch, i) or not.
std::vector<int32_t> dataset_mesh_tokens(const MeshDataset& ds, int64_t i, bool augment, uint64_t seed,
                                         int64_t epoch, const AugmentOptions& opt = {});

// The meshes of each of this rank's batches in an epoch (pure: no tokenization).
std::vector<std::vector<int64_t>> plan_epoch(const MeshDataset& ds, const std::vector<int64_t>& indices,
                                             const LoaderOptions& opt, int64_t epoch);

// Builds one batch (on the calling thread).
Batch build_batch(const MeshDataset& ds, const std::vector<int64_t>& meshes, const LoaderOptions& opt,
                  int64_t epoch, int64_t index);

class Loader {
 public:
  // `indices`: the meshes to draw from (e.g. ds.indices("train")).
  Loader(const MeshDataset& ds, std::vector<int64_t> indices, LoaderOptions opt);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Plans the epoch and starts the workers on it (stopping any previous epoch),
  // from batch `first_batch` on (a resumed run continues mid-epoch).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the epoch in order; false when the epoch is done.
  // An error in a worker is rethrown here.
  bool next(Batch& out);
  int64_t batches_in_epoch() const { return static_cast<int64_t>(plan_.size()); }

 private:
  void stop();
  void work();

  const MeshDataset& ds_;
  std::vector<int64_t> indices_;
  LoaderOptions opt_;
  int64_t epoch_ = 0;
  std::vector<std::vector<int64_t>> plan_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Batch> ready_;
  int64_t next_to_build_ = 0, next_to_return_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace iflame
