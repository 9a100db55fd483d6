// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve --metrics`: the endpoint is scraped after a known amount of
// work and each counter must say exactly that work (tasks by protocol and action, ends, bytes
// each way, connections, stream errors, handshake failures, the audit's records); the periodic
// metrics.summary log line says the same.
#include "inspect_support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <csignal>

using namespace detour;
using namespace detour::test;
using cli::probe::task_plan;

namespace {

constexpr cli::timestamp second = cli::nanoseconds_per_second;

std::string metrics_address(server_process& srv) {
  const auto line = srv.wait_for_line({"metrics.listening"});
  REQUIRE(line);
  return log_field(*line, "address");
}

std::string scrape(const std::string& address) {
  const std::string r = http_get(address, "/metrics");
  REQUIRE(r.starts_with("HTTP/1.1 200 OK\r\n"));
  return r.substr(r.find("\r\n\r\n") + 4);
}

} // namespace

TEST_CASE("serve --metrics counts exactly the work done, by protocol, action and end",
          "[e2e][metrics]") {
  temp_dir dir;
  write_file(dir.path / "policy.rules", "rule ads block host=ads.example.com\n"
                                        "rule lan bypass ip=10.0.0.0/8\n"
                                        "default continue\n");
  server_process srv({"--policy", (dir.path / "policy.rules").string(), "--metrics", "127.0.0.1:0",
                      "--audit", (dir.path / "audit.jsonl").string()});
  const std::string address = metrics_address(srv);

  const std::string idle = scrape(address);
  CHECK(metric(idle, "detour_connections_accepted_total") == 0);
  CHECK(metric(idle, "detour_tasks_total{protocol=\"http_2\",action=\"continue\"}") == 0);

  g3_client client(srv, trusting(srv), std::nullopt, 3, 16);
  std::vector<task_plan> plans;
  std::uint64_t client_bytes = 0, remote_bytes = 0;
  for (std::uint64_t i = 0; i < 60; ++i) {
    task_plan p = plan(i, 1000 + i);
    p.remote_bytes = 3000 + i;
    switch (i % 6) {
    case 0:
      p.protocol = "smtp";
      p.remote_speaks_first = true;
      break;
    case 1:
      p.protocol = "imap";
      p.remote_speaks_first = true;
      break;
    case 2:
      p.protocol = "websocket";
      p.payload = {'/', '\r', '\n'};
      break;
    case 3:
      p.upstream = "ads.example.com:443";
      p.expect = action::block;
      p.verify_echo = false;
      break;
    case 4:
      p.upstream = "10.9.8.7:443";
      p.expect = action::bypass;
      p.verify_echo = false;
      break;
    default:
      p.protocol = "gopher"; // a protocol g3proxy may add one day: counted as "other"
    }
    if (p.expect == action::proceed) {
      client_bytes += p.client_bytes;
      remote_bytes += p.remote_bytes;
    }
    plans.push_back(p);
  }
  run_ok(client, plans);
  // The client saw every task end; the server logs each end as its last stream closes.
  const auto ended = [&] { return srv.find_lines({"task.end"}).size() == plans.size(); };
  REQUIRE(poll_until(client, ended, cli::monotonic_now() + 20 * second));
  // The pool replaces connections that reached their reuse limit as soon as their last task
  // starts: a replacement may still be in its handshake, already counted by the server (it
  // counts a connection when it accepts its Initial) and not yet by the client.
  const auto settled = [&] {
    const auto& st = client.pool->stats();
    return st.handshakes + st.connect_failures == st.connections_opened;
  };
  REQUIRE(poll_until(client, settled, cli::monotonic_now() + 20 * second));

  const std::string m = scrape(address);
  INFO(m);
  const auto tasks = [&](const char* protocol, const char* action) {
    return metric(m, std::string("detour_tasks_total{protocol=\"") + protocol + "\",action=\"" +
                         action + "\"}");
  };
  CHECK(tasks("smtp", "continue") == 10);
  CHECK(tasks("imap", "continue") == 10);
  CHECK(tasks("websocket", "continue") == 10);
  CHECK(tasks("http_2", "block") == 10);
  CHECK(tasks("http_2", "bypass") == 10);
  CHECK(tasks("other", "continue") == 10);
  CHECK(tasks("http_2", "continue") == 0);
  CHECK(
      metric(m,
             "detour_tasks_ended_total{protocol=\"smtp\",action=\"continue\",end=\"finished\"}") ==
      10);
  CHECK(metric(m,
               "detour_tasks_ended_total{protocol=\"http_2\",action=\"block\",end=\"finished\"}") ==
        10);
  CHECK(metric(m, "detour_tasks_running") == 0);
  CHECK(metric(m, "detour_relayed_bytes_total{direction=\"client_to_remote\"}") ==
        static_cast<double>(client_bytes));
  CHECK(metric(m, "detour_relayed_bytes_total{direction=\"remote_to_client\"}") ==
        static_cast<double>(remote_bytes));
  CHECK(metric(m, "detour_task_duration_seconds_count") == 60);
  CHECK(metric(m, "detour_task_duration_seconds_bucket{le=\"+Inf\"}") == 60);
  CHECK(metric(m, "detour_connections_accepted_total") ==
        static_cast<double>(client.pool->stats().handshakes));
  CHECK(metric(m, "detour_handshake_failures_total{reason=\"tls\"}") == 0);
  CHECK(metric(m, "detour_audit_dropped_total") == 0);
  // The audit lines are written off the event loop: every task's, soon (a bounded wait).
  REQUIRE(poll_until(
      client, [&] { return metric(scrape(address), "detour_audit_records_total") >= 60; },
      cli::monotonic_now() + 10 * second));
  CHECK(metric(scrape(address), "detour_audit_records_total") == 60);
}

