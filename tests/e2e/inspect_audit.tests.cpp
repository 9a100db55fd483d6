// SPDX-License-Identifier: MIT
// End-to-end tests of `detour serve --audit`: after a load of tasks, every line of the audit
// file is checked field by field against the task that was sent; nothing is lost when the
// server stops on SIGTERM; SIGHUP reopens the file after a rotation.
#include "inspect_support.hpp"

#include "audit.hpp"

#include <catch2/catch_test_macros.hpp>

#include <csignal>
#include <map>
#include <regex>

using namespace detour;
using namespace detour::test;
using cli::probe::task_plan;

namespace {

constexpr cli::timestamp second = cli::nanoseconds_per_second;

std::string uuid_of(const task_plan& p) {
  return std::string(detour::to_text(p.task_id).view());
}

} // namespace

TEST_CASE("serve --audit writes one JSON line per task whose fields match the task, all of them "
          "on SIGTERM",
          "[e2e][audit]") {
  temp_dir dir;
  const auto audit = dir.path / "audit.jsonl";
  write_file(dir.path / "policy.rules", "rule ads block host=ads.example.com\n"
                                        "rule mail continue capture protocol=smtp\n"
                                        "default continue\n");
  const std::int64_t before = cli::wall_clock_ns();
  server_process srv({"--policy", (dir.path / "policy.rules").string(), "--audit", audit.string(),
                      "--capture", (dir.path / "c.pcap").string()});
  g3_client client(srv, trusting(srv), std::nullopt, 4);

  // A load of 200 tasks of every kind: protocols, users, addresses of both families, a
  // WebSocket summary with a value that is not UTF-8, blocked ones.
  std::vector<task_plan> plans;
  for (std::uint64_t i = 0; i < 200; ++i) {
    task_plan p = plan(i, 1000 + 37 * i);
    p.remote_bytes = 500 + 11 * i; // different sizes each way
    switch (i % 5) {
    case 0:
      p.protocol = "smtp";
      p.upstream = "mx.example.com:25";
      p.remote_speaks_first = true;
      break;
    case 1:
      p.protocol = "imap";
      p.upstream = "[2001:db8::1]:993";
      p.username = "alice";
      p.client = {*detour::parse_ip("2001:db8:1::" + std::to_string(i)), 40000};
      p.proxy = {*detour::parse_ip("2001:db8:1::1"), 3128};
      p.remote_speaks_first = true;
      break;
    case 2: {
      p.protocol = "websocket";
      p.upstream = "chat.example.com:443";
      const std::string summary = "/socket/" + std::to_string(i) +
                                  "\r\nhost: chat.example.com\r\norigin: caf\xe9\r\n"
                                  "sec-websocket-extensions: a\r\nsec-websocket-extensions: b\r\n";
      p.payload.assign(summary.begin(), summary.end());
      break;
    }
    case 3:
      p.protocol = "http_2";
      p.upstream = "ads.example.com:443";
      p.expect = action::block;
      p.verify_echo = false;
      p.username = "bob";
      break;
    default:
      p.protocol = "http_2";
      p.upstream = "www.example.com:443";
    }
    plans.push_back(p);
  }
  run_ok(client, plans);
  REQUIRE(stop_server(srv, client) == 0);
  const std::int64_t after = cli::wall_clock_ns();

  const auto lines = file_lines(audit);
  REQUIRE(lines.size() == plans.size());
  std::map<std::string, json> by_task;
  for (const auto& line : lines) {
    INFO(line);
    const json j = json::parse(line); // every line is one valid JSON object
    REQUIRE(j.obj().size() == 17);    // and has every field
    by_task.emplace(j["task"].str(), j);
  }
  REQUIRE(by_task.size() == plans.size()); // one line per task

  const std::regex time_format(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  const std::regex conn_format("[0-9a-f]{8}");
  for (std::size_t i = 0; i < plans.size(); ++i) {
    const task_plan& p = plans[i];
    INFO("task " << i << " " << p.protocol);
    const json& j = by_task.at(uuid_of(p));
    CHECK(std::regex_match(j["time"].str(), time_format));
    CHECK(std::regex_match(j["conn"].str(), conn_format));
    CHECK(j["match"].num() < 16); // g3proxy's reuse limit: match ids 0..15 per connection
    if (p.username) {
      CHECK(j["user"].str() == *p.username);
    } else {
      CHECK(j["user"].is_null());
    }
    CHECK(j["client"].str() == std::string(detour::to_text(p.client).view()));
    CHECK(j["proxy"].str() == std::string(detour::to_text(p.proxy).view()));
    CHECK(j["upstream"].str() == p.upstream);
    CHECK(j["protocol"].str() == p.protocol);
    const bool blocked = p.expect == action::block;
    CHECK(j["rule"].str() == (blocked ? "ads" : p.protocol == "smtp" ? "mail" : "default"));
    CHECK(j["action"].str() == (blocked ? "block" : "continue"));
    CHECK(j["capture"].boolean() == (p.protocol == "smtp"));
    CHECK(j["client_bytes"].num() == (blocked ? 0 : static_cast<double>(p.client_bytes)));
    CHECK(j["remote_bytes"].num() == (blocked ? 0 : static_cast<double>(p.remote_bytes)));
    CHECK(j["duration_ms"].num() >= 0);
    CHECK(j["duration_ms"].num() * 1e6 <= static_cast<double>(after - before));
    CHECK(j["end"].str() == "finished");
    if (p.protocol == "websocket") {
      const json& w = j["websocket"];
      CHECK(w["resource"].str() == "/socket/" + std::to_string(i));
      CHECK(w["headers"]["host"].str() == "chat.example.com");
      CHECK(w["headers"]["origin"].str() == "caf\xe9"); // the raw byte comes back
      CHECK(w["headers"]["sec-websocket-extensions"].str() == "a, b");
    } else {
      CHECK(j["websocket"].is_null());
    }
  }
  // Times lie within the run and follow the order of the lines' own answers.
  for (const auto& [id, j] : by_task) {
    const std::string& t = j["time"].str();
    CHECK(t >= cli::rfc3339_utc(before).substr(0, 19));
    CHECK(t <= cli::rfc3339_utc(after));
  }
  CHECK_FALSE(srv.find_lines({"audit.closed", "records=200", "dropped=0"}).empty());
}

TEST_CASE("serve --audit reopens its file on SIGHUP after a rotation moved it", "[e2e][audit]") {
  temp_dir dir;
  const auto audit = dir.path / "audit.jsonl";
  server_process srv({"--audit", audit.string()});
  g3_client client(srv);
  run_ok(client, {plan(1, 100), plan(2, 100)});
  // The lines are written off the event loop: wait for them (bounded).
  REQUIRE(poll_until(client, [&] { return file_lines(audit).size() == 2; },
                     cli::monotonic_now() + 10 * second));
  std::filesystem::rename(audit, dir.path / "audit.jsonl.1");
  srv.signal(SIGHUP);
  REQUIRE(srv.wait_for_line({"audit.reopened"}));
  run_ok(client, {plan(3, 100)});
  REQUIRE(stop_server(srv, client) == 0);
  const auto old_lines = file_lines(dir.path / "audit.jsonl.1");
  const auto new_lines = file_lines(audit);
  REQUIRE(old_lines.size() == 2);
  REQUIRE(new_lines.size() == 1);
  CHECK(json::parse(new_lines[0])["task"].str() == uuid_of(plan(3)));
}

TEST_CASE("serve --audit - writes the lines to standard output", "[e2e][audit]") {
  server_process srv({"--audit", "-"});
  g3_client client(srv);
  run_ok(client, {plan(7, 10)});
  REQUIRE(stop_server(srv, client) == 0);
  const std::string out = srv.stdout_text();
  const auto at = out.find("{\"time\":");
  REQUIRE(at != std::string::npos);
  const json j = json::parse(out.substr(at, out.find('\n', at) - at));
  CHECK(j["task"].str() == uuid_of(plan(7)));
  CHECK(j["rule"].is_null()); // no policy
  CHECK(j["capture"].boolean() == false);
}
