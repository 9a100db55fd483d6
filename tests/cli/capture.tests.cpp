// SPDX-License-Identifier: MIT
// Tests of cli/capture.hpp: the addresses of a task's synthetic conversation, the TCP segments
// (flags, sequence and acknowledgement numbers, lengths, checksums), the WebSocket handshake
// rebuilt from the summary, and the pcap file read back through libpcap, rotated and reopened.
#include "capture.hpp"

#include <catch2/catch_test_macros.hpp>

#include <pcap/pcap.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

using namespace detour::cli;
using detour::stream_kind;

namespace {

struct recorded {
  std::int64_t time_us;
  std::vector<std::uint8_t> bytes;
};

struct memory_sink final : packet_sink {
  std::vector<recorded> packets;
  void packet(std::int64_t t, std::span<const std::uint8_t> p) override {
    packets.push_back({t, {p.begin(), p.end()}});
  }
};

std::uint32_t be16(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 8 | p[1];
}
std::uint32_t be32(const std::uint8_t* p) {
  return be16(p) << 16 | be16(p + 2);
}

// The fields of a raw IP packet carrying TCP, with both checksums verified.
struct tcp_view {
  bool v4 = true;
  std::string src, dst;
  std::uint32_t sport = 0, dport = 0, seq = 0, ack = 0;
  std::uint8_t flags = 0;
  std::vector<std::uint8_t> payload;
  bool checksums_ok = false;
  std::size_t header_length = 0;
};

std::uint16_t checksum(std::span<const std::uint8_t> b, std::uint64_t sum = 0) {
  for (std::size_t i = 0; i + 1 < b.size(); i += 2) sum += be16(&b[i]);
  if (b.size() % 2) sum += std::uint32_t{b.back()} << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

tcp_view parse(const std::vector<std::uint8_t>& p) {
  tcp_view v;
  REQUIRE(p.size() >= 40);
  v.v4 = (p[0] >> 4) == 4;
  std::size_t ip = 0;
  std::uint64_t pseudo = 0;
  if (v.v4) {
    ip = 20;
    REQUIRE(be16(&p[2]) == p.size());
    REQUIRE(p[9] == 6);
    v.src = std::string(
        detour::to_text(detour::ip_address::v4(std::span<const std::uint8_t, 4>(p.data() + 12, 4)))
            .view());
    v.dst = std::string(
        detour::to_text(detour::ip_address::v4(std::span<const std::uint8_t, 4>(p.data() + 16, 4)))
            .view());
    pseudo = checksum({p.data() + 12, 8}) + 6 + (p.size() - ip);
    v.checksums_ok = checksum({p.data(), 20}) == 0xFFFF;
  } else {
    ip = 40;
    REQUIRE(be16(&p[4]) == p.size() - 40);
    REQUIRE(p[6] == 6);
    v.src = std::string(
        detour::to_text(detour::ip_address::v6(std::span<const std::uint8_t, 16>(p.data() + 8, 16)))
            .view());
    v.dst = std::string(detour::to_text(detour::ip_address::v6(
                                            std::span<const std::uint8_t, 16>(p.data() + 24, 16)))
                            .view());
    pseudo = checksum({p.data() + 8, 32}) + 6 + (p.size() - ip);
    v.checksums_ok = true;
  }
  const std::uint8_t* t = p.data() + ip;
  v.sport = be16(t);
  v.dport = be16(t + 2);
  v.seq = be32(t + 4);
  v.ack = be32(t + 8);
  v.header_length = (t[12] >> 4) * 4u;
  v.flags = t[13];
  v.payload.assign(p.begin() + static_cast<std::ptrdiff_t>(ip + v.header_length), p.end());
  v.checksums_ok = v.checksums_ok && checksum({t, p.size() - ip}, pseudo) == 0xFFFF;
  return v;
}

constexpr std::uint8_t fin = 0x01, syn = 0x02, rst = 0x04, psh = 0x08, ack = 0x10;

detour::north_request request(std::string_view upstream, std::string_view client) {
  detour::north_request r;
  r.upstream = *detour::parse_upstream(upstream);
  r.client = {*detour::parse_ip(client), 50000};
  return r;
}

tcp_endpoints v4_ends() {
  return {{detour::ip_address::v4(192, 0, 2, 10), 50000},
          {detour::ip_address::v4(198, 51, 100, 7), 25}};
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

struct temp_path {
  std::string path;
  temp_path() {
    char name[] = "/tmp/detour-capture-XXXXXX";
    const int fd = ::mkstemp(name);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = name;
    std::filesystem::remove(path);
  }
  ~temp_path() {
    std::error_code ec;
    for (const auto* suffix : {"", ".1", ".2", ".3"}) std::filesystem::remove(path + suffix, ec);
  }
};

// Every packet of a pcap file, through libpcap.
std::vector<std::vector<std::uint8_t>> read_pcap(const std::string& path, int* link = nullptr) {
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  INFO(err);
  REQUIRE(p != nullptr);
  if (link) *link = pcap_datalink(p);
  std::vector<std::vector<std::uint8_t>> out;
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &h, &data) == 1) {
    REQUIRE(h->caplen == h->len);
    out.emplace_back(data, data + h->caplen);
  }
  pcap_close(p);
  return out;
}

} // namespace

