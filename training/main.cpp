// main.cpp: the ./train program. Flags and defaults: training/train_config.cpp;
// data parallel launching (--gpus, mpirun, srun, by hand): docs/distributed.md.
#include <cstdio>
#include <cstdlib>

#include "core/device.h"
#include "core/error.h"
#include "ops/kernel_choices.h"
#include "training/benchmark.h"
#include "training/distributed.h"
#include "training/launcher.h"
#include "training/mpi_bootstrap.h"
#include "training/trainer.h"

namespace {
const char* read_env(const char* name) { return std::getenv(name); }
}  // namespace

int main(int argc, char** argv) {
  using namespace iflame;
  ops::read_kernel_choices_from_environment();  // once, before any kernel runs
  int rank = 0;
  try {
    bool help = false;
    TrainConfig config = parse_train_args(argc, argv, help);
    if (help) {
      std::fputs(train_usage().c_str(), stdout);
      return 0;
    }
    if (config.bench_kernels) {
      run_attention_benchmark(config);
      run_optimizer_benchmark(config);
      return 0;
    }
    if (config.estimate_memory) {
      print_memory_estimate(config);
      return 0;
    }
    if (config.bench) {
      run_train_benchmark(config);
      return 0;
    }
    if (config.gpus > 1) return launch_local(argc, argv, config.gpus);

    DistributedSetup dist =
        resolve_distributed(config.rank, config.world_size, config.local_rank, config.rendezvous, read_env);
    rank = dist.rank;
    std::shared_ptr<Communicator> comm;
    if (!dist.launcher.empty()) {
      if (dist.mpi) {
        int mpi_rank = 0, mpi_size = 0;
        mpi_start(mpi_rank, mpi_size);
        IFLAME_CHECK(mpi_rank == dist.rank && mpi_size == dist.world_size, "MPI says rank ", mpi_rank, " of ",
                     mpi_size, ", the environment rank ", dist.rank, " of ", dist.world_size);
      }
      if (!nccl_built())  // throws, saying what this build lacks (CUDA or NCCL)
        make_nccl_communicator(dist.rank, dist.world_size, dist.rendezvous, 0);
      IFLAME_CHECK(config.device != "cpu", "data-parallel training (", dist.world_size,
                   " processes) runs over NCCL and needs --device cuda");
      const int gpus = cuda_device_count();
      IFLAME_CHECK(gpus > 0, "data-parallel training needs a GPU, and none is usable (",
                   cuda_unavailable_reason(), ")");
      const int local = dist.local_rank >= 0 ? dist.local_rank : dist.rank;
      cuda_set_device(local % gpus);  // before any other GPU work
      comm = make_nccl_communicator(dist.rank, dist.world_size, dist.rendezvous, config.rendezvous_timeout_s,
                                    static_cast<size_t>(config.bucket_mb) << 20);
    }
    install_stop_signal_handlers();
    int rc;
    {
      Trainer trainer(config, comm);
      rc = trainer.run();
    }
    comm.reset();
    mpi_finish();
    return rc;
  } catch (const std::exception& e) {
    if (rank > 0) std::fprintf(stderr, "train (rank %d): error: %s\n", rank, e.what());
    else std::fprintf(stderr, "train: error: %s\n", e.what());
    return 2;
  }
}
