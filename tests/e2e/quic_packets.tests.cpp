// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve`'s stateless answers, with hand-made datagrams on loopback:
// version negotiation (RFC 9000 §6, §17.2.1), stateless reset (§10.3), junk ignored.
#include "server_process.hpp"

#include <catch2/catch_test_macros.hpp>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/wait.h>

#include <csignal>
#include <cstdio>

#include <array>
#include <optional>
#include <string>
#include <vector>

using namespace detour;
using namespace detour::test;

namespace {

// Waits up to |ms| for one datagram on |s|.
std::optional<std::vector<std::uint8_t>> receive_one(cli::udp_socket& s, int ms = 2000) {
  cli::receive_batch batch(4);
  const cli::timestamp give_up = cli::monotonic_now() + static_cast<cli::timestamp>(ms) * 1'000'000;
  while (cli::monotonic_now() < give_up) {
    pollfd p{s.fd(), POLLIN, 0};
    ::poll(&p, 1, 20);
    if (s.receive(batch) != 0) {
      const auto d = batch.datagrams()[0].data;
      return std::vector<std::uint8_t>(d.begin(), d.end());
    }
  }
  return std::nullopt;
}

std::uint32_t load32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

} // namespace

TEST_CASE("serve answers an unknown QUIC version with a version negotiation listing v1 and v2",
          "[e2e][quic][version]") {
  server_process srv;
  auto client = cli::udp_socket::connected(srv.address());

  // A long-header Initial-sized datagram with version 0x1a2a3a4a (reserved: never supported).
  std::vector<std::uint8_t> pkt(1200, 0);
  pkt[0] = 0xc0;
  const std::uint8_t version[] = {0x1a, 0x2a, 0x3a, 0x4a};
  std::copy(std::begin(version), std::end(version), pkt.begin() + 1);
  pkt[5] = 8; // DCID length
  const std::array<std::uint8_t, 8> dcid{1, 2, 3, 4, 5, 6, 7, 8};
  std::copy(dcid.begin(), dcid.end(), pkt.begin() + 6);
  pkt[14] = 4; // SCID length
  const std::array<std::uint8_t, 4> scid{9, 10, 11, 12};
  std::copy(scid.begin(), scid.end(), pkt.begin() + 15);
  REQUIRE(client.send(nullptr, nullptr, pkt, pkt.size()).bytes_sent == pkt.size());

  const auto vn = receive_one(client);
  REQUIRE(vn);
  REQUIRE(vn->size() >= 7 + 4 + 8 + 4);
  CHECK(((*vn)[0] & 0x80) != 0);      // long header
  CHECK(load32(vn->data() + 1) == 0); // version 0: version negotiation
  REQUIRE((*vn)[5] == 4);             // DCID = the client's SCID
  CHECK(std::equal(scid.begin(), scid.end(), vn->begin() + 6));
  REQUIRE((*vn)[10] == 8); // SCID = the client's DCID
  CHECK(std::equal(dcid.begin(), dcid.end(), vn->begin() + 11));
  bool has_v1 = false, has_v2 = false;
  for (std::size_t off = 19; off + 4 <= vn->size(); off += 4) {
    const std::uint32_t v = load32(vn->data() + off);
    has_v1 = has_v1 || v == 1;
    has_v2 = has_v2 || v == 0x6b3343cf; // RFC 9369
    CHECK(v != 0x1a2a3a4a);
  }
  CHECK(has_v1);
  CHECK(has_v2);
}

TEST_CASE("serve answers a short-header packet for an unknown connection with a stateless reset",
          "[e2e][quic][reset]") {
  server_process srv;
  auto client = cli::udp_socket::connected(srv.address());
  std::vector<std::uint8_t> pkt(100, 0x55);
  pkt[0] = 0x40 | 0x01; // short header, fixed bit set
  REQUIRE(client.send(nullptr, nullptr, pkt, pkt.size()).bytes_sent == pkt.size());

  const auto reset = receive_one(client);
  REQUIRE(reset);
  // RFC 9000 §10.3: looks like a short-header packet, at least 21 bytes, and smaller than the
  // packet that triggered it (no amplification, no reset loops).
  CHECK(((*reset)[0] & 0xc0) == 0x40);
  CHECK(reset->size() >= 21);
  CHECK(reset->size() < pkt.size());
}