TEST_CASE("capture: a task's ends are the client and the upstream address", "[capture]") {
  const auto e = capture_endpoints(request("198.51.100.7:25", "192.0.2.10"));
  CHECK(e.client == detour::socket_address{detour::ip_address::v4(192, 0, 2, 10), 50000});
  CHECK(e.server == detour::socket_address{detour::ip_address::v4(198, 51, 100, 7), 25});
  const auto v6 = capture_endpoints(request("[2001:db8::1]:993", "2001:db8:1::5"));
  CHECK(detour::to_text(v6.server) == "[2001:db8::1]:993");
  CHECK(detour::to_text(v6.client) == "[2001:db8:1::5]:50000");
}

TEST_CASE("capture: a host name gets a stable benchmarking address of the client's family",
          "[capture]") {
  const auto a = capture_endpoints(request("mail.example.com:25", "192.0.2.10"));
  const auto b = capture_endpoints(request("MAIL.example.com.:25", "192.0.2.99"));
  const auto c = capture_endpoints(request("www.example.com:443", "192.0.2.10"));
  CHECK(a.server.ip == b.server.ip);
  CHECK(a.server.ip != c.server.ip);
  CHECK(a.server.ip.octets[0] == 198);
  CHECK((a.server.ip.octets[1] & 0xFE) == 18); // 198.18.0.0/15
  CHECK(a.server.port == 25);
  const auto v6 = capture_endpoints(request("mail.example.com:25", "2001:db8::5"));
  CHECK(v6.server.ip.is_v6());
  CHECK(std::string(detour::to_text(v6.server.ip).view()).starts_with("2001:2:0:"));
}

TEST_CASE("capture: different families meet as IPv4-mapped IPv6 addresses", "[capture]") {
  const auto e = capture_endpoints(request("[2001:db8::1]:443", "192.0.2.10"));
  CHECK(detour::to_text(e.client.ip) == "::ffff:192.0.2.10");
  CHECK(detour::to_text(e.server.ip) == "2001:db8::1");
  const auto f = capture_endpoints(request("198.51.100.7:443", "2001:db8::5"));
  CHECK(detour::to_text(f.server.ip) == "::ffff:198.51.100.7");
}

TEST_CASE("capture: a conversation opens with SYN, SYN-ACK, ACK and numbers every byte",
          "[capture][tcp]") {
  memory_sink out;
  tcp_conversation c(v4_ends(), 1000, 5000);
  c.open(out, 1);
  c.data(out, stream_kind::south, bytes_of("220 mx ESMTP\r\n"), 2);
  c.data(out, stream_kind::north, bytes_of("EHLO a\r\n"), 3);
  c.finish(out, stream_kind::north, 4);
  c.finish(out, stream_kind::south, 5);
  CHECK(c.closed());
  std::vector<tcp_view> v;
  for (const auto& p : out.packets) v.push_back(parse(p.bytes));
  REQUIRE(v.size() == 3 + 2 + 2 + 2 + 2);
  for (const auto& p : v) CHECK(p.checksums_ok);
  // Handshake.
  CHECK((v[0].flags == syn && v[0].seq == 1000 && v[0].src == "192.0.2.10"));
  CHECK(v[0].header_length == 28); // MSS and window scale options
  CHECK((v[1].flags == (syn | ack) && v[1].seq == 5000 && v[1].ack == 1001));
  CHECK((v[1].src == "198.51.100.7" && v[1].sport == 25 && v[1].dport == 50000));
  CHECK((v[2].flags == ack && v[2].seq == 1001 && v[2].ack == 5001));
  // The server speaks first, the client acknowledges; then the other way round.
  CHECK((v[3].flags == (psh | ack) && v[3].seq == 5001 && v[3].ack == 1001));
  CHECK(std::string(v[3].payload.begin(), v[3].payload.end()) == "220 mx ESMTP\r\n");
  CHECK((v[4].flags == ack && v[4].src == "192.0.2.10" && v[4].ack == 5015 && v[4].seq == 1001));
  CHECK((v[5].flags == (psh | ack) && v[5].seq == 1001 && v[5].ack == 5015));
  CHECK((v[6].flags == ack && v[6].ack == 1009));
  // FINs take a sequence number each.
  CHECK((v[7].flags == (fin | ack) && v[7].seq == 1009 && v[7].src == "192.0.2.10"));
  CHECK((v[8].flags == ack && v[8].ack == 1010));
  CHECK((v[9].flags == (fin | ack) && v[9].seq == 5015 && v[9].ack == 1010));
  CHECK((v[10].flags == ack && v[10].seq == 1010 && v[10].ack == 5016));
  CHECK(out.packets[10].time_us == 5);
  // Nothing after the close.
  c.data(out, stream_kind::north, bytes_of("late"), 6);
  c.reset(out, 6);
  CHECK(out.packets.size() == 11);
}