TEST_CASE("serve --metrics counts handshake failures and stream errors", "[e2e][metrics]") {
  server_process srv({"--metrics", "127.0.0.1:0", "--alpn", "detour"});
  const std::string address = metrics_address(srv);
  {
    // A client offering only an ALPN name the server does not accept is refused in TLS.
    cli::tls_client_config tc = trusting(srv);
    tc.alpn = {"h3"};
    g3_client refused(srv, tc);
    auto& conn = refused.pool->dial();
    REQUIRE(refused.pool->run_until([&] { return conn.quic->closed(); },
                                    cli::monotonic_now() + 10 * second));
  }
  REQUIRE(srv.wait_for_line({"conn.handshake_failed"}));
  {
    // A stream whose header is garbage is reset (bad_signature).
    g3_client client(srv);
    auto& conn = client.pool->dial();
    REQUIRE(client.pool->wait_established(conn, cli::monotonic_now() + 10 * second));
    stream_recorder rec;
    const std::int64_t id = conn.quic->open_stream(&rec);
    REQUIRE(id >= 0);
    const std::string junk = "GET / HTTP/1.1\r\n\r\n";
    REQUIRE(conn.quic->write_some(id, {reinterpret_cast<const std::uint8_t*>(junk.data()),
                                       junk.size()}) == junk.size());
    conn.quic->finish(id);
    REQUIRE(client.pool->run_until([&] { return rec.streams[id].reset.has_value(); },
                                   cli::monotonic_now() + 10 * second));
  }
  const std::string m = scrape(address);
  CHECK(metric(m, "detour_handshake_failures_total{reason=\"tls\"}") == 1);
  CHECK(metric(m, "detour_stream_errors_total{error=\"bad_signature\"}") == 1);
}

TEST_CASE("serve logs a metrics.summary line at --summary-interval", "[e2e][metrics]") {
  server_process srv({"--summary-interval", "1s"});
  g3_client client(srv);
  run_ok(client, {plan(1, 500), plan(2, 500)});
  // The next summary after the tasks ended (a timer of 1 s: bounded wait, not a sleep).
  REQUIRE(poll_until(
      client,
      [&] { return !srv.find_lines({"metrics.summary", "tasks=2 ", "running=0"}).empty(); },
      cli::monotonic_now() + 10 * second));
  const auto line = srv.find_lines({"metrics.summary", "tasks=2 ", "running=0"}).front();
  CHECK(log_field(line, "client_bytes") == "1000");
  CHECK(log_field(line, "remote_bytes") == "1000");
  CHECK(log_field(line, "connections") != "0");
}
