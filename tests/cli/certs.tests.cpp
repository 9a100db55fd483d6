// SPDX-License-Identifier: MIT
// Tests of cli/certs.hpp's checks of what `detour cert` is given before it writes anything:
// subjectAltNames (DNS syntax, no unspecified address), the common name, and an existing CA
// (a CA, valid now, its key matching), and the days a leaf may last under a CA.
#include "certs.hpp"
#include "ed25519_fixtures.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <ctime>
#include <string>

using namespace detour::cli;
using namespace detour::cli::test;
using Catch::Matchers::ContainsSubstring;

namespace {

// The message of the cert_error |f| throws, or "<none>".
template <class F>
std::string refusal(F f) {
  try {
    f();
  } catch (const cert_error& e) {
    return e.what();
  }
  return "<none>";
}

std::string dns_refusal(const std::string& name) {
  return refusal([&] { check_subject_names({{name}, {}}); });
}

std::string ip_refusal(const std::string& ip) {
  return refusal([&] { check_subject_names({{}, {ip}}); });
}

} // namespace

TEST_CASE("check_subject_names accepts host names, wildcards and addresses", "[certs]") {
  CHECK(dns_refusal("localhost") == "<none>");
  CHECK(dns_refusal("detour-1.Example.com") == "<none>");
  CHECK(dns_refusal("*.example.com") == "<none>");
  CHECK(dns_refusal("0day.example") == "<none>"); // RFC 1123: a label may start with a digit
  CHECK(dns_refusal(std::string(63, 'a') + ".com") == "<none>");
  std::string longest; // 4 x 63 + 3 dots = 255 > 253; 62 in the last label: 253
  for (int i = 0; i < 3; ++i) longest += std::string(63, 'a') + ".";
  longest += std::string(61, 'a');
  REQUIRE(longest.size() == 253);
  CHECK(dns_refusal(longest) == "<none>");
  CHECK(ip_refusal("10.0.0.5") == "<none>");
  CHECK(ip_refusal("2001:db8::5") == "<none>");
}

TEST_CASE("check_subject_names refuses empty and malformed DNS names, saying why", "[certs]") {
  CHECK_THAT(dns_refusal(""), ContainsSubstring("empty"));
  CHECK_THAT(dns_refusal("bad name!"), ContainsSubstring("' ' is not a letter"));
  CHECK_THAT(dns_refusal("under_score.com"), ContainsSubstring("'_'"));
  CHECK_THAT(dns_refusal("a..b"), ContainsSubstring("empty label"));
  CHECK_THAT(dns_refusal("example.com."), ContainsSubstring("empty label"));
  CHECK_THAT(dns_refusal(".example.com"), ContainsSubstring("empty label"));
  CHECK_THAT(dns_refusal("-a.example.com"), ContainsSubstring("hyphen"));
  CHECK_THAT(dns_refusal("a-.example.com"), ContainsSubstring("hyphen"));
  CHECK_THAT(dns_refusal(std::string(64, 'a') + ".com"), ContainsSubstring("63"));
  CHECK_THAT(dns_refusal(std::string(254, 'a')), ContainsSubstring("253"));
  CHECK_THAT(dns_refusal("*"), ContainsSubstring("wildcard"));
  CHECK_THAT(dns_refusal("a.*.example.com"), ContainsSubstring("wildcard"));
  CHECK_THAT(dns_refusal("w*.example.com"), ContainsSubstring("wildcard"));
  CHECK_THAT(dns_refusal("10.0.0.5"), ContainsSubstring("--ip"));
}

TEST_CASE("check_subject_names refuses malformed and unspecified IP addresses", "[certs]") {
  CHECK_THAT(ip_refusal("10.0.0.999"), ContainsSubstring("not an IPv4 or IPv6 address"));
  CHECK_THAT(ip_refusal(""), ContainsSubstring("not an IPv4 or IPv6 address"));
  CHECK_THAT(ip_refusal("0.0.0.0"), ContainsSubstring("unspecified"));
  CHECK_THAT(ip_refusal("::"), ContainsSubstring("unspecified"));
  CHECK_THAT(ip_refusal("0:0::0"), ContainsSubstring("unspecified"));
  // make_leaf applies the same checks.
  const auto ca = make_ca("test CA", 30);
  CHECK_THROWS_AS(make_leaf(ca, "x", {{}, {"0.0.0.0"}}, cert_usage::server, 30), cert_error);
  CHECK_THROWS_AS(make_leaf(ca, "x", {{""}, {}}, cert_usage::server, 30), cert_error);
}

