// SPDX-License-Identifier: MIT
// Tests of cli/udp.hpp on loopback: address parsing, a GSO train arriving byte-exact (coalesced
// by GRO or not), ECN codepoints, the local address of a wildcard listener, connected client
// sockets.
#include "udp.hpp"

#include <catch2/catch_test_macros.hpp>

#include <poll.h>

#include <ctime>
#include <map>
#include <numeric>
#include <vector>

using namespace detour::cli;

namespace {

// Receives until |want| payload bytes arrived or 5 s passed; returns the datagrams' bytes, with
// each GRO train split back into its datagrams.
std::vector<std::vector<std::uint8_t>> receive_datagrams(udp_socket& s, std::size_t want) {
  std::vector<std::vector<std::uint8_t>> out;
  receive_batch batch(8);
  std::size_t got = 0;
  for (int round = 0; round < 500 && got < want; ++round) {
    pollfd p{s.fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    s.receive(batch);
    for (const auto& d : batch.datagrams()) {
      for (std::size_t off = 0; off < d.data.size(); off += d.segment_size) {
        const auto seg = d.data.subspan(off, std::min(d.segment_size, d.data.size() - off));
        out.emplace_back(seg.begin(), seg.end());
        got += seg.size();
      }
    }
  }
  return out;
}

} // namespace

TEST_CASE("socket_address parses IPv4, bracketed IPv6 and a bare port", "[udp][address]") {
  auto a = socket_address::parse("127.0.0.1:2888");
  REQUIRE(a);
  CHECK(a->family() == AF_INET);
  CHECK(a->port() == 2888);
  CHECK(a->to_string() == "127.0.0.1:2888");

  auto b = socket_address::parse("[::1]:443");
  REQUIRE(b);
  CHECK(b->family() == AF_INET6);
  CHECK(b->to_string() == "[::1]:443");
  CHECK(b->host() == "::1");

  auto c = socket_address::parse("2888");
  REQUIRE(c);
  CHECK(c->to_string() == "127.0.0.1:2888");

  CHECK(socket_address::parse("0.0.0.0:0")->is_unspecified());
  CHECK(socket_address::parse("[::]:1")->is_unspecified());
  CHECK_FALSE(socket_address::parse("127.0.0.1:2888")->is_unspecified());
}

TEST_CASE("socket_address refuses malformed text", "[udp][address]") {
  for (const char* bad :
       {"", ":", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x", "::1:2888", "[::1]2888",
        "[::1]:", "[::1:80", "localhost:80", "1.2.3:80", "127.0.0.1:-1", "[::1%nosuchif]:80"}) {
    INFO(bad);
    CHECK_FALSE(socket_address::parse(bad));
  }
}

TEST_CASE("udp_socket sends a train of datagrams that arrives byte-exact", "[udp][gso]") {
  auto server = udp_socket::bound(*socket_address::parse("127.0.0.1:0"));
  auto client = udp_socket::connected(server.local_address());
  CHECK(server.local_address().port() != 0);

  constexpr std::size_t segment = 1200;
  std::vector<std::uint8_t> payload(segment * 5 + 300); // five full datagrams and a short one
  std::iota(payload.begin(), payload.end(), std::uint8_t{0});
  const send_result r = client.send(nullptr, nullptr, payload, segment);
  REQUIRE_FALSE(r.blocked);
  REQUIRE(r.bytes_sent == payload.size());

  const auto got = receive_datagrams(server, payload.size());
  REQUIRE(got.size() == 6);
  std::vector<std::uint8_t> joined;
  for (std::size_t i = 0; i < got.size(); ++i) {
    CHECK(got[i].size() == (i < 5 ? segment : 300));
    joined.insert(joined.end(), got[i].begin(), got[i].end());
  }
  CHECK(joined == payload);
}

TEST_CASE("udp_socket splits a train longer than one GSO send can carry and keeps GSO",
          "[udp][gso]") {
  auto server = udp_socket::bound(*socket_address::parse("127.0.0.1:0"));
  auto client = udp_socket::connected(server.local_address());
  const bool had_gso = client.gso_enabled();
  // 64 QUIC-sized datagrams: 92928 bytes, more than the 64 KiB one GSO send may hold.
  constexpr std::size_t segment = 1452;
  std::vector<std::uint8_t> payload(segment * 64);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i / 7);
  REQUIRE(client.send(nullptr, nullptr, payload, segment).bytes_sent == payload.size());
  CHECK(client.gso_enabled() == had_gso); // no EINVAL mistaken for a kernel without GSO
  CHECK(client.send_errors() == 0);
  const auto got = receive_datagrams(server, payload.size());
  std::vector<std::uint8_t> joined;
  for (const auto& g : got) joined.insert(joined.end(), g.begin(), g.end());
  CHECK(got.size() == 64);
  CHECK(joined == payload);
}

