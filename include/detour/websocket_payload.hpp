// SPDX-License-Identifier: MIT
// detour/websocket_payload.hpp: the payload of a `websocket` north request (g3proxy
// WebSocketNotes::serialize): the resource name, then `name: value` header lines, every line
// ending in CRLF. A strict parser returning views, and a serializer that writes g3proxy's format.
#pragma once

#include <detour/error.hpp>
#include <detour/result.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <span>
#include <string_view>

namespace detour {

/// Limits for parse_websocket_payload().
struct websocket_limits {
  /// Longest line, CRLF excluded. g3proxy's lines are a URI path and single header values; 8 KiB
  /// is the per-line limit common HTTP servers apply to request headers.
  std::size_t max_line_length = 8 * 1024;
  /// Most lines, the resource line included. g3proxy sends at most 7 (resource, host, origin,
  /// key, version, accept, protocol) plus one per sec-websocket-extensions value.
  std::size_t max_lines = 64;
};

/// One header line: views of the name (as sent) and of the value (raw bytes, not necessarily
/// UTF-8: g3proxy copies header bytes as they came).
struct websocket_header {
  std::string_view name;
  std::string_view value;
};

/// The header names g3proxy sends (lower case, as it writes them).
namespace websocket_names {
inline constexpr std::string_view host = "host";
inline constexpr std::string_view origin = "origin";
inline constexpr std::string_view sec_websocket_key = "sec-websocket-key";
inline constexpr std::string_view sec_websocket_version = "sec-websocket-version";
inline constexpr std::string_view sec_websocket_accept = "sec-websocket-accept";
inline constexpr std::string_view sec_websocket_protocol = "sec-websocket-protocol";
inline constexpr std::string_view sec_websocket_extensions = "sec-websocket-extensions";
} // namespace websocket_names

namespace detail {

/// RFC 9110 tchar: the characters of a header name.
constexpr bool is_tchar(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  constexpr std::string_view others = "!#$%&'*+-.^_`|~";
  return others.find(c) != std::string_view::npos;
}

constexpr char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

/// Case-insensitive equality for header names (ASCII).
constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

/// The headers that may appear once; sec-websocket-extensions may repeat.
constexpr int single_header_index(std::string_view name) noexcept {
  namespace n = websocket_names;
  constexpr std::string_view singles[] = {n::host,
                                          n::origin,
                                          n::sec_websocket_key,
                                          n::sec_websocket_version,
                                          n::sec_websocket_accept,
                                          n::sec_websocket_protocol};
  for (int i = 0; i < 6; ++i)
    if (iequals(name, singles[i])) return i;
  return -1;
}

} // namespace detail

/// A forward range over validated header lines (what websocket_payload::headers() returns).
class websocket_header_range {
public:
  class iterator {
  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = websocket_header;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = websocket_header;

    iterator() = default;
    websocket_header operator*() const noexcept { return current_; }
    iterator& operator++() noexcept {
      pos_ = next_;
      load();
      return *this;
    }
    iterator operator++(int) noexcept {
      auto copy = *this;
      ++*this;
      return copy;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.pos_ == b.pos_;
    }

  private:
    friend class websocket_header_range;
    iterator(std::string_view block, std::size_t pos) noexcept : block_(block), pos_(pos) {
      load();
    }
    void load() noexcept {
      if (pos_ >= block_.size()) {
        pos_ = block_.size();
        return;
      }
      const auto line_end = block_.find("\r\n", pos_);
      const auto end = line_end == std::string_view::npos ? block_.size() : line_end;
      const auto line = block_.substr(pos_, end - pos_);
      const auto colon = line.find(':');
      current_.name = line.substr(0, colon);
      current_.value = colon == std::string_view::npos
                           ? std::string_view{}
                           : line.substr(std::min(colon + 2, line.size()));
      next_ = line_end == std::string_view::npos ? block_.size() : line_end + 2;
    }
    std::string_view block_;
    std::size_t pos_ = 0;
    std::size_t next_ = 0;
    websocket_header current_;
  };

