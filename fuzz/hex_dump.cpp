// SPDX-License-Identifier: MIT
// fuzz/hex_dump.cpp: the hex text reader of `detour decode` (cli/hex_dump.hpp).
// Input: one mode byte, then the rest.
//   - Even mode: the rest is text from anywhere. Properties: no crash, no read outside the text
//     (ASan), never more bytes out than two hex digits each in the text.
//   - Odd mode: the rest (at most 1 KiB) is data, written out as each dump tool prints it (xxd,
//     hexdump -C, tcpdump -X, tshark -x with and without its middle gap, at 16 bytes a line, xxd
//     also at another width) and as plain hex with the separators and prefixes people paste.
//     Property: every form reads back as exactly the data: offsets and ASCII columns (even one
//     that looks like hex) never become bytes, and no byte is lost.
#include "../cli/hex_dump.hpp"

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr char digits[] = "0123456789abcdef";

std::string hex2(std::uint8_t b) {
  return {digits[b >> 4], digits[b & 0xF]};
}

std::string offset(std::size_t v, int width) {
  std::string s;
  for (int i = width - 1; i >= 0; --i) s += digits[(v >> (4 * i)) & 0xF];
  return s;
}

std::string ascii(std::span<const std::uint8_t> row) {
  std::string s;
  for (const std::uint8_t b : row) s += b >= 32 && b < 127 ? static_cast<char>(b) : '.';
  return s;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

enum class tool { xxd, hexdump, tcpdump, tshark, tshark_gap };

std::string dump(std::span<const std::uint8_t> data, tool t, std::size_t per_line) {
  std::string out;
  if (t == tool::tcpdump) out += "12:00:00.000000 IP 10.0.0.1.50000 > 10.0.0.2.443: UDP\n";
  for (std::size_t off = 0; off < data.size(); off += per_line) {
    const auto row = data.subspan(off, std::min(per_line, data.size() - off));
    std::string hex;
    for (std::size_t i = 0; i < row.size(); ++i) {
      switch (t) {
      case tool::xxd:
      case tool::tcpdump:
        if (i > 0 && i % 2 == 0) hex += ' ';
        break;
      case tool::hexdump:
      case tool::tshark_gap:
        if (i > 0) hex += i == 8 ? "  " : " ";
        break;
      case tool::tshark:
        if (i > 0) hex += ' ';
        break;
      }
      hex += hex2(row[i]);
    }
    const std::size_t full = per_line * 2 + (per_line - 1) / 2; // xxd/tcpdump hex width
    switch (t) {
    case tool::xxd:
      out += offset(off, 8) + ": " + pad(hex, full) + "  " + ascii(row) + "\n";
      break;
    case tool::hexdump:
      out += offset(off, 8) + "  " + pad(hex, 48) + "  |" + ascii(row) + "|\n";
      break;
    case tool::tcpdump:
      out += "\t0x" + offset(off, 4) + ":  " + pad(hex, 40) + "  " + ascii(row) + "\n";
      break;
    case tool::tshark:
      out += offset(off, 4) + "  " + pad(hex, 47) + "   " + ascii(row) + "\n";
      break;
    case tool::tshark_gap:
      out += offset(off, 4) + "  " + pad(hex, 48) + "   " + ascii(row) + "\n";
      break;
    }
  }
  if (t == tool::hexdump) out += offset(data.size(), 8) + "\n";
  return out;
}

std::string plain(std::span<const std::uint8_t> data, std::uint8_t style) {
  static constexpr std::string_view separators[] = {"", " ", ":", ",", "-", "\n", ", "};
  static constexpr std::string_view prefixes[] = {"", "0x", "\\x", "0X"};
  const auto sep = separators[style % std::size(separators)];
  const auto prefix = prefixes[(style >> 3) % std::size(prefixes)];
  std::string out;
  for (std::size_t i = 0; i < data.size(); ++i) {
    // "\x" escapes need no separator; "0x" prefixes do.
    if (i > 0) out += sep.empty() && prefix.starts_with('0') ? std::string_view(" ") : sep;
    out += prefix;
    out += hex2(data[i]);
  }
  return out;
}

void check_reads_back(const std::string& text, std::span<const std::uint8_t> data) {
  std::vector<std::uint8_t> got;
  const auto error = detour::cli::parse_hex_text(text, got);
  DETOUR_FUZZ_CHECK(!error);
  DETOUR_FUZZ_CHECK(got.size() == data.size());
  DETOUR_FUZZ_CHECK(std::equal(got.begin(), got.end(), data.begin()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t mode = bytes[0];
  const std::span<const std::uint8_t> rest(bytes + 1, size - 1);
  if (mode % 2 == 0) {
    const std::string_view text(reinterpret_cast<const char*>(rest.data()), rest.size());
    std::vector<std::uint8_t> out;
    (void)detour::cli::parse_hex_text(text, out);
    DETOUR_FUZZ_CHECK(out.size() * 2 <= text.size());
    return 0;
  }
  const auto data = rest.first(std::min<std::size_t>(rest.size(), 1024));
  check_reads_back(plain(data, mode >> 1), data);
  if (data.empty()) return 0; // an empty dump is no dump at all
  for (const tool t : {tool::xxd, tool::hexdump, tool::tcpdump, tool::tshark, tool::tshark_gap})
    check_reads_back(dump(data, t, 16), data);
  // xxd -c: another width, which the offsets announce (a single full line of another width
  // has nothing to tell its ASCII column from more bytes).
  const std::size_t width = 4 + (mode >> 1) % 29;
  if (data.size() > width) check_reads_back(dump(data, tool::xxd, width), data);
  return 0;
}
