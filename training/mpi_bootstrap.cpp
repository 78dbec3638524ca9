// mpi_bootstrap.cpp: MPI_Init, one broadcast of the NCCL id, MPI_Finalize.
#include "training/mpi_bootstrap.h"

#include "core/error.h"

#ifdef IFLAME_MPI
#define OMPI_SKIP_MPICXX 1  // the C API is all we use
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

namespace iflame {

namespace {
bool g_started = false;
void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  IFLAME_FAIL("MPI error in ", what, ": ", std::string(msg, static_cast<size_t>(len)));
}
}  // namespace

bool mpi_built() { return true; }

void mpi_start(int& rank, int& world_size) {
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    check_mpi(MPI_Init(nullptr, nullptr), "MPI_Init");
    g_started = true;
  }
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size), "MPI_Comm_size");
}

std::string mpi_broadcast_bytes(const std::string& bytes, size_t n) {
  std::string buf = bytes;
  buf.resize(n);
  check_mpi(MPI_Bcast(&buf[0], static_cast<int>(n), MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return buf;
}

void mpi_finish() {
  if (g_started) MPI_Finalize();
  g_started = false;
}

}  // namespace iflame

#else

namespace iflame {

bool mpi_built() { return false; }
void mpi_start(int&, int&) {
  IFLAME_FAIL("launched by mpirun, but this build has no MPI (no mpi.h at build time: install libopenmpi-dev and "
              "rebuild, or pass --rendezvous FILE|HOST:PORT, or set MASTER_ADDR and MASTER_PORT)");
}
std::string mpi_broadcast_bytes(const std::string&, size_t) {
  IFLAME_FAIL("this build has no MPI");
}
void mpi_finish() {}

}  // namespace iflame

#endif
