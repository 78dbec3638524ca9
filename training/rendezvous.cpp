// rendezvous.cpp: the file and TCP rendezvous (plain POSIX; see rendezvous.h).
#include "training/rendezvous.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/error.h"

namespace iflame {

namespace {

using Clock = std::chrono::steady_clock;
constexpr char kMagic[4] = {'I', 'F', 'R', 'V'};
constexpr uint32_t kMaxPayload = 1 << 20;

double seconds_left(Clock::time_point deadline) {
  return std::chrono::duration<double>(deadline - Clock::now()).count();
}
int millis_left(Clock::time_point deadline) {
  double s = seconds_left(deadline);
  return s <= 0 ? 0 : static_cast<int>(s * 1000) + 1;
}
void sleep_ms(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; i++) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Closes a socket or file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// Reads or writes exactly n bytes before the deadline; false on timeout or a closed peer.
bool io_full(int fd, char* buf, size_t n, bool writing, Clock::time_point deadline, std::string& why) {
  size_t done = 0;
  while (done < n) {
    pollfd p{fd, static_cast<short>(writing ? POLLOUT : POLLIN), 0};
    int r = poll(&p, 1, millis_left(deadline));
    if (r == 0) {
      why = "timed out";
      return false;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      why = std::strerror(errno);
      return false;
    }
    ssize_t k = writing ? send(fd, buf + done, n - done, MSG_NOSIGNAL) : recv(fd, buf + done, n - done, 0);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      why = std::strerror(errno);
      return false;
    }
    if (k == 0) {
      why = "the other side closed the connection";
      return false;
    }
    done += static_cast<size_t>(k);
  }
  return true;
}

// ---- file ----------------------------------------------------------------

std::string file_exchange(const RendezvousSpec& spec, int rank, int world_size, const std::string& payload,
                          double timeout_s) {
  const std::string& path = spec.path;
  if (rank == 0) {
    struct stat st;
    IFLAME_CHECK(stat(path.c_str(), &st) != 0, "rendezvous file ", path,
                 " already exists (left by an earlier run?): delete it, or use a new path for each job");
    std::string body(kMagic, 4);
    put_u32(body, static_cast<uint32_t>(world_size));
    put_u32(body, static_cast<uint32_t>(payload.size()));
    body += payload;
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    Fd f(open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    IFLAME_CHECK(f.fd >= 0, "rendezvous: cannot create ", tmp, ": ", std::strerror(errno));
    IFLAME_CHECK(write(f.fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) && fsync(f.fd) == 0,
                 "rendezvous: cannot write ", tmp, ": ", std::strerror(errno));
    IFLAME_CHECK(rename(tmp.c_str(), path.c_str()) == 0, "rendezvous: cannot rename ", tmp, " to ", path, ": ",
                 std::strerror(errno));
    return payload;
  }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  while (true) {
    Fd f(open(path.c_str(), O_RDONLY));
    if (f.fd >= 0) {
      std::string body;
      char buf[4096];
      ssize_t k;
      while ((k = read(f.fd, buf, sizeof buf)) > 0) body.append(buf, static_cast<size_t>(k));
      IFLAME_CHECK(body.size() >= 12 && std::memcmp(body.data(), kMagic, 4) == 0, "rendezvous file ", path,
                   " is not one of ours (", body.size(), " bytes)");
      uint32_t w = get_u32(body.data() + 4), n = get_u32(body.data() + 8);
      IFLAME_CHECK(w == static_cast<uint32_t>(world_size), "rendezvous file ", path, " was written by a run of ", w,
                   " processes, this is rank ", rank, " of ", world_size, " (a stale file from another job?)");
      IFLAME_CHECK(body.size() == 12 + static_cast<size_t>(n), "rendezvous file ", path, " is truncated: ",
                   body.size(), " bytes, expected ", 12 + n);
      return body.substr(12);
    }
    IFLAME_CHECK(errno == ENOENT, "rendezvous: cannot read ", path, ": ", std::strerror(errno));
    IFLAME_CHECK(seconds_left(deadline) > 0, "rendezvous: rank ", rank, " waited ", timeout_s, " s for ", path,
                 " from rank 0; is rank 0 running, and is the file on a filesystem every rank sees?");
    sleep_ms(50);
  }
}

// ---- TCP -----------------------------------------------------------------

std::string tcp_serve(const RendezvousSpec& spec, int world_size, const std::string& payload, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  // Dual-stack IPv6 (IPv4 clients too) where the kernel has it, else IPv4.
  Fd s(socket(AF_INET6, SOCK_STREAM, 0));
  int one = 1, zero = 0, rc = -1;
  if (s.fd >= 0) {
    setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s.fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(static_cast<uint16_t>(spec.port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    if (rc != 0 && errno != EADDRINUSE) {
      close(s.fd);
      s.fd = -1;
    }
  }
  if (s.fd < 0) {
    s.fd = socket(AF_INET, SOCK_STREAM, 0);
    IFLAME_CHECK(s.fd >= 0, "rendezvous: socket(): ", std::strerror(errno));
    setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<uint16_t>(spec.port));
    rc = bind(s.fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  IFLAME_CHECK(rc == 0, "rendezvous: rank 0 cannot listen on port ", spec.port, ": ", std::strerror(errno),
               " (another job on this port? pick another with --rendezvous HOST:PORT)");
  IFLAME_CHECK(listen(s.fd, 128) == 0, "rendezvous: listen(): ", std::strerror(errno));

  std::vector<bool> joined(world_size, false);
  joined[0] = true;
  for (int served = 1; served < world_size;) {
    pollfd p{s.fd, POLLIN, 0};
    int r = poll(&p, 1, millis_left(deadline));
    if (r < 0 && errno == EINTR) continue;
    IFLAME_CHECK(r > 0, "rendezvous: rank 0 waited ", timeout_s, " s on port ", spec.port, " but only ", served,
                 " of ", world_size, " ranks joined (are the others running, with --rendezvous ", spec.host, ":",
                 spec.port, "?)");
    Fd c(accept(s.fd, nullptr, nullptr));
    if (c.fd < 0) continue;
    char hello[12];
    std::string why;
    if (!io_full(c.fd, hello, sizeof hello, false, deadline, why) || std::memcmp(hello, kMagic, 4) != 0)
      continue;  // not one of ours (a port scanner, a health check): ignore it
    int rank = static_cast<int>(get_u32(hello + 4)), w = static_cast<int>(get_u32(hello + 8));
    uint32_t status = 0;
    if (w != world_size) status = 1;
    else if (rank <= 0 || rank >= world_size) status = 2;
    else if (joined[rank]) status = 3;
    std::string reply(kMagic, 4);
    put_u32(reply, status);
    put_u32(reply, static_cast<uint32_t>(status == 0 ? payload.size() : 0));
    if (status == 0) reply += payload;
    if (!io_full(c.fd, &reply[0], reply.size(), true, deadline, why)) continue;
    IFLAME_CHECK(status != 1, "rendezvous: a process says it is rank ", rank, " of ", w, ", but rank 0 runs ",
                 world_size, " (same --world-size everywhere?)");
    IFLAME_CHECK(status != 2, "rendezvous: a process says it is rank ", rank, ", outside 1..", world_size - 1);
    IFLAME_CHECK(status != 3, "rendezvous: two processes say they are rank ", rank);
    joined[rank] = true;
    served++;
  }
  return payload;
}

std::string tcp_join(const RendezvousSpec& spec, int rank, int world_size, double timeout_s) {
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(timeout_s));
  std::string last_error = "no attempt";
  while (true) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    std::string port = std::to_string(spec.port);
    int g = getaddrinfo(spec.host.c_str(), port.c_str(), &hints, &res);
    if (g != 0) {
      last_error = str("cannot resolve host '", spec.host, "': ", gai_strerror(g));
    } else {
      for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        Fd c(socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol));
        if (c.fd < 0) continue;
        // Non-blocking connect, so an unreachable host cannot outlast the timeout.
        fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
        int rc = connect(c.fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
          pollfd p{c.fd, POLLOUT, 0};
          if (poll(&p, 1, std::min(millis_left(deadline), 5000)) == 1) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
            rc = err == 0 ? 0 : -1;
            errno = err;
          } else {
            errno = ETIMEDOUT;
          }
        }
        if (rc != 0) {
          last_error = std::strerror(errno);
          continue;
        }
        std::string hello(kMagic, 4);
        put_u32(hello, static_cast<uint32_t>(rank));
        put_u32(hello, static_cast<uint32_t>(world_size));
        char head[12];
        std::string why;
        if (!io_full(c.fd, &hello[0], hello.size(), true, deadline, why) ||
            !io_full(c.fd, head, sizeof head, false, deadline, why)) {
          last_error = why;
          continue;
        }
        freeaddrinfo(res);
        IFLAME_CHECK(std::memcmp(head, kMagic, 4) == 0, "rendezvous: ", spec.host, ":", spec.port,
                     " answered, but it is not rank 0 of an iflame run");
        uint32_t status = get_u32(head + 4), n = get_u32(head + 8);
        IFLAME_CHECK(status != 1, "rendezvous: rank 0 at ", spec.host, ":", spec.port,
                     " runs a different world size than ", world_size, " (same --world-size everywhere?)");
        IFLAME_CHECK(status != 2, "rendezvous: rank 0 refused rank ", rank, " (outside its world size)");
        IFLAME_CHECK(status != 3, "rendezvous: rank 0 already has a rank ", rank, " (two processes with one rank?)");
        IFLAME_CHECK(status == 0 && n <= kMaxPayload, "rendezvous: bad answer from ", spec.host, ":", spec.port);
        std::string payload(n, '\0');
        IFLAME_CHECK(n == 0 || io_full(c.fd, &payload[0], n, false, deadline, why), "rendezvous: reading from ",
                     spec.host, ":", spec.port, ": ", why);
        return payload;
      }
      freeaddrinfo(res);
    }
    IFLAME_CHECK(seconds_left(deadline) > 0, "rendezvous: rank ", rank, " could not reach rank 0 at ", spec.host,
                 ":", spec.port, " within ", timeout_s, " s (last error: ", last_error,
                 "); is rank 0 running, and is the port open between the nodes?");
    sleep_ms(100);
  }
}

}  // namespace

