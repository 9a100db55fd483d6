// SPDX-License-Identifier: MIT
// cli/serve.cpp: `detour serve`, the pass-through detour server for g3proxy: options and
// --help, development certificates on first start, signals (drain, reload), the workers and the
// run loop.
#include "args.hpp"
#include "certs.hpp"
#include "commands.hpp"
#include "event_loop.hpp"
#include "hook.hpp"
#include "inspection.hpp"
#include "log.hpp"
#include "qlog.hpp"
#include "serve_config.hpp"
#include "server.hpp"
#include "service_notify.hpp"
#include "tls.hpp"
#include "workers.hpp"

#include <fmt/core.h>

#include <csignal>
#include <ctime>
#include <filesystem>

namespace detour::cli {

namespace {

constexpr std::string_view serve_help = R"(usage: detour serve [options]

Runs a pass-through detour server for g3proxy's stream detour protocol: every task is answered
(continue, by default, or as a --policy decides) and both of its streams are echoed back byte
for byte, so g3proxy relays as if the server were not there. Logs go to stderr, one line per
connection and per task; --audit, --capture and --metrics record what the tasks did.

With no --cert, a development CA and a server certificate for 127.0.0.1, ::1 and localhost are
made on first start in the state folder and reused afterwards; the CA path and a g3proxy
configuration snippet are printed.

options:
  --listen ADDR:PORT     where to listen (UDP); repeatable; IPv6 in brackets
                         (default 127.0.0.1:2888, g3proxy's default port)
  --cert FILE            PEM certificate chain (server first, then intermediates)
  --key FILE             PEM private key of --cert (ECDSA, RSA or Ed25519)
  --client-ca FILE       PEM CA certificates: require a client certificate that chains to
                         one of them (mutual TLS); without it no client certificate is asked
  --alpn NAME[,NAME...]  accept only these ALPN names when a client offers ALPN; a client
                         offering none (g3proxy) is always accepted (default: accept any
                         offer, selecting its first name)
  --action ACTION        continue | bypass | block: the answer to every task (default continue)
  --workers N            event loops on as many threads, each with its own sockets on every
                         --listen address (SO_REUSEPORT); the kernel hands each packet to
                         the worker its connection ID names. 0: one per core (default 0);
                         1: a single loop. On a host shared with a busy process (g3proxy
                         itself), give it the cores that process leaves
  --placement HOW        where new connections go with several workers: pack fills the
                         lowest-numbered worker that keeps up (while busy, its packets wait
                         under 2 ms) before the next, so a light load wakes one thread, not
                         all; spread lets the kernel hash clients' addresses and ports over
                         all of them (equal shares, for long heavy tasks on few
                         connections) (default pack)
  --max-connections N    connections at once, all workers together; more are refused
                         (default 4096)
  --max-streams N        concurrent streams a client may open per connection, raised again as
                         streams close; g3proxy needs 2 per task (default 128, at least 64)
  --idle-timeout DUR     QUIC idle timeout; above g3proxy's 60 s so its value rules
                         (default 120s). At least 20s: g3proxy pings an idle connection
                         every 10s, and a timeout near that drops its pooled connections
  --header-timeout DUR   a stream must deliver its header in this time (default 10s,
                         at least 1s)
  --pair-timeout DUR     a continued task waits this long for its south stream (default 30s,
                         g3proxy's own stream open timeout; at least 1s)
  --drain-timeout DUR    on SIGINT/SIGTERM, running tasks may finish for this long (default 30s)
  --max-header-size SIZE  largest PROXY v2 header accepted (default 4096; g3proxy's are at
                         most 536)
  --max-payload-size SIZE  largest north payload accepted (default 64k)
  --stream-window SIZE   receive window per stream (default 256k)
  --connection-window SIZE  receive window per connection (default 4m); also caps the echo
                         it keeps unacknowledged (at least 32 x --send-buffer)
  --send-buffer SIZE     unacknowledged bytes kept per stream (default 256k)
  --max-udp-payload SIZE  largest UDP payload sent, reached only where path MTU discovery
                         proves the path carries it (default 8952: 9000-byte jumbo frames;
                         Ethernet paths stay at 1452; 1200..16384)
  --retry                validate client addresses with a QUIC Retry first
  --qlog DIR             write a qlog of every connection to DIR (created if missing), one
                         file each named by its connection ID (the log lines' conn= is the
                         start): each packet and frame, RTT and congestion window, for qvis
                         or another qlog viewer; for debugging, as a busy server writes
                         many files and each open connection keeps one open
  --state-dir DIR        folder of the development certificates (default
                         $XDG_STATE_HOME/detour or ~/.local/state/detour)
  --log-level LEVEL      debug | info | warn | error (default info)
  --log-format FORMAT    text | json (default text)
  -h, --help             this text

inspection (docs/policy.md, docs/audit.md, docs/capture.md, docs/metrics.md):
  --policy FILE          rules that decide each task by protocol, upstream host (exact or
                         *.suffix), upstream address (subnet) and port, username and client
                         subnet; first match wins, then the file's default line (instead of
                         --action); reloaded on SIGHUP, a bad file is refused and logged
  --check-policy FILE    check a rules file: print each rule in words, or each error with its
                         line and column; exit 0 when usable, 1 when not
  --audit FILE           one JSON line per task (- for stdout): task id, user, addresses,
                         upstream, protocol, WebSocket fields, rule, action, bytes, duration,
                         how it ended; written off the event loop, reopened on SIGHUP
  --audit-queue SIZE     audit lines waiting for the disk, at most (default 16m); beyond, lines
                         are dropped and counted
  --capture FILE         write each continued task (with --policy: of the rules marked
                         capture) to FILE as a TCP conversation client <-> upstream (pcap, raw
                         IP; Wireshark and tshark decode it); reopened on SIGHUP
  --capture-max-size SIZE  start a new file at this size: FILE becomes FILE.1 (default 256m)
  --capture-files N      capture files kept, the current one included (default 4)
  --capture-queue SIZE   capture bytes waiting for the disk, at most (default 64m)
  --metrics ADDR:PORT    Prometheus metrics at http://ADDR:PORT/metrics (TCP)
  --summary-interval DUR  a metrics.summary log line this often; 0: never (default 60s,
                          else at least 1s)

Durations: 30s, 1500ms, 5m, 2h (a bare number means seconds). Sizes: 512, 16k, 4m, 1g
(powers of 1024).
Signals: SIGINT/SIGTERM drain and exit 0 (audit and capture written out); a second one closes
at once. SIGHUP reloads --cert, --key and --policy and reopens the --audit and --capture files
without dropping connections or tasks. A certificate that has expired, is not yet valid or
ends within 30 days is a warning at start and after each reload (g3proxy refuses a
certificate outside its dates).

Under systemd (Type=notify) or another supervisor that sets NOTIFY_SOCKET, the server says
READY=1 once its sockets are bound, RELOADING=1 then READY=1 around a SIGHUP reload, and
STOPPING=1 when it drains; with WATCHDOG_USEC (WatchdogSec=) it sends WATCHDOG=1 three times a
period while every worker's loop turns (docs/examples/detour.service is a hardened unit).

examples:
  detour serve                                     # loopback, development certificates
  detour serve --listen 0.0.0.0:2888 --listen [::]:2888 \
               --cert /etc/detour/server.pem --key /etc/detour/server.key \
               --client-ca /etc/detour/ca.pem      # production, mutual TLS
  detour serve --action bypass --log-format json  # answer bypass, machine-readable logs
  detour serve --policy /etc/detour/policy.rules --audit /var/log/detour/audit.jsonl \
               --capture /var/lib/detour/mail.pcap --metrics 127.0.0.1:9090
  detour serve --check-policy /etc/detour/policy.rules
  detour serve --audit - --capture /var/lib/detour/tasks.pcap --capture-max-size 64m \
               --capture-files 8 --summary-interval 10s  # at most ~512 MiB of capture
)";

std::vector<std::string> split_list(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const auto comma = s.find(',');
    const auto part = s.substr(0, comma);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    s = s.substr(comma + 1);
  }
  return out;
}

// Parses the options into |cfg|; returns false after printing --help.
bool parse_options(args a, serve_config& cfg) {
  bool listen_given = false;
  arg_reader r(a);
  while (r.next()) {
    if (r.is("-h") || r.is("--help")) {
      fmt::print("{}", serve_help);
      return false;
    } else if (r.is("--listen")) {
      const std::string_view v = r.value();
      const auto addr = socket_address::parse(v);
      if (!addr) {
        throw usage_error("--listen wants ADDR:PORT such as 127.0.0.1:2888 or [::1]:2888, not '" +
                          std::string(v) + "'");
      }
      if (!listen_given) cfg.listen.clear();
      listen_given = true;
      if (std::find(cfg.listen.begin(), cfg.listen.end(), *addr) != cfg.listen.end())
        throw usage_error("--listen " + addr->to_string() + " is given twice");
      cfg.listen.push_back(*addr);
    } else if (r.is("--cert")) {
      cfg.certificate_file = r.value();
    } else if (r.is("--key")) {
      cfg.private_key_file = r.value();
    } else if (r.is("--client-ca")) {
      cfg.client_ca_file = r.value();
    } else if (r.is("--alpn")) {
      auto names = split_list(r.value());
      if (names.empty()) throw usage_error("--alpn needs at least one name (NAME[,NAME...])");
      for (auto& n : names) cfg.alpn.push_back(std::move(n));
    } else if (r.is("--action")) {
      const std::string_view v = r.value();
      if (v == "continue") {
        cfg.decision = detour::action::proceed;
      } else if (v == "bypass") {
        cfg.decision = detour::action::bypass;
      } else if (v == "block") {
        cfg.decision = detour::action::block;
      } else {
        throw usage_error("--action wants continue, bypass or block, not '" + std::string(v) + "'");
      }
      cfg.inspect.action_given = true;
    } else if (r.is("--workers")) {
      cfg.workers = r.number(0, server_group::max_workers);
    } else if (r.is("--placement")) {
      const std::string_view v = r.value();
      if (v == "pack") {
        cfg.placement = serve_config::placement::pack;
      } else if (v == "spread") {
        cfg.placement = serve_config::placement::spread;
      } else {
        throw usage_error("--placement wants pack or spread, not '" + std::string(v) + "'");
      }
    } else if (r.is("--max-connections")) {
      cfg.max_connections = r.number(1, 1'000'000);
    } else if (r.is("--max-streams")) {
      // Below 64 a g3proxy connection would wait for stream credit (issue: tasks hang 30 s).
      cfg.max_streams = r.number(64, 1u << 20);
    } else if (r.is("--idle-timeout")) {
      cfg.idle_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--header-timeout")) {
      cfg.header_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--pair-timeout")) {
      cfg.pair_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--drain-timeout")) {
      cfg.drain_timeout = parse_duration(r.name(), r.value());
    } else if (r.is("--max-header-size")) {
      cfg.max_header_size = r.size(16 + 12, 65535 + 16);
    } else if (r.is("--max-payload-size")) {
      cfg.max_payload_size = r.size(0, 1u << 24);
    } else if (r.is("--stream-window")) {
      cfg.stream_window = r.size(std::uint64_t{16} * 1024, 1u << 30);
    } else if (r.is("--connection-window")) {
      cfg.connection_window = r.size(std::uint64_t{64} * 1024, 1ull << 34);
    } else if (r.is("--send-buffer")) {
      cfg.send_buffer = r.size(std::uint64_t{16} * 1024, 1u << 30);
    } else if (r.is("--max-udp-payload")) {
      cfg.max_udp_payload =
          r.size(serve_config::min_udp_payload, serve_config::max_udp_payload_limit);
    } else if (r.is("--retry")) {
      r.flag();
      cfg.retry = true;
    } else if (r.is("--qlog")) {
      cfg.qlog_dir = r.value();
      if (cfg.qlog_dir.empty()) throw usage_error("--qlog wants a directory");
    } else if (r.is("--state-dir")) {
      cfg.state_dir = r.value();
    } else if (r.is("--log-level")) {
      const std::string_view v = r.value();
      const auto l = parse_log_level(v);
      if (!l) throw usage_error("--log-level wants debug, info, warn or error");
      cfg.level = *l;
    } else if (r.is("--log-format")) {
      const auto f = parse_log_format(r.value());
      if (!f) throw usage_error("--log-format wants text or json");
      cfg.format = *f;
    } else if (parse_inspection_option(r, cfg.inspect)) {
      // --policy, --audit, --capture, --metrics, ... (inspection.cpp)
    } else {
      r.unknown();
    }
  }
  check_inspection_options(cfg.inspect);
  if (cfg.certificate_file.empty() != cfg.private_key_file.empty()) {
    throw usage_error("--cert and --key go together");
  }
  // A header arrives in one flight, a south stream one round trip after our answer: below a
  // second, a slow path or a lost packet would make a healthy task fail.
  if (cfg.header_timeout < nanoseconds_per_second)
    throw usage_error("--header-timeout must be at least 1s (0 would reset every stream)");
  if (cfg.pair_timeout < nanoseconds_per_second)
    throw usage_error("--pair-timeout must be at least 1s (0 would reset every continued task)");
  if (cfg.idle_timeout < min_idle_timeout) {
    throw usage_error("--idle-timeout must be at least 20s: g3proxy sends a keep-alive every 10s "
                      "on an idle connection, and a timeout that close to it drops g3proxy's "
                      "pooled connections");
  }
  return true;
}

// The development certificates: made on first start, reused afterwards. Says where they are;
// returns the CA certificate's path for the g3proxy snippet.
std::string use_development_certs(serve_config& cfg) {
  const std::filesystem::path dir =
      cfg.state_dir.empty() ? default_state_dir() : std::filesystem::path(cfg.state_dir);
  bool created = false;
  const cert_set_paths paths = ensure_development_certs(dir, created);
  cfg.certificate_file = paths.server_certificate.string();
  cfg.private_key_file = paths.server_key.string();
  fmt::print("detour serve: {} development certificates in {}\n", created ? "created" : "using the",
             dir.string());
  // g3proxy reads the path from its own working directory: give it an absolute one.
  std::error_code ec;
  const std::filesystem::path ca = std::filesystem::absolute(paths.ca_certificate, ec);
  if (!std::filesystem::exists(ca, ec)) {
    fmt::print("  CA certificate: none in {} (the certificates there were not made by detour\n"
               "  serve): give g3proxy the CA that issued {}\n",
               dir.string(), cfg.certificate_file);
    return {};
  }
  fmt::print("  CA certificate (give it to g3proxy): {}\n", ca.string());
  return ca.string();
}

// g3proxy refuses a certificate outside its validity period and says so only in its own log
// (here the handshake ends with the client's alert): say it at start, on each reload, and a
// month ahead.
void check_certificate_dates(logger& log, const std::string& file) {
  const auto v = read_certificate_validity(file);
  if (!v) return;
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  const auto date = [](std::int64_t t) {
    const std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    ::gmtime_r(&tt, &tm);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  };
  constexpr std::int64_t day = 86400;
  const certificate_dates state = classify_dates(*v, now);
  if (state == certificate_dates::not_yet_valid) {
    log.warn("server.cert_not_yet_valid",
             {{"cert", file},
              {"not_before", date(v->not_before)},
              {"hint", "clients refuse it until then; check this host's clock"}});
  } else if (state == certificate_dates::expired) {
    log.warn("server.cert_expired", {{"cert", file},
                                     {"not_after", date(v->not_after)},
                                     {"hint", "clients refuse it; renew it and send SIGHUP"}});
  } else if (state == certificate_dates::expires_soon) {
    log.warn(
        "server.cert_expires_soon",
        {{"cert", file}, {"not_after", date(v->not_after)}, {"days", (v->not_after - now) / day}});
  }
}

// What to paste into g3proxy, once the server is bound (a port of 0 is known by then). The
// development certificate names 127.0.0.1, ::1 and localhost only: an unspecified address
// (0.0.0.0, ::) becomes the loopback address of its family, and any other address the
// certificate does not name gets a note on the certificate a g3proxy there needs.
void print_g3proxy_snippet(socket_address peer, const std::string& ca_file) {
  std::string note;
  if (peer.is_unspecified()) {
    const std::uint16_t port = peer.port();
    peer = *socket_address::parse(peer.family() == AF_INET6 ? "[::1]:0" : "127.0.0.1:0");
    peer.set_port(port);
    note = "\n  Note: this peer is for a g3proxy on this host. The development certificate names\n"
           "  127.0.0.1, ::1 and localhost only; for a g3proxy on another host make one that\n"
           "  names the address it connects to (detour cert --out DIR --ip ADDR), then give\n"
           "  detour serve --cert DIR/server.pem --key DIR/server.key (docs/g3proxy.md).\n";
  } else if (peer.host() != "127.0.0.1" && peer.host() != "::1") {
    note = fmt::format(
        "\n  Note: the development certificate names 127.0.0.1, ::1 and localhost only, not\n"
        "  {0}, so g3proxy will refuse it. Make one that does\n"
        "  (detour cert --out DIR --ip {0}), then give detour serve\n"
        "  --cert DIR/server.pem --key DIR/server.key (docs/g3proxy.md).\n",
        peer.host());
  }
  fmt::print("\ng3proxy auditor configuration:\n"
             "  stream_detour_service:\n"
             "    peer: {}\n"
             "    tls_client:\n"
             "      ca_certificate: {}\n"
             "  h2_inspect_policy: detour\n"
             "  websocket_inspect_policy: detour\n"
             "  smtp_inspect_policy: detour\n"
             "  imap_inspect_policy: detour\n{}\n",
             peer.to_string(), ca_file, note);
  std::fflush(stdout);
}

} // namespace

