// distributed.h: data parallelism: one process per GPU, each with a whole copy
// of the model and its own share of every global batch.
//
// A Communicator is what the trainer sees of the other processes ("ranks"):
//   - all_reduce_sum: gradients summed over ranks, each rank's contribution
//     multiplied by its own weight first (the trainer passes tokens_r / tokens
//     of the global batch, so the sum is the gradient of the global
//     token-mean loss, whatever the split);
//   - all_reduce_sum of host numbers: loss, accuracy, token counts, stop votes;
//   - broadcast: rank 0's parameters and optimizer state to everyone at start;
//   - barrier.
// Three implementations:
//   LocalCommunicator      one process, world size 1 (nothing to exchange);
//   NCCL                   make_nccl_communicator(), CUDA builds with NCCL;
//   SimulatedCommunicator  several ranks as threads of one process, on the CPU
//                          (tests: the same arithmetic without GPUs).
// Tensors are handed over in "buckets": consecutive tensors flattened into a
// few large contiguous buffers (plan_buckets), so a 75M-parameter model is
// reduced in a handful of calls instead of one per parameter. Reduction runs
// after the whole backward (no overlap with it).
#pragma once
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace iflame {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string describe() const = 0;  // for the banner: "nccl, 8 ranks"
  // Where its tensors may live (NCCL: CUDA only; the others: anywhere).
  virtual bool supports(Device device) const = 0;

  // Every rank passes the same list (same shapes, f32, contiguous). Afterwards each
  // tensor holds sum over ranks r of weight_r * tensor_r, identical on every rank.
  virtual void all_reduce_sum(std::vector<Tensor>& tensors, float weight = 1.0f) = 0;
  // Sums of host numbers over ranks (exact for integers below 2^53).
  virtual void all_reduce_sum(std::vector<double>& values) = 0;
  // Every rank's tensors take the values of root's.
  virtual void broadcast(std::vector<Tensor>& tensors, int root = 0) = 0;
  virtual void barrier() = 0;

  // True on every rank when any rank passes true (a collective vote).
  bool any(bool mine);
};

class LocalCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string describe() const override { return "single process"; }
  bool supports(Device) const override { return true; }
  void all_reduce_sum(std::vector<Tensor>& tensors, float weight = 1.0f) override;
  void all_reduce_sum(std::vector<double>&) override {}
  void broadcast(std::vector<Tensor>&, int) override {}
  void barrier() override {}
};

// ---- buckets ---------------------------------------------------------------

// Tensors [first, last) of a list, flattened one after the other.
struct Bucket {
  size_t first = 0, last = 0;
  int64_t numel = 0;
};
// Consecutive tensors grouped into buckets of at most max_bytes (a tensor larger
// than that gets a bucket of its own). Every tensor must be f32 and contiguous.
std::vector<Bucket> plan_buckets(const std::vector<Tensor>& tensors, size_t max_bytes);
// Copies the bucket's tensors into flat (f32 [numel], same device) and back.
void flatten_bucket(const std::vector<Tensor>& tensors, const Bucket& b, Tensor& flat);
void unflatten_bucket(const Tensor& flat, const Bucket& b, std::vector<Tensor>& tensors);

constexpr size_t kDefaultBucketBytes = 64u << 20;

// ---- simulated (tests) -----------------------------------------------------

// The shared state of world_size in-process ranks. Each rank runs on its own
// thread with its own SimulatedCommunicator; a collective returns once every
// rank has called it. Sums are taken in rank order, in double.
class SimulatedGroup {
 public:
  explicit SimulatedGroup(int world_size, size_t bucket_bytes = kDefaultBucketBytes)
      : world_size_(world_size), bucket_bytes_(bucket_bytes), slots_(world_size) {}
  int world_size() const { return world_size_; }
  size_t bucket_bytes() const { return bucket_bytes_; }
  // Deposits rank's numbers; when all ranks have, `combine` turns all deposits into
  // the one result every rank receives.
  std::vector<double> exchange(int rank, std::vector<double> mine,
                               std::vector<double> (*combine)(const std::vector<std::vector<double>>&, int root),
                               int root);
  // Makes every waiting and later collective throw (a rank failed; the others
  // must not wait for it forever).
  void abort();

 private:
  int world_size_;
  size_t bucket_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::vector<double>> slots_;
  std::vector<double> result_;
  int arrived_ = 0, departed_ = 0;
  uint64_t generation_ = 0;
  bool aborted_ = false;
};

class SimulatedCommunicator : public Communicator {
 public:
  SimulatedCommunicator(std::shared_ptr<SimulatedGroup> group, int rank) : group_(std::move(group)), rank_(rank) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world_size(); }
  std::string describe() const override;
  bool supports(Device) const override { return true; }
  void all_reduce_sum(std::vector<Tensor>& tensors, float weight = 1.0f) override;
  void all_reduce_sum(std::vector<double>& values) override;
  void broadcast(std::vector<Tensor>& tensors, int root = 0) override;
  void barrier() override;

 private:
  std::shared_ptr<SimulatedGroup> group_;
  int rank_;
};

// ---- NCCL --------------------------------------------------------------------

// Joins the NCCL communicator of a world_size-process run: rank 0 makes the NCCL
// unique id, the rendezvous (training/rendezvous.h; "" = exchanged through MPI)
// hands it to the others. The CUDA device must already be chosen. Builds
// without CUDA or NCCL throw an error that says so. NCCL_* environment
// variables are NCCL's to read; nothing here sets them.
std::unique_ptr<Communicator> make_nccl_communicator(int rank, int world_size, const std::string& rendezvous,
                                                     double timeout_s, size_t bucket_bytes = kDefaultBucketBytes);
bool nccl_built();  // true when this build can make an NCCL communicator

// ---- who am I ----------------------------------------------------------------

// Rank, world size, local rank and rendezvous of this process, from the flags or
// from the launcher's environment (checked in this order):
//   --rank/--world-size/--rendezvous          explicit (and --gpus children)
//   OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK}    mpirun (Open MPI); PMI_RANK/PMI_SIZE
//                                             (MPICH, Intel MPI) with MPI_LOCALRANKID
//   SLURM_PROCID, SLURM_STEP_NUM_TASKS,       srun (one task per GPU)
//   SLURM_LOCALID
// Rendezvous when not given: MASTER_ADDR:MASTER_PORT if both are set; through MPI
// when launched by mpirun in an MPI build (mpi = true); under Slurm the file
// .iflame-rendezvous-<SLURM_JOB_ID>.<SLURM_STEP_ID> in the working directory.
struct DistributedSetup {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string rendezvous;
  bool mpi = false;        // exchange the NCCL id through MPI
  std::string launcher;    // "flags", "mpirun", "slurm" or "" (single process)
};
// `get_env` reads an environment variable (nullptr when unset); tests pass their own.
DistributedSetup resolve_distributed(int rank, int world_size, int local_rank, const std::string& rendezvous,
                                     const char* (*get_env)(const char*));

}  // namespace iflame
