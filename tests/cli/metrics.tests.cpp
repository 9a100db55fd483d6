// SPDX-License-Identifier: MIT
// Tests of cli/metrics.hpp and cli/http_request.hpp: counters and histogram in the Prometheus
// text format with bounded labels, the request head parser, and the HTTP responder on a real
// loopback socket driven by the event loop.
#include "metrics.hpp"

#include "http_request.hpp"

#include <catch2/catch_approx.hpp>
#include <catch2/catch_test_macros.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

using namespace detour::cli;

namespace {

// The value of the sample line that starts with `prefix ` (name and labels), or -1.
double value_of(const std::string& text, const std::string& prefix) {
  const std::string needle = "\n" + prefix + " ";
  const std::string all = "\n" + text;
  const auto at = all.find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(all.substr(at + needle.size()));
}

} // namespace

TEST_CASE("metrics: tasks are counted by protocol and action, with bounded labels", "[metrics]") {
  metrics m;
  m.task_answered("smtp", detour::action::proceed);
  m.task_answered("smtp", detour::action::proceed);
  m.task_answered("http_2", detour::action::block);
  m.task_answered("gopher\"}evil", detour::action::bypass); // from the wire: becomes "other"
  const std::string t = m.render({});
  CHECK(value_of(t, "detour_tasks_total{protocol=\"smtp\",action=\"continue\"}") == 2);
  CHECK(value_of(t, "detour_tasks_total{protocol=\"http_2\",action=\"block\"}") == 1);
  CHECK(value_of(t, "detour_tasks_total{protocol=\"other\",action=\"bypass\"}") == 1);
  CHECK(value_of(t, "detour_tasks_total{protocol=\"imap\",action=\"continue\"}") == 0);
  CHECK(t.find("evil") == std::string::npos);
  CHECK(value_of(t, "detour_tasks_running") == 4);
  CHECK(m.tasks_answered() == 4);
}

TEST_CASE("metrics: ended tasks add bytes, an end label and a duration", "[metrics]") {
  metrics m;
  m.task_answered("imap", detour::action::proceed);
  m.task_answered("imap", detour::action::proceed);
  m.task_answered("imap", detour::action::proceed);
  m.task_ended("imap", detour::action::proceed, "finished", 100, 2000, 3'000'000);  // 3 ms
  m.task_ended("imap", detour::action::proceed, "stream_reset", 5, 0, 700'000'000); // 0.7 s
  m.task_ended("imap", detour::action::proceed, "connection closed by client", 1, 1,
               20'000'000'000);
  const std::string t = m.render({});
  CHECK(value_of(t, "detour_relayed_bytes_total{direction=\"client_to_remote\"}") == 106);
  CHECK(value_of(t, "detour_relayed_bytes_total{direction=\"remote_to_client\"}") == 2001);
  CHECK(
      value_of(
          t, "detour_tasks_ended_total{protocol=\"imap\",action=\"continue\",end=\"finished\"}") ==
      1);
  CHECK(
      value_of(
          t,
          "detour_tasks_ended_total{protocol=\"imap\",action=\"continue\",end=\"stream_reset\"}") ==
      1);
  CHECK(value_of(t, "detour_tasks_ended_total{protocol=\"imap\",action=\"continue\",end="
                    "\"connection_closed\"}") == 1);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"0.001\"}") == 0);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"0.005\"}") == 1);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"1\"}") == 2);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"10\"}") == 2);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"30\"}") == 3);
  CHECK(value_of(t, "detour_task_duration_seconds_bucket{le=\"+Inf\"}") == 3);
  CHECK(value_of(t, "detour_task_duration_seconds_count") == 3);
  CHECK(value_of(t, "detour_task_duration_seconds_sum") == Catch::Approx(20.703));
  CHECK(value_of(t, "detour_tasks_running") == 0);
}

TEST_CASE("metrics: errors, handshake failures, reloads and gauges are rendered", "[metrics]") {
  metrics m;
  m.stream_error(detour::errc::header_timeout);
  m.stream_error(detour::errc::header_timeout);
  m.stream_error(detour::errc::bad_signature);
  m.handshake_failed("tls");
  m.policy_reload(true);
  m.policy_reload(false);
  m.policy_reload(false);
  metrics_gauges g;
  g.connections_accepted = 12;
  g.connections_open = 3;
  g.audit = true;
  g.audit_written = 40;
  g.packets_forwarded = 7;
  const std::string t = m.render(g);
  CHECK(value_of(t, "detour_stream_errors_total{error=\"header_timeout\"}") == 2);
  CHECK(value_of(t, "detour_stream_errors_total{error=\"bad_signature\"}") == 1);
  CHECK(value_of(t, "detour_handshake_failures_total{reason=\"tls\"}") == 1);
  CHECK(value_of(t, "detour_handshake_failures_total{reason=\"timeout\"}") == 0);
  CHECK(value_of(t, "detour_policy_reloads_total{result=\"ok\"}") == 1);
  CHECK(value_of(t, "detour_policy_reloads_total{result=\"refused\"}") == 2);
  CHECK(value_of(t, "detour_connections_accepted_total") == 12);
  CHECK(value_of(t, "detour_connections_open") == 3);
  CHECK(value_of(t, "detour_audit_records_total") == 40);
  CHECK(value_of(t, "detour_packets_forwarded_total") == 7);
  CHECK(t.find("detour_capture_packets_total") == std::string::npos); // no capture: no family
  CHECK(m.stream_errors() == 3);
}