  websocket_header_range() = default;
  explicit websocket_header_range(std::string_view block) noexcept : block_(block) {}
  iterator begin() const noexcept { return {block_, 0}; }
  iterator end() const noexcept { return {block_, block_.size()}; }
  bool empty() const noexcept { return block_.empty(); }

private:
  std::string_view block_;
};

/// A parsed payload. Views point into the bytes given to parse_websocket_payload().
struct websocket_payload {
  /// Line 1: the resource name, the URI path only ("/chat").
  std::string_view resource;
  /// The header lines, each with its CRLF.
  std::string_view header_block;
  /// Number of header lines.
  std::size_t header_count = 0;

  /// The header lines in the order sent, names as sent.
  websocket_header_range headers() const noexcept { return websocket_header_range(header_block); }

  /// The value of the first header named `name` (ASCII case-insensitive).
  std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (const auto h : headers())
      if (detail::iequals(h.name, name)) return h.value;
    return std::nullopt;
  }
  std::optional<std::string_view> host() const noexcept { return find(websocket_names::host); }
  std::optional<std::string_view> origin() const noexcept { return find(websocket_names::origin); }
  std::optional<std::string_view> sec_websocket_key() const noexcept {
    return find(websocket_names::sec_websocket_key);
  }
  std::optional<std::string_view> sec_websocket_version() const noexcept {
    return find(websocket_names::sec_websocket_version);
  }
  std::optional<std::string_view> sec_websocket_accept() const noexcept {
    return find(websocket_names::sec_websocket_accept);
  }
  std::optional<std::string_view> sec_websocket_protocol() const noexcept {
    return find(websocket_names::sec_websocket_protocol);
  }
  /// Calls `f(value)` for each sec-websocket-extensions line, in order.
  template <std::invocable<std::string_view> F>
  void for_each_extension(F&& f) const {
    for (const auto h : headers())
      if (detail::iequals(h.name, websocket_names::sec_websocket_extensions)) f(h.value);
  }
  /// Number of sec-websocket-extensions lines.
  std::size_t extension_count() const noexcept {
    std::size_t n = 0;
    for_each_extension([&n](std::string_view) { ++n; });
    return n;
  }
};

/// Parses a whole payload (`payload_length` bytes, as announced by E6). Strict on structure:
/// - every line ends with CRLF, the last one included (ws_line_not_terminated, at the line);
/// - no CR without LF and no LF without CR (ws_bad_line_ending, at the stray byte);
/// - the first line is not empty (ws_empty_resource, at 0; an empty payload too);
/// - each other line reads `name: value`: a non-empty token name, a colon, one space, then any
///   bytes (ws_bad_header_line, at the first byte that breaks the form);
/// - host, origin, sec-websocket-key, -version, -accept and -protocol appear at most once, names
///   compared case-insensitively (ws_duplicate_header, at the repeated line);
/// - the limits (ws_line_too_long, ws_too_many_lines, at the offending line).
/// Tolerant of names it does not know and of any bytes in values. Never need_more: the caller
/// has the whole payload. `consumed` is the payload size.
constexpr decode_result<websocket_payload>
parse_websocket_payload(std::string_view payload, const websocket_limits& limits = {}) noexcept {
  using result = decode_result<websocket_payload>;
  websocket_payload p;
  unsigned seen = 0;
  std::size_t pos = 0, lines = 0;
  if (payload.empty()) return result::fail(errc::ws_empty_resource, 0);
  while (pos < payload.size()) {
    if (++lines > limits.max_lines) return result::fail(errc::ws_too_many_lines, pos);
    const auto stop = payload.find_first_of("\r\n", pos);
    if (stop == std::string_view::npos || stop + 1 == payload.size()) {
      if ((stop == std::string_view::npos ? payload.size() : stop) - pos > limits.max_line_length)
        return result::fail(errc::ws_line_too_long, pos);
      if (stop != std::string_view::npos && payload[stop] == '\n')
        return result::fail(errc::ws_bad_line_ending, stop);
      return result::fail(errc::ws_line_not_terminated, pos);
    }
    if (stop - pos > limits.max_line_length) return result::fail(errc::ws_line_too_long, pos);
    if (payload[stop] == '\n' || payload[stop + 1] != '\n')
      return result::fail(errc::ws_bad_line_ending, stop);
    const auto line = payload.substr(pos, stop - pos);
    if (lines == 1) {
      if (line.empty()) return result::fail(errc::ws_empty_resource, 0);
      p.resource = line;
    } else {
      std::size_t i = 0;
      while (i < line.size() && detail::is_tchar(line[i])) ++i;
      // `name: value`: a token, a colon, one space (the value may be empty).
      if (i == 0 || i == line.size() || line[i] != ':')
        return result::fail(errc::ws_bad_header_line, pos + i);
      if (i + 1 == line.size() || line[i + 1] != ' ')
        return result::fail(errc::ws_bad_header_line, pos + i + 1);
      if (const int k = detail::single_header_index(line.substr(0, i)); k >= 0) {
        if (seen & (1u << k)) return result::fail(errc::ws_duplicate_header, pos);
        seen |= 1u << k;
      }
      ++p.header_count;
    }
    pos = stop + 2;
  }
  const auto first_end = payload.find("\r\n");
  p.header_block = payload.substr(first_end + 2);
  return result::ok(p, payload.size());
}

