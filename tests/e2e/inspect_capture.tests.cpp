// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve --capture`: real SMTP, IMAP, HTTP/2 and WebSocket
// conversations sent by the probe (cli/probe_script.hpp) are captured and read back with
// tshark, whose decoded commands, frames and messages must be what the probe sent; TCP
// analysis finds no hole or overlap; only the tasks of rules marked capture are written.
// Fails, saying so, where tshark is not installed (Debian: tshark, which scripts/deps installs):
// a skipped decode would hide a capture that readers cannot read.
#include "inspect_support.hpp"

#include "probe.hpp"
#include "probe_script.hpp"

#include <catch2/catch_test_macros.hpp>

#include <csignal>
#include <sstream>

using namespace detour;
using namespace detour::test;
using cli::probe::side;
using cli::probe::task_plan;

namespace {


// The task `detour probe load --protocol P --relay-data protocol` sends.
task_plan scripted(std::string_view protocol, std::uint64_t index) {
  cli::probe::probe_options o;
  o.protocol_data = true;
  return cli::probe::protocol_plan(o, protocol, index, 0);
}

std::string text_of(const std::vector<std::uint8_t>& b) {
  return {b.begin(), b.end()};
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string item; std::getline(in, item, sep);) {
    if (!item.empty() && item.back() == '\r') item.pop_back();
    out.push_back(item);
  }
  return out;
}

// tshark's fields for the packets matching `filter`, one line per packet, columns by tab.
std::vector<std::vector<std::string>> tshark(const std::string& file, const std::string& options,
                                             const std::string& filter,
                                             const std::vector<std::string>& fields) {
  std::string cmd = "tshark -n -r " + file + " " + options + " -Y '" + filter + "' -T fields";
  for (const auto& f : fields) cmd += " -e " + f;
  const auto r = run_command(cmd + " 2>/dev/null");
  INFO(cmd);
  REQUIRE(r.status == 0);
  std::vector<std::vector<std::string>> rows;
  for (const auto& line : split(r.output, '\n')) {
    if (!line.empty()) rows.push_back(split(line, '\t'));
  }
  return rows;
}

// The SMTP commands of a client script: the first word of each line, the message after DATA
// excepted.
std::vector<std::string> smtp_commands(const std::string& client) {
  std::vector<std::string> out;
  bool message = false;
  for (const auto& line : split(client, '\n')) {
    if (message) {
      message = line != ".";
      continue;
    }
    out.push_back(line.substr(0, line.find(' ')));
    message = out.back() == "DATA";
  }
  return out;
}

// HTTP/2 frame types of a byte stream (after the client's 24-byte preface).
std::vector<std::string> h2_frame_types(const std::vector<std::uint8_t>& b, std::size_t from) {
  std::vector<std::string> out;
  for (std::size_t at = from; at + 9 <= b.size();) {
    const std::size_t length = std::size_t{b[at]} << 16 | std::size_t{b[at + 1]} << 8 | b[at + 2];
    out.push_back(std::to_string(b[at + 3]));
    at += 9 + length;
  }
  return out;
}

// The payloads of a stream of small WebSocket frames (unmasked).
std::vector<std::string> ws_texts(const std::vector<std::uint8_t>& b) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at + 2 <= b.size();) {
    const bool text = (b[at] & 0x0F) == 1;
    const bool masked = b[at + 1] & 0x80;
    const std::size_t length = b[at + 1] & 0x7F;
    const std::size_t data = at + 2 + (masked ? 4 : 0);
    std::string payload;
    for (std::size_t i = 0; i < length; ++i)
      payload += static_cast<char>(b[data + i] ^ (masked ? b[at + 2 + i % 4] : 0));
    if (text) out.push_back(payload);
    at = data + length;
  }
  return out;
}

std::vector<std::string> column(const std::vector<std::vector<std::string>>& rows, std::size_t c) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(c < r.size() ? r[c] : std::string());
  return out;
}

} // namespace

