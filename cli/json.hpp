// SPDX-License-Identifier: MIT
// cli/json.hpp: JSON string literals (RFC 8259 §7) for the command's JSON output: log lines,
// audit records, probe reports. One escaper, so that every JSON the command writes parses, and
// bytes that are not UTF-8 (they come from the wire) are treated alike everywhere.
#pragma once

#include <cstddef>
#include <string_view>

namespace detour::cli {

/// What becomes of a byte that does not start or continue a valid UTF-8 sequence (stray
/// continuation bytes, truncated, overlong or surrogate sequences, code points above U+10FFFF).
enum class json_bad_utf8 {
  /// `\udcXX`, a lone low surrogate for byte XX (Python's "surrogateescape"): lossless, so an
  /// audit or log line gives back the exact bytes a client sent.
  escape,
  /// `\ufffd`, the replacement character: for reports meant to be read, not replayed.
  replace,
};

/// The length of the valid UTF-8 sequence starting at s[i] (1 to 4), or 0 when s[i] does not
/// start one (RFC 3629 §4: no overlong forms, no surrogates, nothing above U+10FFFF).
constexpr std::size_t utf8_sequence_at(std::string_view s, std::size_t i) noexcept {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const auto cont = [&](std::size_t k) { return k < s.size() && (at(k) & 0xC0) == 0x80; };
  const unsigned char c = at(i);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(i + 1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(i + 1) || !cont(i + 2)) return 0;
    const unsigned char d = at(i + 1);
    if (c == 0xE0 && d < 0xA0) return 0; // overlong
    if (c == 0xED && d > 0x9F) return 0; // UTF-16 surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(i + 1) || !cont(i + 2) || !cont(i + 3)) return 0;
    const unsigned char d = at(i + 1);
    if (c == 0xF0 && d < 0x90) return 0; // overlong
    if (c == 0xF4 && d > 0x8F) return 0; // above U+10FFFF
    return 4;
  }
  return 0;
}

/// Appends `s` as a JSON string, quotes included, to `out` (a std::string or an
/// fmt::memory_buffer: anything with push_back(char) and append(const char*, const char*)).
/// `"`, `\` and the C0 controls are escaped (`\n`, `\r`, `\t` by name, the others and DEL as
/// `\u00XX`); valid UTF-8 passes through; other bytes as `bad` says.
template <class Out>
void append_json_string(Out& out, std::string_view s, json_bad_utf8 bad = json_bad_utf8::escape) {
  constexpr std::string_view hex = "0123456789abcdef";
  const auto put = [&](std::string_view piece) {
    out.append(piece.data(), piece.data() + piece.size());
  };
  const auto put_u = [&](std::string_view prefix, unsigned char c) {
    put(prefix);
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 0xF]);
  };
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    // The longest run that needs no escape, copied at once.
    std::size_t run = i;
    while (run < s.size()) {
      const auto c = static_cast<unsigned char>(s[run]);
      if (c == '"' || c == '\\' || c < 0x20 || c == 0x7F) break;
      if (c < 0x80) {
        ++run;
        continue;
      }
      const std::size_t n = utf8_sequence_at(s, run);
      if (n == 0) break;
      run += n;
    }
    put(s.substr(i, run - i));
    if (run == s.size()) break;
    i = run;
    const auto c = static_cast<unsigned char>(s[i++]);
    switch (c) {
    case '"':
      put("\\\"");
      break;
    case '\\':
      put("\\\\");
      break;
    case '\n':
      put("\\n");
      break;
    case '\r':
      put("\\r");
      break;
    case '\t':
      put("\\t");
      break;
    default:
      if (c < 0x80) {
        put_u("\\u00", c); // the other controls and DEL
      } else if (bad == json_bad_utf8::escape) {
        put_u("\\udc", c);
      } else {
        put("\\ufffd");
      }
    }
  }
  out.push_back('"');
}

} // namespace detour::cli
