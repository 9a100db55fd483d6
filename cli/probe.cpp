// SPDX-License-Identifier: MIT
// cli/probe.cpp: `detour probe`: options, help and the dispatch to its modes (see probe.hpp).
#include "probe.hpp"

#include "args.hpp"
#include "commands.hpp"
#include "probe_pattern.hpp"
#include "probe_script.hpp"
#include "qlog.hpp"

#include <detour/websocket_payload.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace detour::cli {

namespace {

using namespace probe;

constexpr std::string_view probe_help = R"(usage: detour probe MODE [options]

A client that behaves like g3proxy's stream detour client, to test a detour server before
g3proxy is pointed at it, or to test a server of your own. It speaks QUIC v1 with TLS 1.3, no
ALPN (unless --alpn), verifies the server certificate against the server's IP address (or
--tls-name), keeps a pool of connections that serve 16 tasks each, and sends g3proxy's exact
headers. Against a pass-through server (the default expectation) every relayed byte must come
back unchanged on the stream it was sent on.

modes:
  check        conformance: one line per check (protocols, IPv4/IPv6 addresses, usernames,
               WebSocket payload, empty and large relays, close ordering, a full reuse cycle,
               match ids per connection, stream credit, session resumption)
  load         many tasks at once; tasks/s, latency p50/p99/max, throughput, failures by kind
  throughput   one or --streams K tasks pushing --bytes each way; Gbit/s and client CPU
  handshakes   a new connection (full handshake) and one small task per task: connections/s
  abuse        hostile and malformed input, each case followed by a normal task on the same
               connection and on a new one; what the server did, how fast
  hold         --connections idle connections opened and held --hold long, to measure a
               server's memory per connection

