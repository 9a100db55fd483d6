// SPDX-License-Identifier: MIT
// tests/support/tasks.hpp: the bytes g3proxy sends to open a task's streams (north request with
// its payload, south hello), built with the library's own encoders, for session and driver tests.
#pragma once

#include <detour/request.hpp>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace detour::test {

/// What a test task announces; defaults match g3proxy's shape for an SMTP task.
struct task_spec {
  std::uint16_t match_id = 0;
  std::string_view protocol = "smtp";
  std::string_view upstream = "mail.example.com:25";
  std::optional<std::string_view> username{};
  std::string_view payload{}; // sent after the header; its length goes into E6
  bool ipv6 = false;
};

inline socket_address test_client(bool v6) {
  if (!v6) return {ip_address::v4(192, 0, 2, 10), 50123};
  const std::array<std::uint8_t, 16> a{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                       0,    0,    0,    0,    0, 0, 0, 0x10};
  return {ip_address::v6(a), 50123};
}
inline socket_address test_proxy(bool v6) {
  if (!v6) return {ip_address::v4(198, 51, 100, 1), 8443};
  const std::array<std::uint8_t, 16> a{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0,
                                       0,    0,    0,    0,    0, 0, 0, 0x01};
  return {ip_address::v6(a), 8443};
}

/// The north stream's opening bytes: header, then payload.
inline std::vector<std::uint8_t> north_bytes(const task_spec& t) {
  north_request r;
  r.client = test_client(t.ipv6);
  r.proxy = test_proxy(t.ipv6);
  const auto up = parse_upstream(t.upstream);
  if (!up) throw std::invalid_argument("bad upstream in test task");
  r.upstream = *up;
  r.username = t.username;
  for (std::size_t i = 0; i < 16; ++i)
    r.task_id.bytes[i] = static_cast<std::uint8_t>(i * 17 + t.match_id);
  r.protocol_name = t.protocol;
  r.protocol = protocol_from_name(t.protocol);
  r.match_id = t.match_id;
  r.payload_length = static_cast<std::uint32_t>(t.payload.size());
  std::array<std::uint8_t, 1024> buf{};
  const auto e = encode_north_request(r, buf);
  if (!e) throw std::runtime_error("cannot encode test north request");
  std::vector<std::uint8_t> out(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(e.size));
  out.insert(out.end(), t.payload.begin(), t.payload.end());
  return out;
}

/// The south stream's opening bytes: the hello for `match_id`.
inline std::vector<std::uint8_t> south_bytes(std::uint16_t match_id, bool ipv6 = false) {
  south_hello s;
  s.client = test_client(ipv6);
  s.proxy = test_proxy(ipv6);
  s.match_id = match_id;
  std::array<std::uint8_t, 128> buf{};
  const auto e = encode_south_hello(s, buf);
  if (!e) throw std::runtime_error("cannot encode test south hello");
  return {buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(e.size)};
}

} // namespace detour::test
