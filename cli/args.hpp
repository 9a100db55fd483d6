// SPDX-License-Identifier: MIT
// cli/args.hpp: a small reader for subcommand options: `--name value`, `--name=value` and bare
// `--flag`, with errors that name the option.
#pragma once

#include "commands.hpp"

#include <charconv>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace detour::cli {

/// A command-line mistake; the message is printed after "detour <command>: ".
class usage_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Parses a size in bytes: "512", "16k", "4m", "1g" (powers of 1024; "b", "K", "KiB", "M",
/// "MiB", "G", "GiB" too) within [min, max]. Throws usage_error naming |option|.
inline std::uint64_t parse_size(std::string_view option, std::string_view text, std::uint64_t min,
                                std::uint64_t max) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  unsigned shift = 99;
  if (unit.empty() || unit == "b") shift = 0;
  if (unit == "k" || unit == "K" || unit == "KiB") shift = 10;
  if (unit == "m" || unit == "M" || unit == "MiB") shift = 20;
  if (unit == "g" || unit == "G" || unit == "GiB") shift = 30;
  if (ec != std::errc{} || shift == 99 || n > (max >> shift) || (n << shift) < min) {
    throw usage_error(std::string(option) + " wants a size from " + std::to_string(min) + " to " +
                      std::to_string(max) + " bytes, like 512, 16k, 4m or 1g, not '" +
                      std::string(text) + "'");
  }
  return n << shift;
}

/// Walks the arguments one option at a time:
///   while (r.next()) { if (r.is("--listen")) x = r.value(); else if ... else r.unknown(); }
class arg_reader {
public:
  explicit arg_reader(args a) noexcept : args_(a) {}

  /// Advances to the next option; false at the end.
  bool next() {
    if (pos_ >= args_.size()) return false;
    std::string_view a = args_[pos_++];
    inline_value_.reset();
    if (a.size() > 2 && a.substr(0, 2) == "--") {
      if (const auto eq = a.find('='); eq != std::string_view::npos) {
        inline_value_ = a.substr(eq + 1);
        a = a.substr(0, eq);
      }
    } else if (a != "-h") {
      throw usage_error("unexpected argument '" + std::string(a) + "'");
    }
    name_ = a;
    return true;
  }

  bool is(std::string_view name) const noexcept { return name_ == name; }
  std::string_view name() const noexcept { return name_; }

  /// The option's value (the next argument, or what follows '=').
  std::string_view value() {
    if (inline_value_) return *inline_value_;
    if (pos_ >= args_.size()) throw usage_error(std::string(name_) + " needs a value");
    return args_[pos_++];
  }

  /// The value as an unsigned number within [min, max].
  std::uint64_t number(std::uint64_t min, std::uint64_t max) {
    const std::string_view v = value();
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n < min || n > max) {
      throw usage_error(std::string(name_) + " wants a number from " + std::to_string(min) +
                        " to " + std::to_string(max) + ", not '" + std::string(v) + "'");
    }
    return n;
  }

  /// The value as a size in bytes within [min, max] (parse_size: 512, 16k, 4m, 1g).
  std::uint64_t size(std::uint64_t min, std::uint64_t max) {
    return parse_size(name_, value(), min, max);
  }

  /// A flag takes no value.
  void flag() const {
    if (inline_value_) throw usage_error(std::string(name_) + " takes no value");
  }

  [[noreturn]] void unknown() const {
    throw usage_error("unknown option '" + std::string(name_) + "' (see --help)");
  }

private:
  args args_;
  std::size_t pos_ = 0;
  std::string_view name_;
  std::optional<std::string_view> inline_value_;
};

/// Parses a duration: "30s", "1500ms", "5m", "2h", or a bare number of seconds. Returns
/// nanoseconds. Throws usage_error naming |option|.
inline std::uint64_t parse_duration(std::string_view option, std::string_view text) {
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  const std::string_view unit(end, static_cast<std::size_t>(text.data() + text.size() - end));
  std::uint64_t scale = 0;
  if (unit.empty() || unit == "s") scale = 1'000'000'000;
  if (unit == "ms") scale = 1'000'000;
  if (unit == "m") scale = 60'000'000'000;
  if (unit == "h") scale = 3'600'000'000'000;
  // A day is far beyond any timeout here; the cap also keeps the product from overflowing.
  if (ec != std::errc{} || scale == 0 || n > 86'400'000 || n * scale > 86'400'000'000'000) {
    throw usage_error(std::string(option) + " wants a duration like 30s, 1500ms, 5m or 2h, not '" +
                      std::string(text) + "'");
  }
  return n * scale;
}

} // namespace detour::cli
