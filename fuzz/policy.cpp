// SPDX-License-Identifier: MIT
// fuzz/policy.cpp: the rules file parser of `detour serve --policy` (cli/policy.hpp) on hostile
// text. Input: the file. Properties: a policy comes back exactly when no error was reported;
// every issue has a message and a position inside the file (line 1 for an empty one); and for a
// few fixed requests, decide() returns the default or a rule of the policy that matches, with
// no earlier rule matching (first match wins); a task built to match a rule matches every
// earlier rule said to cover it (the "never used" warning is sound).
#include "../cli/policy.hpp"

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

detour::north_request request(std::string_view protocol, std::string_view upstream,
                              std::optional<std::string_view> user, detour::ip_address client) {
  detour::north_request r;
  r.protocol_name = protocol;
  r.protocol = detour::protocol_from_name(protocol);
  if (const auto up = detour::parse_upstream(upstream)) r.upstream = *up;
  r.username = user;
  r.client = {client, 40000};
  return r;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = detour::cli::policy::parse(text);
  DETOUR_FUZZ_CHECK(r.ok() == r.errors.empty());
  const std::size_t lines =
      static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const auto* issues : {&r.errors, &r.warnings}) {
    for (const auto& e : *issues) {
      DETOUR_FUZZ_CHECK(!e.message.empty());
      DETOUR_FUZZ_CHECK(e.line >= 1 && e.line <= lines);
      DETOUR_FUZZ_CHECK(e.column >= 1);
    }
  }
  if (!r.ok()) return 0;
  const detour::cli::policy& p = *r.value;
  const detour::north_request requests[] = {
      request("smtp", "mail.example.com:25", "alice", detour::ip_address::v4(10, 1, 2, 3)),
      request("http_2", "192.0.2.7:443", std::nullopt, detour::ip_address::v4(192, 0, 2, 10)),
      request("websocket", "[2001:db8::1]:8080", "bob", *detour::parse_ip("2001:db8:1::5")),
  };
  for (const auto& req : requests) {
    const auto& chosen = p.decide(req);
    (void)detour::cli::describe(chosen);
    const auto ip = detour::parse_ip(req.upstream.host);
    const auto rules = p.rules();
    bool found = false;
    for (const auto& rule : rules) {
      if (&rule == &chosen) {
        found = true;
        DETOUR_FUZZ_CHECK(detour::cli::policy::matches(rule, req, ip));
        break;
      }
      DETOUR_FUZZ_CHECK(!detour::cli::policy::matches(rule, req, ip));
    }
    DETOUR_FUZZ_CHECK(found || &chosen == &p.fallback());
    DETOUR_FUZZ_CHECK(!chosen.capture || chosen.decision == detour::action::proceed);
  }

  // The "never used" warning is sound: a task made to match a later rule (its first value of
  // each clause) also matches every earlier rule said to cover it.
  const auto rules = p.rules();
  const std::size_t n = std::min<std::size_t>(rules.size(), 64);
  for (std::size_t j = 1; j < n; ++j) {
    const auto& later = rules[j];
    std::string upstream;
    std::string host = "host.invalid";
    if (!later.hosts.empty())
      host = later.hosts.front();
    else if (!later.suffixes.empty())
      host = "a" + later.suffixes.front();
    else if (!later.ips.empty())
      host = std::string(detour::to_text(later.ips.front().base).view());
    const bool v6 = host.find(':') != std::string::npos;
    const unsigned port = later.ports.empty() ? 443u : later.ports.front().first;
    upstream = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    std::optional<std::string_view> user;
    if (!later.user_none) {
      if (!later.users.empty())
        user = later.users.front();
      else
        user = "someone";
    }
    const detour::ip_address client = later.clients.empty()
                                          ? detour::ip_address::v4(198, 51, 100, 1)
                                          : later.clients.front().base;
    // A view of the rule's own string (a conditional with "http_2" would make a temporary).
    const std::string_view protocol =
        later.protocols.empty() ? std::string_view("http_2") : later.protocols.front();
    const auto req = request(protocol, upstream, user, client);
    const auto ip = detour::parse_ip(req.upstream.host);
    if (!detour::cli::policy::matches(later, req, ip)) continue; // could not build one
    for (std::size_t i = 0; i < j; ++i) {
      if (detour::cli::policy_detail::covers(rules[i], later))
        DETOUR_FUZZ_CHECK(detour::cli::policy::matches(rules[i], req, ip));
    }
  }
  return 0;
}
