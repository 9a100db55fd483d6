// SPDX-License-Identifier: MIT
// cli/probe_report.cpp: JSON writer, latency summaries and units (see probe_report.hpp).
#include "probe_report.hpp"

#include "json.hpp"

#include <detour/error.hpp>
#include <detour/io/server_stream.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <span>

namespace detour::cli::probe {

std::string json_writer::quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_string(out, s, json_bad_utf8::replace);
  return out;
}

void json_writer::separate() {
  if (after_key_) {
    after_key_ = false;
    return;
  }
  if (!has_items_.empty()) {
    if (has_items_.back()) out_.push_back(',');
    has_items_.back() = true;
  }
}

json_writer& json_writer::begin_object() {
  separate();
  out_.push_back('{');
  has_items_.push_back(false);
  return *this;
}

json_writer& json_writer::end_object() {
  out_.push_back('}');
  has_items_.pop_back();
  return *this;
}

json_writer& json_writer::begin_array() {
  separate();
  out_.push_back('[');
  has_items_.push_back(false);
  return *this;
}

json_writer& json_writer::end_array() {
  out_.push_back(']');
  has_items_.pop_back();
  return *this;
}

json_writer& json_writer::key(std::string_view k) {
  separate();
  out_ += quote(k);
  out_.push_back(':');
  after_key_ = true;
  return *this;
}

json_writer& json_writer::value(std::string_view v) {
  separate();
  out_ += quote(v);
  return *this;
}

json_writer& json_writer::value(std::uint64_t v) {
  separate();
  out_ += fmt::format("{}", v);
  return *this;
}

json_writer& json_writer::value(std::int64_t v) {
  separate();
  out_ += fmt::format("{}", v);
  return *this;
}

json_writer& json_writer::value(double v) {
  separate();
  // JSON has no NaN or infinity.
  out_ += std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string("null");
  return *this;
}

json_writer& json_writer::value(bool v) {
  separate();
  out_ += v ? "true" : "false";
  return *this;
}

json_writer& json_writer::null() {
  separate();
  out_ += "null";
  return *this;
}

std::uint64_t percentile(const std::vector<std::uint64_t>& sorted, double p) noexcept {
  if (sorted.empty()) return 0;
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<std::size_t>(std::ceil(p * n));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

latency_summary summarize(std::vector<std::uint64_t>& samples) {
  latency_summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.p50 = percentile(samples, 0.50);
  s.p90 = percentile(samples, 0.90);
  s.p99 = percentile(samples, 0.99);
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0,
                           [](double a, std::uint64_t b) { return a + static_cast<double>(b); }) /
           static_cast<double>(samples.size());
  return s;
}

std::string human_duration(std::uint64_t ns) {
  const auto v = static_cast<double>(ns);
  if (ns < 1'000'000) return fmt::format("{:.0f} us", v / 1e3);
  if (ns < 1'000'000'000) return fmt::format("{:.3g} ms", v / 1e6);
  return fmt::format("{:.3g} s", v / 1e9);
}

std::string human_bytes(std::uint64_t bytes) {
  const auto v = static_cast<double>(bytes);
  if (bytes < 1024) return fmt::format("{} B", bytes);
  if (bytes < 1024 * 1024) return fmt::format("{:.4g} KiB", v / 1024);
  if (bytes < 1024ULL * 1024 * 1024) return fmt::format("{:.4g} MiB", v / (1024 * 1024));
  return fmt::format("{:.4g} GiB", v / (1024.0 * 1024 * 1024));
}

std::string code_text(std::uint64_t code) {
  if (code > detour::io::app_code_base && code < detour::io::app_code_base + 0x100) {
    const auto e = static_cast<detour::errc>(code - detour::io::app_code_base);
    if (const std::string_view name = detour::errc_name(e); !name.empty())
      return fmt::format("{:#x} {}", code, name);
  }
  return fmt::format("{:#x}", code);
}

double to_ms(std::uint64_t ns) noexcept {
  return std::round(static_cast<double>(ns) / 1e3) / 1e3;
}

void write_latency(json_writer& j, const latency_summary& s) {
  j.begin_object()
      .field("count", s.count)
      .field("min_ms", to_ms(s.min))
      .field("p50_ms", to_ms(s.p50))
      .field("p90_ms", to_ms(s.p90))
      .field("p99_ms", to_ms(s.p99))
      .field("max_ms", to_ms(s.max))
      .field("mean_ms", std::round(s.mean / 1e3) / 1e3)
      .end_object();
}

} // namespace detour::cli::probe
