// SPDX-License-Identifier: MIT
// cli/http_request.hpp: the request head of the metrics endpoint's tiny read-only HTTP/1.x
// responder (RFC 9112 §2-3): the request line and the end of the header block, nothing more.
// A pure function over everything received so far; standard library only.
#pragma once

#include <cstddef>
#include <string_view>

namespace detour::cli {

/// What parse_request_head() found.
struct http_request_head {
  enum class status : unsigned char {
    complete,  ///< the whole head (up to the empty line) is in
    need_more, ///< no empty line yet
    bad,       ///< not an HTTP/1.x request line (answer 400 and close)
  };
  status state = status::need_more;
  std::string_view method;  ///< "GET"; views into the input
  std::string_view target;  ///< "/metrics", "/metrics?x=1"
  std::string_view version; ///< "HTTP/1.1"
  std::size_t size = 0;     ///< bytes of the head, the final CRLF CRLF included (complete only)
};

/// Parses the head of an HTTP/1.x request from `bytes`. The request line must be
/// `METHOD SP TARGET SP HTTP/1.x CRLF` (method: upper-case letters; target: visible ASCII);
/// header lines are skipped up to the first empty line. A bare LF ends lines too (RFC 9112 §2.2
/// allows accepting it). Never reads past `bytes`; the views point into it.
constexpr http_request_head parse_request_head(std::string_view bytes) noexcept {
  using status = http_request_head::status;
  http_request_head h;
  http_request_head bad;
  bad.state = status::bad;
  const std::size_t line_end = bytes.find('\n');
  // A request line is checked as soon as its bytes arrive, so junk is refused at once.
  const std::string_view line =
      bytes.substr(0, line_end == std::string_view::npos ? bytes.size() : line_end);
  std::size_t i = 0;
  while (i < line.size() && line[i] >= 'A' && line[i] <= 'Z') ++i;
  if (i < line.size() && (i == 0 || line[i] != ' ')) return bad;
  if (i == line.size()) return line_end == std::string_view::npos ? h : bad;
  h.method = line.substr(0, i);
  const std::size_t t = ++i;
  while (i < line.size() && line[i] > ' ' && line[i] < 0x7F) ++i;
  if (i < line.size() && (i == t || line[i] != ' ')) return bad;
  if (i == line.size()) return line_end == std::string_view::npos ? h : bad;
  h.target = line.substr(t, i - t);
  std::string_view version = line.substr(i + 1);
  if (line_end != std::string_view::npos && !version.empty() && version.back() == '\r')
    version.remove_suffix(1);
  constexpr std::string_view http1 = "HTTP/1.";
  const std::size_t common = version.size() < http1.size() ? version.size() : http1.size();
  if (version.substr(0, common) != http1.substr(0, common)) return bad;
  if (line_end == std::string_view::npos) return h; // the version is still arriving
  if (version.size() != http1.size() + 1 || version.back() < '0' || version.back() > '9')
    return bad;
  h.version = version;
  // The header block ends with an empty line (CRLF or LF alone).
  for (std::size_t at = line_end + 1; at <= bytes.size();) {
    const std::size_t next = bytes.find('\n', at);
    if (next == std::string_view::npos) return h;
    const std::size_t length = next - at;
    if (length == 0 || (length == 1 && bytes[at] == '\r')) {
      h.state = status::complete;
      h.size = next + 1;
      return h;
    }
    at = next + 1;
  }
  return h;
}

} // namespace detour::cli
