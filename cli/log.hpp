// SPDX-License-Identifier: MIT
// cli/log.hpp: structured logging for the `detour` command with fmt: one line per event, an
// event name and key=value fields, written as text for people or as JSON lines for machines.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <optional>
#include <string_view>
#include <type_traits>
#include <variant>

namespace detour::cli {

enum class log_level { debug, info, warn, error, off };
enum class log_format { text, json };

std::optional<log_level> parse_log_level(std::string_view text) noexcept;
std::optional<log_format> parse_log_format(std::string_view text) noexcept;

/// One field of a log line. Strings are not copied: the line is written before the call returns.
struct log_field {
  using value_type = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;
  std::string_view key;
  value_type value;

  log_field(std::string_view k, std::string_view v) : key(k), value(v) {}
  log_field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  log_field(std::string_view k, bool v) : key(k), value(v) {}
  log_field(std::string_view k, double v) : key(k), value(v) {}
  template <class Int>
  requires std::is_integral_v<Int> log_field(std::string_view k, Int v)
      : key(k), value(std::is_signed_v<Int> ? value_type(static_cast<std::int64_t>(v))
                                            : value_type(static_cast<std::uint64_t>(v))) {}
};

/// Writes whole lines to a FILE (stderr by default) with one fwrite each, so lines from several
/// writers never interleave. Text: `2026-01-31T12:00:00.123Z info conn.open conn=1f2e peer=...`
/// (values with spaces or quotes are quoted). JSON: `{"ts":"...","level":"info",
/// "event":"conn.open","conn":"1f2e",...}`.
class logger {
public:
  explicit logger(log_level min = log_level::info, log_format format = log_format::text,
                  std::FILE* out = stderr) noexcept
      : min_(min), format_(format), out_(out) {}

  /// A logger writing to the same place whose every line also carries |key|=|value| right
  /// after the event name (`detour serve --workers`: `worker=1`). |key| must outlive it.
  logger tagged(std::string_view key, std::uint64_t value) const noexcept {
    logger l = *this;
    l.tag_key_ = key;
    l.tag_value_ = value;
    return l;
  }

  bool enabled(log_level level) const noexcept { return level >= min_ && min_ != log_level::off; }
  void write(log_level level, std::string_view event, std::initializer_list<log_field> fields);

  void debug(std::string_view event, std::initializer_list<log_field> fields = {}) {
    if (enabled(log_level::debug)) write(log_level::debug, event, fields);
  }
  void info(std::string_view event, std::initializer_list<log_field> fields = {}) {
    if (enabled(log_level::info)) write(log_level::info, event, fields);
  }
  void warn(std::string_view event, std::initializer_list<log_field> fields = {}) {
    if (enabled(log_level::warn)) write(log_level::warn, event, fields);
  }
  void error(std::string_view event, std::initializer_list<log_field> fields = {}) {
    if (enabled(log_level::error)) write(log_level::error, event, fields);
  }

private:
  log_level min_;
  log_format format_;
  std::FILE* out_;
  std::string_view tag_key_; // empty: no tag
  std::uint64_t tag_value_ = 0;
};

} // namespace detour::cli