TEST_CASE("capture: large data is cut into segments with consecutive numbers", "[capture][tcp]") {
  memory_sink out;
  tcp_conversation c(v4_ends(), 0xFFFFFFF0u, 7); // the sequence number wraps on the way
  c.open(out, 0);
  out.packets.clear();
  std::vector<std::uint8_t> big(2 * tcp_conversation::max_segment + 100);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i * 7);
  c.data(out, stream_kind::north, big, 1);
  REQUIRE(out.packets.size() == 4);
  std::vector<std::uint8_t> joined;
  std::uint32_t seq = 0xFFFFFFF1u;
  for (std::size_t i = 0; i < 3; ++i) {
    const auto v = parse(out.packets[i].bytes);
    CHECK(v.checksums_ok);
    CHECK(v.seq == seq);
    CHECK(v.flags == (i == 2 ? (psh | ack) : ack));
    seq += static_cast<std::uint32_t>(v.payload.size());
    joined.insert(joined.end(), v.payload.begin(), v.payload.end());
  }
  CHECK(joined == big);
  const auto a = parse(out.packets[3].bytes);
  CHECK(a.ack == seq);
  CHECK(c.next_sequence(stream_kind::north) == seq);
}

TEST_CASE("capture: an abnormal end is a RST from the client side", "[capture][tcp]") {
  memory_sink out;
  tcp_conversation c(v4_ends(), 1, 2);
  c.open(out, 0);
  c.data(out, stream_kind::north, bytes_of("x"), 0);
  c.reset(out, 0);
  CHECK(c.closed());
  const auto v = parse(out.packets.back().bytes);
  CHECK(v.flags == (rst | ack));
  CHECK(v.seq == 3);
  CHECK(v.src == "192.0.2.10");
}

TEST_CASE("capture: IPv6 conversations carry correct lengths and checksums", "[capture][tcp]") {
  memory_sink out;
  const auto ends = capture_endpoints(request("[2001:db8::1]:993", "2001:db8:1::5"));
  tcp_conversation c(ends, 10, 20);
  c.open(out, 0);
  c.data(out, stream_kind::south, bytes_of("* OK IMAP4rev1 ready\r\n"), 0);
  for (const auto& p : out.packets) {
    const auto v = parse(p.bytes);
    CHECK(!v.v4);
    CHECK(v.checksums_ok);
  }
  CHECK(parse(out.packets[3].bytes).src == "2001:db8::1");
}

