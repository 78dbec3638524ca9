// error.h: the project's exception types and the checks that throw them.
// Internal checks (IFLAME_CHECK: a bad shape, a broken invariant) say where they
// were raised (file:line), so a failure far from its cause is easy to trace.
// Checks of what a user gave (IFLAME_REQUIRE: a file, a flag) throw InputError
// with the message alone: the message names the input and the problem, and a
// source location would only be noise to the user.
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

// A problem with what the user gave: a file, a flag, a folder. No source location.
struct InputError : Error {
  using Error::Error;
};

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

// IFLAME_REQUIRE(cond, pieces...): throw iflame::InputError with the pieces alone.
#define IFLAME_REQUIRE(cond, ...)                                        \
  do {                                                                   \
    if (!(cond)) throw ::iflame::InputError(::iflame::str(__VA_ARGS__)); \
  } while (0)

#define IFLAME_REJECT(...) throw ::iflame::InputError(::iflame::str(__VA_ARGS__))
