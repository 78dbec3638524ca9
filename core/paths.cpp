// paths.cpp: input-file checks with plain messages, and output-over-input checks.
#include "core/paths.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/flags.h"

namespace iflame {

void require_readable_file(const std::string& path, const std::string& what) {
  const std::string tail = what.empty() ? "" : " (" + what + ")";
  IFLAME_REQUIRE(!path.empty(), "empty file name", tail);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) IFLAME_REJECT("no such file: ", path, tail);
    IFLAME_REJECT(path, ": ", std::strerror(errno), tail);
  }
  IFLAME_REQUIRE(!S_ISDIR(st.st_mode), path, " is a directory, not a file", tail);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  IFLAME_REQUIRE(fd >= 0, path, ": cannot open: ", std::strerror(errno), tail);
  ::close(fd);
}

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  const bool same = std::filesystem::equivalent(a, b, ec);
  return !ec && same;
}

void refuse_output_over_input(const std::string& output, const std::vector<std::string>& inputs,
                              const std::string& flag) {
  for (const std::string& in : inputs)
    if (same_file(output, in))
      throw UsageError(str(flag, " ", output, " is also an input (", in, "): refusing to write over it"));
}

}  // namespace iflame
