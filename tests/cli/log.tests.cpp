// SPDX-License-Identifier: MIT
// Tests of cli/log.hpp: text quoting, JSON escaping, level filtering.
#include "log.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace detour::cli;

namespace {

// Captures what a logger writes, through open_memstream.
struct capture {
  char* data = nullptr;
  std::size_t size = 0;
  std::FILE* f = ::open_memstream(&data, &size);
  ~capture() {
    if (f) std::fclose(f);
    std::free(data);
  }
  std::string text() {
    std::fflush(f);
    return std::string(data, size);
  }
};

// The part of a line after the timestamp.
std::string after_timestamp(const std::string& line) {
  return line.substr(line.find(' ') + 1);
}

} // namespace

TEST_CASE("logger writes text lines with key=value fields, quoting when needed", "[log]") {
  capture c;
  logger log(log_level::info, log_format::text, c.f);
  log.info("conn.open", {{"conn", "1f2e"},
                         {"peer", "127.0.0.1:5000"},
                         {"n", 42},
                         {"reason", "peer closed"},
                         {"ok", true},
                         {"neg", -3}});
  CHECK(after_timestamp(c.text()) ==
        "info  conn.open conn=1f2e peer=127.0.0.1:5000 n=42 reason=\"peer closed\" ok=true "
        "neg=-3\n");
}

TEST_CASE("logger writes JSON lines with escaped strings", "[log]") {
  capture c;
  logger log(log_level::debug, log_format::json, c.f);
  log.warn("task.end", {{"user", "a\"b\\c\n\x01"}, {"bytes", std::uint64_t{7}}});
  const std::string line = c.text();
  CHECK(line.rfind("{\"ts\":\"", 0) == 0);
  CHECK(line.find(R"("level":"warn","event":"task.end","user":"a\"b\\c\n\u0001","bytes":7})") !=
        std::string::npos);
  CHECK(line.back() == '\n');
}

TEST_CASE("logger keeps JSON lines valid UTF-8 when a value carries bytes from the wire", "[log]") {
  capture c;
  logger log(log_level::debug, log_format::json, c.f);
  // A user name as a client may send it: Latin-1, a stray continuation byte, DEL, then UTF-8.
  log.info("task.end", {{"user", "caf\xe9 \x80\x7f \xc3\xa9"}});
  const std::string line = c.text();
  // Each byte that is not UTF-8 is a lone low surrogate, as in the audit records: lossless.
  CHECK(line.find(R"("user":"caf\udce9 \udc80\u007f )" "\xc3\xa9\"}") != std::string::npos);
}

TEST_CASE("logger drops lines below its level", "[log]") {
  capture c;
  logger log(log_level::warn, log_format::text, c.f);
  log.info("quiet");
  log.debug("quieter");
  CHECK(c.text().empty());
  log.error("loud");
  CHECK(c.text().find("loud") != std::string::npos);
}

TEST_CASE("log levels and formats parse from their names", "[log]") {
  CHECK(parse_log_level("debug") == log_level::debug);
  CHECK(parse_log_level("warning") == log_level::warn);
  CHECK_FALSE(parse_log_level("verbose"));
  CHECK(parse_log_format("json") == log_format::json);
  CHECK_FALSE(parse_log_format("xml"));
}
