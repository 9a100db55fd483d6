// SPDX-License-Identifier: MIT
// tests/unit/ppv2_encode.tests.cpp: PROXY protocol v2 encoding (proxy-protocol.txt section
// 2.2): g3proxy's encoder vectors, re-encoding every vector byte for byte, thousands of random
// headers through encode then decode, CRC32C placement, and every refusal.
#include <detour/ppv2/encode.hpp>

#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes from_hex(std::string_view hex) {
  bytes out;
  for (std::size_t i = 0; i + 1 < hex.size();) {
    if (hex[i] == ' ') {
      ++i;
      continue;
    }
    out.push_back(
        static_cast<std::uint8_t>(std::stoul(std::string(hex.substr(i, 2)), nullptr, 16)));
    i += 2;
  }
  return out;
}

bytes encode_to_vector(const ppv2::header_fields& f, std::span<const ppv2::tlv> tlvs,
                       const ppv2::encode_options& opt = {}) {
  bytes out;
  const auto r = ppv2::encode_append(f, tlvs, out, opt);
  REQUIRE(r);
  REQUIRE(out.size() == r.size);
  return out;
}

const socket_address g3_client{ip_address::v4(192, 168, 0, 1), 56324};
const socket_address g3_server{ip_address::v4(192, 168, 0, 11), 443};

} // namespace

TEST_CASE("ppv2::encode reproduces g3proxy's encoder tests", "[ppv2][encode][g3]") {
  // g3 lib/g3-types/src/net/haproxy/v2.rs: t_tcp4, t_tcp4_tlv, t_tcp6, t_tcp6_tlv.
  const std::string_view sig = "0d0a0d0a000d0a515549540a";
  CHECK(encode_to_vector(ppv2::header_fields::tcp(g3_client, g3_server), {}) ==
        from_hex(std::string(sig) + "2111000c c0a80001 c0a8000b dc04 01bb"));
  const std::array task{ppv2::tlv{ppv2::tlv_type::task_id, std::string_view("1234")}};
  CHECK(encode_to_vector(ppv2::header_fields::tcp(g3_client, g3_server), task) ==
        from_hex(std::string(sig) + "21110013 c0a80001 c0a8000b dc04 01bb e30004 31323334"));
  const socket_address c6{*parse_ip("2001:db8::1"), 56324}, s6{*parse_ip("2001:db8::11"), 443};
  CHECK(encode_to_vector(ppv2::header_fields::tcp(c6, s6), {}) ==
        from_hex(std::string(sig) + "21210024 20010db8000000000000000000000001 "
                                    "20010db8000000000000000000000011 dc04 01bb"));
  const std::array user{ppv2::tlv{ppv2::tlv_type::username, std::string_view("1234")}};
  CHECK(encode_to_vector(ppv2::header_fields::tcp(c6, s6), user) ==
        from_hex(std::string(sig) + "2121002b 20010db8000000000000000000000001 "
                                    "20010db8000000000000000000000011 dc04 01bb e20004 31323334"));
}

TEST_CASE("ppv2::encode re-creates every decodable vector byte for byte",
          "[ppv2][encode][vectors]") {
  for (const auto& v : test::load_vectors("ppv2")) {
    const exact_bytes input(v.bytes);
    const auto d = ppv2::decode(input);
    if (!d.complete()) continue;
    INFO("vector " << v.name);
    std::vector<ppv2::tlv> tlvs;
    for (const auto t : d.value.tlvs()) tlvs.emplace_back(t.type, t.value);
    const auto again = encode_to_vector(ppv2::fields_of(d.value), tlvs);
    if (d.value.block_discarded) {
      // A LOCAL block the decoder ignored is not written again: what is left is the plain
      // LOCAL header a sender should send (AF_UNSPEC, length 0).
      bytes plain(v.bytes.begin(), v.bytes.begin() + 12);
      plain.insert(plain.end(), {0x20, 0x00, 0x00, 0x00});
      CHECK(again == plain);
      continue;
    }
    CHECK(again ==
          bytes(v.bytes.begin(), v.bytes.begin() + static_cast<std::ptrdiff_t>(d.consumed)));
  }
}