TEST_CASE("capture: a WebSocket summary becomes an HTTP/1.1 Upgrade exchange", "[capture]") {
  const std::string_view summary = "/chat\r\nhost: chat.example.com\r\norigin: https://x\r\n"
                                   "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "sec-websocket-version: 13\r\n"
                                   "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                   "sec-websocket-protocol: mqtt\r\n"
                                   "sec-websocket-extensions: a\r\nsec-websocket-extensions: b\r\n";
  const auto w = detour::parse_websocket_payload(summary);
  REQUIRE(w.complete());
  CHECK(websocket_upgrade_request(w.value, "ignored") ==
        "GET /chat HTTP/1.1\r\nHost: chat.example.com\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nOrigin: https://x\r\nSec-WebSocket-Protocol: mqtt\r\n"
        "Sec-WebSocket-Extensions: a\r\nSec-WebSocket-Extensions: b\r\n\r\n");
  CHECK(websocket_upgrade_response(w.value) ==
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n"
        "Sec-WebSocket-Extensions: a\r\nSec-WebSocket-Extensions: b\r\n\r\n");
  const auto bare = detour::parse_websocket_payload(std::string_view("/x\r\n"));
  REQUIRE(bare.complete());
  CHECK(websocket_upgrade_request(bare.value, "up.example") ==
        "GET /x HTTP/1.1\r\nHost: up.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
}

TEST_CASE("capture: the file is a raw-IP pcap that libpcap reads back packet for packet",
          "[capture][file]") {
  temp_path f;
  memory_sink expected;
  {
    capture_file file({f.path});
    tcp_conversation c(v4_ends(), 1, 2);
    tcp_conversation twin(v4_ends(), 1, 2); // the same conversation, into memory
    c.open(file, 1'700'000'000'000'001);
    twin.open(expected, 0);
    REQUIRE(file.commit());
    c.data(file, stream_kind::north, bytes_of("QUIT\r\n"), 1'700'000'000'500'000);
    twin.data(expected, stream_kind::north, bytes_of("QUIT\r\n"), 0);
    REQUIRE(file.commit());
    file.flush();
    CHECK(file.stats().packets == 5);
    CHECK(file.stats().dropped_blocks == 0);
  }
  // Plaintext inside: not readable by others.
  CHECK((std::filesystem::status(f.path).permissions() & std::filesystem::perms::others_read) ==
        std::filesystem::perms::none);
  int link = 0;
  const auto packets = read_pcap(f.path, &link);
  CHECK(link == DLT_RAW);
  REQUIRE(packets.size() == expected.packets.size());
  for (std::size_t i = 0; i < packets.size(); ++i) CHECK(packets[i] == expected.packets[i].bytes);
}

TEST_CASE("capture: an existing capture is appended to, never overwritten", "[capture][file]") {
  temp_path f;
  for (int round = 0; round < 2; ++round) {
    capture_file file({f.path});
    tcp_conversation c(v4_ends(), 1, 2);
    c.open(file, 1);
    REQUIRE(file.commit());
  }
  CHECK(read_pcap(f.path).size() == 6);
}

TEST_CASE("capture: files rotate at the size limit and only the last ones are kept",
          "[capture][file]") {
  temp_path f;
  capture_options o;
  o.path = f.path;
  o.max_file_size = 4000;
  o.files = 3;
  std::size_t written = 0;
  {
    capture_file file(o);
    tcp_conversation c(v4_ends(), 1, 2);
    c.open(file, 1);
    const std::vector<std::uint8_t> chunk(1000, 'x');
    for (int i = 0; i < 30; ++i) {
      c.data(file, stream_kind::north, chunk, 2);
      REQUIRE(file.commit());
    }
    file.flush();
    written = file.stats().packets;
    CHECK(file.stats().rotations >= 5);
  }
  CHECK(written == 3 + 30 * 2);
  CHECK(std::filesystem::exists(f.path));
  CHECK(std::filesystem::exists(f.path + ".1"));
  CHECK(std::filesystem::exists(f.path + ".2"));
  CHECK_FALSE(std::filesystem::exists(f.path + ".3"));
  for (const auto* suffix : {"", ".1", ".2"}) {
    const auto size = std::filesystem::file_size(f.path + suffix);
    CHECK(size < o.max_file_size + 1100); // the limit plus at most one packet
    CHECK(!read_pcap(f.path + suffix).empty());
  }
}

TEST_CASE("capture: reopen starts a new file after a rotation tool moved the old one",
          "[capture][file]") {
  temp_path f;
  capture_file file({f.path});
  tcp_conversation c(v4_ends(), 1, 2);
  c.open(file, 1);
  REQUIRE(file.commit());
  file.flush();
  std::filesystem::rename(f.path, f.path + ".1");
  std::string error;
  REQUIRE(file.reopen(error));
  c.finish(file, stream_kind::north, 2);
  REQUIRE(file.commit());
  file.flush();
  CHECK(read_pcap(f.path + ".1").size() == 3);
  CHECK(read_pcap(f.path).size() == 2);
}

TEST_CASE("capture: a file that is not a raw-IP pcap is refused with the reason",
          "[capture][file]") {
  temp_path f;
  {
    std::FILE* junk = std::fopen(f.path.c_str(), "wb");
    REQUIRE(junk);
    std::fputs("this is not a capture file at all", junk);
    std::fclose(junk);
  }
  try {
    capture_file file({f.path});
    FAIL("opened");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find(f.path) != std::string::npos);
  }
}