TEST_CASE("serve ignores datagrams that cannot be QUIC packets and stays up", "[e2e][quic]") {
  server_process srv;
  auto client = cli::udp_socket::connected(srv.address());
  const std::vector<std::uint8_t> tiny(5, 0xff); // shorter than any QUIC packet
  // A long header for QUIC v1 whose DCID length (255) exceeds the 20 bytes allowed.
  std::vector<std::uint8_t> garbage(1200, 0x00);
  garbage[0] = 0xc0;
  garbage[4] = 1;
  garbage[5] = 255;
  REQUIRE(client.send(nullptr, nullptr, tiny, tiny.size()).bytes_sent == tiny.size());
  REQUIRE(client.send(nullptr, nullptr, garbage, garbage.size()).bytes_sent == garbage.size());
  CHECK_FALSE(receive_one(client, 300));
  CHECK(srv.running());
}

TEST_CASE("serve exits 0 on SIGTERM when idle", "[e2e][signals]") {
  server_process srv;
  srv.signal(SIGTERM);
  CHECK(srv.wait_exit() == 0);
  CHECK_FALSE(srv.find_lines({"server.stopped"}).empty());
}

TEST_CASE("serve prints the CA path and a g3proxy snippet on first start, and reuses the set",
          "[e2e][certs]") {
  temp_dir state;
  std::string first_ca;
  {
    server_process srv({"--state-dir", state.path.string()});
    const std::string out = srv.stdout_text();
    CHECK(out.find("created development certificates") != std::string::npos);
    CHECK(out.find((state.path / "ca.pem").string()) != std::string::npos);
    CHECK(out.find("stream_detour_service:") != std::string::npos);
    CHECK(out.find("peer: 127.0.0.1:") != std::string::npos);
    CHECK(out.find("ca_certificate: " + (state.path / "ca.pem").string()) != std::string::npos);
    CHECK(std::filesystem::exists(state.path / "server.key"));
  }
  server_process again({"--state-dir", state.path.string()});
  CHECK(again.stdout_text().find("using the development certificates") != std::string::npos);
}

namespace {

// An IPv4 address of this host that is not loopback, if it has one.
std::optional<std::string> non_loopback_ipv4() {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return std::nullopt;
  std::optional<std::string> found;
  for (const ifaddrs* i = list; i && !found; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* in = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) continue;
    std::array<char, INET_ADDRSTRLEN> text{};
    if (::inet_ntop(AF_INET, &in->sin_addr, text.data(), text.size())) found = text.data();
  }
  ::freeifaddrs(list);
  return found;
}

} // namespace

TEST_CASE("serve's g3proxy snippet names the bound port and an address the certificate names",
          "[e2e][certs]") {
  temp_dir state;
  {
    // Port 0: the snippet names the port the kernel chose, not 0.
    server_process srv({"--state-dir", state.path.string()});
    const std::string out = srv.stdout_text();
    CHECK(out.find("peer: 127.0.0.1:" + std::to_string(srv.address().port()) + "\n") !=
          std::string::npos);
    CHECK(out.find("Note:") == std::string::npos);
  }
  {
    // All addresses: g3proxy cannot connect to 0.0.0.0 with this certificate; loopback can.
    server_process srv({"--state-dir", state.path.string(), "--listen", "0.0.0.0:0"});
    const std::string out = srv.stdout_text();
    CHECK(out.find("peer: 127.0.0.1:" + std::to_string(srv.address().port()) + "\n") !=
          std::string::npos);
    CHECK(out.find("Note: this peer is for a g3proxy on this host") != std::string::npos);
  }
  if (const auto ip = non_loopback_ipv4()) {
    // An address the development certificate does not name: said so, with the way out.
    server_process srv({"--state-dir", state.path.string(), "--listen", *ip + ":0"});
    const std::string out = srv.stdout_text();
    CHECK(out.find("peer: " + *ip + ":") != std::string::npos);
    CHECK(out.find("not\n  " + *ip + ", so g3proxy will refuse it") != std::string::npos);
    CHECK(out.find("detour cert --out DIR --ip " + *ip) != std::string::npos);
  }
}

