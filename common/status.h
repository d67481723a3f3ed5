// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace dsdfs {

// An errno (positive, 0 = success) plus context for the log. Cheap to move.
class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(int err, std::string context = {}) { return Status(err, std::move(context)); }
  // errno of the calling thread at the time of the call.
  static Status from_errno(std::string context) { return Status(errno, std::move(context)); }

  bool is_ok() const { return err_ == 0; }
  explicit operator bool() const { return is_ok(); }
  int err() const { return err_; }
  const std::string& context() const { return context_; }
  // "context: strerror(err)"
  std::string to_string() const;

 private:
  Status(int err, std::string context) : err_(err == 0 ? EIO : err), context_(std::move(context)) {}
  int err_ = 0;
  std::string context_;
};

// A value or a Status. C++20 has no std::expected; this is the small subset we need.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: implicit by design

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& value() const& { return std::get<T>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }
  int err() const { return is_ok() ? 0 : std::get<Status>(v_).err(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dsdfs
