// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve --policy`: every rule kind deciding real tasks, first match
// wins, the default; a reload on SIGHUP while tasks run (none dropped, new tasks decided by the
// new rules), a refused reload keeping the old rules; --check-policy's explanations and exit
// statuses.
#include "inspect_support.hpp"

#include <catch2/catch_test_macros.hpp>

#include <csignal>

using namespace detour;
using namespace detour::test;
using cli::probe::task_plan;

namespace {

constexpr cli::timestamp second = cli::nanoseconds_per_second;

task_plan task(std::uint64_t n, std::string protocol, std::string upstream, action expected,
               std::optional<std::string> user = std::nullopt,
               detour::ip_address client = detour::ip_address::v4(192, 0, 2, 10)) {
  task_plan p = plan(n, 4096);
  p.protocol = std::move(protocol);
  p.upstream = std::move(upstream);
  p.username = std::move(user);
  p.client.ip = client;
  p.expect = expected;
  p.verify_echo = expected == action::proceed;
  p.remote_speaks_first = p.protocol == "smtp" || p.protocol == "imap";
  if (p.protocol == "websocket") {
    const std::string_view summary = "/chat\r\nhost: chat.example.com\r\n";
    p.payload.assign(summary.begin(), summary.end());
  }
  return p;
}

const char* const every_kind = R"(# every clause kind; the first matching rule wins
rule smtp-lab   bypass   protocol=smtp client=198.51.100.0/24
rule mail       continue protocol=smtp,imap
rule ads        block    host=ads.example.com,*.ads.example.com
rule lan        bypass   ip=10.0.0.0/8,2001:db8:ff::/48
rule admin-port block    port=8443
rule guests     block    user=- protocol=websocket
rule staff      continue user=alice,bob
default bypass
)";

} // namespace

TEST_CASE("serve --policy answers each task as its first matching rule says, else the default",
          "[e2e][policy]") {
  temp_dir dir;
  write_file(dir.path / "policy.rules", every_kind);
  server_process srv({"--policy", (dir.path / "policy.rules").string()});
  CHECK(srv.wait_for_line({"policy.loaded", "rules=7", "default=bypass"}));
  CHECK(srv.wait_for_line({"server.listening", "action=policy"}));
  g3_client client(srv);
  const auto lab = detour::ip_address::v4(198, 51, 100, 7);
  const std::vector<task_plan> plans = {
      task(0, "smtp", "mx.example.com:25", action::bypass, std::nullopt, lab), // smtp-lab
      task(1, "smtp", "mx.example.com:25", action::proceed),                   // mail
      task(2, "imap", "mx.example.com:993", action::proceed, "carol"),         // mail
      task(3, "http_2", "ads.example.com:443", action::block),                 // ads, exact
      task(4, "http_2", "x.y.ads.example.com:443", action::block),             // ads, suffix
      task(5, "http_2", "10.1.2.3:443", action::bypass),                       // lan, IPv4
      task(6, "http_2", "[2001:db8:ff::1]:443", action::bypass),               // lan, IPv6
      task(7, "http_2", "www.example.com:8443", action::block),                // admin-port
      task(8, "websocket", "chat.example.com:443", action::block),             // guests
      task(9, "websocket", "chat.example.com:443", action::proceed, "alice"),  // staff
      task(10, "http_2", "www.example.com:443", action::proceed, "bob"),       // staff
      task(11, "http_2", "www.example.com:443", action::bypass, "carol"),      // default
      task(12, "http_2", "ads.example.com.evil:443", action::bypass),          // default
  };
  run_ok(client, plans); // each plan expects its answer: a wrong one fails the task
  CHECK(srv.wait_for_line({"task.end", "action=continue", "user=bob"}));
  CHECK(srv.find_lines({"task.end", "action=block"}).size() == 4);
}

