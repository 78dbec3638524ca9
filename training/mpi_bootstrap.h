// mpi_bootstrap.h: the little MPI that `mpirun -np N ./train` uses: start MPI,
// hand rank 0's NCCL id to every rank, finish. MPI carries no training traffic.
// Optional at build time (Makefile: MPI=1 when mpi.h is found); in a build
// without it, mpi_built() is false and the other calls throw.
#pragma once
#include <string>

namespace iflame {

bool mpi_built();
// MPI_Init (once); returns this process's rank and the world size.
void mpi_start(int& rank, int& world_size);
// Rank 0's bytes (exactly n of them) on every rank.
std::string mpi_broadcast_bytes(const std::string& bytes, size_t n);
// MPI_Finalize if mpi_start ran.
void mpi_finish();

}  // namespace iflame
