// SPDX-License-Identifier: MIT
// cli/hex_dump.hpp: the input side of `detour decode`: bytes from hex text, either plain hex
// ("0d0a 0d:0a 0x0d \x0d\x0a") or a dump whose lines start with offsets (xxd, hexdump -C,
// tcpdump -xx / -X, tshark -x). Header-only and free of I/O, so that it can be fuzzed
// (fuzz/hex_dump.cpp).
#pragma once

#include <detour/address.hpp> // detail::hex_value

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace detour::cli {

struct hex_error {
  std::string message;
};

namespace hex_detail {

inline bool is_hex_digit(char c) {
  return detail::hex_value(c) >= 0;
}

/// A hex token: an even number of hex digits.
inline bool is_hex_token(std::string_view t) {
  return !t.empty() && t.size() % 2 == 0 && std::all_of(t.begin(), t.end(), is_hex_digit);
}

inline std::uint8_t byte_at(std::string_view two_digits) {
  return static_cast<std::uint8_t>(detail::hex_value(two_digits[0]) << 4 |
                                   detail::hex_value(two_digits[1]));
}

inline std::string hex_number(std::size_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), digits[v & 0xF]);
    v >>= 4;
  } while (v != 0);
  return "0x" + out;
}

/// A dump line's leading offset ("0x0000:", "00000010:", "0010  "), or 0 when there is none.
inline std::size_t offset_prefix(std::string_view line) {
  std::size_t i = line.find_first_not_of(" \t");
  if (i == std::string_view::npos) return 0;
  const std::size_t start = i;
  if (line.substr(i, 2) == "0x") i += 2;
  const std::size_t digits = i;
  while (i < line.size() && is_hex_digit(line[i])) ++i;
  if (i - digits < 4 || i - digits > 8) return 0;
  if (i < line.size() && line[i] == ':') return i + 1;
  // Without a colon (tshark -x, hexdump -C) two spaces follow the offset.
  if (line.substr(i, 2) == "  " && line.substr(start, 2) != "0x") return i;
  return 0;
}

/// Appends the hex digits of plain hex text: tokens separated by spaces, colons, commas or
/// dashes, each with an optional "0x" prefix, "\x" escapes anywhere.
inline std::optional<hex_error> plain_digits(std::string_view text, std::string& digits) {
  constexpr std::string_view separators = " \t\r\n:,-\"";
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t start = text.find_first_not_of(separators, i);
    if (start == std::string_view::npos) break;
    std::size_t end = text.find_first_of(separators, start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view token = text.substr(start, end - start);
    if (token.size() > 2 && token[0] == '0' && (token[1] == 'x' || token[1] == 'X'))
      token.remove_prefix(2);
    for (std::size_t k = 0; k < token.size(); ++k) {
      if (token[k] == '\\' && k + 1 < token.size() &&
          (token[k + 1] == 'x' || token[k + 1] == 'X')) {
        ++k;
        continue;
      }
      if (!is_hex_digit(token[k]))
        return hex_error{"'" + std::string(text.substr(start, end - start)) + "' is not hex"};
      digits += token[k];
    }
    i = end;
  }
  return std::nullopt;
}

} // namespace hex_detail

/// |bytes| as lower-case hex digits, two per byte, nothing between them.
inline std::string hex_bytes(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const std::uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

/// Appends the bytes that hex text describes to |out|: plain hex, or a dump whose lines start
/// with offsets. In a dump, lines without an offset (tcpdump's packet lines) are skipped, only
/// the first packet is read (until the offsets start again), consecutive offsets say how many
/// bytes each line holds, and the last line holds at most as many as the others (16 when it is
/// the only one) unless its bytes go on without a gap, so an ASCII column is never taken for
/// bytes, even one that looks like hex. Text after '#' on a line is a comment.
inline std::optional<hex_error> parse_hex_text(std::string_view text,
                                               std::vector<std::uint8_t>& out) {
  using namespace hex_detail;
  std::vector<std::string_view> lines;
  for (std::size_t pos = 0; pos <= text.size();) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(pos, end - pos);
    if (const auto hash = line.find('#'); hash != std::string_view::npos)
      line = line.substr(0, hash);
    if (line.find_first_not_of(" \t\r") != std::string_view::npos) lines.push_back(line);
    pos = end + 1;
  }
  const bool dump = std::any_of(lines.begin(), lines.end(),
                                [](std::string_view l) { return offset_prefix(l) != 0; });
  if (!dump) {
    std::string digits;
    for (const auto line : lines)
      if (auto e = plain_digits(line, digits)) return e;
    if (digits.size() % 2 != 0) return hex_error{"an odd number of hex digits"};
    for (std::size_t i = 0; i < digits.size(); i += 2)
      out.push_back(byte_at(std::string_view(digits).substr(i, 2)));
    return std::nullopt;
  }
  // The rows of the first packet, with their offsets.
  std::vector<std::pair<std::size_t, std::string_view>> rows;
  for (const auto line : lines) {
    const std::size_t p = offset_prefix(line);
    if (p == 0) {
      if (!rows.empty()) break; // the next packet's summary line
      continue;
    }
    auto number = line.substr(0, p);
    number = number.substr(number.find_first_not_of(" \t"));
    if (number.substr(0, 2) == "0x") number.remove_prefix(2);
    std::size_t value = 0;
    std::from_chars(number.data(), number.data() + number.size(), value, 16);
    if (!rows.empty() && value <= rows.back().first) break; // the next packet
    rows.emplace_back(value, line.substr(p));
  }
  if (rows.empty() || rows.front().first != 0)
    return hex_error{"the dump does not start at offset 0"};
  // Dump tools print 16 bytes a line unless told otherwise (xxd -c); the offsets tell.
  const std::size_t width = rows.size() > 1 ? rows[1].first - rows[0].first : 16;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    auto rest = rows[r].second;
    if (const auto bar = rest.find('|'); bar != std::string_view::npos)
      rest = rest.substr(0, bar); // hexdump -C
    const bool last = r + 1 == rows.size();
    const std::size_t want = last ? SIZE_MAX : rows[r + 1].first - rows[r].first;
    std::size_t got = 0;
    std::size_t i = 0;
    while (i < rest.size() && got < want) {
      const std::size_t start = rest.find_first_not_of(" \t\r", i);
      if (start == std::string_view::npos) break;
      // On the last line an ASCII column follows a gap of three or more spaces, or of two
      // once the line holds as many bytes as the others.
      if (last && got > 0 && (start - i >= 3 || (start - i >= 2 && got >= width))) break;
      const std::size_t end = std::min(rest.find_first_of(" \t\r", start), rest.size());
      const auto token = rest.substr(start, end - start);
      if (!is_hex_token(token)) break;
      for (std::size_t k = 0; k < token.size() && got < want; k += 2, ++got)
        out.push_back(byte_at(token.substr(k, 2)));
      i = end;
    }
    if (!last && got != want)
      return hex_error{"the dump line at offset " + hex_number(rows[r].first) + " holds " +
                       std::to_string(got) + " bytes, " + std::to_string(want) + " expected"};
  }
  return std::nullopt;
}

/// Text (hex, dumps, comments in any language) rather than raw bytes: no control character
/// but tab, CR and LF. A raw PROXY v2 header always has one (the NUL in its signature).
inline bool looks_like_text(std::span<const std::uint8_t> bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) {
    return b >= 0x20 ? b != 0x7F : (b == '\n' || b == '\r' || b == '\t');
  });
}

} // namespace detour::cli