TEST_CASE("metrics: every family has HELP and TYPE before its samples", "[metrics]") {
  metrics m;
  m.task_ended("smtp", detour::action::proceed, "finished", 1, 1, 1);
  const std::string t = m.render({});
  std::string last_type;
  std::size_t start = 0;
  while (start < t.size()) {
    const auto nl = t.find('\n', start);
    REQUIRE(nl != std::string::npos); // the text ends with a line end
    const std::string line = t.substr(start, nl - start);
    start = nl + 1;
    if (line.starts_with("# HELP ")) continue;
    if (line.starts_with("# TYPE ")) {
      last_type = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    const std::string name = line.substr(0, line.find_first_of("{ "));
    INFO(line);
    CHECK(name.starts_with(last_type)); // histogram samples add _bucket, _sum, _count
  }
}

TEST_CASE("http_request: a request head is complete at its empty line", "[metrics][http]") {
  using status = http_request_head::status;
  const std::string_view req = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nrest";
  const auto h = parse_request_head(req);
  CHECK(h.state == status::complete);
  CHECK(h.method == "GET");
  CHECK(h.target == "/metrics?x=1");
  CHECK(h.version == "HTTP/1.1");
  CHECK(h.size == req.size() - 4);
  for (std::size_t n = 0; n < h.size; ++n)
    CHECK(parse_request_head(req.substr(0, n)).state == status::need_more);
  CHECK(parse_request_head("GET / HTTP/1.0\n\n").state == status::complete);
  CHECK(parse_request_head("get / HTTP/1.1\r\n\r\n").state == status::bad);
  CHECK(parse_request_head("GET  / HTTP/1.1\r\n\r\n").state == status::bad);
  CHECK(parse_request_head("GET / HTTP/2.0\r\n").state == status::bad);
  CHECK(parse_request_head("GET / HTTP/1.10\r\n").state == status::bad);
  CHECK(parse_request_head("\x16\x03\x01").state == status::bad); // TLS to a plain port
  CHECK(parse_request_head("GET / HTTP/2").state == status::bad); // refused before its line ends
}

namespace {

// A blocking loopback client run on its own thread while the loop serves.
std::string fetch(const socket_address& to, const std::string& request) {
  const int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket failed";
  if (::connect(fd, to.data(), to.size()) != 0) {
    ::close(fd);
    return "connect failed";
  }
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string serve_one(const std::string& request, std::uint64_t* requests = nullptr) {
  event_loop loop;
  metrics_http http(loop, *socket_address::parse("127.0.0.1:0"),
                    [] { return std::string("detour_up 1\n"); });
  std::string answer;
  std::atomic<bool> done = false;
  std::thread client([&] {
    answer = fetch(http.local_address(), request);
    done = true;
  });
  const timestamp end = monotonic_now() + 10 * nanoseconds_per_second;
  while (monotonic_now() < end) {
    loop.run_once(monotonic_now() + 10 * nanoseconds_per_millisecond);
    if (http.requests() > 0 && done) break;
  }
  client.join();
  if (requests) *requests = http.requests();
  return answer;
}

} // namespace

TEST_CASE("metrics_http: GET /metrics answers the exposition, one request per connection",
          "[metrics][http]") {
  std::uint64_t n = 0;
  const std::string a = serve_one("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &n);
  CHECK(a.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(a.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != std::string::npos);
  CHECK(a.find("Content-Length: 12\r\n") != std::string::npos);
  CHECK(a.find("Connection: close\r\n") != std::string::npos);
  CHECK(a.ends_with("\r\n\r\ndetour_up 1\n"));
  CHECK(n == 1);
}

TEST_CASE("metrics_http: other paths, methods and garbage get 404, 405 and 400",
          "[metrics][http]") {
  CHECK(serve_one("GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
  CHECK(serve_one("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
  CHECK(serve_one("\x16\x03\x01\x02\x00").starts_with("HTTP/1.1 400 Bad Request\r\n"));
  const std::string head = serve_one("HEAD /metrics HTTP/1.1\r\n\r\n");
  CHECK(head.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(head.ends_with("\r\n\r\n")); // no body
}
