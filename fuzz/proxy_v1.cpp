// SPDX-License-Identifier: MIT
// fuzz/proxy_v1.cpp: the PROXY protocol version 1 reader of `detour decode` (cli/proxy_v1.hpp).
// Input: any bytes (usually "PROXY " and then anything).
// Properties: no crash, no read outside the input (ASan); exactly one outcome; never looks past
// byte 107; a header is a CRLF-terminated line inside the input whose fields are views into it,
// and a TCP header's line is exactly "PROXY", the protocol, the two addresses and the two ports
// separated by single spaces; an error names a byte inside the first 107.
#include "../cli/proxy_v1.hpp"

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace detour::cli;
  const std::span<const std::uint8_t> in(data, size);
  const auto r = parse_proxy_v1(in);
  const int outcomes = (r.header ? 1 : 0) + (r.incomplete ? 1 : 0) + (r.error.empty() ? 0 : 1);
  DETOUR_FUZZ_CHECK(outcomes == 1);
  if (!starts_like_proxy_v1(in)) DETOUR_FUZZ_CHECK(!r.error.empty() && r.offset == 0);

  // Whatever follows byte 107 never changes the outcome.
  if (size > proxy_v1_max_size) {
    const auto cut = parse_proxy_v1(in.first(proxy_v1_max_size));
    DETOUR_FUZZ_CHECK(cut.header.has_value() == r.header.has_value());
    DETOUR_FUZZ_CHECK(cut.error == r.error && cut.offset == r.offset);
  }

  if (r.incomplete) {
    DETOUR_FUZZ_CHECK(size < proxy_v1_max_size);
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    DETOUR_FUZZ_CHECK(text.find("\r\n") == std::string_view::npos);
  }
  if (!r.error.empty())
    DETOUR_FUZZ_CHECK(r.offset == 0 || r.offset < std::min(size, proxy_v1_max_size));

  if (const auto& h = r.header) {
    DETOUR_FUZZ_CHECK(h->size >= proxy_v1_prefix.size() + 2 && h->size <= proxy_v1_max_size);
    DETOUR_FUZZ_CHECK(h->size <= size);
    DETOUR_FUZZ_CHECK(data[h->size - 2] == '\r' && data[h->size - 1] == '\n');
    const std::string_view line(reinterpret_cast<const char*>(data), h->size - 2);
    DETOUR_FUZZ_CHECK(line.find("\r\n") == std::string_view::npos);
    const auto view_inside = [&](std::string_view v) {
      return detour::fuzz::inside(std::span<const char>(v.data(), v.size()),
                                  std::span<const char>(line.data(), line.size()));
    };
    DETOUR_FUZZ_CHECK(view_inside(h->protocol));
    DETOUR_FUZZ_CHECK(view_inside(h->source) && view_inside(h->destination));
    if (h->protocol == "UNKNOWN") {
      DETOUR_FUZZ_CHECK(h->source.empty() && h->destination.empty());
    } else {
      DETOUR_FUZZ_CHECK(h->protocol == "TCP4" || h->protocol == "TCP6");
      // The line is exactly its fields; ports may carry leading zeros, so compare their values.
      const std::string head = "PROXY " + std::string(h->protocol) + " " + std::string(h->source) +
                               " " + std::string(h->destination) + " ";
      DETOUR_FUZZ_CHECK(line.substr(0, head.size()) == head);
      const std::string_view ports = line.substr(head.size());
      const auto space = ports.find(' ');
      DETOUR_FUZZ_CHECK(space != std::string_view::npos && space > 0 && space + 1 < ports.size());
      const auto value = [](std::string_view digits) {
        std::uint32_t v = 0;
        for (const char c : digits) {
          DETOUR_FUZZ_CHECK(c >= '0' && c <= '9');
          v = v * 10 + static_cast<std::uint32_t>(c - '0');
        }
        return v;
      };
      DETOUR_FUZZ_CHECK(value(ports.substr(0, space)) == h->source_port);
      DETOUR_FUZZ_CHECK(value(ports.substr(space + 1)) == h->destination_port);
    }
  }
  return 0;
}
