// SPDX-License-Identifier: MIT
// tests/unit/library_examples.tests.cpp: the examples of docs/library.md, compiled and run. Each
// example sits between "// [example: NAME]" and "// [end]"; the last test checks that
// docs/library.md shows every one of them verbatim, so the documentation cannot drift.
#include <detour/detour.hpp>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

namespace {

std::vector<std::uint8_t> sample_north_with_payload() {
  detour::north_request r;
  r.client = {detour::ip_address::v4(192, 168, 0, 1), 56324};
  r.proxy = {detour::ip_address::v4(192, 168, 0, 11), 443};
  r.upstream.text = "example.com:443";
  r.protocol = detour::protocol_kind::websocket;
  r.match_id = 7;
  const std::string payload = "/chat\r\nhost: example.com\r\n";
  r.payload_length = static_cast<std::uint32_t>(payload.size());
  std::vector<std::uint8_t> out(detour::g3_max_header_size);
  out.resize(detour::encode_north_request(r, out).size);
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// [example: one-shot]
// Everything received so far on a north stream is in `received`.
std::string describe_north(std::span<const std::uint8_t> received) {
  const auto r = detour::decode_north_request(received);
  if (r.need_more()) return "need " + std::to_string(r.needed) + " more bytes";
  if (r.failed())
    return "bad header: " + r.error_code().message() + " at byte " + std::to_string(r.offset);
  const detour::north_request& n = r.value;
  std::string out = std::string(n.protocol_name) + " task " +
                    std::string(detour::to_text(n.task_id).view()) + " from " +
                    std::string(detour::to_text(n.client).view()) + " to " +
                    std::string(n.upstream.host) + " port " + std::to_string(n.upstream.port);
  // The payload (n.payload_length bytes) starts right after the header.
  const auto payload = received.subspan(r.consumed);
  if (payload.size() >= n.payload_length) out += ", payload complete";
  return out;
}
// [end]

// [example: incremental]
// A stream delivers bytes in pieces of any size. The decoder copies exactly the header into
// `storage` and leaves the rest of each piece to us.
struct stream_reader {
  std::array<std::uint8_t, 4096> storage{}; // at least decode_limits::max_header_size
  detour::ppv2::decoder decoder{storage};   // points into `storage`: the two stay together
  stream_reader() = default;
  stream_reader(const stream_reader&) = delete; // a copy's decoder would point at our storage
  stream_reader& operator=(const stream_reader&) = delete;

  /// Returns the bytes of `piece` that follow the header (payload or relay data).
  std::span<const std::uint8_t> on_bytes(std::span<const std::uint8_t> piece,
                                         detour::decode_result<detour::stream_header>& out) {
    const auto h = decoder.feed(piece);
    if (h.need_more()) return {}; // all of `piece` was taken
    if (h.failed()) {
      out = h.rebind(detour::stream_header{}); // the error and its offset, sticky
      return {};
    }
    out = detour::parse_stream_header(h.value); // north request or south hello
    return piece.subspan(h.consumed);
  }
};
// [end]

// [example: response]
// Answer a north request: continue (relay through us), bypass or block.
std::array<std::uint8_t, 4> answer(const detour::north_request& n, bool allowed) {
  return detour::encode_response(n.match_id,
                                 allowed ? detour::action::proceed : detour::action::block);
}
// [end]

// [example: encode]
// Build the headers a client sends, byte for byte as g3proxy does.
std::vector<std::uint8_t> client_headers() {
  detour::north_request r;
  r.client = {*detour::parse_ip("2001:db8::1"), 56324};
  r.proxy = {*detour::parse_ip("2001:db8::11"), 443};
  r.username = "alice";
  r.upstream.text = "[2001:db8::1]:993";
  r.protocol = detour::protocol_kind::imap;
  r.match_id = 42;
  std::vector<std::uint8_t> out(detour::g3_max_header_size);
  const auto n = detour::encode_north_request(r, out);
  if (!n) return {}; // n.error_code().message() says why; nothing was truncated
  out.resize(n.size);

  // Any PROXY v2 header: a HAProxy-style one with a CRC32C and an AUTHORITY TLV.
  const auto fields = detour::ppv2::header_fields::tcp(r.client, r.proxy);
  const auto e = detour::ppv2::encode_append(
      fields,
      {detour::ppv2::tlv{detour::ppv2::tlv_type::authority, std::string_view("example.com")}}, out,
      {.crc32c = true});
  return e ? out : std::vector<std::uint8_t>{};
}
// [end]

// [example: websocket]
// The payload of a `websocket` north request.
std::string websocket_target(std::span<const std::uint8_t> payload) {
  const auto w = detour::parse_websocket_payload(payload);
  if (!w) return "bad payload: " + w.error_code().message();
  std::string out = std::string(w.value.host().value_or("?")) + std::string(w.value.resource);
  w.value.for_each_extension([&](std::string_view e) { out += " ext=" + std::string(e); });
  return out;
}
// [end]

// [example: errors]
// Every failure is a detour::errc, usable as a std::error_code.
std::string log_line(detour::errc e, std::size_t offset) {
  const std::error_code ec = e;
  return std::string(ec.category().name()) + ": " + ec.message() + " (" +
         std::string(detour::errc_name(e)) + ") at byte " + std::to_string(offset);
}
// [end]

} // namespace

TEST_CASE("library example: one-shot decode of a north request", "[docs][examples]") {
  const auto bytes = sample_north_with_payload();
  CHECK(describe_north(bytes) == "websocket task 00000000-0000-0000-0000-000000000000 from "
                                 "192.168.0.1:56324 to example.com port "
                                 "443, payload complete");
  CHECK(describe_north(std::span(bytes).first(20)) == "need 69 more bytes");
  auto bad = bytes;
  bad[12] = 0x31;
  CHECK(describe_north(bad) == "bad header: unsupported PROXY protocol version (not 2) at byte 12");
}

TEST_CASE("library example: incremental decode in pieces", "[docs][examples]") {
  const auto bytes = sample_north_with_payload();
  stream_reader reader;
  detour::decode_result<detour::stream_header> header;
  std::vector<std::uint8_t> rest;
  for (std::size_t i = 0; i < bytes.size(); i += 5) {
    const auto after = reader.on_bytes(
        std::span(bytes).subspan(i, std::min<std::size_t>(5, bytes.size() - i)), header);
    if (header.complete()) rest.insert(rest.end(), after.begin(), after.end());
  }
  REQUIRE(header.complete());
  CHECK(header.value.kind == detour::stream_kind::north);
  CHECK(header.value.north.match_id == 7);
  CHECK(std::string(rest.begin(), rest.end()) == "/chat\r\nhost: example.com\r\n");
}

TEST_CASE("library example: the response", "[docs][examples]") {
  detour::north_request n;
  n.match_id = 0x0102;
  CHECK(answer(n, true) == std::array<std::uint8_t, 4>{1, 2, 0, 0});
  CHECK(answer(n, false) == std::array<std::uint8_t, 4>{1, 2, 0, 2});
}

TEST_CASE("library example: encoding headers", "[docs][examples]") {
  const auto bytes = client_headers();
  REQUIRE(!bytes.empty());
  const auto first = detour::decode_north_request(bytes);
  REQUIRE(first.complete());
  CHECK(first.value.upstream.host == "2001:db8::1");
  const auto second = detour::ppv2::decode(std::span(bytes).subspan(first.consumed));
  REQUIRE(second.complete());
  CHECK(second.value.authority() == "example.com");
  CHECK(second.value.crc32c());
}

TEST_CASE("library example: the WebSocket payload", "[docs][examples]") {
  const std::string p =
      "/chat\r\nhost: example.com\r\nsec-websocket-extensions: permessage-deflate\r\n";
  CHECK(websocket_target(std::span(reinterpret_cast<const std::uint8_t*>(p.data()), p.size())) ==
        "example.com/chat ext=permessage-deflate");
  const std::string bad = "/chat\nhost: x\r\n";
  CHECK(
      websocket_target(std::span(reinterpret_cast<const std::uint8_t*>(bad.data()), bad.size())) ==
      "bad payload: websocket payload has a stray CR or LF");
}

TEST_CASE("library example: errors as std::error_code", "[docs][examples]") {
  CHECK(log_line(detour::errc::crc32c_mismatch, 28) ==
        "detour: CRC32C checksum does not match the header (crc32c_mismatch) at byte 28");
}

TEST_CASE("docs/library.md shows every example of this file verbatim", "[docs][examples]") {
  const auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string source =
      read(std::string(DETOUR_SOURCE_DIR) + "/tests/unit/library_examples.tests.cpp");
  const std::string doc = read(std::string(DETOUR_SOURCE_DIR) + "/docs/library.md");
  REQUIRE(!doc.empty());
  int examples = 0;
  for (std::size_t at = source.find("\n// [example: "); at != std::string::npos;
       at = source.find("\n// [example: ", at + 1)) {
    const auto start = source.find('\n', at + 1) + 1;
    const auto end = source.find("// [end]", start);
    const std::string code = source.substr(start, end - start);
    INFO(source.substr(at, start - at) << code);
    CHECK(doc.find(code) != std::string::npos);
    ++examples;
  }
  CHECK(examples == 6);
}
