// SPDX-License-Identifier: MIT
// tests/unit/ppv2_decode.tests.cpp: PROXY protocol v2 decoding (proxy-protocol.txt section 2.2)
// against the annotated vectors, replayed at every split point and byte by byte, with sweeps
// over the version/command and family bytes and one case per error.
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>

#include "support/expect.hpp"
#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

namespace {

using bytes = std::vector<std::uint8_t>;

bytes tcp4_header(std::uint16_t length_field = 12, std::size_t total = 28) {
  bytes b(ppv2::signature.begin(), ppv2::signature.end());
  b.insert(b.end(), {0x21, 0x11, static_cast<std::uint8_t>(length_field >> 8),
                     static_cast<std::uint8_t>(length_field)});
  b.insert(b.end(), {192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB});
  b.resize(total, 0);
  return b;
}

/// Feeds `input` to a fresh decoder in pieces of the given sizes (the last one repeats) and
/// checks the contract of every feed; returns the final result and the bytes consumed in total.
struct fed {
  decode_result<ppv2::header_view> result;
  std::size_t consumed = 0;
};

fed feed_in_pieces(std::span<const std::uint8_t> input, std::span<std::uint8_t> storage,
                   const std::vector<std::size_t>& sizes, ppv2::decode_limits limits = {}) {
  ppv2::decoder d(storage, limits);
  fed out;
  std::size_t pos = 0, k = 0;
  while (true) {
    const std::size_t n = std::min(sizes[std::min(k++, sizes.size() - 1)], input.size() - pos);
    const exact_bytes piece(input.subspan(pos, n));
    const auto r = d.feed(piece);
    REQUIRE(r.consumed <= n);
    out.consumed += r.consumed;
    out.result = r;
    if (r.need_more()) {
      REQUIRE(r.consumed == n); // need_more takes everything
      REQUIRE(d.buffered() == out.consumed);
    }
    pos += r.consumed;
    if (!r.need_more() || pos == input.size()) break;
  }
  return out;
}

void check_same(const decode_result<ppv2::header_view>& a,
                const decode_result<ppv2::header_view>& b) {
  REQUIRE(a.status == b.status);
  CHECK(a.error == b.error);
  CHECK(a.offset == b.offset);
  CHECK(a.needed == b.needed);
  if (a.complete()) CHECK(a.value == b.value);
}

} // namespace

TEST_CASE("ppv2::decode meets every vector's expectation", "[ppv2][decode][vectors]") {
  for (const auto& v : test::load_vectors("ppv2")) {
    INFO("vector " << v.name << ": " << v.title);
    const exact_bytes input(v.bytes);
    const auto r = ppv2::decode(input);
    test::check_outcome(r, v.expect);
    if (!r.complete()) continue;
    CHECK(r.value.size() == r.consumed);
    CHECK(r.value.bytes.data() == input.span().data());
    // The TLV walk covers the TLV block exactly.
    std::size_t walked = 0;
    for (const auto t : r.value.tlvs()) walked += ppv2::tlv_head_size + t.value.size();
    CHECK(walked == r.value.tlv_block.size());
    // Named accessors, where the vector lists them.
    const auto& f = v.fields;
    CHECK(r.value.block_discarded == (f.count("block_discarded") != 0));
    if (f.count("authority")) CHECK(r.value.authority() == f.at("authority"));
    if (f.count("unique_id")) {
      REQUIRE(r.value.unique_id());
      CHECK(ppv2::as_text(*r.value.unique_id()) == f.at("unique_id"));
    }
    if (f.count("ssl.client")) {
      const auto ssl = r.value.ssl();
      REQUIRE(ssl);
      CHECK(std::to_string(ssl->client) == f.at("ssl.client"));
      CHECK(std::to_string(ssl->verify) == f.at("ssl.verify"));
      // A sub-TLV the vector does not list must be absent.
      const auto text = [&](const char* key) -> std::optional<std::string> {
        if (!f.count(key)) return std::nullopt;
        return f.at(key);
      };
      CHECK(ssl->version() == text("ssl.version"));
      CHECK(ssl->cn() == text("ssl.cn"));
      CHECK(ssl->cipher() == text("ssl.cipher"));
      CHECK(ssl->sig_alg() == text("ssl.sig_alg"));
      CHECK(ssl->key_alg() == text("ssl.key_alg"));
      CHECK(ssl->group() == text("ssl.group"));
      CHECK(ssl->sig_scheme() == text("ssl.sig_scheme"));
      const auto cert = ssl->client_cert();
      REQUIRE(cert.has_value() == (f.count("ssl.client_cert") != 0));
      if (cert) {
        std::string hex;
        for (const std::uint8_t b : *cert) {
          hex += "0123456789abcdef"[b >> 4];
          hex += "0123456789abcdef"[b & 0xF];
        }
        CHECK(hex == f.at("ssl.client_cert"));
      }
    }
  }
}

