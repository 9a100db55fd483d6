// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve` as a QUIC server: Retry, the connection limit, TLS session
// resumption (with mutual TLS too) under each TLS 1.3 cipher suite, certificate reload on SIGHUP,
// IPv6 listeners.
#include "client.hpp"
#include "results.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <ngtcp2/ngtcp2.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>

using namespace detour;
using namespace detour::test;

namespace {

constexpr cli::timestamp second = cli::nanoseconds_per_second;

// Puts the server certificate and key of |from| in |live| (where serve reads them), replacing
// what is there.
void install_certs(const std::filesystem::path& from, const std::filesystem::path& live) {
  for (const char* f : {"server.pem", "server.key"})
    std::filesystem::copy_file(from / f, live / f,
                               std::filesystem::copy_options::overwrite_existing);
}

void make_certs(const std::filesystem::path& dir) {
  REQUIRE(std::system(
              (detour_binary() + " cert --force --out " + dir.string() + " >/dev/null").c_str()) ==
          0);
}

} // namespace

TEST_CASE("serve with --retry validates the client address first and then serves it",
          "[e2e][quic][retry]") {
  server_process srv({"--retry"});
  g3_client client(srv);
  CHECK(all_ok(client.run({plan(0), plan(1)})));
}

TEST_CASE("serve refuses connections over --max-connections and keeps serving the others",
          "[e2e][quic][limits]") {
  // Two workers: the limit and its warning are the process's, whichever worker refuses.
  server_process srv({"--max-connections", "2", "--log-level", "debug", "--workers", "2"});
  g3_client client(srv);
  auto& a = client.pool->dial();
  auto& b = client.pool->dial();
  REQUIRE(client.pool->wait_established(a, cli::monotonic_now() + 10 * second));
  REQUIRE(client.pool->wait_established(b, cli::monotonic_now() + 10 * second));
  auto& c = client.pool->dial();
  REQUIRE(
      client.pool->run_until([&] { return c.quic->closed(); }, cli::monotonic_now() + 10 * second));
  INFO(cli::probe::describe(c.quic->close_state()));
  CHECK(c.quic->close_state().code == 0x2); // CONNECTION_REFUSED
  CHECK(srv.wait_for_line({"conn.refused", "reason=\"max connections\""}));
  // At the default level too (warn): the first refusal, with the count.
  CHECK(srv.wait_for_line({"warn", "server.connections_full", "max_connections=2", "refused=1"}));
  // More refusals within 10 s (from either worker) add no line: counted for the next one.
  for (int k = 0; k < 4; ++k) {
    auto& more = client.pool->dial();
    REQUIRE(client.pool->run_until([&] { return more.quic->closed(); },
                                   cli::monotonic_now() + 10 * second));
  }
  CHECK(srv.wait_for_line({"conn.refused"}));
  CHECK(srv.find_lines({"conn.refused"}).size() == 5);
  CHECK(srv.find_lines({"server.connections_full"}).size() == 1);
  CHECK(a.quic->established());
  CHECK(b.quic->established());
}

TEST_CASE("serve issues session tickets so the next connection resumes", "[e2e][tls][resume]") {
  server_process srv;
  g3_client client(srv, trusting(srv), std::nullopt, 1, 1);
  // One task per connection: the second task needs a second connection, which resumes.
  CHECK(all_ok(client.run({plan(0), plan(1), plan(2)})));
  CHECK(client.pool->stats().resumed >= 1);
  CHECK(srv.wait_for_line({"conn.open", "resumed=true"}));
}

TEST_CASE("serve speaks each TLS 1.3 cipher suite on full and resumed connections",
          "[e2e][tls][resume]") {
  // Each suite has its own key sizes and hash (SHA-384 for AES-256-GCM: 48-byte secrets), and
  // the server derives every key of the handshake and of 1-RTT itself.
  const auto suite = GENERATE(as<std::string>{}, "TLS13-AES128-GCM-SHA256",
                              "TLS13-AES256-GCM-SHA384", "TLS13-CHACHA20-POLY1305-SHA256");
  INFO(suite);
  server_process srv({"--log-level", "info"});
  cli::tls_client_config tc = trusting(srv);
  tc.cipher_suites = suite;
  g3_client client(srv, tc, std::nullopt, 1, 1);
  // One task per connection: the later connections resume.
  CHECK(all_ok(client.run({plan(0, 256 * 1024), plan(1), plan(2)})));
  CHECK(client.pool->stats().resumed >= 1);
  CHECK(srv.wait_for_line({"conn.open", "resumed=true", "cipher=" + suite}));
  CHECK(srv.find_lines({"conn.open", "cipher=" + suite}).size() ==
        srv.find_lines({"conn.open"}).size());
}

