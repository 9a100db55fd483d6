// SPDX-License-Identifier: MIT
// fuzz/websocket_payload.cpp: the WebSocket payload of a north request (g3proxy
// WebSocketNotes::serialize). Properties:
// - parse: an error has its own message and an offset inside the input; an accepted payload's
//   views lie inside the input, single-valued headers appear once, the accessors agree with a
//   plain walk, and it serializes back to exactly the input (into exactly-sized buffers; one
//   byte less is refused), which parses to the same fields;
// - limits: an accepted payload passes tighter limits exactly when its longest line and its
//   line count are within them; tighter limits never accept what the defaults refuse;
// - serialize: the input split at NUL bytes (resource, name, value, name, value...) is either
//   written and parses back to exactly those fields, or refused exactly when g3proxy could not
//   have written it (an empty resource, CR or LF in a line, a name that is not a token, a
//   repeated single-valued header).
#include <detour/websocket_payload.hpp>

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

using namespace detour;

namespace {

bool is_token(std::string_view s) {
  constexpr std::string_view specials = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           specials.find(c) != std::string_view::npos;
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool single_valued(std::string_view name) {
  const std::string n = lower(name);
  return n == "host" || n == "origin" || n == "sec-websocket-key" || n == "sec-websocket-version" ||
         n == "sec-websocket-accept" || n == "sec-websocket-protocol";
}

void check_accepted(std::string_view in, const websocket_payload& p) {
  const auto inside = [&](std::string_view v) {
    return fuzz::inside(std::span<const char>(v), std::span<const char>(in));
  };
  DETOUR_FUZZ_CHECK(!p.resource.empty() && inside(p.resource));
  DETOUR_FUZZ_CHECK(p.resource.data() == in.data());
  DETOUR_FUZZ_CHECK(inside(p.header_block) &&
                    p.header_block.data() + p.header_block.size() == in.data() + in.size());
  std::vector<websocket_header> headers;
  std::vector<std::string> singles;
  std::size_t extensions = 0;
  for (const auto h : p.headers()) {
    DETOUR_FUZZ_CHECK(is_token(h.name) && inside(h.name) && inside(h.value));
    DETOUR_FUZZ_CHECK(h.value.find_first_of("\r\n") == std::string_view::npos);
    if (single_valued(h.name)) {
      DETOUR_FUZZ_CHECK(std::find(singles.begin(), singles.end(), lower(h.name)) == singles.end());
      singles.push_back(lower(h.name));
    }
    if (lower(h.name) == "sec-websocket-extensions") ++extensions;
    headers.push_back(h);
  }
  DETOUR_FUZZ_CHECK(headers.size() == p.header_count);
  DETOUR_FUZZ_CHECK(p.headers().empty() == headers.empty());
  std::size_t walked = 0; // the post-increment walks alike
  for (auto it = p.headers().begin(); it != p.headers().end();)
    DETOUR_FUZZ_CHECK((*it++).name.data() == headers[walked++].name.data());
  DETOUR_FUZZ_CHECK(walked == headers.size());

  // The accessors: the first header of that name, compared without regard to case.
  const auto first = [&](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& h : headers)
      if (lower(h.name) == lower(name)) return h.value;
    return std::nullopt;
  };
  DETOUR_FUZZ_CHECK(p.host() == first("host") && p.origin() == first("origin"));
  DETOUR_FUZZ_CHECK(p.sec_websocket_key() == first("sec-websocket-key"));
  DETOUR_FUZZ_CHECK(p.sec_websocket_version() == first("sec-websocket-version"));
  DETOUR_FUZZ_CHECK(p.sec_websocket_accept() == first("sec-websocket-accept"));
  DETOUR_FUZZ_CHECK(p.sec_websocket_protocol() == first("sec-websocket-protocol"));
  if (!headers.empty())
    DETOUR_FUZZ_CHECK(p.find(headers.back().name) == first(headers.back().name));
  DETOUR_FUZZ_CHECK(p.extension_count() == extensions);
  std::size_t k = 0;
  p.for_each_extension([&](std::string_view v) {
    while (lower(headers[k].name) != "sec-websocket-extensions") ++k;
    DETOUR_FUZZ_CHECK(v.data() == headers[k].value.data());
    ++k;
  });

  // parse -> serialize: exactly the input, in buffers of exactly its size; -> parse: the same.
  const std::size_t size = in.size();
  DETOUR_FUZZ_CHECK(websocket_payload_size(p.resource, headers) == size);
  const auto out = std::make_unique<char[]>(size);
  const auto s = serialize_websocket_payload(p.resource, headers, std::span<char>(out.get(), size));
  DETOUR_FUZZ_CHECK(s.ok() && s.size == size);
  DETOUR_FUZZ_CHECK(std::string_view(out.get(), size) == in);
  const auto bytes = std::make_unique<std::uint8_t[]>(size);
  const auto sb =
      serialize_websocket_payload(p.resource, headers, std::span<std::uint8_t>(bytes.get(), size));
  DETOUR_FUZZ_CHECK(sb.ok() && std::memcmp(out.get(), bytes.get(), size) == 0);
  DETOUR_FUZZ_CHECK(
      serialize_websocket_payload(p.resource, headers, std::span<char>(out.get(), size - 1))
          .error == errc::buffer_too_small);
  const auto again =
      parse_websocket_payload(std::span<const std::uint8_t>(bytes.get(), size), websocket_limits{});
  DETOUR_FUZZ_CHECK(again.complete() && again.value.header_count == p.header_count);
  DETOUR_FUZZ_CHECK(again.value.resource == p.resource &&
                    again.value.header_block == p.header_block);
}

/// Serializes the fields the input holds between NUL bytes.
void check_serializer(std::string_view in) {
  std::vector<std::string_view> parts;
  for (std::size_t at = 0;;) {
    const auto nul = in.find('\0', at);
    parts.push_back(in.substr(at, nul == std::string_view::npos ? in.size() - at : nul - at));
    if (nul == std::string_view::npos) break;
    at = nul + 1;
  }
  const std::string_view resource = parts[0];
  std::vector<websocket_header> headers;
  for (std::size_t i = 1; i + 1 < parts.size(); i += 2) headers.push_back({parts[i], parts[i + 1]});

  const auto no_line_break = [](std::string_view v) {
    return v.find_first_of("\r\n") == std::string_view::npos;
  };
  bool representable = !resource.empty() && no_line_break(resource);
  std::vector<std::string> singles;
  for (const auto& h : headers) {
    representable = representable && is_token(h.name) && no_line_break(h.value);
    if (single_valued(h.name)) {
      if (std::find(singles.begin(), singles.end(), lower(h.name)) != singles.end())
        representable = false;
      singles.push_back(lower(h.name));
    }
  }

  const std::size_t size = websocket_payload_size(resource, headers);
  const auto out = std::make_unique<char[]>(size);
  const auto s = serialize_websocket_payload(resource, headers, std::span<char>(out.get(), size));
  DETOUR_FUZZ_CHECK(s.ok() == representable);
  if (!s.ok()) {
    DETOUR_FUZZ_CHECK(fuzz::named_error(s.error) && s.size == 0);
    return;
  }
  DETOUR_FUZZ_CHECK(s.size == size);
  constexpr websocket_limits unlimited{~std::size_t{0}, ~std::size_t{0}};
  const auto back = parse_websocket_payload(std::string_view(out.get(), size), unlimited);
  DETOUR_FUZZ_CHECK(back.complete() && back.value.resource == resource &&
                    back.value.header_count == headers.size());
  std::size_t k = 0;
  for (const auto h : back.value.headers()) {
    DETOUR_FUZZ_CHECK(h.name == headers[k].name && h.value == headers[k].value);
    ++k;
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto r = parse_websocket_payload(in);
  const websocket_limits tight{size % 97 + 1, size % 13 + 1};
  const auto t = parse_websocket_payload(in, tight);
  if (t.complete()) DETOUR_FUZZ_CHECK(r.complete());
  if (in.find('\0') != std::string_view::npos) check_serializer(in);
  if (r.failed()) {
    DETOUR_FUZZ_CHECK(r.offset < size || (size == 0 && r.offset == 0));
    DETOUR_FUZZ_CHECK(fuzz::named_error(r.error) && r.consumed == 0);
    if (t.failed()) DETOUR_FUZZ_CHECK(fuzz::named_error(t.error));
    return 0;
  }
  DETOUR_FUZZ_CHECK(r.complete() && r.consumed == size);
  check_accepted(in, r.value);

  // Tighter limits refuse exactly the payloads with a longer line or more lines.
  std::size_t longest = r.value.resource.size();
  for (const auto h : r.value.headers())
    longest = std::max(longest, h.name.size() + 2 + h.value.size());
  const bool fits = longest <= tight.max_line_length && 1 + r.value.header_count <= tight.max_lines;
  DETOUR_FUZZ_CHECK(t.complete() == fits);
  if (!fits)
    DETOUR_FUZZ_CHECK(t.error == errc::ws_line_too_long || t.error == errc::ws_too_many_lines);
  return 0;
}