options (all modes):
  --server HOST:PORT      the detour server (default 127.0.0.1:2888); IPv6 in brackets
  --ca FILE               PEM CA certificates that verify the server (default: system roots)
  --tls-name NAME         name to verify the certificate against (default: the server's IP
                          address as text, as g3proxy; a DNS name is also sent as SNI)
  --cert FILE --key FILE  client certificate and key for mutual TLS
  --alpn NAME[,NAME...]   offer ALPN (g3proxy offers none)
  --tls-ciphers LIST      offer only these TLS 1.3 suites, in order, ':'-separated:
                          TLS13-AES128-GCM-SHA256, TLS13-AES256-GCM-SHA384,
                          TLS13-CHACHA20-POLY1305-SHA256 (default: all three; g3proxy's
                          rustls offers AES-256, AES-128, then ChaCha20)
  --no-verify             do not verify the server certificate (diagnostics only)
  --no-resume             no TLS session resumption (g3proxy resumes)
  --connections N         connections kept open (default 32, g3proxy's min_idle_count)
  --reuse-limit N         tasks per connection before it closes "finished" (default 16)
  --expect-action A       continue | bypass | block | any: the answer every task expects
                          (default continue, with every byte echoed back)
  --protocol NAME         E4 protocol of load, throughput and handshake tasks: http_2,
                          websocket, smtp, imap or any other name (default http_2)
  --response-timeout DUR  wait for the 4-byte answer (default 60s, g3proxy's request_timeout)
  --idle-timeout DUR      a relay or close without progress fails (default 60s)
  --handshake-timeout DUR QUIC handshake (default 10s)
  --stream-open-timeout DUR  wait for stream credit (default 30s, as g3proxy)
  --max-udp-payload N     largest UDP payload sent, reached only where path MTU discovery
                          proves the path carries it (default 1452, g3proxy's quinn; 8952 for
                          jumbo frames and loopback; 1200..16384)
  --qlog DIR              write a qlog of every connection to DIR (created if missing), one
                          file each named by its connection ID: each packet and frame, RTT
                          and congestion window, for qvis or another qlog viewer; a server's
                          qlog of the same connection has the same group_id
  --deadline DUR          the whole run ends by then (default: check 5m, abuse 10m, others 10m)
  --seed N                relay data and abuse garbage are derived from it (default 1)
  --json                  print one JSON document (stdout) instead of text
  --log-level LEVEL       debug | info | warn | error | off (default warn; logs go to stderr)
  -h, --help              this text

load and handshakes:
  --tasks N               tasks to run (default 1000; handshakes: 200)
  --concurrency N         tasks in flight at once (default 64; handshakes: 8)
  --rate N                start N tasks per second on a fixed schedule (open loop) instead
                          of a new one as each ends; --concurrency still caps those in
                          flight, and latencies count from when each task was due, so a
                          server that falls behind shows in p99 (the latency at a given load,
                          where the default measures the most the server can do)
  --bytes SIZE            relay bytes each way per task (default 16k; handshakes: 1k)
  --relay-data KIND       load: pattern (default: --bytes of seeded data) or protocol: a real
                          conversation of --protocol (smtp, imap, http_2, websocket), in turns,
                          for servers that inspect or capture what they relay
throughput:
  --streams K             tasks at once (default 1)
  --bytes SIZE            bytes each way per task (default 64m)
hold:
  --connections N         connections to open and hold (up to 20000; each has its own socket)
  --concurrency N         handshakes at once while opening them (default 64)
  --hold DUR              how long to hold them, idle (default 10s); a --deadline that
                          comes first cuts the hold, which then fails (kind deadline)
abuse:
  --case TEXT             run only the cases whose name contains TEXT (case-sensitive; none
                          matching is a usage error that lists the names)
  --abuse-wait DUR        how long to watch the server's reaction (default 5s)
  --abuse-streams N       streams opened and never written (default 300)

Sizes: 512, 16k, 4m, 1g (powers of 1024). Durations: 30s, 1500ms, 5m.
Exit status: 0 all passed, 1 something failed, 2 usage error, 3 could not run.

examples:
  detour probe check                                   # local `detour serve`, dev CA
  detour probe check --server 10.0.0.5:2888 --ca /etc/detour/ca.pem \
                     --cert /etc/detour/client.pem --key /etc/detour/client.key
  detour probe check --expect-action block --json      # a server that blocks everything
  detour probe load --tasks 20000 --concurrency 256 --bytes 64k
  detour probe load --tasks 60000 --rate 20000 --bytes 1k  # p99 at 20,000 tasks/s
  detour probe throughput --streams 4 --bytes 256m
  detour probe handshakes --tasks 1000 --concurrency 16
  detour probe abuse --case header --abuse-wait 2s
)";

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto comma = s.find(',');
    if (const auto part = s.substr(0, comma); !part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    s = s.substr(comma + 1);
  }
  return out;
}

struct parsed {
  probe_options options;
  log_level level = log_level::warn;
  bool help = false;
  bool tasks_given = false, concurrency_given = false, bytes_given = false;
};