TEST_CASE("serve follows the client's key updates in QUIC v1 and v2 without losing a byte",
          "[e2e][tls][quic]") {
  // RFC 9001 §6: each update moves both sides to keys derived from the previous secret; QUIC v2
  // (RFC 9369) derives every key under its own labels.
  const std::uint32_t version =
      GENERATE(as<std::uint32_t>{}, NGTCP2_PROTO_VER_V1, NGTCP2_PROTO_VER_V2);
  INFO("version " << version);
  server_process srv;
  g3_client client(srv, trusting(srv), std::nullopt, 1, 1000);
  client.config.quic.version = version;
  client.config.quic.key_update_bytes = 64 * 1024;
  client.target(srv.address());
  auto& c = client.pool->dial();
  REQUIRE(client.pool->wait_established(c, cli::monotonic_now() + 10 * second));
  // ngtcp2 starts an update only three PTOs after the previous one was confirmed: tasks one
  // after another on the same connection until three updates have happened.
  std::uint64_t n = 0;
  while (c.quic->stats().key_updates < 3 && n < 500) {
    cli::probe::task_result result;
    bool done = false;
    client.pool->submit_on(c, plan(n++, 256 * 1024), [&](const cli::probe::task_result& r) {
      result = r;
      done = true;
    });
    REQUIRE(client.pool->run_until([&] { return done; }, cli::monotonic_now() + 30 * second));
    REQUIRE(all_ok({result}));
  }
  CHECK(c.quic->stats().key_updates >= 3);
  CHECK(c.quic->negotiated_version() == version);
  CHECK(c.quic->established());
}

TEST_CASE("serve names the client certificate of a resumed connection under mutual TLS",
          "[e2e][tls][resume][mtls]") {
  temp_dir certs;
  make_certs(certs.path);
  server_process srv({"--cert", (certs.path / "server.pem").string(), "--key",
                      (certs.path / "server.key").string(), "--client-ca",
                      (certs.path / "ca.pem").string()});
  cli::tls_client_config tc;
  tc.ca_file = (certs.path / "ca.pem").string();
  tc.certificate_file = (certs.path / "client.pem").string();
  tc.private_key_file = (certs.path / "client.key").string();
  g3_client client(srv, tc, std::nullopt, 1, 1);
  // One task per connection: the later connections resume, and present no certificate.
  CHECK(all_ok(client.run({plan(0), plan(1), plan(2)})));
  REQUIRE(client.pool->stats().resumed >= 1);
  CHECK(srv.wait_for_line({"conn.open", "resumed=true", "client_cert=\"/O=detour/CN=g3proxy\""}));
  CHECK(srv.find_lines({"conn.open", "client_cert=-"}).empty());
  CHECK(srv.find_lines({"conn.open", "client_cert=\"/O=detour/CN=g3proxy\""}).size() ==
        srv.find_lines({"conn.open"}).size());
}

TEST_CASE("serve reloads its certificate on SIGHUP without dropping connections",
          "[e2e][tls][reload]") {
  temp_dir one, two;
  make_certs(one.path);
  make_certs(two.path);
  temp_dir live;
  install_certs(one.path, live.path);
  server_process srv({"--cert", (live.path / "server.pem").string(), "--key",
                      (live.path / "server.key").string()});

  cli::tls_client_config first_ca;
  first_ca.ca_file = (one.path / "ca.pem").string();
  first_ca.resume_sessions = false;
  g3_client old_client(srv, first_ca, std::nullopt, 1, 16);
  auto& kept = old_client.pool->dial();
  REQUIRE(old_client.pool->wait_established(kept, cli::monotonic_now() + 10 * second));

  // Renew: the second set's certificate replaces the first in place.
  install_certs(two.path, live.path);
  srv.signal(SIGHUP);
  REQUIRE(srv.wait_for_line({"server.reloaded"}));

  // New connections present the new certificate: only the second CA verifies it.
  cli::tls_client_config second_ca = first_ca;
  second_ca.ca_file = (two.path / "ca.pem").string();
  g3_client new_client(srv, second_ca);
  CHECK(all_ok(new_client.run({plan(1)})));
  g3_client stale_client(srv, first_ca);
  auto& refused = stale_client.pool->dial();
  CHECK_FALSE(stale_client.pool->wait_established(refused, cli::monotonic_now() + 5 * second));

  // The connection made before the reload still works.
  CHECK(kept.quic->established());
  std::vector<cli::probe::task_result> results(1);
  bool done = false;
  old_client.pool->submit_on(kept, plan(2), [&](const cli::probe::task_result& r) {
    results[0] = r;
    done = true;
  });
  REQUIRE(old_client.pool->run_until([&] { return done; }, cli::monotonic_now() + 10 * second));
  CHECK(all_ok(results));

  // A broken file is refused and the current certificate stays.
  {
    std::ofstream broken(live.path / "server.pem", std::ios::trunc);
    broken << "not a certificate\n";
  }
  srv.signal(SIGHUP);
  CHECK(srv.wait_for_line({"server.reload_failed"}));
  g3_client after_bad(srv, second_ca);
  CHECK(all_ok(after_bad.run({plan(3)})));
}