TEST_CASE("ppv2::decode gives the same result for every prefix as the spec allows",
          "[ppv2][decode][vectors][chunking]") {
  for (const auto& v : test::load_vectors("ppv2")) {
    INFO("vector " << v.name);
    const exact_bytes whole(v.bytes);
    const auto full = ppv2::decode(whole);
    for (std::size_t n = 0; n < v.bytes.size(); ++n) {
      INFO("prefix of " << n << " bytes");
      const exact_bytes prefix{std::span(v.bytes).first(n)};
      const auto r = ppv2::decode(prefix);
      if (full.complete() && n >= full.consumed) {
        check_same(r, full);
        continue;
      }
      if (r.need_more()) {
        // Exact once the fixed part is in, else up to it.
        if (n < ppv2::fixed_size)
          CHECK(r.needed == ppv2::fixed_size - n);
        else if (full.complete())
          CHECK(r.needed == full.consumed - n);
        CHECK(r.needed > 0);
      } else {
        // An error seen early must be the error of the whole input.
        REQUIRE(full.failed());
        CHECK(r.error == full.error);
        CHECK(r.offset == full.offset);
      }
    }
  }
}

TEST_CASE("ppv2::decoder matches decode at every split point and byte by byte",
          "[ppv2][decoder][vectors][chunking]") {
  std::vector<std::uint8_t> storage(ppv2::decode_limits{}.max_header_size);
  for (const auto& v : test::load_vectors("ppv2")) {
    INFO("vector " << v.name);
    const exact_bytes input(v.bytes);
    const auto one_shot = ppv2::decode(input);
    const std::size_t header_bytes = one_shot.complete() ? one_shot.consumed : v.bytes.size();

    for (std::size_t split = 0; split <= v.bytes.size(); ++split) {
      INFO("split at " << split);
      const auto r =
          feed_in_pieces(input, storage, {split == 0 ? v.bytes.size() : split, v.bytes.size()});
      check_same(r.result, one_shot);
      if (one_shot.complete()) CHECK(r.consumed == header_bytes); // stops exactly at the end
    }
    const auto bytewise = feed_in_pieces(input, storage, {1});
    check_same(bytewise.result, one_shot);
    if (one_shot.complete()) {
      CHECK(bytewise.consumed == header_bytes);
      CHECK(bytewise.result.value.bytes.data() == storage.data());
    }
  }
}

TEST_CASE("ppv2::decode accepts only version 2 with LOCAL or PROXY: all 256 values of byte 13",
          "[ppv2][decode][spec][sweep]") {
  for (int vc = 0; vc < 256; ++vc) {
    INFO("ver_cmd " << vc);
    auto b = tcp4_header();
    b[12] = static_cast<std::uint8_t>(vc);
    const exact_bytes r_in{b};
    const auto r = ppv2::decode(r_in);
    if (vc == 0x20 || vc == 0x21) {
      REQUIRE(r.complete());
      CHECK(r.value.command == (vc == 0x20 ? ppv2::command::local : ppv2::command::proxy));
    } else {
      REQUIRE(r.failed());
      CHECK(r.error == ((vc >> 4) != 2 ? errc::bad_version : errc::bad_command));
      CHECK(r.offset == 12);
      // Refused as soon as byte 13 is there, before the rest.
      const exact_bytes early_in{std::span(b).first(13)};
      const auto early = ppv2::decode(early_in);
      CHECK(early.error == r.error);
    }
  }
}

