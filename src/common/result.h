// Result<T>: the value of an operation that can fail in an expected way, or the
// error a person can act on. Expected failures are values, not exceptions; exceptions
// are for start-up and programming errors only. Plain value type: any thread.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace hylab {

enum class Errc {
  kInvalidInput,  // the user's input is wrong: exit code 2
  kNotFound,
  kIo,
  kCannotPlace,  // a valid workload that no allowed environment can take: exit code 3
  kUnavailable,  // the other side did not answer in time: worth trying again later
  kInternal,
};

struct Error {
  Errc code = Errc::kInternal;
  std::string message;
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

inline Error invalid_input(std::string message) {
  return Error{Errc::kInvalidInput, std::move(message)};
}

}  // namespace hylab
