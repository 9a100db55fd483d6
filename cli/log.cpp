// SPDX-License-Identifier: MIT
// cli/log.cpp: text and JSON-lines log output (see log.hpp).
#include "log.hpp"

#include "json.hpp"

#include <fmt/format.h>

#include <ctime>

namespace detour::cli {

namespace {

constexpr std::string_view level_name(log_level level) noexcept {
  switch (level) {
  case log_level::debug:
    return "debug";
  case log_level::info:
    return "info";
  case log_level::warn:
    return "warn";
  case log_level::error:
    return "error";
  case log_level::off:
    return "off";
  }
  return "?";
}

void append_timestamp(fmt::memory_buffer& out) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  ::gmtime_r(&ts.tv_sec, &tm);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 ts.tv_nsec / 1'000'000);
}

bool needs_quotes(std::string_view s) {
  if (s.empty()) return true;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || c == '"' || c == '=' || c == '\\' || u == 0x7f) return true;
  }
  return false;
}

void append_value(fmt::memory_buffer& out, const log_field::value_type& v, bool json) {
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string_view>) {
          if (json || needs_quotes(x)) {
            append_json_string(out, x);
          } else {
            out.append(x);
          }
        } else if constexpr (std::is_same_v<T, bool>) {
          out.append(std::string_view(x ? "true" : "false"));
        } else {
          fmt::format_to(std::back_inserter(out), "{}", x);
        }
      },
      v);
}

} // namespace

std::optional<log_level> parse_log_level(std::string_view text) noexcept {
  for (auto l :
       {log_level::debug, log_level::info, log_level::warn, log_level::error, log_level::off}) {
    if (text == level_name(l)) return l;
  }
  if (text == "warning") return log_level::warn;
  return std::nullopt;
}

std::optional<log_format> parse_log_format(std::string_view text) noexcept {
  if (text == "text") return log_format::text;
  if (text == "json") return log_format::json;
  return std::nullopt;
}

void logger::write(log_level level, std::string_view event,
                   std::initializer_list<log_field> fields) {
  fmt::memory_buffer out;
  if (format_ == log_format::json) {
    out.append(std::string_view("{\"ts\":\""));
    append_timestamp(out);
    out.append(std::string_view("\",\"level\":"));
    append_json_string(out, level_name(level));
    out.append(std::string_view(",\"event\":"));
    append_json_string(out, event);
    if (!tag_key_.empty()) {
      out.push_back(',');
      append_json_string(out, tag_key_);
      fmt::format_to(std::back_inserter(out), ":{}", tag_value_);
    }
    for (const auto& f : fields) {
      out.push_back(',');
      append_json_string(out, f.key);
      out.push_back(':');
      append_value(out, f.value, true);
    }
    out.append(std::string_view("}\n"));
  } else {
    append_timestamp(out);
    fmt::format_to(std::back_inserter(out), " {:<5} {}", level_name(level), event);
    if (!tag_key_.empty()) fmt::format_to(std::back_inserter(out), " {}={}", tag_key_, tag_value_);
    for (const auto& f : fields) {
      out.push_back(' ');
      out.append(f.key);
      out.push_back('=');
      append_value(out, f.value, false);
    }
    out.push_back('\n');
  }
  std::fwrite(out.data(), 1, out.size(), out_);
  std::fflush(out_);
}

} // namespace detour::cli
