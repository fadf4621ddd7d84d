// Result<T>: a value or an errno-style error code, for the stack's socket calls.
//
// Errors are the POSIX errno values (ECONNREFUSED, EAGAIN, ...) the kernel would return for the
// same call, so the shim passes them through unchanged. <cerrno> only names numbers here; stack/
// never reads or writes the thread's errno.
#pragma once

#include <cerrno>
#include <utility>

namespace shake {

class [[nodiscard]] Result0 {
 public:
  constexpr Result0() = default;
  static constexpr Result0 Error(int err) { return Result0(err); }
  constexpr bool ok() const { return err_ == 0; }
  constexpr int error() const { return err_; }

 private:
  constexpr explicit Result0(int err) : err_(err) {}
  int err_ = 0;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  constexpr Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  constexpr Result(Result0 e) : err_(e.error()) {}         // NOLINT: from Error(...)
  constexpr bool ok() const { return err_ == 0; }
  constexpr int error() const { return err_; }
  constexpr const T& value() const { return value_; }
  constexpr T& value() { return value_; }
  constexpr const T& operator*() const { return value_; }

 private:
  T value_{};
  int err_ = 0;
};

constexpr Result0 Error(int err) { return Result0::Error(err); }
constexpr Result0 Ok() { return Result0(); }

}  // namespace shake
