// SPDX-License-Identifier: MIT
// fuzz/http_request.cpp: the request head parser of `detour serve --metrics`
// (cli/http_request.hpp) on hostile bytes. Input: what a client sends. Properties: views lie
// inside the input; a complete head's size is within the input, its method is upper-case
// letters and its target visible ASCII; every shorter prefix of a complete head is need_more,
// never bad; and a verdict never changes when more bytes follow (bad stays bad, complete stays
// complete with the same size).
#include "../cli/http_request.hpp"

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

bool inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;
  const auto lo = reinterpret_cast<std::uintptr_t>(whole.data());
  const auto p = reinterpret_cast<std::uintptr_t>(part.data());
  return p >= lo && p + part.size() <= lo + whole.size();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using status = detour::cli::http_request_head::status;
  const std::vector<char> copy(data, data + size); // exactly sized: over-reads are caught
  const std::string_view in(copy.data(), copy.size());
  const auto h = detour::cli::parse_request_head(in);
  DETOUR_FUZZ_CHECK(inside(h.method, in) && inside(h.target, in) && inside(h.version, in));
  if (h.state == status::complete) {
    DETOUR_FUZZ_CHECK(h.size >= 1 && h.size <= in.size());
    DETOUR_FUZZ_CHECK(!h.method.empty() && !h.target.empty());
    for (const char c : h.method) DETOUR_FUZZ_CHECK(c >= 'A' && c <= 'Z');
    for (const char c : h.target) DETOUR_FUZZ_CHECK(c > ' ' && c < 0x7F);
    DETOUR_FUZZ_CHECK(h.version.size() == 8 && h.version.substr(0, 7) == "HTTP/1.");
    // Every shorter prefix waits for more; the head alone gives the same answer.
    for (std::size_t n = 0; n < h.size; ++n)
      DETOUR_FUZZ_CHECK(detour::cli::parse_request_head(in.substr(0, n)).state ==
                        status::need_more);
    const auto alone = detour::cli::parse_request_head(in.substr(0, h.size));
    DETOUR_FUZZ_CHECK(alone.state == status::complete && alone.size == h.size);
  }
  // A verdict on a prefix holds for the whole input.
  for (std::size_t n = 0; n <= in.size(); n += 1 + n / 8) {
    const auto p = detour::cli::parse_request_head(in.substr(0, n));
    if (p.state == status::bad) DETOUR_FUZZ_CHECK(h.state == status::bad);
    if (p.state == status::complete)
      DETOUR_FUZZ_CHECK(h.state == status::complete && h.size == p.size);
  }
  return 0;
}