TEST_CASE("serve --capture writes SMTP, IMAP, HTTP/2 and WebSocket tasks that tshark decodes "
          "into what the probe sent",
          "[e2e][capture]") {
  if (!have_program("tshark"))
    FAIL("tshark is not on the PATH: install it (Debian package tshark; scripts/deps does)");
  temp_dir dir;
  const std::string file = (dir.path / "tasks.pcap").string();
  write_file(dir.path / "policy.rules", "rule quiet continue host=quiet.example.com\n"
                                        "default continue capture\n");
  server_process srv({"--policy", (dir.path / "policy.rules").string(), "--capture", file});
  g3_client client(srv);
  auto quiet = scripted("http_2", 9);
  quiet.upstream = "quiet.example.com:443"; // its rule does not capture
  run_ok(client, {scripted("smtp", 1), scripted("imap", 2), scripted("http_2", 3),
                  scripted("websocket", 4), quiet});
  REQUIRE(stop_server(srv, client) == 0);

  // Four conversations (not the quiet task's), each opened by a SYN, and no TCP anomaly: no
  // hole, no overlap, no retransmission, so the sequence numbers add up.
  CHECK(tshark(file, "", "tcp.flags.syn==1 && tcp.flags.ack==0", {"tcp.stream"}).size() == 4);
  CHECK(tshark(file, "", "tcp.analysis.flags && !tcp.analysis.window_update", {"frame.number"})
            .empty());
  CHECK(tshark(file, "", "tcp.flags.fin==1", {"tcp.stream"}).size() == 8); // both sides, each

  SECTION("SMTP commands and replies (port 25: decoded as SMTP by itself)") {
    const auto s = cli::probe::protocol_script("smtp");
    const auto commands = tshark(file, "", "smtp.req", {"smtp.req.command", "smtp.req.parameter"});
    CHECK(column(commands, 0) == smtp_commands(text_of(s->client)));
    CHECK(commands.at(1).at(1) == "PLAIN AGFsaWNlAHNlY3JldA==");
    const auto replies = tshark(file, "", "smtp.response", {"smtp.response.code"});
    std::vector<std::string> codes;
    for (const auto& line : split(text_of(s->remote), '\n'))
      if (line.size() > 3 && line[3] == ' ') codes.push_back(line.substr(0, 3)); // last lines
    std::vector<std::string> first_codes; // a multi-line reply lists its code per line
    for (const auto& r : replies) first_codes.push_back(split(r.at(0), ',').front());
    CHECK(first_codes == codes);
    CHECK(column(tshark(file, "", "imf", {"imf.subject"}), 0) ==
          std::vector<std::string>{"detour probe"});
  }
  SECTION("IMAP commands (port 993 is IMAP over TLS: decoded as IMAP with -d)") {
    const auto s = cli::probe::protocol_script("imap");
    const auto rows = tshark(file, "-d tcp.port==993,imap", "imap.request",
                             {"imap.request_tag", "imap.request.command"});
    std::vector<std::string> expected;
    for (const auto& line : split(text_of(s->client), '\n')) expected.push_back(line);
    std::vector<std::string> seen;
    for (const auto& r : rows) {
      std::string words = r.at(0) + " " + r.at(1);
      seen.push_back(words);
    }
    REQUIRE(seen.size() == expected.size());
    for (std::size_t i = 0; i < seen.size(); ++i) {
      INFO(expected[i]);
      CHECK(expected[i].starts_with(seen[i]));
    }
  }
  SECTION("HTTP/2 frames and headers (port 443: decoded as HTTP/2 with -d)") {
    const auto s = cli::probe::protocol_script("http_2");
    const auto client_rows = tshark(file, "-d tcp.port==443,http2", "http2 && tcp.dstport==443",
                                    {"http2.type", "http2.header.name", "http2.header.value"});
    const auto server_rows =
        tshark(file, "-d tcp.port==443,http2", "http2 && tcp.srcport==443",
               {"http2.type", "http2.header.name", "http2.header.value", "http2.data.data"});
    std::vector<std::string> client_types, server_types;
    for (const auto& r : client_rows)
      for (const auto& t : split(r.at(0), ',')) client_types.push_back(t);
    for (const auto& r : server_rows)
      for (const auto& t : split(r.at(0), ',')) server_types.push_back(t);
    CHECK(client_types == h2_frame_types(s->client, 24));
    CHECK(server_types == h2_frame_types(s->remote, 0));
    CHECK(client_rows.at(0).at(1) == ":method,:scheme,:path,:authority,user-agent");
    CHECK(client_rows.at(0).at(2) == "GET,https,/,www.example.com,detour-probe");
    CHECK(server_rows.at(0).at(1) == ":status,content-type");
    CHECK(server_rows.at(0).at(2) == "200,text/plain");
    std::string body_hex;
    for (const char c : std::string("hello from the remote, through the detour\n")) {
      static constexpr char hex[] = "0123456789abcdef";
      body_hex += hex[static_cast<unsigned char>(c) >> 4];
      body_hex += hex[static_cast<unsigned char>(c) & 15];
    }
    CHECK(server_rows.at(0).at(3) == body_hex);
  }
  SECTION("WebSocket: the Upgrade exchange rebuilt from the summary, then the messages") {
    const auto s = cli::probe::protocol_script("websocket");
    const auto up =
        tshark(file, "", "http.request",
               {"http.request.method", "http.request.uri", "http.host", "http.upgrade"});
    REQUIRE(up.size() == 1);
    CHECK(up[0] == std::vector<std::string>{"GET", "/socket", "chat.example.com", "websocket"});
    CHECK(column(tshark(file, "", "http.response", {"http.response.code"}), 0) ==
          std::vector<std::string>{"101"});
    const auto from_client = tshark(file, "", "websocket && tcp.dstport==443",
                                    {"websocket.mask", "websocket.payload.text"});
    const auto from_server = tshark(file, "", "websocket && tcp.srcport==443",
                                    {"websocket.mask", "websocket.payload.text"});
    std::vector<std::string> client_texts, server_texts;
    for (const auto& r : from_client) {
      CHECK(r.at(0) == "1"); // client frames are masked
      if (r.size() > 1 && !r[1].empty()) client_texts.push_back(r[1]);
    }
    for (const auto& r : from_server) {
      CHECK(r.at(0) == "0");
      if (r.size() > 1 && !r[1].empty()) server_texts.push_back(r[1]);
    }
    CHECK(client_texts == ws_texts(s->client));
    CHECK(server_texts == ws_texts(s->remote));
  }
}