TEST_CASE("ppv2::decode accepts only the listed family/transport bytes: all 256 values of byte 14, "
          "under LOCAL and PROXY",
          "[ppv2][decode][spec][sweep]") {
  const std::array<int, 7> listed{0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32};
  for (std::uint8_t vc : {std::uint8_t{0x20}, std::uint8_t{0x21}}) {
    for (int fam = 0; fam < 256; ++fam) {
      INFO("ver_cmd " << int(vc) << " fam " << fam);
      auto b = tcp4_header(216, 16 + 216);   // long enough for any family's address block
      std::fill(b.begin() + 16, b.end(), 0); // zeros: addresses, or empty TLVs of type 0
      b[12] = vc;
      b[13] = static_cast<std::uint8_t>(fam);
      const exact_bytes r_in{b};
      const auto r = ppv2::decode(r_in);
      if (std::find(listed.begin(), listed.end(), fam) != listed.end()) {
        REQUIRE(r.complete());
        CHECK(static_cast<int>(r.value.family) == fam >> 4);
        CHECK(static_cast<int>(r.value.transport) == (fam & 0xF));
        CHECK(r.value.address_block.size() == ppv2::address_size(r.value.family));
      } else {
        REQUIRE(r.failed());
        CHECK(r.error == ((fam >> 4) > 3 ? errc::bad_family : errc::bad_transport));
        CHECK(r.offset == 13);
      }
    }
  }
}

TEST_CASE("ppv2::decode requires a PROXY header's length to cover the family's address block",
          "[ppv2][decode][spec]") {
  const auto [fam, block] = GENERATE(table<std::uint8_t, std::size_t>(
      {{0x11, 12}, {0x12, 12}, {0x21, 36}, {0x22, 36}, {0x31, 216}, {0x32, 216}}));
  for (std::uint8_t vc : {std::uint8_t{0x20}, std::uint8_t{0x21}}) {
    INFO("fam " << int(fam) << " ver_cmd " << int(vc));
    auto b = tcp4_header(static_cast<std::uint16_t>(block - 1), 16 + block - 1);
    b[12] = vc;
    b[13] = fam;
    const exact_bytes r_in{b};
    const auto r = ppv2::decode(r_in);
    if (vc == 0x21) {
      REQUIRE(r.failed());
      CHECK(r.error == errc::address_block_too_short);
      CHECK(r.offset == 14);
    } else {
      // §2.2, LOCAL: "discard the protocol block including the family which is ignored".
      REQUIRE(r.complete());
      CHECK(r.consumed == 16 + block - 1);
      CHECK(r.value.block_discarded);
      CHECK(r.value.family == ppv2::address_family::unspec);
      CHECK(r.value.tlvs().empty());
    }
    b = tcp4_header(static_cast<std::uint16_t>(block), 16 + block);
    b[12] = vc;
    b[13] = fam;
    const exact_bytes ok_in{b};
    const auto ok = ppv2::decode(ok_in);
    REQUIRE(ok.complete());
    CHECK_FALSE(ok.value.block_discarded);
  }
}

