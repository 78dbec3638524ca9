// rendezvous.h: how the processes of a data-parallel run find each other.
//
// Rank 0 has a few bytes to give every other rank (the NCCL unique id, which in
// turn tells NCCL where rank 0's bootstrap socket listens). Two plain POSIX ways,
// no MPI needed, both with a timeout and errors that say what was waited for:
//
//   FILE       (a path; needs a filesystem all ranks see) rank 0 writes the bytes
//              to FILE.tmp.<pid> and renames it to FILE (atomic); the others poll
//              for FILE. Rank 0 refuses a FILE that already exists (a stale one
//              would hand out a dead id); remove_rendezvous_file() deletes it once
//              every rank has joined.
//   host:port  rank 0 listens on port (all interfaces); the others connect to
//              host:port, retrying until the timeout, say who they are (rank,
//              world size), and receive the bytes. Rank 0 returns once all
//              world_size - 1 others have been served, so this is also a barrier.
//
// A spec containing ':' whose part after the last ':' is a port number is TCP;
// anything else is a file path.
#pragma once
#include <string>

namespace iflame {

struct RendezvousSpec {
  bool tcp = false;
  std::string path;  // FILE
  std::string host;  // TCP
  int port = 0;
};
RendezvousSpec parse_rendezvous(const std::string& spec);

// Rank 0 passes `payload` and gets it back; every other rank gets rank 0's
// payload. Throws iflame::Error after timeout_s seconds without success.
std::string rendezvous_exchange(const RendezvousSpec& spec, int rank, int world_size, const std::string& payload,
                                double timeout_s);

// Rank 0, after every rank has joined: deletes the file (no-op for TCP).
void remove_rendezvous_file(const RendezvousSpec& spec, int rank);

}  // namespace iflame
