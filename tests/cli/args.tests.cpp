// SPDX-License-Identifier: MIT
// The option reader of the subcommands (cli/args.hpp): sizes, durations, numbers, and errors
// that name the option.
#include "args.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using Catch::Matchers::ContainsSubstring;
using detour::cli::arg_reader;
using detour::cli::parse_duration;
using detour::cli::parse_size;
using detour::cli::usage_error;

TEST_CASE("sizes take powers of 1024 and a bare number of bytes") {
  constexpr std::uint64_t max = std::uint64_t{1} << 40;
  CHECK(parse_size("--x", "512", 0, max) == 512);
  CHECK(parse_size("--x", "512b", 0, max) == 512);
  CHECK(parse_size("--x", "16k", 0, max) == 16 * 1024);
  CHECK(parse_size("--x", "16K", 0, max) == 16 * 1024);
  CHECK(parse_size("--x", "16KiB", 0, max) == 16 * 1024);
  CHECK(parse_size("--x", "4m", 0, max) == 4 * 1024 * 1024);
  CHECK(parse_size("--x", "4MiB", 0, max) == 4 * 1024 * 1024);
  CHECK(parse_size("--x", "1g", 0, max) == std::uint64_t{1} << 30);
  CHECK(parse_size("--x", "1GiB", 0, max) == std::uint64_t{1} << 30);
  CHECK(parse_size("--x", "0", 0, max) == 0);
}

TEST_CASE("sizes outside their range or with an unknown unit are refused, naming the option") {
  CHECK_THROWS_WITH(parse_size("--stream-window", "8k", 16 * 1024, 1 << 30),
                    ContainsSubstring("--stream-window wants a size from 16384 to 1073741824") &&
                        ContainsSubstring("not '8k'"));
  CHECK_THROWS_WITH(parse_size("--x", "2g", 0, 1 << 30), ContainsSubstring("not '2g'"));
  CHECK_THROWS_AS(parse_size("--x", "1t", 0, std::uint64_t{1} << 50), usage_error);
  CHECK_THROWS_AS(parse_size("--x", "", 0, 100), usage_error);
  CHECK_THROWS_AS(parse_size("--x", "-1", 0, 100), usage_error);
  CHECK_THROWS_AS(parse_size("--x", "1.5m", 0, std::uint64_t{1} << 30), usage_error);
  CHECK_THROWS_AS(parse_size("--x", "k", 0, 100), usage_error);
  // A shift that would overflow is caught by the range, not wrapped around.
  CHECK_THROWS_AS(parse_size("--x", "18446744073709551615g", 0, UINT64_MAX), usage_error);
  // The bounds themselves are accepted.
  CHECK(parse_size("--x", "16k", 16 * 1024, 16 * 1024) == 16 * 1024);
}

TEST_CASE("durations") {
  CHECK(parse_duration("--x", "30s") == 30'000'000'000);
  CHECK(parse_duration("--x", "30") == 30'000'000'000);
  CHECK(parse_duration("--x", "1500ms") == 1'500'000'000);
  CHECK(parse_duration("--x", "5m") == 300'000'000'000);
  CHECK(parse_duration("--x", "2h") == 7'200'000'000'000);
  CHECK_THROWS_WITH(parse_duration("--idle-timeout", "3d"),
                    ContainsSubstring("--idle-timeout wants a duration"));
  CHECK_THROWS_AS(parse_duration("--x", "100000h"), usage_error);
}

TEST_CASE("the reader gives values, sizes and numbers, in both spellings") {
  std::vector<std::string> words{
      "--stream-window", "1m", "--send-buffer=64k", "--workers", "3", "--retry", "--max-streams=x"};
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  arg_reader r(argv);
  REQUIRE(r.next());
  CHECK(r.is("--stream-window"));
  CHECK(r.size(16 * 1024, 1 << 30) == 1024 * 1024);
  REQUIRE(r.next());
  CHECK(r.is("--send-buffer"));
  CHECK(r.size(16 * 1024, 1 << 30) == 64 * 1024);
  REQUIRE(r.next());
  CHECK(r.number(0, 64) == 3);
  REQUIRE(r.next());
  CHECK(r.is("--retry"));
  CHECK_NOTHROW(r.flag());
  REQUIRE(r.next());
  CHECK_THROWS_WITH(r.number(64, 1 << 20), ContainsSubstring("--max-streams wants a number"));
  CHECK_FALSE(r.next());
}