TEST_CASE("udp_socket falls back to one datagram per send without GSO", "[udp][gso]") {
  udp_options no_gso;
  no_gso.enable_gso = false;
  no_gso.enable_gro = false;
  auto server = udp_socket::bound(*socket_address::parse("127.0.0.1:0"), no_gso);
  auto client = udp_socket::connected(server.local_address(), no_gso);
  CHECK_FALSE(client.gso_enabled());
  std::vector<std::uint8_t> payload(1000 * 3, 0x5a);
  REQUIRE(client.send(nullptr, nullptr, payload, 1000).bytes_sent == payload.size());
  const auto got = receive_datagrams(server, payload.size());
  CHECK(got.size() == 3);
}

TEST_CASE("udp_socket reports the local address of a wildcard listener and replies from it",
          "[udp][pktinfo]") {
  auto server = udp_socket::bound(*socket_address::parse("0.0.0.0:0"));
  auto to = socket_address::ipv4_loopback(server.local_address().port());
  auto client = udp_socket::connected(to);
  const std::uint8_t hello[] = {1, 2, 3};
  REQUIRE(client.send(nullptr, nullptr, hello, sizeof hello).bytes_sent == 3);

  receive_batch batch(4);
  for (int i = 0; i < 500 && batch.datagrams().empty(); ++i) {
    pollfd p{server.fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    server.receive(batch);
  }
  REQUIRE(batch.datagrams().size() == 1);
  const received_datagram d = batch.datagrams()[0];
  CHECK(d.local == to);
  CHECK(d.remote == client.local_address());

  const std::uint8_t reply[] = {9};
  REQUIRE(server.send(&d.remote, &d.local, reply, 1).bytes_sent == 1);
  const auto got = receive_datagrams(client, 1);
  REQUIRE(got.size() == 1);
  CHECK(got[0] == std::vector<std::uint8_t>{9});
}

TEST_CASE("udp_socket works over IPv6 loopback", "[udp][ipv6]") {
  auto server = udp_socket::bound(*socket_address::parse("[::1]:0"));
  auto client = udp_socket::connected(server.local_address());
  const std::vector<std::uint8_t> payload(1400, 7);
  REQUIRE(client.send(nullptr, nullptr, payload, payload.size()).bytes_sent == payload.size());
  const auto got = receive_datagrams(server, payload.size());
  REQUIRE(got.size() == 1);
  CHECK(got[0] == payload);
}

TEST_CASE("udp_socket carries each ECN codepoint both ways, IPv4 and IPv6, with GSO or not",
          "[udp][ecn]") {
  // QUIC's congestion signal (RFC 9000 §13.4): the two ECN bits set on send arrive with the
  // datagram, and a GSO train keeps them on every datagram.
  for (const char* address : {"127.0.0.1:0", "[::1]:0"}) {
    for (const bool gso : {true, false}) {
      udp_options options;
      options.enable_gso = gso;
      options.enable_gro = gso;
      auto server = udp_socket::bound(*socket_address::parse(address), options);
      auto client = udp_socket::connected(server.local_address(), options);
      for (const unsigned ecn : {0U, 1U, 2U, 3U}) {
        INFO(address << (gso ? " GSO" : " no GSO") << " ECN " << ecn);
        const std::vector<std::uint8_t> train(2 * 1200, static_cast<std::uint8_t>(ecn));
        REQUIRE(client.send(nullptr, nullptr, train, 1200, ecn).bytes_sent == train.size());
        receive_batch batch(8);
        std::size_t bytes = 0;
        for (int round = 0; round < 500 && bytes < train.size(); ++round) {
          pollfd p{server.fd(), POLLIN, 0};
          ::poll(&p, 1, 10);
          server.receive(batch);
          for (const auto& d : batch.datagrams()) {
            CHECK(d.ecn == ecn);
            bytes += d.data.size();
          }
        }
        CHECK(bytes == train.size());
        // And back, from the listener to the client's connected socket.
        REQUIRE(server.send(&client.local_address(), nullptr, {train.data(), 100}, 100, ecn)
                    .bytes_sent == 100);
        bool answered = false;
        for (int round = 0; round < 500 && !answered; ++round) {
          pollfd p{client.fd(), POLLIN, 0};
          ::poll(&p, 1, 10);
          if (client.receive(batch) == 0) continue;
          answered = true;
          CHECK(batch.datagrams()[0].ecn == ecn);
        }
        CHECK(answered);
      }
    }
  }
}

TEST_CASE("udp_socket refuses a port in use and names the address", "[udp]") {
  auto first = udp_socket::bound(*socket_address::parse("127.0.0.1:0"));
  // A second server on the same port must fail loudly, not share the port's datagrams.
  try {
    auto second = udp_socket::bound(first.local_address());
    FAIL("bind succeeded twice");
  } catch (const std::system_error& e) {
    CHECK(std::string(e.what()).find(first.local_address().to_string()) != std::string::npos);
  }
}

namespace {

// Which of |group| received each datagram: the tag in its last byte -> the socket's position.
std::map<std::uint8_t, std::size_t> receivers(std::vector<udp_socket>& group, std::size_t want) {
  std::map<std::uint8_t, std::size_t> out;
  receive_batch batch(8);
  for (int round = 0; round < 500 && out.size() < want; ++round) {
    std::vector<pollfd> fds;
    for (auto& s : group) fds.push_back({s.fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 10);
    for (std::size_t i = 0; i < group.size(); ++i) {
      group[i].receive(batch);
      for (const auto& d : batch.datagrams()) out[d.data.back()] = i;
    }
  }
  return out;
}

} // namespace

TEST_CASE("steer_by_connection_id hands each datagram to the socket its connection ID names",
          "[udp][steering]") {
  udp_options options;
  options.reuse_port = true;
  options.enable_gro = false;
  std::vector<udp_socket> group;
  group.push_back(udp_socket::bound(*socket_address::parse("127.0.0.1:0"), options));
  REQUIRE(group[0].steer_by_connection_id(18) == 0);
  // Sockets that join later run the same program; their positions are the order they joined.
  for (int i = 0; i < 2; ++i) group.push_back(udp_socket::bound(group[0].local_address(), options));

  // Datagrams from 8 source ports each: by the kernel's hash alone, one socket would receive
  // all 8 of a kind with a chance of 3^-7.
  std::map<std::uint8_t, std::size_t> expected; // tag -> socket, or 255: any
  std::vector<udp_socket> clients;
  std::uint8_t tag = 0;
  for (int port = 0; port < 8; ++port) {
    clients.push_back(udp_socket::connected(group[0].local_address()));
    auto send = [&](std::vector<std::uint8_t> d, std::size_t to) {
      d.push_back(tag);
      expected[tag++] = to;
      REQUIRE(clients.back().send(nullptr, nullptr, d, d.size()).bytes_sent == d.size());
    };
    for (std::uint8_t worker = 0; worker < 3; ++worker) {
      // A short header: the destination ID starts at byte 1.
      std::vector<std::uint8_t> shorthdr(40, 0x5a);
      shorthdr[0] = 0x41;
      shorthdr[1] = worker;
      send(shorthdr, worker);
      // A long header (Handshake, v1) with an 18-byte destination ID: byte 6.
      std::vector<std::uint8_t> longhdr{0xe0, 0, 0, 0, 1, 18, worker};
      longhdr.resize(60, 0x33);
      send(longhdr, worker);
    }
    // No such socket, an ID of another length (a client's own), a datagram too short to
    // name one: the kernel's hash, still delivered.
    std::vector<std::uint8_t> beyond(40, 0);
    beyond[0] = 0x41;
    beyond[1] = 3;
    send(beyond, 255);
    std::vector<std::uint8_t> client_id{0xc0, 0, 0, 0, 1, 8, 1, 1, 1, 1, 1, 1, 1, 1};
    client_id.resize(1200, 0);
    send(client_id, 255);
    send({0x41, 1}, 255);
  }
  const auto got = receivers(group, expected.size());
  REQUIRE(got.size() == expected.size());
  for (const auto& [t, to] : expected) {
    INFO("datagram " << int(t));
    if (to != 255) CHECK(got.at(t) == to);
  }
}

TEST_CASE("udp_socket stamps each received datagram with when the kernel queued it",
          "[udp][timestamps]") {
  udp_options options;
  options.receive_timestamps = true;
  auto server = udp_socket::bound(*socket_address::parse("127.0.0.1:0"), options);
  auto client = udp_socket::connected(server.local_address());
  const std::vector<std::uint8_t> payload(100, 7);
  timespec before{};
  ::clock_gettime(CLOCK_REALTIME, &before);
  REQUIRE(client.send(nullptr, nullptr, payload, payload.size()).bytes_sent == payload.size());
  receive_batch batch(4);
  std::uint64_t queued = 0;
  for (int round = 0; round < 500 && queued == 0; ++round) {
    pollfd p{server.fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    if (server.receive(batch) > 0) queued = batch.datagrams().front().queued_at;
  }
  timespec after{};
  ::clock_gettime(CLOCK_REALTIME, &after);
  const auto ns = [](const timespec& t) {
    return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000U +
           static_cast<std::uint64_t>(t.tv_nsec);
  };
  CHECK(queued >= ns(before));
  CHECK(queued <= ns(after));
  // Without the option: none.
  auto plain = udp_socket::bound(*socket_address::parse("127.0.0.1:0"));
  auto to_plain = udp_socket::connected(plain.local_address());
  REQUIRE(to_plain.send(nullptr, nullptr, payload, payload.size()).bytes_sent == payload.size());
  std::size_t n = 0;
  for (int round = 0; round < 500 && n == 0; ++round) {
    pollfd p{plain.fd(), POLLIN, 0};
    ::poll(&p, 1, 10);
    n = plain.receive(batch);
  }
  REQUIRE(n == 1);
  CHECK(batch.datagrams().front().queued_at == 0);
}
