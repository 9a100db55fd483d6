// SPDX-License-Identifier: MIT
// Tests of cli/tls.hpp and cli/certs.hpp: the ALPN policy g3proxy needs, certificate generation
// (checked by wolfSSL itself), loading errors that name the file, the client identities kept
// for resumed sessions, the HKDF-Expand-Label of key updates against RFC 9001's vectors, and
// stateless reset tokens equal to ngtcp2's.
#include "tls.hpp"

#include "alpn.hpp"
#include "certs.hpp"
#include "ed25519_fixtures.hpp"

#include <catch2/catch_test_macros.hpp>

#include <wolfssl/options.h>

#include <wolfssl/ssl.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <array>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

using namespace detour::cli;
using namespace detour::cli::test;

namespace {

long pick(const std::vector<std::string>& offer, const std::vector<std::string>& accepted) {
  const auto o = encode_alpn(offer);
  const auto a = encode_alpn(accepted);
  return select_alpn(o.data(), o.size(), a.data(), a.size());
}

std::string selected(const std::vector<std::string>& offer,
                     const std::vector<std::string>& accepted) {
  const auto o = encode_alpn(offer);
  const long at = pick(offer, accepted);
  if (at < 0) return "<none>";
  return std::string(reinterpret_cast<const char*>(o.data() + at + 1),
                     o[static_cast<std::size_t>(at)]);
}

struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    char tmpl[] = "/tmp/detour-tls-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
};

// Parses a PEM certificate with wolfSSL.
WOLFSSL_X509* load_x509(const std::string& pem) {
  return wolfSSL_X509_load_certificate_buffer(reinterpret_cast<const unsigned char*>(pem.data()),
                                              static_cast<int>(pem.size()), WOLFSSL_FILETYPE_PEM);
}

} // namespace

TEST_CASE("ALPN selection takes the client's first offered name that is accepted", "[tls][alpn]") {
  CHECK(selected({"h3", "detour", "x"}, {"x", "detour"}) == "detour");
  CHECK(selected({"detour"}, {"detour"}) == "detour");
  CHECK(selected({"a", "b"}, {"b"}) == "b");
}

TEST_CASE("ALPN selection refuses an offer matching no accepted name", "[tls][alpn]") {
  CHECK(pick({"h3"}, {"detour"}) == -1);
  CHECK(pick({"detou"}, {"detour"}) == -1);   // a prefix is not a match
  CHECK(pick({"detourx"}, {"detour"}) == -1); // nor a longer name
}

TEST_CASE("ALPN selection refuses a malformed offer", "[tls][alpn]") {
  const auto a = encode_alpn({"detour"});
  const std::uint8_t overrun[] = {7, 'd', 'e', 't', 'o', 'u', 'r'}; // length runs past the end
  CHECK(select_alpn(overrun, sizeof overrun, a.data(), a.size()) == -1);
  const std::uint8_t empty_name[] = {0, 6, 'd', 'e', 't', 'o', 'u', 'r'};
  CHECK(select_alpn(empty_name, sizeof empty_name, a.data(), a.size()) == -1);
}

TEST_CASE("ALPN without a list of the server's selects the client's first name if well formed",
          "[tls][alpn]") {
  const auto offer = encode_alpn({"x-first", "detour"});
  CHECK(first_alpn(offer.data(), offer.size()) == 0);
  const auto one = encode_alpn({"h3"});
  CHECK(first_alpn(one.data(), one.size()) == 0);
  CHECK(first_alpn(nullptr, 0) == -1); // nothing offered
  // A malformed name anywhere in the offer: nothing is selected (the whole list is checked).
  const std::uint8_t overrun_later[] = {2, 'h', '3', 9, 'd', 'e', 't'};
  CHECK(first_alpn(overrun_later, sizeof overrun_later) == -1);
  const std::uint8_t empty_later[] = {2, 'h', '3', 0};
  CHECK(first_alpn(empty_later, sizeof empty_later) == -1);
  const std::uint8_t overrun_first[] = {7, 'd', 'e', 't'};
  CHECK(first_alpn(overrun_first, sizeof overrun_first) == -1);
}