/// The same over bytes.
inline decode_result<websocket_payload>
parse_websocket_payload(std::span<const std::uint8_t> payload,
                        const websocket_limits& limits = {}) noexcept {
  return parse_websocket_payload(
      std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()), limits);
}

/// The size of the serialized payload: the resource line and `name: value` lines, CRLF each.
constexpr std::size_t websocket_payload_size(std::string_view resource,
                                             std::span<const websocket_header> headers) noexcept {
  std::size_t n = resource.size() + 2;
  for (const auto& h : headers) n += h.name.size() + 2 + h.value.size() + 2;
  return n;
}

/// Writes the payload as g3proxy does: the resource, CRLF, then for each header in the given
/// order `name: value` and CRLF (g3proxy groups repeated sec-websocket-extensions lines; give
/// them in that order to match it byte for byte). Refuses (with the parser's error) anything
/// parse_websocket_payload() would refuse without limits, and buffer_too_small.
constexpr encode_result serialize_websocket_payload(std::string_view resource,
                                                    std::span<const websocket_header> headers,
                                                    std::span<char> out) noexcept {
  const std::size_t size = websocket_payload_size(resource, headers);
  if (out.size() < size) return {errc::buffer_too_small, 0};
  std::size_t o = 0;
  const auto put = [&](std::string_view s) {
    for (char c : s) out[o++] = c;
  };
  put(resource);
  put("\r\n");
  for (const auto& h : headers) {
    put(h.name);
    put(": ");
    put(h.value);
    put("\r\n");
  }
  constexpr websocket_limits unlimited{std::numeric_limits<std::size_t>::max(),
                                       std::numeric_limits<std::size_t>::max()};
  const auto check = parse_websocket_payload(std::string_view(out.data(), size), unlimited);
  if (check.failed()) return {check.error, 0};
  // A value holding ": " or a CRLF would parse, but as something else: compare back.
  if (check.value.resource != resource || check.value.header_count != headers.size())
    return {errc::ws_bad_header_line, 0};
  std::size_t k = 0;
  for (const auto h : check.value.headers()) {
    if (h.name != headers[k].name || h.value != headers[k].value)
      return {errc::ws_bad_header_line, 0};
    ++k;
  }
  return {errc{}, size};
}

/// The same into bytes.
inline encode_result serialize_websocket_payload(std::string_view resource,
                                                 std::span<const websocket_header> headers,
                                                 std::span<std::uint8_t> out) noexcept {
  return serialize_websocket_payload(
      resource, headers, std::span<char>(reinterpret_cast<char*>(out.data()), out.size()));
}

} // namespace detour
