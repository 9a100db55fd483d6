// SPDX-License-Identifier: MIT
// cli/probe_report.hpp: what `detour probe` prints: a small JSON writer (RFC 8259, always
// valid output whatever bytes a server put in a reason phrase), latency summaries (median, p99,
// max), the schedule of an open-loop run and the human units used in the text lines.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace detour::cli::probe {

/// Builds one JSON document. Keys and values are written in call order; commas are automatic.
///   json_writer j; j.begin_object().field("mode", "load").key("tasks").begin_array()...
class json_writer {
public:
  json_writer& begin_object();
  json_writer& end_object();
  json_writer& begin_array();
  json_writer& end_array();
  json_writer& key(std::string_view k);
  json_writer& value(std::string_view v);
  json_writer& value(const char* v) { return value(std::string_view(v)); }
  json_writer& value(std::uint64_t v);
  json_writer& value(std::int64_t v);
  json_writer& value(int v) { return value(static_cast<std::int64_t>(v)); }
  json_writer& value(unsigned v) { return value(static_cast<std::uint64_t>(v)); }
  json_writer& value(double v);
  json_writer& value(bool v);
  json_writer& null();
  template <class T>
  json_writer& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }

  const std::string& str() const noexcept { return out_; }

  /// |s| as a JSON string literal: quotes, escapes, and U+FFFD for bytes that are not UTF-8.
  static std::string quote(std::string_view s);

private:
  void separate();
  std::string out_;
  std::vector<bool> has_items_; // per open container
  bool after_key_ = false;
};

/// Order statistics of a set of durations (nanoseconds). Empty input gives zeros.
struct latency_summary {
  std::uint64_t count = 0;
  std::uint64_t min = 0;
  std::uint64_t p50 = 0;
  std::uint64_t p90 = 0;
  std::uint64_t p99 = 0;
  std::uint64_t max = 0;
  double mean = 0;
};

/// The schedule of an open-loop run (`--rate`): task |index| is due index / rate seconds after
/// |start|, in whole nanoseconds computed from the index (no drift over a long run).
class open_loop_schedule {
public:
  /// |rate| tasks per second (0: every task is due at |start|).
  open_loop_schedule(std::uint64_t rate, std::uint64_t start) noexcept
      : rate_(rate), start_(start) {}
  std::uint64_t due(std::uint64_t index) const noexcept {
    if (rate_ == 0) return start_;
    constexpr std::uint64_t second = 1'000'000'000;
    return start_ + index / rate_ * second + index % rate_ * second / rate_;
  }

private:
  std::uint64_t rate_;
  std::uint64_t start_;
};

/// Nearest-rank percentiles (the value at rank ceil(p * n)). Sorts |samples|.
latency_summary summarize(std::vector<std::uint64_t>& samples);

/// The nearest-rank percentile |p| (0 < p <= 1) of sorted samples; 0 when empty.
std::uint64_t percentile(const std::vector<std::uint64_t>& sorted, double p) noexcept;

/// "850 us", "12.3 ms", "4.56 s".
std::string human_duration(std::uint64_t ns);
/// "512 B", "16 KiB", "1.5 MiB".
std::string human_bytes(std::uint64_t bytes);
/// Milliseconds with three decimals, for JSON.
double to_ms(std::uint64_t ns) noexcept;

/// A stream or connection application code for people: "0x107 header_too_large" when it is
/// one of the library's codes (io::app_code_for: 0x100 + a known errc, the codes detour serve
/// and servers built on the library send), otherwise "0x5".
std::string code_text(std::uint64_t code);

/// Writes a latency summary as a JSON object of milliseconds.
void write_latency(json_writer& j, const latency_summary& s);

} // namespace detour::cli::probe