TEST_CASE("check_common_name takes 1 to 63 bytes", "[certs]") {
  CHECK(refusal([] { check_common_name("g3proxy"); }) == "<none>");
  CHECK(refusal([] { check_common_name(std::string(63, 'c')); }) == "<none>");
  CHECK_THAT(refusal([] { check_common_name(std::string(64, 'c')); }),
             ContainsSubstring("1 to 63"));
  CHECK_THAT(refusal([] { check_common_name(""); }), ContainsSubstring("1 to 63"));
}

TEST_CASE("check_ca accepts a CA with its own key and returns its validity", "[certs]") {
  const auto ca = make_ca("test CA", 30);
  const std::time_t now = std::time(nullptr);
  const ca_validity v = check_ca(ca, "ca.pem", "ca.key", now);
  CHECK(v.not_before <= now);
  CHECK(v.not_after > now + 29 * 86400);
  CHECK(v.not_after <= now + 31 * 86400);
}

TEST_CASE("check_ca refuses a key of another certificate", "[certs]") {
  const auto ca = make_ca("test CA", 30);
  const auto server = make_leaf(ca, "server", {{"localhost"}, {}}, cert_usage::server, 30);
  const auto other = make_ca("other CA", 30);
  const std::time_t now = std::time(nullptr);
  CHECK(refusal([&] {
          check_ca({ca.certificate, server.private_key}, "ca.pem", "server.key", now);
        }) == "the key server.key does not match the certificate ca.pem");
  CHECK(refusal([&] {
          check_ca({ca.certificate, other.private_key}, "ca.pem", "other.key", now);
        }) == "the key other.key does not match the certificate ca.pem");
}

TEST_CASE("check_ca refuses a certificate that is not a CA, even with its own key", "[certs]") {
  const auto ca = make_ca("test CA", 30);
  const auto server = make_leaf(ca, "server", {{"localhost"}, {}}, cert_usage::server, 30);
  CHECK_THAT(refusal([&] { check_ca(server, "server.pem", "server.key", std::time(nullptr)); }),
             ContainsSubstring("server.pem is not a CA certificate"));
  CHECK_THAT(refusal([&] {
               check_ca({"no PEM here", ca.private_key}, "x.pem", "ca.key", 0);
             }),
             ContainsSubstring("x.pem holds no PEM certificate"));
}

TEST_CASE("check_ca names an Ed25519 CA, which it cannot sign with", "[certs]") {
  CHECK(refusal([&] {
          check_ca({ed25519_ca_pem, ed25519_ca_key}, "ca.pem", "ca.key", std::time(nullptr));
        }) == "ca.pem is an Ed25519 CA: detour cert signs with an ECDSA P-256 CA only (openssl "
              "makes Ed25519 certificates, which detour serve takes)");
}

TEST_CASE("check_ca refuses a CA that expired or is not valid yet", "[certs]") {
  const auto ca = make_ca("test CA", 30);
  const std::time_t now = std::time(nullptr);
  CHECK_THAT(refusal([&] { check_ca(ca, "ca.pem", "ca.key", now + 32 * 86400); }),
             ContainsSubstring("the CA ca.pem expired on "));
  CHECK_THAT(refusal([&] { check_ca(ca, "ca.pem", "ca.key", now - 3 * 86400); }),
             ContainsSubstring("the CA ca.pem is not valid before "));
}

TEST_CASE("days_within keeps a leaf inside its CA's validity", "[certs]") {
  const std::time_t now = 1'700'000'000;
  CHECK(days_within(now + 10 * 86400, now) == 9); // a minute to spare
  CHECK(days_within(now + 10 * 86400 + 60, now) == 10);
  CHECK(days_within(now + 86400 + 59, now) == 0);
  CHECK(days_within(now - 1, now) == 0);
  CHECK(days_within(now + 100'000LL * 86400, now) == 36500);
  CHECK(utc_text(0) == "1970-01-01 00:00 UTC");
}