parsed parse(args a) {
  parsed p;
  probe_options& o = p.options;
  o.pool.quic.server = *socket_address::parse("127.0.0.1:2888");
  if (a.empty())
    throw usage_error("which mode? check, load, throughput, handshakes, abuse or hold");
  const std::string_view mode = a[0];
  if (mode == "-h" || mode == "--help" || mode == "help") {
    p.help = true;
    return p;
  }
  if (mode != "check" && mode != "load" && mode != "throughput" && mode != "handshakes" &&
      mode != "abuse" && mode != "hold") {
    throw usage_error("unknown mode '" + std::string(mode) +
                      "' (check, load, throughput, handshakes, abuse, hold)");
  }
  o.mode = mode;
  arg_reader r(a.subspan(1));
  while (r.next()) {
    if (r.is("-h") || r.is("--help")) {
      p.help = true;
    } else if (r.is("--server")) {
      const std::string_view v = r.value();
      const auto addr = socket_address::parse(v);
      if (!addr || v.find(':') == std::string_view::npos)
        throw usage_error("--server wants HOST:PORT with a numeric host, like 127.0.0.1:2888 "
                          "or [::1]:2888, not '" +
                          std::string(v) + "'");
      o.pool.quic.server = *addr;
    } else if (r.is("--ca")) {
      o.tls.ca_file = r.value();
    } else if (r.is("--tls-name")) {
      o.pool.quic.tls_name = r.value();
    } else if (r.is("--cert")) {
      o.tls.certificate_file = r.value();
    } else if (r.is("--key")) {
      o.tls.private_key_file = r.value();
    } else if (r.is("--alpn")) {
      o.tls.alpn = split_list(r.value());
      if (o.tls.alpn.empty()) throw usage_error("--alpn needs at least one name (NAME[,NAME...])");
    } else if (r.is("--tls-ciphers")) {
      o.tls.cipher_suites = r.value();
      // Checked here, so a typo is a usage error (2), not a failure to set up TLS (3).
      std::string_view rest = o.tls.cipher_suites;
      if (rest.empty()) throw usage_error("--tls-ciphers needs at least one suite");
      while (true) {
        const std::size_t colon = rest.find(':');
        const std::string_view suite = rest.substr(0, colon);
        if (suite != "TLS13-AES128-GCM-SHA256" && suite != "TLS13-AES256-GCM-SHA384" &&
            suite != "TLS13-CHACHA20-POLY1305-SHA256") {
          throw usage_error("--tls-ciphers: unknown suite '" + std::string(suite) +
                            "' (TLS13-AES128-GCM-SHA256, TLS13-AES256-GCM-SHA384 or "
                            "TLS13-CHACHA20-POLY1305-SHA256, separated by ':')");
        }
        if (colon == std::string_view::npos) break;
        rest.remove_prefix(colon + 1);
      }
    } else if (r.is("--no-verify")) {
      r.flag();
      o.tls.verify_server = false;
    } else if (r.is("--no-resume")) {
      r.flag();
      o.tls.resume_sessions = false;
    } else if (r.is("--connections")) {
      o.pool.connections = r.number(1, 20000);
    } else if (r.is("--reuse-limit")) {
      o.pool.reuse_limit = r.number(1, 65536);
    } else if (r.is("--expect-action")) {
      const std::string_view v = r.value();
      if (v == "continue")
        o.expect = detour::action::proceed;
      else if (v == "bypass")
        o.expect = detour::action::bypass;
      else if (v == "block")
        o.expect = detour::action::block;
      else if (v == "any")
        o.expect.reset();
      else
        throw usage_error("--expect-action wants continue, bypass, block or any, not '" +
                          std::string(v) + "'");
    } else if (r.is("--protocol")) {
      o.protocol = r.value();
      if (o.protocol.empty()) throw usage_error("--protocol wants a name");
    } else if (r.is("--response-timeout")) {
      o.response_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--idle-timeout")) {
      o.idle_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--handshake-timeout")) {
      o.pool.quic.handshake_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--max-udp-payload")) {
      o.pool.quic.max_udp_payload = r.size(1200, std::size_t{16} * 1024);
    } else if (r.is("--qlog")) {
      o.pool.quic.qlog_dir = r.value();
      if (o.pool.quic.qlog_dir.empty()) throw usage_error("--qlog wants a directory");
    } else if (r.is("--stream-open-timeout")) {
      o.pool.stream_open_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--deadline")) {
      o.deadline = parse_duration(r.name(), r.value());
      if (o.deadline == 0)
        throw usage_error("--deadline must be above 0 (leave it out for the default)");
    } else if (r.is("--seed")) {
      o.seed = r.number(0, UINT64_MAX);
    } else if (r.is("--json")) {
      r.flag();
      o.json = true;
    } else if (r.is("--log-level")) {
      const auto level = parse_log_level(r.value());
      if (!level) throw usage_error("--log-level wants debug, info, warn, error or off");
      p.level = *level;
    } else if (r.is("--tasks")) {
      o.tasks = r.number(1, 100'000'000);
      p.tasks_given = true;
    } else if (r.is("--concurrency")) {
      o.concurrency = r.number(1, 100'000);
      p.concurrency_given = true;
    } else if (r.is("--rate")) {
      o.rate = r.number(1, 10'000'000);
    } else if (r.is("--bytes")) {
      o.bytes = r.size(0, std::uint64_t{1} << 40); // a terabyte per task: beyond any test
      p.bytes_given = true;
    } else if (r.is("--relay-data")) {
      const std::string_view v = r.value();
      if (v != "pattern" && v != "protocol")
        throw usage_error("--relay-data wants pattern or protocol, not '" + std::string(v) + "'");
      o.protocol_data = v == "protocol";
    } else if (r.is("--streams")) {
      o.streams = r.number(1, 10'000);
    } else if (r.is("--hold")) {
      o.hold = parse_duration(r.name(), r.value());
    } else if (r.is("--case")) {
      o.only = r.value();
    } else if (r.is("--abuse-wait")) {
      o.abuse_wait = parse_duration(r.name(), r.value());
    } else if (r.is("--abuse-streams")) {
      o.abuse_streams = r.number(1, 100'000);
    } else {
      r.unknown();
    }
  }
  if (o.tls.certificate_file.empty() != o.tls.private_key_file.empty())
    throw usage_error("--cert and --key go together");
  if (o.response_timeout == 0 || o.idle_timeout == 0 || o.pool.quic.handshake_timeout == 0)
    throw usage_error("timeouts must be longer than 0");
  // Mode defaults that differ from load's.
  if (o.mode == "handshakes") {
    if (!p.tasks_given) o.tasks = 200;
    if (!p.concurrency_given) o.concurrency = 8;
    if (!p.bytes_given) o.bytes = 1024;
  }
  if (o.mode == "throughput" && !p.bytes_given) o.bytes = 64 * 1024 * 1024;
  if (o.rate != 0 && o.mode != "load" && o.mode != "handshakes")
    throw usage_error("--rate is for the load and handshakes modes");
  if (o.protocol_data) {
    if (o.mode != "load") throw usage_error("--relay-data protocol is for the load mode");
    if (!protocol_script(o.protocol))
      throw usage_error("--relay-data protocol knows smtp, imap, http_2 and websocket, not '" +
                        o.protocol + "'");
  }
  if (o.mode == "abuse" && !o.only.empty()) {
    const std::vector<std::string> names = abuse_case_names();
    if (std::none_of(names.begin(), names.end(),
                     [&](const std::string& n) { return n.find(o.only) != std::string::npos; })) {
      std::string list;
      for (const auto& n : names) list += "\n  " + n;
      throw usage_error("--case '" + o.only + "' matches no abuse case; the cases are:" + list);
    }
  }
  if (o.deadline == 0) o.deadline = (o.mode == "check" ? 5 : 10) * 60 * nanoseconds_per_second;
  return p;
}

} // namespace

namespace probe {

task_plan base_plan(const probe_options& o) {
  task_plan p;
  p.protocol = o.protocol;
  p.expect = o.expect;
  p.verify_echo = !o.expect || *o.expect == detour::action::proceed;
  p.response_timeout = o.response_timeout;
  p.idle_timeout = o.idle_timeout;
  p.seed = o.seed;
  return p;
}

std::vector<std::uint8_t>
websocket_summary(std::string_view resource,
                  std::span<const std::pair<std::string_view, std::string_view>> headers) {
  std::vector<detour::websocket_header> lines;
  for (const auto& [name, value] : headers) lines.push_back({name, value});
  std::vector<std::uint8_t> out(detour::websocket_payload_size(resource, lines));
  const auto e = detour::serialize_websocket_payload(resource, lines, std::span<std::uint8_t>(out));
  if (!e) throw std::logic_error("websocket summary refused: " + e.error_code().message());
  out.resize(e.size);
  return out;
}

task_plan protocol_plan(const probe_options& o, std::string_view protocol, std::uint64_t index,
                        std::uint64_t bytes) {
  task_plan p = base_plan(o);
  p.protocol = protocol;
  p.seed = o.seed * 1'000'003 + index;
  // A version-4 UUID from the seed and index, like the random ones g3proxy makes.
  const pattern id(p.seed ^ 0x7461736B2D696400ULL);
  for (std::size_t i = 0; i < 16; ++i) p.task_id.bytes[i] = id.at(i);
  p.task_id.bytes[6] = static_cast<std::uint8_t>((p.task_id.bytes[6] & 0x0F) | 0x40);
  p.task_id.bytes[8] = static_cast<std::uint8_t>((p.task_id.bytes[8] & 0x3F) | 0x80);
  // Proxied clients from TEST-NET-1 with a different port per task.
  p.client = {detour::ip_address::v4(192, 0, 2, static_cast<std::uint8_t>(10 + index % 200)),
              static_cast<std::uint16_t>(20000 + index % 40000)};
  p.proxy = {detour::ip_address::v4(192, 0, 2, 1), 3128};
  if (p.verify_echo) p.client_bytes = p.remote_bytes = bytes;
  if (o.protocol_data) {
    p.script = protocol_script(protocol);
    if (p.script) {
      p.client_bytes = p.script->client.size();
      p.remote_bytes = p.script->remote.size();
    }
  }
  if (protocol == "websocket") {
    p.upstream = "chat.example.com:443";
    static constexpr std::pair<std::string_view, std::string_view> headers[] = {
        {"host", "chat.example.com"},
        {"origin", "https://chat.example.com"},
        {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
        {"sec-websocket-version", "13"},
        {"sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
        {"sec-websocket-protocol", "mqtt"},
    };
    p.payload = websocket_summary("/socket", headers);
  } else if (protocol == "smtp") {
    p.upstream = "mail.example.com:25";
    p.remote_speaks_first = true;
  } else if (protocol == "imap") {
    p.upstream = "mail.example.com:993";
    p.remote_speaks_first = true;
  } else {
    p.upstream = "www.example.com:443";
  }
  return p;
}

} // namespace probe

int run_probe(args a) {
  parsed p;
  try {
    p = parse(a);
  } catch (const usage_error& e) {
    fmt::print(stderr, "detour probe: {}\n", e.what());
    return exit_usage;
  }
  if (p.help) {
    fmt::print("{}", probe_help);
    return exit_passed;
  }
  probe_options& o = p.options;
  // A server that vanishes must not kill the probe with SIGPIPE; UDP sends report errors.
  std::signal(SIGPIPE, SIG_IGN);
  logger log(p.level, log_format::text, stderr);
  try {
    if (o.mode == "handshakes") o.tls.resume_sessions = false; // a full handshake each time
    qlog_trouble qlog_problems;
    if (!o.pool.quic.qlog_dir.empty()) {
      prepare_qlog_dir(o.pool.quic.qlog_dir);
      o.pool.quic.qlog_problems = &qlog_problems;
    }
    const tls_context tls = tls_context::client(o.tls);
    int status = exit_passed;
    {
      event_loop loop;
      probe_context ctx{o, loop, tls, log, monotonic_now() + o.deadline};
      if (o.mode == "check") {
        status = run_check(ctx);
      } else if (o.mode == "hold") {
        status = run_hold(ctx);
      } else if (o.mode == "load") {
        status = run_load(ctx);
      } else if (o.mode == "throughput") {
        status = run_throughput(ctx);
      } else if (o.mode == "handshakes") {
        status = run_handshakes(ctx);
      } else {
        status = run_abuse(ctx);
      }
    } // every connection is gone, its qlog closed
    if (qlog_problems.connections > 0) {
      fmt::print(stderr,
                 "detour probe: --qlog: {} connection(s) without a complete qlog; the first: {}\n",
                 qlog_problems.connections, qlog_problems.first_error);
    }
    return status;
  } catch (const std::exception& e) {
    fmt::print(stderr, "detour probe: {}\n", e.what());
    return exit_setup_error;
  }
}

} // namespace detour::cli
