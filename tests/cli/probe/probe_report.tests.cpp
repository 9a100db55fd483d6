// SPDX-License-Identifier: MIT
// Tests of cli/probe_report.hpp: the JSON writer always produces valid JSON (escapes, bytes
// that are not UTF-8, separators), latency summaries use nearest-rank percentiles, and the
// open-loop schedule puts task i at exactly i / rate seconds.
#include "probe_report.hpp"

#include <catch2/catch_test_macros.hpp>

#include <vector>

using namespace detour::cli::probe;

TEST_CASE("json_writer separates members and elements with commas", "[probe][report][json]") {
  json_writer j;
  j.begin_object()
      .field("a", std::uint64_t{1})
      .key("b")
      .begin_array()
      .value(true)
      .null()
      .begin_object()
      .end_object()
      .end_array()
      .field("c", "x")
      .end_object();
  CHECK(j.str() == R"({"a":1,"b":[true,null,{}],"c":"x"})");
}

TEST_CASE("json_writer escapes quotes, backslashes and control characters",
          "[probe][report][json]") {
  CHECK(json_writer::quote("a\"b\\c") == R"("a\"b\\c")");
  CHECK(json_writer::quote("\n\r\t") == R"("\n\r\t")");
  CHECK(json_writer::quote(std::string_view("\x00\x1f\x7f", 3)) == R"("\u0000\u001f\u007f")");
}

TEST_CASE("json_writer keeps UTF-8 and replaces bytes that are not", "[probe][report][json]") {
  CHECK(json_writer::quote("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
  CHECK(json_writer::quote("\xff") == R"("\ufffd")");
  CHECK(json_writer::quote("a\xc3") == R"("a\ufffd")"); // truncated sequence
  CHECK(json_writer::quote("\xe2\x82\xac\xff!") == "\"\xe2\x82\xac\\ufffd!\""); // then a stray
  CHECK(json_writer::quote("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");       // a surrogate
}

TEST_CASE("json_writer writes no NaN or infinity", "[probe][report][json]") {
  json_writer j;
  j.begin_array().value(0.0 / 0.0).value(1.5).end_array();
  CHECK(j.str() == "[null,1.5]");
}

TEST_CASE("summarize uses nearest-rank percentiles", "[probe][report][latency]") {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 100; i >= 1; --i) v.push_back(i);
  const latency_summary s = summarize(v);
  CHECK(s.count == 100);
  CHECK(s.min == 1);
  CHECK(s.p50 == 50);
  CHECK(s.p90 == 90);
  CHECK(s.p99 == 99);
  CHECK(s.max == 100);
  CHECK(s.mean == 50.5);

  std::vector<std::uint64_t> one{7};
  const latency_summary t = summarize(one);
  CHECK((t.p50 == 7 && t.p99 == 7 && t.max == 7));
  std::vector<std::uint64_t> none;
  CHECK(summarize(none).count == 0);
}

TEST_CASE("open_loop_schedule puts task i at i / rate seconds without drift",
          "[probe][report][schedule]") {
  constexpr std::uint64_t start = 5'000'000'000, second = 1'000'000'000;
  const open_loop_schedule every_third(3, start);
  CHECK(every_third.due(0) == start);
  CHECK(every_third.due(1) == start + 333'333'333); // rounded down: never before its time
  CHECK(every_third.due(2) == start + 666'666'666);
  CHECK(every_third.due(3) == start + second);
  CHECK(every_third.due(3'000'000) == start + 1'000'000 * second); // no drift after 11 days

  // The fastest rate the probe accepts, over the most tasks it accepts: no overflow.
  const open_loop_schedule fastest(10'000'000, start);
  CHECK(fastest.due(1) == start + 100);
  CHECK(fastest.due(100'000'000) == start + 10 * second);

  const open_loop_schedule odd(7, 0);
  std::uint64_t previous = 0;
  for (std::uint64_t i = 1; i < 1000; ++i) {
    const std::uint64_t due = odd.due(i);
    CHECK(due > previous);
    CHECK(due == i * second / 7); // exact: i * 10^9 fits in 64 bits here
    previous = due;
  }
  CHECK(open_loop_schedule(0, start).due(12345) == start); // no rate: all due at once
}

TEST_CASE("human units read naturally", "[probe][report]") {
  CHECK(human_duration(850'000) == "850 us");
  CHECK(human_duration(12'300'000) == "12.3 ms");
  CHECK(human_duration(4'560'000'000) == "4.56 s");
  CHECK(human_bytes(512) == "512 B");
  CHECK(human_bytes(16 * 1024) == "16 KiB");
  CHECK(human_bytes(3 * 1024 * 1024 / 2) == "1.5 MiB");
}

TEST_CASE("code_text names the library's application codes", "[probe][report]") {
  CHECK(code_text(0x101) == "0x101 bad_signature");
  CHECK(code_text(0x122) == "0x122 pairing_expired");
  CHECK(code_text(0x100) == "0x100"); // the base itself is no error
  CHECK(code_text(0x1ff) == "0x1ff"); // beyond the errc values this version knows
  CHECK(code_text(0x5) == "0x5");
  CHECK(code_text(0x10000) == "0x10000");
}