TEST_CASE("ppv2::decode accepts a LOCAL header whatever its block, and reads it when it can",
          "[ppv2][decode][spec]") {
  // LOCAL, AF_INET, length 0: no room for the family's addresses.
  auto b = tcp4_header(0, 16);
  b[12] = 0x20;
  {
    const exact_bytes in{b};
    const auto r = ppv2::decode(in);
    REQUIRE(r.complete());
    CHECK(r.consumed == 16);
    CHECK(r.value.block_discarded);
  }
  // LOCAL, AF_UNSPEC, two bytes that are no TLV: discarded, not tlv_truncated.
  b = tcp4_header(2, 18);
  b[12] = 0x20;
  b[13] = 0x00;
  {
    const exact_bytes in{b};
    const auto r = ppv2::decode(in);
    REQUIRE(r.complete());
    CHECK(r.consumed == 18);
    CHECK(r.value.block_discarded);
    // The same bytes as PROXY: refused.
    auto p = b;
    p[12] = 0x21;
    const exact_bytes proxy_in{p};
    const auto rp = ppv2::decode(proxy_in);
    REQUIRE(rp.failed());
    CHECK(rp.error == errc::tlv_truncated);
  }
  // LOCAL, AF_UNSPEC, a well-formed TLV (a health check's unique id): kept.
  b = tcp4_header(3 + 4, 16 + 3 + 4);
  b[12] = 0x20;
  b[13] = 0x00;
  const std::uint8_t uid[] = {0x05, 0x00, 0x04, 'c', 'h', 'k', '1'};
  std::copy(std::begin(uid), std::end(uid), b.begin() + 16);
  {
    const exact_bytes in{b};
    const auto r = ppv2::decode(in);
    REQUIRE(r.complete());
    CHECK_FALSE(r.value.block_discarded);
    REQUIRE(r.value.unique_id());
    CHECK(ppv2::as_text(*r.value.unique_id()) == "chk1");
  }
  // The incremental decoder, a byte at a time, agrees.
  b = tcp4_header(2, 18);
  b[12] = 0x20;
  b[13] = 0x00;
  std::array<std::uint8_t, 64> storage{};
  ppv2::decoder d(storage);
  decode_result<ppv2::header_view> last;
  for (const std::uint8_t byte : b) last = d.feed({&byte, 1});
  REQUIRE(last.complete());
  CHECK(last.value.block_discarded);
  // An encoder never writes such a block.
  ppv2::header_fields f;
  f.command = ppv2::command::local;
  std::array<std::uint8_t, 256> out{};
  const std::uint8_t bad_uid[129] = {};
  const ppv2::tlv too_long{0x05, std::span<const std::uint8_t>(bad_uid)};
  const auto e = ppv2::encode(f, {too_long}, out);
  CHECK(e.error == errc::unique_id_too_long);
}

TEST_CASE("ppv2::decode skips a LOCAL header's address block by its declared length",
          "[ppv2][decode][spec]") {
  // §2.2: "Receivers MUST always consider this field to skip the appropriate number of bytes
  // and must not assume zero is presented for LOCAL connections."
  auto b = tcp4_header();
  b[12] = 0x20;
  b.insert(b.end(), {'p', 'a', 'y', 'l', 'o', 'a', 'd'});
  const exact_bytes r_in{b};
  const auto r = ppv2::decode(r_in);
  REQUIRE(r.complete());
  CHECK(r.consumed == 28);
  CHECK(r.value.command == ppv2::command::local);
  CHECK(to_text(r.value.source) == "192.168.0.1:56324");
}

