// SPDX-License-Identifier: MIT
// Tests of cli/json.hpp: the JSON string escaper shared by logs, audit records and probe reports.
#include "json.hpp"

#include <catch2/catch_test_macros.hpp>

#include <fmt/format.h>

#include <string>

using namespace detour::cli;

namespace {

std::string json(std::string_view s, json_bad_utf8 bad = json_bad_utf8::escape) {
  std::string out;
  append_json_string(out, s, bad);
  return out;
}

} // namespace

TEST_CASE("append_json_string escapes quotes, backslashes and controls and keeps UTF-8", "[json]") {
  CHECK(json("") == "\"\"");
  CHECK(json("plain/text") == "\"plain/text\"");
  CHECK(json("q\"b\\") == R"("q\"b\\")");
  CHECK(json("\r\n\t\b\x01\x1f\x7f") == R"("\r\n\t\u0008\u0001\u001f\u007f")");
  CHECK(json(std::string_view("a\0b", 3)) == R"("a\u0000b")");
  // Two, three and four byte sequences, at the edges of their ranges, pass through untouched.
  const std::string utf8 = "\xc2\x80 \xdf\xbf \xe0\xa0\x80 \xed\x9f\xbf \xef\xbf\xbf "
                           "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf";
  CHECK(json(utf8) == "\"" + utf8 + "\"");
}

TEST_CASE("append_json_string turns each byte that is not UTF-8 into \\udcXX or \\ufffd",
          "[json]") {
  struct bad_input {
    std::string_view bytes;
    std::string_view escaped;
    std::string_view replaced;
  };
  for (const auto& c : {
           bad_input{"\xff", R"("\udcff")", R"("\ufffd")"},
           bad_input{"a\xc3", R"("a\udcc3")", R"("a\ufffd")"},              // truncated
           bad_input{"\xc0\xaf", R"("\udcc0\udcaf")", R"("\ufffd\ufffd")"}, // overlong
           bad_input{"\xe0\x80\x80", R"("\udce0\udc80\udc80")", R"("\ufffd\ufffd\ufffd")"},
           bad_input{"\xed\xa0\x80", R"("\udced\udca0\udc80")", R"("\ufffd\ufffd\ufffd")"},
           bad_input{"\xf4\x90\x80\x80", R"("\udcf4\udc90\udc80\udc80")",
                     R"("\ufffd\ufffd\ufffd\ufffd")"},            // above U+10FFFF
           bad_input{"\x80\"", R"("\udc80\"")", R"("\ufffd\"")"}, // stray, then "
       }) {
    INFO(c.escaped);
    CHECK(json(c.bytes) == c.escaped);
    CHECK(json(c.bytes, json_bad_utf8::replace) == c.replaced);
  }
  // A valid sequence right after a bad byte is kept whole.
  CHECK(json("\xff\xe2\x82\xac!") == "\"\\udcff\xe2\x82\xac!\"");
}

TEST_CASE("append_json_string writes the same into an fmt::memory_buffer", "[json]") {
  fmt::memory_buffer buf;
  const std::string_view s = "a\"\xff\n\xc3\xa9";
  append_json_string(buf, s);
  CHECK(fmt::to_string(buf) == json(s));
}