TEST_CASE("serve --capture keeps to its size limit by rotating files", "[e2e][capture]") {
  temp_dir dir;
  const std::string file = (dir.path / "big.pcap").string();
  server_process srv({"--capture", file, "--capture-max-size", "64k", "--capture-files", "3"});
  g3_client client(srv);
  std::vector<task_plan> plans;
  for (std::uint64_t i = 0; i < 20; ++i) plans.push_back(plan(i, 32 * 1024));
  run_ok(client, plans); // 20 x 64 KiB relayed: ~1.3 MB of packets through 64 KiB files
  REQUIRE(stop_server(srv, client) == 0);
  CHECK(std::filesystem::exists(file));
  CHECK(std::filesystem::exists(file + ".1"));
  CHECK(std::filesystem::exists(file + ".2"));
  CHECK_FALSE(std::filesystem::exists(file + ".3"));
  for (const std::string& f : {file, file + ".1", file + ".2"})
    CHECK(std::filesystem::file_size(f) <= 64 * 1024 + 17 * 1024); // the limit + one packet
  const auto closed = srv.find_lines({"capture.closed"});
  REQUIRE(closed.size() == 1);
  CHECK(std::stoul(log_field(closed[0], "rotations")) >= 10);
  CHECK(log_field(closed[0], "dropped") == "0");
}