RendezvousSpec parse_rendezvous(const std::string& spec) {
  IFLAME_CHECK(!spec.empty(), "rendezvous: empty spec (give a FILE on a shared filesystem or HOST:PORT)");
  RendezvousSpec r;
  size_t colon = spec.rfind(':');
  if (colon != std::string::npos && colon + 1 < spec.size() && spec.find('/') == std::string::npos) {
    std::string port = spec.substr(colon + 1);
    char* end = nullptr;
    long p = std::strtol(port.c_str(), &end, 10);
    if (end && *end == 0) {
      IFLAME_CHECK(p >= 1 && p <= 65535, "rendezvous ", spec, ": port ", p, " outside 1..65535");
      IFLAME_CHECK(colon > 0, "rendezvous ", spec, ": no host before the port");
      r.tcp = true;
      r.host = spec.substr(0, colon);
      if (r.host.size() > 2 && r.host.front() == '[' && r.host.back() == ']') r.host = r.host.substr(1, r.host.size() - 2);
      r.port = static_cast<int>(p);
      return r;
    }
  }
  r.path = spec;
  return r;
}

std::string rendezvous_exchange(const RendezvousSpec& spec, int rank, int world_size, const std::string& payload,
                                double timeout_s) {
  IFLAME_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rendezvous: rank ", rank,
               " outside world size ", world_size);
  IFLAME_CHECK(payload.size() <= kMaxPayload, "rendezvous: payload too large");
  if (world_size == 1) return payload;
  if (!spec.tcp) return file_exchange(spec, rank, world_size, payload, timeout_s);
  return rank == 0 ? tcp_serve(spec, world_size, payload, timeout_s) : tcp_join(spec, rank, world_size, timeout_s);
}

void remove_rendezvous_file(const RendezvousSpec& spec, int rank) {
  if (rank == 0 && !spec.tcp && !spec.path.empty()) unlink(spec.path.c_str());
}

}  // namespace iflame