TEST_CASE("detour help COMMAND prints that command's help", "[e2e][options]") {
  for (const char* c : {"serve", "probe", "cert", "decode"}) {
    INFO(c);
    const auto help = run_detour(std::string("help ") + c);
    CHECK(help.status == 0);
    CHECK(help.text.rfind(std::string("usage: detour ") + c, 0) == 0);
    CHECK(help.text == run_detour(std::string(c) + " --help").text);
  }
  const auto unknown = run_detour("help frobnicate");
  CHECK(unknown.status == 2);
  CHECK(unknown.text.find("unknown command 'frobnicate'") != std::string::npos);
  const auto all = run_detour("help");
  CHECK(all.status == 0);
  CHECK(all.text.rfind("usage: detour <command>", 0) == 0);
}

TEST_CASE("probe handshakes makes exactly one connection per task", "[e2e][probe]") {
  server_process srv;
  const auto run = run_detour("probe handshakes --server " + srv.address().to_string() + " --ca " +
                              srv.ca_file().string() + " --tasks 40 --concurrency 8 --json");
  CHECK(run.status == 0);
  const std::string& out = run.text;
  INFO(out);
  // Not a spare connection kept open for a task that never comes.
  CHECK(out.find("\"handshakes\":40,") != std::string::npos);
  CHECK(out.find("\"pool\":{\"opened\":40,") != std::string::npos);
  CHECK(srv.find_lines({"conn.open"}).size() == 40);
}

TEST_CASE("probe refuses bad option values as usage errors naming them", "[e2e][options]") {
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--alpn", ",,"},
        {"--tls-ciphers", "TLS13-AES128-GCM-SHA256:TLS13-FOO"},
        {"--tls-ciphers", "''"},
        {"--deadline", "0"}}) {
    INFO(bad.front() << " " << bad.back());
    std::string args = "probe check --server 127.0.0.1:9";
    for (const auto& a : bad) args += " " + a;
    const auto [out, status] = run_detour(args);
    CHECK(status == 2); // not 3 (could not run), not a check that failed
    CHECK(out.find(bad.front()) != std::string::npos);
    CHECK(out.find("check:") == std::string::npos); // refused before any check ran
  }
}

TEST_CASE("serve refuses bad options with a message naming them", "[e2e][options]") {
  for (const std::vector<std::string>& bad :
       {std::vector<std::string>{"--action", "maybe"},
        {"--max-streams", "10"},
        {"--listen", "nowhere"},
        {"--idle-timeout", "5s"},
        {"--idle-timeout", "19s"},
        {"--max-udp-payload", "1199"},
        {"--max-udp-payload", "16385"},
        {"--cert", "x.pem"},
        {"--header-timeout", "0"},
        {"--pair-timeout", "500ms"},
        {"--summary-interval", "1ms"},
        {"--alpn", ",,"},
        {"--listen", "127.0.0.1:2888", "--listen", "127.0.0.1:2888"},
        {"--bogus"}}) {
    INFO(bad.front());
    std::string args = "serve";
    for (const auto& a : bad) args += " " + a;
    const auto [out, status] = run_detour(args);
    CHECK(status == 2);
    CHECK(out.find(bad.front()) != std::string::npos);
    // The idle timeout's refusal says what the smallest value is, and why.
    if (bad.front() == "--idle-timeout") {
      CHECK(out.find("at least 20s") != std::string::npos);
      CHECK(out.find("keep-alive every 10s") != std::string::npos);
    }
    if (bad.front() == "--header-timeout" || bad.front() == "--pair-timeout")
      CHECK(out.find("at least 1s") != std::string::npos);
    if (bad.size() == 4) CHECK(out.find("127.0.0.1:2888 is given twice") != std::string::npos);
  }
}