int run_serve(args a) {
  return run_serve(a, serve_extensions{});
}

int run_serve(args a, const serve_extensions& extensions) {
  serve_config cfg;
  try {
    if (!parse_options(a, cfg)) return 0;
  } catch (const usage_error& e) {
    fmt::print(stderr, "{}: {}\n", extensions.name, e.what());
    return 2;
  }
  if (!cfg.inspect.check_policy.empty())
    return check_policy_command(cfg.inspect.check_policy, stdout);
  logger log(cfg.level, cfg.format);
  try {
    std::string development_ca; // with development certificates: the CA g3proxy needs
    if (cfg.certificate_file.empty()) development_ca = use_development_certs(cfg);
    if (!cfg.qlog_dir.empty()) prepare_qlog_dir(cfg.qlog_dir); // before any connection
    auto make_tls = [&cfg] {
      tls_server_config t;
      t.certificate_file = cfg.certificate_file;
      t.private_key_file = cfg.private_key_file;
      t.client_ca_file = cfg.client_ca_file;
      t.alpn = cfg.alpn;
      return tls_context::server(t);
    };
    event_loop loop;
    // Policy, audit, capture, metrics: before the servers (their tasks report to them) and gone
    // after them (tasks cut short by the exit are still recorded).
    inspection features(cfg.inspect, loop, log, extensions.hook);
    cfg.features = &features;
    const std::size_t workers = cfg.workers == 0 ? default_worker_count() : cfg.workers;
    worker_group srv(loop, cfg, make_tls(), log, workers);
    features.set_gauges([&srv] {
      metrics_gauges g;
      const worker_totals t = srv.totals();
      g.connections_accepted = t.connections;
      g.connections_open = t.open;
      g.connections_refused = t.refused;
      g.retries = t.retries;
      g.stateless_resets = t.stateless_resets;
      g.version_negotiations = t.version_negotiations;
      g.packets_forwarded = t.forwarded;
      return g;
    });
    std::string addrs;
    for (const auto& l : srv.local_addresses()) addrs += (addrs.empty() ? "" : ",") + l.to_string();
    if (!development_ca.empty())
      print_g3proxy_snippet(srv.local_addresses().front(), development_ca);
    check_certificate_dates(log, cfg.certificate_file);
    // With --policy the rules decide: --action is not used.
    const std::string_view answers =
        cfg.inspect.policy_file.empty() ? to_string(cfg.decision) : std::string_view("policy");
    log.info("server.listening", {{"addresses", addrs},
                                  {"action", answers},
                                  {"mutual_tls", !cfg.client_ca_file.empty()},
                                  {"retry", cfg.retry},
                                  {"gso", srv.gso_available()},
                                  {"workers", srv.size()},
                                  {"placement", srv.placement()}});

    if (!cfg.qlog_dir.empty()) log.info("server.qlog", {{"dir", cfg.qlog_dir}});

    // A service manager that started us with NOTIFY_SOCKET (systemd's Type=notify) learns that
    // the sockets are bound, and of reloads and the shutdown. A failure costs nothing but a
    // warning, once.
    service_notifier notifier;
    bool notify_warned = false;
    auto warn_once = [&] {
      if (notify_warned || notifier.problem().empty()) return;
      notify_warned = true;
      log.warn("service.notify_failed", {{"error", notifier.problem()}});
    };
    auto notify = [&](bool sent) {
      if (!sent) warn_once();
    };
    if (notifier.enabled()) warn_once(); // a WATCHDOG_USEC it cannot use
    const std::string status = fmt::format("listening on {}, {} workers", addrs, srv.size());

    // The service manager's watchdog (systemd's WatchdogSec=): WATCHDOG=1 three times a period,
    // each only when every worker's loop ran the previous heartbeat. A stalled worker withholds
    // it, and the manager restarts the service; one late round alone does not.
    std::unique_ptr<timer> watchdog;
    bool stall_logged = false;
    if (notifier.enabled() && notifier.watchdog_period().count() > 0) {
      const timestamp tick = static_cast<timestamp>(notifier.watchdog_period().count()) * 1000 / 3;
      watchdog = std::make_unique<timer>(loop, [&, tick] {
        const std::vector<std::size_t> late = srv.heartbeat();
        if (late.empty()) {
          stall_logged = false;
          notify(notifier.watchdog());
        } else if (!stall_logged) {
          stall_logged = true;
          std::string which;
          for (const std::size_t w : late) which += (which.empty() ? "" : ",") + std::to_string(w);
          log.warn("service.worker_stalled",
                   {{"workers", which}, {"ms", tick / nanoseconds_per_millisecond}});
        }
        watchdog->arm_in(tick);
      });
      log.info("service.watchdog", {{"period_ms", notifier.watchdog_period().count() / 1000},
                                    {"tick_ms", tick / nanoseconds_per_millisecond}});
    }

    signal_watch signals(loop, {SIGINT, SIGTERM, SIGHUP}, [&](int sig) {
      if (sig == SIGHUP) {
        notify(notifier.reloading());
        features.reload(); // policy, audit and capture files
        try {
          srv.replace_tls(make_tls());
          log.info("server.reloaded", {{"cert", cfg.certificate_file}});
          check_certificate_dates(log, cfg.certificate_file);
        } catch (const tls_error& e) {
          log.error("server.reload_failed", {{"error", e.what()}});
        }
        notify(notifier.ready(status));
        return;
      }
      notify(notifier.stopping());
      srv.begin_shutdown([&] { loop.stop(); });
    });
    srv.start(); // after the signal watch: the worker threads inherit a mask with them blocked
    notify(notifier.ready(status));
    if (watchdog) watchdog->arm_in(0);
    loop.run();
    const worker_totals t = srv.totals();
    log.info("server.stopped", {{"connections", t.connections}, {"forwarded", t.forwarded}});
    return 0;
  } catch (const cert_error& e) {
    log.error("server.failed", {{"error", e.what()}});
  } catch (const tls_error& e) {
    log.error("server.failed", {{"error", e.what()}});
  } catch (const std::system_error& e) {
    log.error("server.failed", {{"error", e.what()}});
  } catch (const std::runtime_error& e) {
    log.error("server.failed", {{"error", e.what()}}); // an unusable policy, capture file
  }
  return 1;
}

} // namespace detour::cli
