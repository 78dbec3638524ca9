// error.h: the one exception type of the project and the checks that throw it.
// Every message says where it was raised (file:line) and what went wrong, so a
// failure far from its cause (a bad file, a bad shape) is still easy to trace.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace iflame {

struct Error : std::runtime_error {
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from any streamable pieces: str("bad shape ", n, " in ", file).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  return os.str();
}

[[noreturn]] inline void fail_at(const char* file, int line, const std::string& msg) {
  throw Error(str(file, ":", line, ": ", msg));
}

}  // namespace iflame

// IFLAME_CHECK(cond, pieces...): throw iflame::Error with file:line and the pieces.
#define IFLAME_CHECK(cond, ...)                                                     \
  do {                                                                              \
    if (!(cond)) ::iflame::fail_at(__FILE__, __LINE__, ::iflame::str(__VA_ARGS__)); \
  } while (0)

#define IFLAME_FAIL(...) ::iflame::fail_at(__FILE__, __LINE__, ::iflame::str(__VA_ARGS__))
