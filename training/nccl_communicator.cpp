// nccl_communicator.cpp: the Communicator over NCCL (one process per GPU).
//
// Everything is queued on the project's one CUDA stream (core/cuda_check.h), so
// a collective is ordered after the backward that produced the gradients and
// before the optimizer that reads them, with no extra synchronisation. Gradients
// go through a few flat f32 buffers (distributed.h: buckets), reduced in one
// NCCL group; a rank's weight is applied inside NCCL by a pre-multiplied sum
// (ncclRedOpCreatePreMulSum), so no separate scaling pass touches the data.
#include "training/distributed.h"

#include "core/error.h"
#include "training/mpi_bootstrap.h"
#include "training/rendezvous.h"

#if defined(IFLAME_CUDA) && defined(IFLAME_NCCL)
#include <nccl.h>

#include <cstring>

#include "core/allocator.h"
#include "core/cuda_check.h"

#define NCCL_CHECK(call)                                                                              \
  do {                                                                                                \
    ncclResult_t r_ = (call);                                                                         \
    if (r_ != ncclSuccess)                                                                            \
      ::iflame::fail_at(__FILE__, __LINE__, ::iflame::str("NCCL error in ", #call, ": ",              \
                                                          ncclGetErrorString(r_), " ", ncclGetLastError(nullptr))); \
  } while (0)

namespace iflame {

namespace {

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int world_size, size_t bucket_bytes)
      : comm_(comm), rank_(rank), world_size_(world_size), bucket_bytes_(bucket_bytes) {
    scalars_ = alloc_bytes(kMaxScalars * sizeof(double), Device::CUDA);
  }
  ~NcclCommunicator() override {
    free_bytes(scalars_, kMaxScalars * sizeof(double), Device::CUDA);
    ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  std::string describe() const override {
    int nccl_version = 0;
    ncclGetVersion(&nccl_version);
    return str("NCCL ", nccl_version / 10000, ".", (nccl_version / 100) % 100, ".", nccl_version % 100, ", rank ",
               rank_, " of ", world_size_);
  }
  bool supports(Device device) const override { return device == Device::CUDA; }

  void all_reduce_sum(std::vector<Tensor>& tensors, float weight) override {
    ncclRedOp_t op = ncclSum;
    if (weight != 1.0f) NCCL_CHECK(ncclRedOpCreatePreMulSum(&op, &weight, ncclFloat, ncclScalarHostImmediate, comm_));
    run_buckets(tensors, [&](float* data, int64_t n) {
      NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, op, comm_, cuda_stream()));
    });
    if (weight != 1.0f) NCCL_CHECK(ncclRedOpDestroy(op, comm_));
  }

  void all_reduce_sum(std::vector<double>& values) override {
    for (size_t at = 0; at < values.size(); at += kMaxScalars) {
      size_t n = std::min(kMaxScalars, values.size() - at);
      CUDA_CHECK(cudaMemcpyAsync(scalars_, values.data() + at, n * sizeof(double), cudaMemcpyHostToDevice,
                                 cuda_stream()));
      NCCL_CHECK(ncclAllReduce(scalars_, scalars_, n, ncclDouble, ncclSum, comm_, cuda_stream()));
      CUDA_CHECK(cudaMemcpyAsync(values.data() + at, scalars_, n * sizeof(double), cudaMemcpyDeviceToHost,
                                 cuda_stream()));
      CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    }
  }

  void broadcast(std::vector<Tensor>& tensors, int root) override {
    run_buckets(tensors, [&](float* data, int64_t n) {
      NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, root, comm_, cuda_stream()));
    });
  }

  void barrier() override {
    std::vector<double> one{1.0};
    all_reduce_sum(one);
  }

 private:
  static constexpr size_t kMaxScalars = 64;

  // Flattens each bucket into its buffer, runs `collective` on every buffer in
  // one NCCL group, and copies the results back. A bucket of one tensor is
  // handed to NCCL in place.
  template <typename F>
  void run_buckets(std::vector<Tensor>& tensors, F collective) {
    for (const Tensor& t : tensors)
      IFLAME_CHECK(t.is_cuda(), "NCCL communicator: tensor ", t.describe(), " is not on the GPU");
    std::vector<Bucket> buckets = plan_buckets(tensors, bucket_bytes_);
    if (flat_.size() < buckets.size()) flat_.resize(buckets.size());
    std::vector<Tensor*> data(buckets.size());
    for (size_t i = 0; i < buckets.size(); i++) {
      const Bucket& b = buckets[i];
      if (b.last - b.first == 1) {
        data[i] = &tensors[b.first];
        continue;
      }
      if (!flat_[i].defined() || flat_[i].numel() != b.numel)
        flat_[i] = Tensor::empty({b.numel}, DType::F32, Device::CUDA);
      flatten_bucket(tensors, b, flat_[i]);
      data[i] = &flat_[i];
    }
    NCCL_CHECK(ncclGroupStart());
    for (size_t i = 0; i < buckets.size(); i++) collective(data[i]->data<float>(), buckets[i].numel);
    NCCL_CHECK(ncclGroupEnd());
    for (size_t i = 0; i < buckets.size(); i++)
      if (buckets[i].last - buckets[i].first > 1) unflatten_bucket(flat_[i], buckets[i], tensors);
  }

  ncclComm_t comm_;
  int rank_, world_size_;
  size_t bucket_bytes_;
  std::vector<Tensor> flat_;  // one buffer per bucket, kept between steps
  void* scalars_ = nullptr;
};

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(int rank, int world_size, const std::string& rendezvous,
                                                     double timeout_s, size_t bucket_bytes) {
  ncclUniqueId id;
  std::memset(&id, 0, sizeof id);
  if (rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
  std::string mine(reinterpret_cast<const char*>(&id), sizeof id);
  std::string got;
  RendezvousSpec spec;
  if (rendezvous.empty()) {
    got = mpi_broadcast_bytes(mine, sizeof id);
  } else {
    spec = parse_rendezvous(rendezvous);
    got = rendezvous_exchange(spec, rank, world_size, mine, timeout_s);
  }
  IFLAME_CHECK(got.size() == sizeof id, "rendezvous handed over ", got.size(), " bytes, not an NCCL id of ",
               sizeof id);
  std::memcpy(&id, got.data(), sizeof id);
  ncclComm_t comm;
  NCCL_CHECK(ncclCommInitRank(&comm, world_size, id, rank));  // waits for every rank
  if (!rendezvous.empty()) remove_rendezvous_file(spec, rank);
  return std::make_unique<NcclCommunicator>(comm, rank, world_size, bucket_bytes);
}

}  // namespace iflame

#else  // no CUDA or no NCCL in this build

namespace iflame {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(int, int world_size, const std::string&, double, size_t) {
#ifdef IFLAME_CUDA
  IFLAME_FAIL("data-parallel training (", world_size, " processes) needs NCCL, and this build has none (no nccl.h "
              "at build time): install NCCL and rebuild");
#else
  IFLAME_FAIL("data-parallel training (", world_size, " processes) needs a CUDA build with NCCL; this build is "
              "CPU-only (no nvcc at build time)");
#endif
}

}  // namespace iflame

#endif