TEST_CASE("encode_alpn refuses empty and over-long names", "[tls][alpn]") {
  CHECK_THROWS_AS(encode_alpn({""}), tls_error);
  CHECK_THROWS_AS(encode_alpn({std::string(256, 'a')}), tls_error);
  CHECK(encode_alpn({std::string(255, 'a')}).size() == 256);
}

TEST_CASE("make_leaf issues a server certificate with the IP and DNS names g3proxy checks",
          "[certs]") {
  const auto ca = make_ca("test CA", 30);
  const auto leaf =
      make_leaf(ca, "test server", {{"localhost"}, {"127.0.0.1", "::1"}}, cert_usage::server, 30);
  WOLFSSL_X509* x = load_x509(leaf.certificate);
  REQUIRE(x != nullptr);
  CHECK(wolfSSL_X509_check_ip_asc(x, "127.0.0.1", 0) == WOLFSSL_SUCCESS);
  // wolfSSL compares IPv6 in its own long form (tls_session converts to it).
  CHECK(wolfSSL_X509_check_ip_asc(x, "0000:0000:0000:0000:0000:0000:0000:0001", 0) ==
        WOLFSSL_SUCCESS);
  CHECK(wolfSSL_X509_check_ip_asc(x, "127.0.0.2", 0) != WOLFSSL_SUCCESS);
  CHECK(wolfSSL_X509_check_host(x, "localhost", 9, 0, nullptr) == WOLFSSL_SUCCESS);
  CHECK(wolfSSL_X509_check_host(x, "example.com", 11, 0, nullptr) != WOLFSSL_SUCCESS);
  wolfSSL_X509_free(x);

  // The leaf chains to the CA, and to no other CA.
  WOLFSSL_CERT_MANAGER* cm = wolfSSL_CertManagerNew();
  REQUIRE(wolfSSL_CertManagerLoadCABuffer(
              cm, reinterpret_cast<const unsigned char*>(ca.certificate.data()),
              static_cast<long>(ca.certificate.size()), WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS);
  CHECK(wolfSSL_CertManagerVerifyBuffer(
            cm, reinterpret_cast<const unsigned char*>(leaf.certificate.data()),
            static_cast<long>(leaf.certificate.size()), WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS);
  wolfSSL_CertManagerFree(cm);

  const auto other_ca = make_ca("other CA", 30);
  cm = wolfSSL_CertManagerNew();
  REQUIRE(wolfSSL_CertManagerLoadCABuffer(
              cm, reinterpret_cast<const unsigned char*>(other_ca.certificate.data()),
              static_cast<long>(other_ca.certificate.size()),
              WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS);
  CHECK(wolfSSL_CertManagerVerifyBuffer(
            cm, reinterpret_cast<const unsigned char*>(leaf.certificate.data()),
            static_cast<long>(leaf.certificate.size()), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS);
  wolfSSL_CertManagerFree(cm);
}

TEST_CASE("make_leaf refuses a malformed IP address", "[certs]") {
  const auto ca = make_ca("test CA", 30);
  CHECK_THROWS_AS(make_leaf(ca, "x", {{}, {"127.0.0.300"}}, cert_usage::server, 30), cert_error);
  CHECK_THROWS_AS(make_leaf(ca, "", {{"a"}, {}}, cert_usage::server, 30), cert_error);
}

TEST_CASE("a generated development set loads into server and client TLS contexts", "[certs][tls]") {
  temp_dir dir;
  bool created = false;
  const auto paths = ensure_development_certs(dir.path, created);
  CHECK(created);
  const auto key_perms = std::filesystem::status(paths.server_key).permissions();
  CHECK((key_perms & std::filesystem::perms::group_read) == std::filesystem::perms::none);
  CHECK((key_perms & std::filesystem::perms::others_read) == std::filesystem::perms::none);

  tls_server_config sc;
  sc.certificate_file = paths.server_certificate;
  sc.private_key_file = paths.server_key;
  sc.client_ca_file = paths.ca_certificate;
  CHECK_NOTHROW(tls_context::server(sc));

  tls_client_config cc;
  cc.ca_file = paths.ca_certificate;
  CHECK_NOTHROW(tls_context::client(cc));

  // A second call reuses the set.
  const std::string before = read_file(paths.server_certificate);
  ensure_development_certs(dir.path, created);
  CHECK_FALSE(created);
  CHECK(read_file(paths.server_certificate) == before);
}

TEST_CASE("tls_context names the file it cannot use", "[tls]") {
  temp_dir dir;
  bool created = false;
  const auto paths = ensure_development_certs(dir.path, created);
  const auto other = make_leaf({read_file(paths.ca_certificate), read_file(paths.ca_key)}, "x",
                               {{"x"}, {}}, cert_usage::server, 1);
  write_file(dir.path / "other.key", other.private_key, 0600);

  tls_server_config sc;
  sc.certificate_file = (dir.path / "missing.pem").string();
  sc.private_key_file = paths.server_key;
  try {
    tls_context::server(sc);
    FAIL("a missing certificate was accepted");
  } catch (const tls_error& e) {
    CHECK(std::string(e.what()).find("missing.pem") != std::string::npos);
  }

  sc.certificate_file = paths.server_certificate;
  sc.private_key_file = (dir.path / "other.key").string();
  try {
    tls_context::server(sc);
    FAIL("a key of another certificate was accepted");
  } catch (const tls_error& e) {
    CHECK(std::string(e.what()).find("does not match") != std::string::npos);
  }

  // Each common mix-up says what it is, where wolfSSL gives no reason.
  const auto refusal = [&](const std::filesystem::path& cert, const std::filesystem::path& key) {
    tls_server_config c;
    c.certificate_file = cert.string();
    c.private_key_file = key.string();
    try {
      tls_context::server(c);
    } catch (const tls_error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(refusal(dir.path / "missing.pem", paths.server_key).find("No such file") !=
        std::string::npos);
  CHECK(refusal(paths.server_key, paths.server_key).find("a private key, not a certificate") !=
        std::string::npos);
  CHECK(refusal(paths.server_certificate, paths.server_certificate)
            .find("a certificate, not a private key") != std::string::npos);
  std::ofstream(dir.path / "encrypted.key")
      << "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQww\n"
         "-----END ENCRYPTED PRIVATE KEY-----\n";
  CHECK(refusal(paths.server_certificate, dir.path / "encrypted.key").find("passphrase") !=
        std::string::npos);
  std::ofstream(dir.path / "server.der", std::ios::binary) << std::string("\x30\x82\x01\x0a", 4);
  CHECK(refusal(dir.path / "server.der", paths.server_key).find("not PEM") != std::string::npos);
  // An Ed448 certificate (openssl req -x509 -newkey ed448): this build signs with ECDSA, RSA
  // and Ed25519, and rustls (g3proxy) could not check Ed448 either.
  std::ofstream(dir.path / "ed448.pem") << ed448_pem;
  CHECK(refusal(dir.path / "ed448.pem", paths.server_key).find("Ed448") != std::string::npos);
  CHECK(refusal(paths.server_certificate, paths.server_key) == "accepted");
}

namespace {

std::vector<std::uint8_t> session_id(std::uint8_t n) {
  return std::vector<std::uint8_t>(32, n);
}

} // namespace

TEST_CASE("session_identities finds the subject recorded for a session id", "[tls][resume]") {
  session_identities ids(8);
  CHECK(ids.find(session_id(1)).empty());
  ids.remember(session_id(1), "/O=detour/CN=g3proxy");
  ids.remember(session_id(2), "/O=detour/CN=other");
  CHECK(ids.find(session_id(1)) == "/O=detour/CN=g3proxy");
  CHECK(ids.find(session_id(2)) == "/O=detour/CN=other");
  CHECK(ids.find(session_id(3)).empty());
  // An id differing in one byte, or a prefix of one, is another id.
  auto near = session_id(1);
  near.back() = 0;
  CHECK(ids.find(near).empty());
  const auto whole = session_id(1);
  CHECK(ids.find(std::span(whole).first(16)).empty());
  ids.remember(session_id(1), "/CN=renamed");
  CHECK(ids.find(session_id(1)) == "/CN=renamed");
  CHECK(ids.size() == 2);
}

TEST_CASE("session_identities forgets the least recently used id when full", "[tls][resume]") {
  session_identities ids(3);
  for (std::uint8_t n = 1; n <= 3; ++n) ids.remember(session_id(n), "s" + std::to_string(n));
  // A resumption uses 1: 2 is now the least recently used.
  CHECK(ids.find(session_id(1)) == "s1");
  ids.remember(session_id(4), "s4");
  CHECK(ids.size() == 3);
  CHECK(ids.find(session_id(2)).empty());
  CHECK(ids.find(session_id(1)) == "s1");
  CHECK(ids.find(session_id(3)) == "s3");
  CHECK(ids.find(session_id(4)) == "s4");
  // Many more ids never grow it beyond its capacity.
  for (std::uint8_t n = 10; n < 200; ++n) ids.remember(session_id(n), "x");
  CHECK(ids.size() == 3);
  CHECK(ids.find(session_id(199)) == "x");
  CHECK(ids.find(session_id(1)).empty());
  session_identities one(0); // at least one
  CHECK(one.capacity() == 1);
  one.remember(session_id(1), "a");
  one.remember(session_id(2), "b");
  CHECK(one.find(session_id(1)).empty());
  CHECK(one.find(session_id(2)) == "b");
}

namespace {

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::vector<std::uint8_t> expand(std::string_view secret_hex, std::string_view label,
                                 std::size_t length) {
  const std::vector<std::uint8_t> secret = from_hex(secret_hex);
  std::vector<std::uint8_t> out(length);
  REQUIRE(hkdf_expand_label(out, secret, label));
  return out;
}

} // namespace

TEST_CASE("hkdf_expand_label derives RFC 9001's Initial secrets, keys, IVs and HP keys",
          "[tls][hkdf]") {
  // RFC 9001 Appendix A.1, for the client's Destination Connection ID 0x8394c8f03e515708.
  const std::string_view initial =
      "7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44";
  const std::string_view client =
      "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea";
  const std::string_view server =
      "3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b";
  CHECK(expand(initial, "client in", 32) == from_hex(client));
  CHECK(expand(initial, "server in", 32) == from_hex(server));
  CHECK(expand(client, "quic key", 16) == from_hex("1f369613dd76d5467730efcbe3b1a22d"));
  CHECK(expand(client, "quic iv", 12) == from_hex("fa044b2f42a3fd3b46fb255c"));
  CHECK(expand(client, "quic hp", 16) == from_hex("9f50449e04a0e810283a1e9933adedd2"));
  CHECK(expand(server, "quic key", 16) == from_hex("cf3a5331653c364c88f0f379b6067e37"));
  CHECK(expand(server, "quic iv", 12) == from_hex("0ac1493ca1905853b0bba03e"));
  CHECK(expand(server, "quic hp", 16) == from_hex("c206b8d9b9f0f37644430b490eeaa314"));
}

TEST_CASE("hkdf_expand_label derives RFC 9001's key update secret and 32-byte keys",
          "[tls][hkdf]") {
  // RFC 9001 Appendix A.5 (ChaCha20-Poly1305): the key, IV, HP key and next secret ("quic ku")
  // of a 1-RTT secret: what update_key_cb derives at every key update.
  const std::string_view secret =
      "9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b";
  CHECK(expand(secret, "quic key", 32) ==
        from_hex("c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8"));
  CHECK(expand(secret, "quic iv", 12) == from_hex("e0459b3474bdd0e44a41c144"));
  CHECK(expand(secret, "quic hp", 32) ==
        from_hex("25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4"));
  CHECK(expand(secret, "quic ku", 32) ==
        from_hex("1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9"));
}

TEST_CASE("hkdf_expand_label uses SHA-384 for a 48-byte secret, as ngtcp2's own HKDF does",
          "[tls][hkdf]") {
  std::vector<std::uint8_t> secret(48);
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i * 7 + 1);
  std::vector<std::uint8_t> ours(32);
  REQUIRE(hkdf_expand_label(ours, secret, "quic key"));
  // The same HkdfLabel by hand, expanded by ngtcp2_crypto_wolfssl with SHA-384.
  const std::string label = "tls13 quic key";
  std::vector<std::uint8_t> info{0, 32, static_cast<std::uint8_t>(label.size())};
  info.insert(info.end(), label.begin(), label.end());
  info.push_back(0);
  ngtcp2_crypto_md md{};
  ngtcp2_crypto_md_init(&md, const_cast<WOLFSSL_EVP_MD*>(wolfSSL_EVP_sha384()));
  std::vector<std::uint8_t> theirs(32);
  REQUIRE(ngtcp2_crypto_hkdf_expand(theirs.data(), theirs.size(), &md, secret.data(), secret.size(),
                                    info.data(), info.size()) == 0);
  CHECK(ours == theirs);
}

TEST_CASE("hkdf_expand_label refuses secrets of other sizes and over-long outputs", "[tls][hkdf]") {
  std::vector<std::uint8_t> out(16);
  const std::vector<std::uint8_t> short_secret(20, 1), secret(32, 1);
  CHECK_FALSE(hkdf_expand_label(out, short_secret, "quic key"));
  std::vector<std::uint8_t> long_out(256);
  CHECK_FALSE(hkdf_expand_label(long_out, secret, "quic key"));
  CHECK(hkdf_expand_label(out, secret, "quic key"));
}

TEST_CASE("derive_initial_secrets gives RFC 9001's client and server Initial secrets",
          "[tls][hkdf]") {
  // RFC 9001 Appendix A.1: Destination Connection ID 0x8394c8f03e515708, QUIC v1.
  const std::vector<std::uint8_t> dcid = from_hex("8394c8f03e515708");
  std::array<std::uint8_t, 32> client{}, server{};
  REQUIRE(derive_initial_secrets(NGTCP2_PROTO_VER_V1, dcid, client, server));
  CHECK(std::vector<std::uint8_t>(client.begin(), client.end()) ==
        from_hex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"));
  CHECK(std::vector<std::uint8_t>(server.begin(), server.end()) ==
        from_hex("3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b"));
  // QUIC v2 has its own salt: other secrets from the same CID (RFC 9369 Appendix A.1).
  std::array<std::uint8_t, 32> client2{}, server2{};
  REQUIRE(derive_initial_secrets(NGTCP2_PROTO_VER_V2, dcid, client2, server2));
  CHECK(std::vector<std::uint8_t>(client2.begin(), client2.end()) ==
        from_hex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"));
  CHECK_FALSE(derive_initial_secrets(0x1a2a3a4a, dcid, client, server));
  const std::vector<std::uint8_t> long_cid(21, 1);
  CHECK_FALSE(derive_initial_secrets(NGTCP2_PROTO_VER_V1, long_cid, client, server));
}

TEST_CASE("stateless_reset_token gives ngtcp2's token for every connection ID length",
          "[tls][hkdf]") {
  // The server's tokens must not change with the derivation's implementation: a client keeps
  // the tokens it was given, and workers of one server compute each other's.
  std::array<std::uint8_t, 32> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i * 13 + 5);
  std::vector<std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN>> seen;
  for (std::size_t len : {0, 1, 8, 18, 20}) {
    std::array<std::uint8_t, 20> bytes{};
    for (std::size_t i = 0; i < len; ++i) bytes[i] = static_cast<std::uint8_t>(0xa0 + i * 3);
    ngtcp2_cid cid{};
    ngtcp2_cid_init(&cid, bytes.data(), len);
    std::array<std::uint8_t, NGTCP2_STATELESS_RESET_TOKENLEN> ours{}, theirs{};
    REQUIRE(stateless_reset_token(ours, secret, cid));
    REQUIRE(ngtcp2_crypto_generate_stateless_reset_token(theirs.data(), secret.data(),
                                                         secret.size(), &cid) == 0);
    CHECK(ours == theirs);
    for (const auto& other : seen) CHECK(other != ours); // one token per connection ID
    seen.push_back(ours);
  }
}

TEST_CASE("read_certificate_validity reads a certificate's dates, and classify_dates places now",
          "[tls][cert]") {
  temp_dir dir;
  const auto ca = make_ca("test CA", 40);
  const auto leaf = make_leaf(ca, "test server", {{}, {"127.0.0.1"}}, cert_usage::server, 10);
  const auto file = dir.path / "server.pem";
  std::ofstream(file) << leaf.certificate;
  const auto made = static_cast<std::int64_t>(std::time(nullptr));
  const auto v = read_certificate_validity(file.string());
  REQUIRE(v);
  // Valid for 10 days from about now.
  CHECK(v->not_before <= made);
  CHECK(v->not_before >= made - 2 * 86400);
  CHECK(v->not_after - made <= 10 * 86400 + 60);
  CHECK(v->not_after - made >= 10 * 86400 - 60);
  CHECK(classify_dates(*v, made) == certificate_dates::expires_soon); // under 30 days left
  CHECK(classify_dates(*v, made, 86400) == certificate_dates::valid);
  CHECK(classify_dates(*v, v->not_after) == certificate_dates::expires_soon); // inclusive
  CHECK(classify_dates(*v, v->not_after + 1) == certificate_dates::expired);
  CHECK(classify_dates(*v, v->not_before - 1) == certificate_dates::not_yet_valid);
  CHECK_FALSE(read_certificate_validity((dir.path / "missing.pem").string()));
  std::ofstream(dir.path / "garbage.pem") << "not a certificate\n";
  CHECK_FALSE(read_certificate_validity((dir.path / "garbage.pem").string()));
}

TEST_CASE("Ed25519 certificates serve; their dates and CA flag are read", "[tls][cert]") {
  temp_dir dir;
  write_file(dir.path / "ca.pem", ed25519_ca_pem, 0644);
  write_file(dir.path / "server.pem", ed25519_leaf_pem, 0644);
  write_file(dir.path / "server.key", ed25519_leaf_key, 0600);
  tls_server_config sc;
  sc.certificate_file = (dir.path / "server.pem").string();
  sc.private_key_file = (dir.path / "server.key").string();
  CHECK_NOTHROW(tls_context::server(sc));

  // wolfSSL's X509 objects refuse Ed25519 keys: the dates come from wolfCrypt's parser.
  const auto v = read_certificate_validity(sc.certificate_file);
  REQUIRE(v);
  CHECK(v->not_before == 1795779378); // 2026-11-27T11:36:18Z
  CHECK(v->not_after == 2111139378);  // 2036-11-24T11:36:18Z

  // The client CA check reads the CA flag the same way: the CA passes, the leaf is refused.
  sc.client_ca_file = (dir.path / "ca.pem").string();
  CHECK_NOTHROW(tls_context::server(sc));
  sc.client_ca_file = (dir.path / "server.pem").string();
  try {
    tls_context::server(sc);
    FAIL("an Ed25519 leaf was taken as the client CA");
  } catch (const tls_error& e) {
    CHECK(std::string(e.what()).find("not a CA") != std::string::npos);
  }
}