TEST_CASE("ppv2::decode enforces the size limit from the fixed part alone",
          "[ppv2][decode][limits]") {
  const auto b = tcp4_header(12 + 7 + 100, 16 + 12 + 7 + 100);
  const std::size_t total = b.size();
  for (std::size_t limit : {total, total - 1, std::size_t{16}, std::size_t{0}}) {
    INFO("limit " << limit);
    const ppv2::decode_limits limits{limit};
    const exact_bytes fixed_only_in{std::span(b).first(16)};
    const auto fixed_only = ppv2::decode(fixed_only_in, limits);
    if (limit >= total) {
      CHECK(fixed_only.need_more());
      CHECK(fixed_only.needed == total - 16);
    } else {
      REQUIRE(fixed_only.failed());
      CHECK(fixed_only.error == errc::header_too_large);
      CHECK(fixed_only.offset == 14);
    }
  }
  // The format's own maximum is accepted when the limit allows it.
  auto big = tcp4_header(0xFFFF, ppv2::max_size);
  big[28] = 0x04; // one NOOP TLV filling the rest
  big[29] = static_cast<std::uint8_t>((0xFFFF - 12 - 3) >> 8);
  big[30] = static_cast<std::uint8_t>(0xFFFF - 12 - 3);
  const exact_bytes r_in{big};
  const auto r = ppv2::decode(r_in, {ppv2::max_size});
  REQUIRE(r.complete());
  CHECK(r.consumed == ppv2::max_size);
}

TEST_CASE("ppv2::decode leaves the bytes after the header to the caller", "[ppv2][decode]") {
  auto b = tcp4_header();
  const bytes tail{0xE5, 0x00, 0x02, 0x00, 0x09, 'G', 'E', 'T'};
  b.insert(b.end(), tail.begin(), tail.end());
  const exact_bytes r_in{b};
  const auto r = ppv2::decode(r_in);
  REQUIRE(r.complete());
  CHECK(r.consumed == 28);
  CHECK(r.value.tlv_block.empty());
  CHECK(r.value.tlvs().empty());
}

TEST_CASE("ppv2::decode verifies CRC32C over the whole header", "[ppv2][decode][crc32c][spec]") {
  const auto v = test::load_vector(std::filesystem::path(DETOUR_TEST_VECTORS_DIR) / "ppv2" /
                                   "haproxy_ssl_crc32c.hex");
  const exact_bytes good_in{v.bytes};
  const auto good = ppv2::decode(good_in);
  REQUIRE(good.complete());
  REQUIRE(good.value.crc32c());
  // Flip one bit in each byte that is not structure (addresses and TLV values): CRC mismatch.
  std::size_t mismatches = 0;
  for (std::size_t i = 16; i < v.bytes.size(); ++i) {
    auto b = v.bytes;
    b[i] ^= 0x01;
    const exact_bytes r_in{b};
    const auto r = ppv2::decode(r_in);
    REQUIRE(r.failed()); // every single-bit change is caught, one way or another
    if (r.error == errc::crc32c_mismatch) {
      CHECK(r.offset == 28); // the CRC32C TLV (HAProxy puts it first)
      ++mismatches;
    }
  }
  CHECK(mismatches > 100);
}

TEST_CASE("ppv2::decode finds SSL sub-TLVs in any order", "[ppv2][decode][ssl]") {
  const auto v = test::load_vector(std::filesystem::path(DETOUR_TEST_VECTORS_DIR) / "ppv2" /
                                   "haproxy_ssl_crc32c.hex");
  const exact_bytes r_in{v.bytes};
  const auto r = ppv2::decode(r_in);
  REQUIRE(r.complete());
  const auto ssl = r.value.ssl();
  REQUIRE(ssl);
  CHECK(ssl->client_ssl());
  CHECK(ssl->client_cert_conn());
  CHECK(ssl->client_cert_sess());
  std::vector<int> order;
  for (const auto t : ssl->sub_tlvs) order.push_back(t.type);
  CHECK(order == std::vector<int>{0x21, 0x23, 0x24, 0x25, 0x22});
  // Offsets of sub-TLVs count from the start of the header too.
  for (const auto t : ssl->sub_tlvs) CHECK(r.value.bytes[t.offset] == t.type);
}