TEST_CASE("serve warns about a certificate near its end at start and on each reload",
          "[e2e][tls][reload]") {
  temp_dir short_lived, normal;
  REQUIRE(std::system((detour_binary() + " cert --out " + short_lived.path.string() +
                       " --days 10 >/dev/null")
                          .c_str()) == 0);
  make_certs(normal.path);
  temp_dir live;
  install_certs(short_lived.path, live.path);
  server_process srv({"--cert", (live.path / "server.pem").string(), "--key",
                      (live.path / "server.key").string()});
  // 10 days less the moments since it was made: 10 whole days, or 9 after a second's turn.
  const auto warned = srv.wait_for_line({"warn", "server.cert_expires_soon", "not_after="});
  REQUIRE(warned);
  CHECK((warned->find(" days=10") != std::string::npos ||
         warned->find(" days=9") != std::string::npos));
  // Renewed with a certificate of the default length: the reload says nothing of its dates.
  install_certs(normal.path, live.path);
  srv.signal(SIGHUP);
  REQUIRE(srv.wait_for_line({"server.reloaded"}));
  // The short-lived one again: warned again.
  install_certs(short_lived.path, live.path);
  srv.signal(SIGHUP);
  // Until the second warning (or 10 s): each round reads the log for a bounded moment.
  const auto deadline = cli::monotonic_now() + 10 * second;
  while (srv.find_lines({"server.cert_expires_soon"}).size() < 2 &&
         cli::monotonic_now() < deadline) {
    (void)srv.wait_for_line({"a line no server writes"}, 50 * cli::nanoseconds_per_millisecond);
  }
  CHECK(srv.find_lines({"server.reloaded"}).size() == 2);
  CHECK(srv.find_lines({"server.cert_expires_soon"}).size() == 2);
}

TEST_CASE("serve refuses a --client-ca that is not a CA certificate", "[e2e][tls][mtls]") {
  temp_dir certs;
  make_certs(certs.path);
  // server.pem where ca.pem belongs: it loads, and every client would then be refused.
  const auto [out, status] =
      run_detour("serve --listen 127.0.0.1:0 --cert " + (certs.path / "server.pem").string() +
                 " --key " + (certs.path / "server.key").string() + " --client-ca " +
                 (certs.path / "server.pem").string());
  CHECK(status == 1);
  CHECK(out.find("server.failed") != std::string::npos);
  CHECK(out.find("is not a CA") != std::string::npos);
}

TEST_CASE("serve listens on IPv6 and IPv4 at once", "[e2e][quic][ipv6]") {
  server_process srv({"--listen", "[::1]:0", "--listen", "127.0.0.1:0"});
  CHECK(srv.address().family() == AF_INET6);
  g3_client client(srv);
  CHECK(all_ok(client.run({plan(0)})));
  CHECK_FALSE(srv.find_lines({"conn.open", "peer=[::1]:"}).empty());
}

TEST_CASE("serve writes JSON lines with --log-format json", "[e2e][logs]") {
  server_process srv({"--log-format", "json"});
  g3_client client(srv);
  CHECK(all_ok(client.run({plan(0)})));
  const auto line = srv.wait_for_line({"\"event\":\"task.end\""});
  REQUIRE(line);
  CHECK(line->rfind("{\"ts\":\"", 0) == 0);
  CHECK(line->back() == '}');
  for (const char* field :
       {"\"conn\":\"", "\"task\":\"", "\"match\":0", "\"upstream\":\"example.com:443\"",
        "\"protocol\":\"http_2\"", "\"action\":\"continue\"", "\"client_bytes\":65536",
        "\"how\":\"finished\""}) {
    INFO(field);
    CHECK(line->find(field) != std::string::npos);
  }
}
