// distributed.cpp: the single-process and simulated communicators, buckets, and
// working out this process's rank from flags or the launcher's environment.
// The NCCL communicator is in nccl_communicator.cpp.
#include "training/distributed.h"

#include <cstdlib>

#include "core/error.h"
#include "ops/elementwise.h"

namespace iflame {

bool Communicator::any(bool mine) {
  std::vector<double> v{mine ? 1.0 : 0.0};
  all_reduce_sum(v);
  return v[0] > 0;
}

void LocalCommunicator::all_reduce_sum(std::vector<Tensor>& tensors, float weight) {
  if (weight == 1.0f) return;  // the sum over one rank is the tensor itself
  for (Tensor& t : tensors) t.copy_from(ops::scale(t, weight));
}

// ---- buckets ---------------------------------------------------------------

std::vector<Bucket> plan_buckets(const std::vector<Tensor>& tensors, size_t max_bytes) {
  std::vector<Bucket> out;
  Bucket cur;
  for (size_t i = 0; i < tensors.size(); i++) {
    const Tensor& t = tensors[i];
    IFLAME_CHECK(t.defined() && t.dtype() == DType::F32 && t.is_contiguous(), "bucket: tensor ", i,
                 " must be f32 and contiguous, not ", t.defined() ? t.describe() : std::string("undefined"));
    IFLAME_CHECK(i == 0 || t.device() == tensors[0].device(), "bucket: tensors on different devices");
    size_t bytes = static_cast<size_t>(t.numel()) * sizeof(float);
    if (cur.last > cur.first && static_cast<size_t>(cur.numel) * sizeof(float) + bytes > max_bytes) {
      out.push_back(cur);
      cur = Bucket{i, i, 0};
    }
    cur.last = i + 1;
    cur.numel += t.numel();
  }
  if (cur.last > cur.first) out.push_back(cur);
  return out;
}

void flatten_bucket(const std::vector<Tensor>& tensors, const Bucket& b, Tensor& flat) {
  IFLAME_CHECK(flat.numel() == b.numel, "bucket: flat buffer of ", flat.numel(), " for ", b.numel, " elements");
  int64_t at = 0;
  for (size_t i = b.first; i < b.last; i++) {
    const int64_t n = tensors[i].numel();
    Tensor dst = flat.slice(0, at, at + n).view(tensors[i].shape());
    dst.copy_from(tensors[i]);
    at += n;
  }
}

void unflatten_bucket(const Tensor& flat, const Bucket& b, std::vector<Tensor>& tensors) {
  int64_t at = 0;
  for (size_t i = b.first; i < b.last; i++) {
    const int64_t n = tensors[i].numel();
    tensors[i].copy_from(flat.slice(0, at, at + n).view(tensors[i].shape()));
    at += n;
  }
}

// ---- simulated ---------------------------------------------------------------

std::vector<double> SimulatedGroup::exchange(int rank, std::vector<double> mine,
                                             std::vector<double> (*combine)(const std::vector<std::vector<double>>&,
                                                                            int),
                                             int root) {
  std::unique_lock<std::mutex> lock(mu_);
  // A rank already done with the previous collective waits until every rank has
  // collected that one's result.
  cv_.wait(lock, [&] { return aborted_ || arrived_ < world_size_; });
  IFLAME_CHECK(!aborted_, "simulated collective: another rank failed");
  const uint64_t gen = generation_;
  slots_[rank] = std::move(mine);
  if (++arrived_ == world_size_) {
    for (const auto& s : slots_) {
      if (s.size() == slots_[0].size()) continue;
      aborted_ = true;
      cv_.notify_all();
      IFLAME_FAIL("simulated collective: ranks passed different sizes");
    }
    result_ = combine(slots_, root);
    generation_++;
    cv_.notify_all();
  } else {
    cv_.wait(lock, [&] { return aborted_ || generation_ != gen; });
    IFLAME_CHECK(!aborted_, "simulated collective: another rank failed");
  }
  std::vector<double> out = result_;
  if (++departed_ == world_size_) {
    arrived_ = departed_ = 0;
    cv_.notify_all();
  }
  return out;
}

void SimulatedGroup::abort() {
  std::lock_guard<std::mutex> lock(mu_);
  aborted_ = true;
  cv_.notify_all();
}

namespace {
std::vector<double> sum_in_rank_order(const std::vector<std::vector<double>>& all, int) {
  std::vector<double> s(all[0].size(), 0.0);
  for (const auto& v : all)
    for (size_t i = 0; i < v.size(); i++) s[i] += v[i];
  return s;
}
std::vector<double> take_root(const std::vector<std::vector<double>>& all, int root) { return all[root]; }

std::vector<double> bucket_to_doubles(const std::vector<Tensor>& tensors, const Bucket& b, double weight) {
  Tensor flat = Tensor::empty({b.numel}, DType::F32, Device::CPU);
  flatten_bucket(tensors, b, flat);
  const float* p = flat.data<float>();
  std::vector<double> v(static_cast<size_t>(b.numel));
  for (size_t i = 0; i < v.size(); i++) v[i] = weight * static_cast<double>(p[i]);
  return v;
}
void doubles_to_bucket(const std::vector<double>& v, const Bucket& b, std::vector<Tensor>& tensors) {
  Tensor flat = Tensor::empty({b.numel}, DType::F32, Device::CPU);
  float* p = flat.data<float>();
  for (size_t i = 0; i < v.size(); i++) p[i] = static_cast<float>(v[i]);
  unflatten_bucket(flat, b, tensors);
}
}  // namespace

std::string SimulatedCommunicator::describe() const {
  return str("simulated, rank ", rank_, " of ", world_size());
}

void SimulatedCommunicator::all_reduce_sum(std::vector<Tensor>& tensors, float weight) {
  for (const Bucket& b : plan_buckets(tensors, group_->bucket_bytes())) {
    std::vector<double> sum = group_->exchange(rank_, bucket_to_doubles(tensors, b, weight), sum_in_rank_order, 0);
    doubles_to_bucket(sum, b, tensors);
  }
}

void SimulatedCommunicator::all_reduce_sum(std::vector<double>& values) {
  values = group_->exchange(rank_, values, sum_in_rank_order, 0);
}

void SimulatedCommunicator::broadcast(std::vector<Tensor>& tensors, int root) {
  for (const Bucket& b : plan_buckets(tensors, group_->bucket_bytes())) {
    std::vector<double> v = group_->exchange(rank_, bucket_to_doubles(tensors, b, 1.0), take_root, root);
    doubles_to_bucket(v, b, tensors);
  }
}

void SimulatedCommunicator::barrier() { group_->exchange(rank_, {}, sum_in_rank_order, 0); }

// ---- who am I ----------------------------------------------------------------

namespace {
int env_int(const char* (*get_env)(const char*), const char* name, int fallback) {
  const char* v = get_env(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  IFLAME_CHECK(end && *end == 0 && x >= 0, "environment variable ", name, "='", v, "' is not a count");
  return static_cast<int>(x);
}
}  // namespace

DistributedSetup resolve_distributed(int rank, int world_size, int local_rank, const std::string& rendezvous,
                                     const char* (*get_env)(const char*)) {
  DistributedSetup s;
  const char* master_addr = get_env("MASTER_ADDR");
  const char* master_port = get_env("MASTER_PORT");
  std::string env_rendezvous =
      master_addr && *master_addr && master_port && *master_port ? str(master_addr, ":", master_port) : "";
  if (world_size > 0 || rank >= 0) {
    IFLAME_CHECK(world_size > 0 && rank >= 0, "--rank and --world-size go together");
    IFLAME_CHECK(rank < world_size, "--rank ", rank, " is outside --world-size ", world_size);
    s.rank = rank;
    s.world_size = world_size;
    s.local_rank = local_rank >= 0 ? local_rank : -1;  // -1: rank modulo the visible GPUs
    s.rendezvous = rendezvous.empty() ? env_rendezvous : rendezvous;
    s.launcher = "flags";
    IFLAME_CHECK(world_size == 1 || !s.rendezvous.empty(),
                 "--world-size ", world_size, " needs --rendezvous FILE or HOST:PORT (or MASTER_ADDR and MASTER_PORT)");
    return s;
  }
  int ompi_size = env_int(get_env, "OMPI_COMM_WORLD_SIZE", 0), pmi_size = env_int(get_env, "PMI_SIZE", 0);
  if (ompi_size > 1 || pmi_size > 1) {
    s.launcher = "mpirun";
    if (ompi_size > 1) {
      s.world_size = ompi_size;
      s.rank = env_int(get_env, "OMPI_COMM_WORLD_RANK", 0);
      s.local_rank = env_int(get_env, "OMPI_COMM_WORLD_LOCAL_RANK", -1);
    } else {
      s.world_size = pmi_size;
      s.rank = env_int(get_env, "PMI_RANK", 0);
      s.local_rank = env_int(get_env, "MPI_LOCALRANKID", -1);
    }
    s.rendezvous = rendezvous.empty() ? env_rendezvous : rendezvous;
    s.mpi = s.rendezvous.empty();
    if (local_rank >= 0) s.local_rank = local_rank;
    return s;
  }
  int slurm_tasks = env_int(get_env, "SLURM_STEP_NUM_TASKS", 0);
  if (slurm_tasks > 1) {
    s.launcher = "slurm";
    s.world_size = slurm_tasks;
    s.rank = env_int(get_env, "SLURM_PROCID", -1);
    IFLAME_CHECK(s.rank >= 0, "SLURM_STEP_NUM_TASKS is ", slurm_tasks, " but SLURM_PROCID is not set");
    s.local_rank = local_rank >= 0 ? local_rank : env_int(get_env, "SLURM_LOCALID", -1);
    s.rendezvous = !rendezvous.empty() ? rendezvous : env_rendezvous;
    if (s.rendezvous.empty()) {
      const char* job = get_env("SLURM_JOB_ID");
      const char* step = get_env("SLURM_STEP_ID");
      IFLAME_CHECK(job && *job, "under srun without SLURM_JOB_ID: pass --rendezvous FILE or HOST:PORT");
      s.rendezvous = str(".iflame-rendezvous-", job, ".", step && *step ? step : "0");
    }
    IFLAME_CHECK(s.rank < s.world_size, "SLURM_PROCID ", s.rank, " is outside SLURM_STEP_NUM_TASKS ", s.world_size);
    return s;
  }
  IFLAME_CHECK(rendezvous.empty(), "--rendezvous needs --world-size and --rank (or a launcher: mpirun, srun)");
  return s;  // a single process
}

}  // namespace iflame