TEST_CASE("ppv2::decoder stops at the end of the header within one piece", "[ppv2][decoder]") {
  auto b = tcp4_header();
  b.insert(b.end(), {'h', 'e', 'l', 'l', 'o'});
  std::array<std::uint8_t, 64> storage{};
  ppv2::decoder d(storage);
  const exact_bytes first{std::span(b).first(10)};
  auto r = d.feed(first);
  CHECK(r.need_more());
  CHECK(r.consumed == 10);
  CHECK(r.needed == 6);
  const exact_bytes rest{std::span(b).subspan(10)};
  r = d.feed(rest);
  REQUIRE(r.complete());
  CHECK(r.consumed == 18); // 28 - 10: "hello" stays with the caller
  CHECK(r.value.size() == 28);
  CHECK(r.value.bytes.data() == storage.data());
  // Complete is sticky and consumes nothing more.
  const auto again = d.feed(rest);
  CHECK(again.complete());
  CHECK(again.consumed == 0);
  d.reset();
  CHECK(d.buffered() == 0);
  CHECK(d.feed(first).need_more());
}

TEST_CASE("ppv2::decoder keeps an error sticky until reset", "[ppv2][decoder]") {
  std::array<std::uint8_t, 64> storage{};
  ppv2::decoder d(storage);
  const std::array<std::uint8_t, 3> http{'G', 'E', 'T'};
  const auto r = d.feed(http);
  REQUIRE(r.failed());
  CHECK(r.error == errc::bad_signature);
  CHECK(r.offset == 0);
  const auto valid = tcp4_header();
  const auto again = d.feed(valid);
  CHECK(again.failed());
  CHECK(again.error == errc::bad_signature);
  CHECK(again.consumed == 0);
  d.reset();
  CHECK(d.feed(valid).complete());
}

TEST_CASE("ppv2::decoder applies the smaller of its limit and its storage",
          "[ppv2][decoder][limits]") {
  const auto b = tcp4_header(12 + 20, 16 + 12 + 20);
  std::vector<std::uint8_t> small(b.size() - 1);
  ppv2::decoder d(small);
  const auto r = d.feed(b);
  REQUIRE(r.failed());
  CHECK(r.error == errc::header_too_large);
  CHECK(r.offset == 14);
  CHECK(r.consumed == 16); // decided from the fixed part

  std::array<std::uint8_t, 8> tiny{};
  ppv2::decoder t(tiny);
  const auto x = t.feed(b);
  CHECK(x.failed());
  CHECK(x.error == errc::header_too_large);
}

TEST_CASE("ppv2::decoder accepts empty pieces", "[ppv2][decoder]") {
  std::array<std::uint8_t, 64> storage{};
  ppv2::decoder d(storage);
  const auto r = d.feed({});
  CHECK(r.need_more());
  CHECK(r.needed == 16);
  CHECK(r.consumed == 0);
}

TEST_CASE("tlv_range stops at a TLV that does not fit, over any bytes", "[ppv2][tlv]") {
  const exact_bytes block{bytes{0x04, 0x00, 0x01, 0xAA, 0xE5, 0x00, 0x09, 0x01}};
  std::vector<int> types;
  for (const auto t : ppv2::tlv_range(block)) types.push_back(t.type);
  CHECK(types == std::vector<int>{0x04});
  const exact_bytes one_byte{bytes{0x04}};
  CHECK(ppv2::tlv_range(one_byte).empty());
}

TEST_CASE("the fuzz corpora hold every vector, byte for byte", "[ppv2][vectors][fuzz]") {
  // tests/vectors/generate.py writes both; this keeps them from drifting apart.
  const std::filesystem::path corpus = std::filesystem::path(DETOUR_SOURCE_DIR) / "fuzz" / "corpus";
  const auto read = [](const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  for (const auto& v : test::load_vectors("ppv2")) {
    INFO("vector " << v.name);
    auto prefixed = bytes{0x01, 0x00, 0x00};
    prefixed.insert(prefixed.end(), v.bytes.begin(), v.bytes.end());
    CHECK(read(corpus / "ppv2_decode" / v.name) == prefixed);
    CHECK(read(corpus / "ppv2_roundtrip" / v.name) == v.bytes);
    CHECK(read(corpus / "detour_request" / v.name) == v.bytes);
  }
}
