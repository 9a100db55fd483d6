// SPDX-License-Identifier: MIT
// Tests of cli/audit.hpp: the JSON line of a task, field by field; escaping that keeps every
// byte recoverable; and the writer: lines in order, nothing lost on close, reopen after a
// rotation, a bounded queue.
#include "audit.hpp"

#include <catch2/catch_test_macros.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace detour::cli;

namespace {

std::string json(std::string_view bytes) {
  std::string out;
  append_json_string(out, bytes);
  return out;
}

struct temp_file {
  std::filesystem::path path;
  temp_file() {
    char name[] = "/tmp/detour-audit-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::filesystem::remove(path);
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
    std::filesystem::remove(path.string() + ".1", ec);
  }
  std::string text() const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

audit_record sample() {
  audit_record r;
  r.time_ns = 1'756'116'672'123'456'789; // 2025-08-25T10:11:12.123456Z
  r.task = "0b8f0c3e-6a51-4c1f-9d0e-8f3b2a1c4d5e";
  r.conn = "1f2e3d4c";
  r.match_id = 7;
  r.user = "alice";
  r.client = "192.0.2.10:50000";
  r.proxy = "192.0.2.1:3128";
  r.upstream = "chat.example.com:443";
  r.protocol = "websocket";
  r.websocket = true;
  r.ws_resource = "/socket";
  r.ws_headers = {{"host", "chat.example.com"}, {"sec-websocket-extensions", "a, b"}};
  r.rule = "chat";
  r.decision = detour::action::proceed;
  r.capture = true;
  r.client_bytes = 1234;
  r.remote_bytes = 56789;
  r.duration_ns = 12'345'678;
  r.end = "finished";
  return r;
}

} // namespace

TEST_CASE("audit: a record is one JSON object on one line, every field in order", "[audit]") {
  std::string line;
  append_audit_line(line, sample());
  CHECK(line ==
        "{\"time\":\"2025-08-25T10:11:12.123456Z\","
        "\"task\":\"0b8f0c3e-6a51-4c1f-9d0e-8f3b2a1c4d5e\",\"conn\":\"1f2e3d4c\","
        "\"match\":7,\"user\":\"alice\",\"client\":\"192.0.2.10:50000\","
        "\"proxy\":\"192.0.2.1:3128\",\"upstream\":\"chat.example.com:443\","
        "\"protocol\":\"websocket\",\"websocket\":{\"resource\":\"/socket\","
        "\"headers\":{\"host\":\"chat.example.com\",\"sec-websocket-extensions\":\"a, b\"}},"
        "\"rule\":\"chat\",\"action\":\"continue\",\"capture\":true,\"client_bytes\":1234,"
        "\"remote_bytes\":56789,\"duration_ms\":12.346,\"end\":\"finished\"}\n");
}

TEST_CASE("audit: absent values are null, a summary that did not parse gives its error",
          "[audit]") {
  audit_record r = sample();
  r.user.reset();
  r.rule.reset();
  r.ws_error = "ws_bad_header_line";
  r.decision = detour::action::block;
  r.capture = false;
  std::string line;
  append_audit_line(line, r);
  CHECK(line.find("\"user\":null,") != std::string::npos);
  CHECK(line.find("\"rule\":null,") != std::string::npos);
  CHECK(line.find("\"websocket\":{\"error\":\"ws_bad_header_line\"}") != std::string::npos);
  CHECK(line.find("\"action\":\"block\",\"capture\":false") != std::string::npos);

  r.websocket = false;
  line.clear();
  append_audit_line(line, r);
  CHECK(line.find("\"websocket\":null,") != std::string::npos);
}

TEST_CASE("audit: strings keep valid UTF-8 and escape everything else recoverably", "[audit]") {
  CHECK(json("plain") == "\"plain\"");
  CHECK(json("q\"b\\s/") == "\"q\\\"b\\\\s/\"");
  CHECK(json("\r\n\t\x01\x7f") == "\"\\r\\n\\t\\u0001\\u007f\"");
  CHECK(json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
        "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  // Bytes that are not UTF-8 become lone low surrogates (Python's surrogateescape).
  CHECK(json("a\xff") == "\"a\\udcff\"");
  CHECK(json("\xc3") == "\"\\udcc3\"");                                  // truncated sequence
  CHECK(json("\xc0\xaf") == "\"\\udcc0\\udcaf\"");                       // overlong
  CHECK(json("\xed\xa0\x80") == "\"\\udced\\udca0\\udc80\"");            // a UTF-16 surrogate
  CHECK(json("\xf4\x90\x80\x80") == "\"\\udcf4\\udc90\\udc80\\udc80\""); // above U+10FFFF
  CHECK(json(std::string_view("\0", 1)) == "\"\\u0000\"");
}

TEST_CASE("audit: times are RFC 3339 UTC with microseconds", "[audit]") {
  CHECK(rfc3339_utc(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(rfc3339_utc(1'000'000'999) == "1970-01-01T00:00:01.000000Z");
  CHECK(rfc3339_utc(951'782'400'000'001'000) == "2000-02-29T00:00:00.000001Z");
}

TEST_CASE("audit: the file gets every line in order, also when closed right after writing",
          "[audit][file]") {
  temp_file f;
  {
    audit_log log({f.path.string()});
    for (int i = 0; i < 1000; ++i) {
      audit_record r = sample();
      r.match_id = static_cast<std::uint16_t>(i);
      REQUIRE(log.write(r));
    }
  } // the destructor drains the queue
  const std::string text = f.text();
  std::istringstream lines(text);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    CHECK(line.find("\"match\":" + std::to_string(n) + ",") != std::string::npos);
    ++n;
  }
  CHECK(n == 1000);
  CHECK((std::filesystem::status(f.path).permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);
}

TEST_CASE("audit: reopen continues in a new file after a rotation moved the old one",
          "[audit][file]") {
  temp_file f;
  audit_log log({f.path.string()});
  audit_record r = sample();
  r.match_id = 1;
  REQUIRE(log.write(r));
  log.flush();
  std::filesystem::rename(f.path, f.path.string() + ".1");
  std::string error;
  REQUIRE(log.reopen(error));
  r.match_id = 2;
  REQUIRE(log.write(r));
  log.flush();
  CHECK(log.written() == 2);
  const std::string now = f.text();
  CHECK(now.find("\"match\":2,") != std::string::npos);
  CHECK(now.find("\"match\":1,") == std::string::npos);
  std::ifstream old(f.path.string() + ".1");
  std::string first;
  std::getline(old, first);
  CHECK(first.find("\"match\":1,") != std::string::npos);
}

TEST_CASE("audit: a reopen that fails keeps the old file and says why", "[audit][file]") {
  temp_file f;
  const auto dir = f.path.string() + ".d";
  std::filesystem::create_directory(dir);
  {
    audit_log log({dir + "/audit.log"});
    std::filesystem::remove(dir + "/audit.log");
    std::filesystem::remove(dir);
    std::string error;
    CHECK_FALSE(log.reopen(error));
    CHECK(error.find("No such file") != std::string::npos);
    CHECK(log.write(sample())); // still accepted: the old (unlinked) file takes it
  }
}

TEST_CASE("audit: an unusable path is refused at once with its name", "[audit][file]") {
  try {
    audit_log log({"/nonexistent-dir/audit.log"});
    FAIL("opened");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find("/nonexistent-dir/audit.log") != std::string::npos);
  }
}

TEST_CASE("writer_thread: what does not fit in the queue is dropped and counted",
          "[audit][writer]") {
  std::mutex gate;
  std::unique_lock hold(gate); // the sink waits on this: nothing drains meanwhile
  std::vector<int> seen;
  {
    writer_thread<int> w(10, [&](std::vector<int>& batch) {
      std::lock_guard wait(gate);
      seen.insert(seen.end(), batch.begin(), batch.end());
    });
    CHECK(w.push(1, 4));
    // The thread may have taken item 1 already (and wait in the sink), or not: either way at
    // most 10 bytes wait, so of 4 more 4-byte items at least 2 are refused.
    int accepted = 0;
    for (int i = 2; i <= 5; ++i) accepted += w.push(int{i}, 4) ? 1 : 0;
    CHECK(accepted <= 2);
    CHECK(w.counters().dropped.load() == static_cast<std::uint64_t>(4 - accepted));
    hold.unlock();
    w.flush();
    CHECK(w.counters().written.load() == static_cast<std::uint64_t>(1 + accepted));
  }
  REQUIRE(!seen.empty());
  CHECK(seen.front() == 1);
  CHECK(std::is_sorted(seen.begin(), seen.end()));
}

TEST_CASE("writer_thread: posted work runs between the items queued before and after it",
          "[audit][writer]") {
  std::vector<std::string> log;
  std::mutex m;
  {
    writer_thread<std::string> w(1 << 20, [&](std::vector<std::string>& batch) {
      std::lock_guard l(m);
      for (auto& s : batch) log.push_back(s);
    });
    w.push("a", 1);
    w.push("b", 1);
    w.post([&] {
      std::lock_guard l(m);
      log.emplace_back("reopen");
    });
    w.push("c", 1);
    w.flush();
    std::lock_guard l(m);
    CHECK(log == std::vector<std::string>{"a", "b", "reopen", "c"});
  }
}
