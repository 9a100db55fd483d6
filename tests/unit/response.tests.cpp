// SPDX-License-Identifier: MIT
// tests/unit/response.tests.cpp: the 4-byte detour response (match id, action), read the way
// g3proxy reads it.
#include <detour/response.hpp>

#include "support/string_makers.hpp"
#include "support/vectors.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <array>
#include <cstdint>
#include <vector>

using namespace detour;
using detour::test::exact_bytes;

TEST_CASE("encode_response writes match id then action, big-endian", "[response][encode]") {
  CHECK(encode_response(0x1234, action::proceed) ==
        std::array<std::uint8_t, 4>{0x12, 0x34, 0x00, 0x00});
  CHECK(encode_response(7, action::bypass) == std::array<std::uint8_t, 4>{0x00, 0x07, 0x00, 0x01});
  CHECK(encode_response(0xFFFF, action::block) ==
        std::array<std::uint8_t, 4>{0xFF, 0xFF, 0x00, 0x02});
  static_assert(encode_response(1, std::uint16_t{0xABCD})[3] == 0xCD);
}

TEST_CASE("decode_response reads every action value as g3proxy does", "[response][decode]") {
  // g3proxy: 0 continue, 1 bypass, any other value block.
  const std::uint16_t raw = GENERATE(0, 1, 2, 3, 0x00FF, 0x0100, 0x8000, 0xFFFF);
  const auto wire = encode_response(42, raw);
  const exact_bytes input{wire};
  const auto r = decode_response(input);
  REQUIRE(r.complete());
  CHECK(r.consumed == 4);
  CHECK(r.value.match_id == 42);
  CHECK(r.value.raw_action == raw);
  CHECK(r.value.decision == (raw == 0   ? action::proceed
                             : raw == 1 ? action::bypass
                                        : action::block));
}

TEST_CASE("decode_response needs four bytes and leaves the rest", "[response][decode]") {
  const std::vector<std::uint8_t> wire{0x00, 0x07, 0x00, 0x01, 0xAA, 0xBB};
  for (std::size_t n = 0; n < 4; ++n) {
    const exact_bytes prefix{std::span(wire).first(n)};
    const auto r = decode_response(prefix);
    REQUIRE(r.need_more());
    CHECK(r.needed == 4 - n);
  }
  const exact_bytes all{wire};
  const auto r = decode_response(all);
  REQUIRE(r.complete());
  CHECK(r.consumed == 4);
  CHECK(r.value == response{7, action::bypass, 1});
}

TEST_CASE("decode_response with the task's match id refuses another one", "[response][decode]") {
  const auto wire = encode_response(8, action::proceed);
  const exact_bytes input{wire};
  CHECK(decode_response(input, 8).complete());
  const auto r = decode_response(input, 7);
  REQUIRE(r.failed());
  CHECK(r.error == errc::match_id_mismatch);
  CHECK(r.offset == 0);
  CHECK(r.error_code().message() == "response match id differs from the task's");
}

TEST_CASE("actions have g3proxy's names", "[response]") {
  CHECK(to_string(action::proceed) == "continue");
  CHECK(to_string(action::bypass) == "bypass");
  CHECK(to_string(action::block) == "block");
}
