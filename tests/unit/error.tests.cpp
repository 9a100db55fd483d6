// SPDX-License-Identifier: MIT
// tests/unit/error.tests.cpp: the errc enum as a std::error_code in the "detour" category.
#include <detour/error.hpp>

#include "support/string_makers.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cctype>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <system_error>

using namespace detour;

namespace {
// The last value this file knows; the first test fails when a value is appended without a
// name and a message.
constexpr int last_known = static_cast<int>(errc::unix_path_too_long);
} // namespace

TEST_CASE("every errc has a distinct name and message", "[error]") {
  std::set<std::string> names, messages;
  for (int i = 1; i <= last_known; ++i) {
    const auto e = static_cast<errc>(i);
    INFO("errc " << i);
    const auto name = errc_name(e);
    const std::string message = make_error_code(e).message();
    CHECK_FALSE(name.empty());
    CHECK(message != "unknown detour error");
    CHECK(names.insert(std::string(name)).second);
    CHECK(messages.insert(message).second);
    // Short, lower case (acronyms aside), no final period: they follow "detour: " in logs.
    CHECK(message.size() < 64);
    CHECK_FALSE((std::isupper(static_cast<unsigned char>(message[0])) &&
                 std::islower(static_cast<unsigned char>(message[1]))));
    CHECK(message.back() != '.');
  }
  CHECK(errc_name(static_cast<errc>(0)).empty());
  CHECK(errc_name(static_cast<errc>(last_known + 1000)).empty());
  CHECK(make_error_code(static_cast<errc>(last_known + 1000)).message() == "unknown detour error");
}

TEST_CASE("errc converts to std::error_code in the detour category", "[error]") {
  const std::error_code ec = errc::bad_signature; // make_error_code found by ADL
  CHECK(ec.value() == 1);
  CHECK(std::string(ec.category().name()) == "detour");
  CHECK(ec.message() == "not a PROXY protocol v2 signature");
  CHECK(ec == errc::bad_signature);
  CHECK(ec != errc::bad_version);
  CHECK(&ec.category() == &detour_category());
  static_assert(std::is_error_code_enum_v<errc>);
}

TEST_CASE("errc values are stable", "[error]") {
  // Append-only: these numbers appear in logs and must never change.
  CHECK(static_cast<int>(errc::bad_signature) == 1);
  CHECK(static_cast<int>(errc::crc32c_mismatch) == 11);
  CHECK(static_cast<int>(errc::not_proxy_command) == 17);
  CHECK(static_cast<int>(errc::ws_line_not_terminated) == 24);
  CHECK(static_cast<int>(errc::unexpected_eof) == 31);
  CHECK(static_cast<int>(errc::peer_closed_early) == 37);
  CHECK(static_cast<int>(errc::unknown_match_id) == 41);
  CHECK(static_cast<int>(errc::unix_path_too_long) == 42);
}

TEST_CASE("docs/errors.md documents every errc with its value", "[error][docs]") {
  std::ifstream in(std::string(DETOUR_SOURCE_DIR) + "/docs/errors.md");
  REQUIRE(in);
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (int i = 1; i <= last_known; ++i) {
    const auto e = static_cast<errc>(i);
    const std::string row = "| " + std::to_string(i) + " | `" + std::string(errc_name(e)) + "` | " +
                            make_error_code(e).message() + " |";
    INFO(row);
    CHECK(doc.find(row) != std::string::npos);
  }
}
