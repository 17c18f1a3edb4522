// calq's two kinds of failure (as faiss THROW_IF_NOT / ASSERT, torch TORCH_CHECK / INTERNAL_ASSERT):
//   CALQ_CHECK(cond, "fmt", args...)  bad input from the user: throws calq::Error with a sentence
//                                     shaped "<file or key path>: <what is wrong>; expected <what>".
//   CALQ_ASSERT(cond, "fmt", args...) a broken invariant (a bug): throws calq::InternalError with
//                                     file:line so the CLI can tell the two apart.
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace calq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message), message_(message) {}
  /// The whole message: what() ends at the first NUL, and messages quote file content.
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace calq

#define CALQ_CHECK(cond, ...)           \
  do {                                  \
    if (!(cond)) ::calq::fail(__VA_ARGS__); \
  } while (0)

#define CALQ_ASSERT(cond, ...)                                                           \
  do {                                                                                   \
    if (!(cond))                                                                         \
      throw ::calq::InternalError(fmt::format("{}:{}: internal error: ", __FILE__, __LINE__) + \
                                  fmt::format(__VA_ARGS__));                             \
  } while (0)