TEST_CASE("ppv2::encode then decode gives the same header for thousands of random headers",
          "[ppv2][encode][property]") {
  std::mt19937 rng(0x5EED);
  const auto pick = [&](std::uint32_t n) {
    return std::uniform_int_distribution<std::uint32_t>(0, n - 1)(rng);
  };
  const std::array<std::uint8_t, 7> fams{0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
  // Types the decoder lets repeat or does not police, so random lists stay valid.
  const std::array<std::uint8_t, 8> free_types{0x04, 0x06, 0x42, 0xE0, 0xE5, 0xEF, 0xF3, 0xFF};
  std::vector<std::uint8_t> pool(70000);
  for (auto& b : pool) b = static_cast<std::uint8_t>(pick(256));

  for (int i = 0; i < 4000; ++i) {
    ppv2::header_fields f;
    f.command = pick(2) ? ppv2::command::proxy : ppv2::command::local;
    const std::uint8_t fam = fams[pick(7)];
    f.family = static_cast<ppv2::address_family>(fam >> 4);
    f.transport = static_cast<ppv2::transport>(fam & 0xF);
    std::array<std::uint8_t, 16> a{}, b{};
    for (auto& x : a) x = static_cast<std::uint8_t>(pick(256));
    for (auto& x : b) x = static_cast<std::uint8_t>(pick(256));
    if (f.family == ppv2::address_family::inet) {
      f.source = {ip_address::v4(std::span<const std::uint8_t, 4>(a.data(), 4)),
                  static_cast<std::uint16_t>(pick(65536))};
      f.destination = {ip_address::v4(std::span<const std::uint8_t, 4>(b.data(), 4)),
                       static_cast<std::uint16_t>(pick(65536))};
    } else if (f.family == ppv2::address_family::inet6) {
      f.source = {ip_address::v6(a), static_cast<std::uint16_t>(pick(65536))};
      f.destination = {ip_address::v6(b), static_cast<std::uint16_t>(pick(65536))};
    }
    std::array<std::uint8_t, 108> path_a{}, path_b{};
    for (std::size_t k = 0; k < pick(109); ++k)
      path_a[k] = static_cast<std::uint8_t>(1 + pick(255));
    for (std::size_t k = 0; k < pick(109); ++k)
      path_b[k] = static_cast<std::uint8_t>(1 + pick(255));
    f.unix_source = path_a;
    f.unix_destination = path_b;

    std::vector<ppv2::tlv> tlvs;
    const std::uint32_t count = pick(12);
    for (std::uint32_t k = 0; k < count; ++k) {
      const std::size_t len = pick(10) == 0 ? pick(3000) : pick(40);
      const std::size_t at = pick(static_cast<std::uint32_t>(pool.size() - len));
      tlvs.emplace_back(free_types[pick(free_types.size())],
                        std::span<const std::uint8_t>(pool.data() + at, len));
    }
    // Some registered types once each, with valid sizes.
    const std::array<std::uint8_t, 5> ssl{0x05, 0, 0, 0, 0};
    if (pick(3) == 0) tlvs.emplace_back(ppv2::tlv_type::authority, std::string_view("example.org"));
    if (pick(3) == 0)
      tlvs.emplace_back(ppv2::tlv_type::unique_id,
                        std::span<const std::uint8_t>(pool.data(), pick(129)));
    if (pick(3) == 0) tlvs.emplace_back(ppv2::tlv_type::ssl, std::span<const std::uint8_t>(ssl));
    const ppv2::encode_options opt{pick(2) == 1};
    INFO("iteration " << i << " fam " << int(fam) << " tlvs " << tlvs.size() << " crc "
                      << opt.crc32c);

    const auto wire = encode_to_vector(f, tlvs, opt);
    const exact_bytes input(wire);
    const auto d = ppv2::decode(input, {ppv2::max_size});
    REQUIRE(d.complete());
    CHECK(d.consumed == wire.size());
    CHECK(d.value.command == f.command);
    CHECK(d.value.family == f.family);
    CHECK(d.value.transport == f.transport);
    if (f.family == ppv2::address_family::inet || f.family == ppv2::address_family::inet6) {
      CHECK(d.value.source == f.source);
      CHECK(d.value.destination == f.destination);
    }
    if (f.family == ppv2::address_family::unix_socket) {
      CHECK(std::ranges::equal(d.value.unix_source(), path_a));
      CHECK(std::ranges::equal(d.value.unix_destination(), path_b));
    }
    std::vector<ppv2::tlv_view> got(d.value.tlvs().begin(), d.value.tlvs().end());
    const std::size_t skip = opt.crc32c ? 1 : 0; // the CRC32C added first
    REQUIRE(got.size() == tlvs.size() + skip);
    if (opt.crc32c) CHECK(got[0].type == 0x03);
    for (std::size_t k = 0; k < tlvs.size(); ++k) {
      CHECK(got[k + skip].type == tlvs[k].type);
      CHECK(std::ranges::equal(got[k + skip].value, tlvs[k].value));
    }
  }
}

TEST_CASE("ppv2::encode computes a CRC32C where the caller placed it, or first",
          "[ppv2][encode][crc32c]") {
  const std::array<std::uint8_t, 2> match{0x00, 0x07};
  const std::array<std::uint8_t, 4> placeholder{0xDE, 0xAD, 0xBE, 0xEF};
  const auto f = ppv2::header_fields::tcp(g3_client, g3_server);
  SECTION("added first, as HAProxy does") {
    const std::array tlvs{ppv2::tlv{ppv2::tlv_type::match_id, match}};
    const auto wire = encode_to_vector(f, tlvs, {true});
    CHECK(wire[28] == 0x03);
    const exact_bytes input(wire);
    const auto d = ppv2::decode(input);
    REQUIRE(d.complete());
    CHECK(d.value.crc32c());
  }
  SECTION("in place of the caller's entry") {
    const std::array tlvs{ppv2::tlv{ppv2::tlv_type::match_id, match},
                          ppv2::tlv{ppv2::tlv_type::crc32c, placeholder}};
    const auto wire = encode_to_vector(f, tlvs, {true});
    CHECK(wire.size() == 40);
    CHECK(wire[28] == 0xE5);
    CHECK(wire[33] == 0x03);
    const exact_bytes input(wire);
    CHECK(ppv2::decode(input).complete());
  }
  SECTION("a wrong checksum given as is is refused, never emitted") {
    const std::array tlvs{ppv2::tlv{ppv2::tlv_type::crc32c, placeholder}};
    std::array<std::uint8_t, 64> out{};
    CHECK(ppv2::encode(f, tlvs, out).error == errc::crc32c_mismatch);
  }
}

TEST_CASE("ppv2::encode refuses instead of truncating", "[ppv2][encode][errors]") {
  const auto f = ppv2::header_fields::tcp(g3_client, g3_server);
  std::vector<std::uint8_t> big(0x10000, 'x');
  std::array<std::uint8_t, 128> out{};
  SECTION("a buffer too small, at every size short of the header") {
    const std::array tlvs{ppv2::tlv{ppv2::tlv_type::authority, std::string_view("example.com")}};
    for (std::size_t n = 0; n < 42; ++n) {
      INFO("buffer of " << n);
      CHECK(ppv2::encode(f, tlvs, std::span(out).first(n)).error == errc::buffer_too_small);
    }
    CHECK(ppv2::encode(f, tlvs, std::span(out).first(42)).size == 42);
  }
  SECTION("a TLV value over 65535 bytes") {
    const std::array tlvs{ppv2::tlv{0x42, big}};
    bytes grown;
    CHECK(ppv2::encode_append(f, tlvs, grown).error == errc::tlv_value_too_long);
    CHECK(grown.empty()); // the buffer keeps its size on error
  }
  SECTION("a header over 16 + 65535 bytes") {
    const std::array tlvs{ppv2::tlv{0x42, std::span(big).first(40000)},
                          ppv2::tlv{0x43, std::span(big).first(40000)}};
    bytes grown{1, 2, 3};
    CHECK(ppv2::encode_append(f, tlvs, grown).error == errc::header_length_overflow);
    CHECK(grown == bytes{1, 2, 3});
  }
  SECTION("addresses of the wrong family") {
    auto g = f;
    g.family = ppv2::address_family::inet6;
    CHECK(ppv2::encode(g, {}, out).error == errc::address_family_mismatch);
    g.family = ppv2::address_family::unix_socket;
    g.transport = ppv2::transport::stream;
    g.unix_source = std::span(big).first(109);
    CHECK(ppv2::encode(g, {}, out).error == errc::unix_path_too_long);
    g.unix_source = std::span(big).first(108); // exactly the field: fits
    bytes grown;
    CHECK(ppv2::encode_append(g, {}, grown).size == 16 + 216);
  }
  SECTION("values outside the specification") {
    auto g = f;
    g.transport = ppv2::transport::unspec;
    CHECK(ppv2::encode(g, {}, out).error == errc::bad_transport);
    g = f;
    g.family = static_cast<ppv2::address_family>(4);
    CHECK(ppv2::encode(g, {}, out).error == errc::bad_family);
    g = f;
    g.command = static_cast<ppv2::command>(2);
    CHECK(ppv2::encode(g, {}, out).error == errc::bad_command);
  }
  SECTION("TLVs the decoder would refuse") {
    const std::array<std::uint8_t, 3> three{};
    CHECK(ppv2::encode(f, {ppv2::tlv{ppv2::tlv_type::crc32c, three}}, out, {true}).error ==
          errc::tlv_bad_size);
    CHECK(ppv2::encode(f, {ppv2::tlv{ppv2::tlv_type::unique_id, std::span(big).first(129)}},
                       std::span(big.data(), 1000))
              .error == errc::unique_id_too_long);
    CHECK(ppv2::encode(f, {ppv2::tlv{ppv2::tlv_type::ssl, three}}, out).error ==
          errc::tlv_bad_size);
    CHECK(ppv2::encode(f,
                       {ppv2::tlv{ppv2::tlv_type::authority, std::string_view("a")},
                        ppv2::tlv{ppv2::tlv_type::authority, std::string_view("b")}},
                       out)
              .error == errc::tlv_duplicate);
  }
}

TEST_CASE("ppv2::header_fields::local makes the health-check header", "[ppv2][encode]") {
  std::array<std::uint8_t, 16> out{};
  const auto r = ppv2::encode(ppv2::header_fields::local(), {}, out);
  REQUIRE(r);
  CHECK(r.size == 16);
  CHECK(out[12] == 0x20);
  CHECK(out[13] == 0x00);
  CHECK(out[14] == 0x00);
  CHECK(out[15] == 0x00);
}

TEST_CASE("ppv2::tlv with a type alone is an empty TLV", "[ppv2][encode]") {
  ppv2::header_fields f;
  f.source = *parse_socket_address("192.0.2.1:1");
  f.destination = *parse_socket_address("192.0.2.2:2");
  bytes out;
  const std::array tlvs{ppv2::tlv{0x04}, ppv2::tlv{ppv2::tlv_type::noop}, ppv2::tlv{0xE7}};
  REQUIRE(ppv2::encode_append(f, tlvs, out).ok());
  CHECK(out.size() == 16 + 12 + 3 * 3);
  const auto d = ppv2::decode(out);
  REQUIRE(d.complete());
  std::size_t n = 0;
  for (const auto t : d.value.tlvs()) {
    CHECK(t.type == tlvs[n].type);
    CHECK(t.value.empty());
    ++n;
  }
  CHECK(n == 3);
}