TEST_CASE("serve reloads its policy on SIGHUP under load: no task dropped, new tasks follow "
          "the new rules, a bad file is refused",
          "[e2e][policy][reload]") {
  temp_dir dir;
  const auto file = dir.path / "policy.rules";
  write_file(file, "default continue\n");
  server_process srv({"--policy", file.string()});
  g3_client client(srv, trusting(srv), std::nullopt, 4);

  // Before: blocked.example.com is continued like everything else.
  run_ok(client, {task(0, "http_2", "blocked.example.com:443", action::proceed)});

  // 300 tasks in flight around the reload; none goes to the host the new rules block, so each
  // must be continued and relayed to the end whichever rules answered it.
  constexpr std::size_t total = 300;
  std::size_t done = 0, failed = 0;
  for (std::size_t i = 0; i < total; ++i) {
    auto p = task(1000 + i, "http_2", "www.example.com:443", action::proceed);
    p.client_bytes = p.remote_bytes = 16 * 1024;
    client.pool->submit(p, [&](const cli::probe::task_result& r) {
      ++done;
      if (!r.ok()) {
        ++failed;
        UNSCOPED_INFO(cli::probe::to_string(r.error) << ": " << r.detail);
      }
    });
  }
  REQUIRE(client.pool->run_until([&] { return done >= total / 3; },
                                 cli::monotonic_now() + 60 * second));
  REQUIRE(done < total); // tasks are still running
  write_file(file, "rule no-blocked block host=blocked.example.com\ndefault continue\n");
  srv.signal(SIGHUP);
  // The client stands still until the server has reloaded: its tasks stay in flight in the
  // server (mid-relay, waiting for the client) whatever the speed of either side. Driving the
  // client meanwhile let all 300 finish before the reload on a fast run.
  REQUIRE(srv.wait_for_line({"policy.reloaded", "rules=1"}));
  CHECK(done < total); // the reload happened while tasks were running
  REQUIRE(
      client.pool->run_until([&] { return done == total; }, cli::monotonic_now() + 120 * second));
  CHECK(failed == 0);

  // After: the new rule decides new tasks; others are continued as before.
  run_ok(client, {task(2, "http_2", "blocked.example.com:443", action::block),
                  task(3, "http_2", "www.example.com:443", action::proceed)});

  // A file with an error is refused; the rules in use stay.
  write_file(file, "rule broken blok host=x\n");
  srv.signal(SIGHUP);
  REQUIRE(srv.wait_for_line({"policy.reload_failed", "errors=2"}));
  const auto line = srv.find_lines({"policy.reload_failed"}).front();
  CHECK(line.find("not an action") != std::string::npos);
  CHECK(line.find(":1:13:") != std::string::npos); // the line and column of the mistake
  run_ok(client, {task(4, "http_2", "blocked.example.com:443", action::block)});
  CHECK(srv.find_lines({"task.end", "how=finished"}).size() >= total);
}

TEST_CASE("serve --check-policy explains a usable file rule by rule and exits 0",
          "[e2e][policy][check]") {
  temp_dir dir;
  write_file(dir.path / "p.rules", every_kind);
  const auto r =
      run_command(detour_binary() + " serve --check-policy " + (dir.path / "p.rules").string());
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("7 rules and a default; first match wins") != std::string::npos);
  CHECK(r.output.find("line 2    smtp-lab             protocol smtp, client 198.51.100.0/24 "
                      "-> bypass") != std::string::npos);
  CHECK(r.output.find("guests               protocol websocket, user - (no username) -> block") !=
        std::string::npos);
  CHECK(r.output.find("line 9    default              every task -> bypass") != std::string::npos);
}

TEST_CASE("serve --check-policy shows each mistake with its line, column and a caret, exits 1",
          "[e2e][policy][check]") {
  temp_dir dir;
  const auto file = (dir.path / "bad.rules").string();
  write_file(file, "# two mistakes\n"
                   "rule mail continue protocol=smtp hostname=mx.example.com\n"
                   "rule lan bypass ip=10.0.0.1/8\n"
                   "default continue\n");
  const auto r = run_command(detour_binary() + " serve --check-policy " + file);
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(r.output.find(file + ":2:34: error: unknown clause 'hostname'") != std::string::npos);
  CHECK(r.output.find("\n    rule mail continue protocol=smtp hostname=mx.example.com\n"
                      "                                     ^") != std::string::npos);
  CHECK(r.output.find(file + ":3:17: error: ip=10.0.0.1/8: the address has bits set beyond the "
                             "/8 prefix; did you mean 10.0.0.0/8?") != std::string::npos);
  CHECK(r.output.find(file + ": 2 errors: not a usable policy") != std::string::npos);

  const auto missing = run_command(detour_binary() + " serve --check-policy " + file + ".none");
  CHECK(missing.status == 1);
  CHECK(missing.output.find("cannot read the policy file") != std::string::npos);
}

TEST_CASE("serve refuses to start with an unusable policy, and --policy with --action",
          "[e2e][policy][options]") {
  temp_dir dir;
  const auto file = (dir.path / "bad.rules").string();
  write_file(file, "rule a continue\n"); // no default line
  const auto r = run_command(detour_binary() + " serve --listen 127.0.0.1:0 --state-dir " +
                             dir.path.string() + " --policy " + file);
  CHECK(r.status == 1);
  CHECK(r.output.find("no default line") != std::string::npos);
  CHECK(r.output.find("server.listening") == std::string::npos);

  write_file(file, "default continue\n");
  const auto both = run_command(detour_binary() + " serve --policy " + file + " --action block");
  CHECK(both.status == 2);
  CHECK(both.output.find("--action and --policy do not go together") != std::string::npos);
}
