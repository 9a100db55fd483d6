// SPDX-License-Identifier: MIT
// cli/probe_check.cpp: `detour probe check`, the conformance suite: each check drives tasks the
// way g3proxy does (PROTOCOL-NOTES: transport, pool, one task, closing, pairing) and prints one
// line, pass or fail, with what was expected and what came for a failure.
#include "probe.hpp"
#include "probe_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace detour::cli::probe {

namespace {

struct check_outcome {
  bool ok = false;
  bool skipped = false;
  std::string detail;

  static check_outcome pass(std::string d = {}) { return {true, false, std::move(d)}; }
  static check_outcome fail(std::string d) { return {false, false, std::move(d)}; }
  static check_outcome skip(std::string d) { return {true, true, std::move(d)}; }
};

struct check_record {
  std::string name;
  check_outcome outcome;
  nanoseconds elapsed = 0;
};

/// Addresses of the proxied client and the proxy, IPv4 or IPv6 (documentation ranges).
void use_family(task_plan& p, bool ipv6, std::uint64_t index) {
  if (!ipv6) return;
  std::array<std::uint8_t, 16> client{0x20, 0x01, 0x0d, 0xb8};
  client[15] = static_cast<std::uint8_t>(0x10 + index % 200);
  std::array<std::uint8_t, 16> proxy{0x20, 0x01, 0x0d, 0xb8};
  proxy[15] = 1;
  p.client = {detour::ip_address::v6(client), p.client.port};
  p.proxy = {detour::ip_address::v6(proxy), 3128};
}

std::string expected_text(const probe_options& o) {
  if (!o.expect) return "any answer";
  if (*o.expect == detour::action::proceed) return "continue, every byte echoed";
  return std::string(detour::to_string(*o.expect));
}

class suite {
public:
  explicit suite(probe_context& ctx) : ctx_(ctx), o_(ctx.options) {}

  /// Runs one check and prints its line (text mode).
  void run(const std::string& name, const std::function<check_outcome()>& body) {
    check_record rec{name, {}, 0};
    const nanoseconds t0 = monotonic_now();
    if (t0 >= ctx_.deadline) {
      rec.outcome = check_outcome::fail("not run: the run's deadline passed (--deadline)");
    } else if (!reachable_) {
      // One summary line for all of them (text mode), not one line each.
      rec.outcome = check_outcome::fail("not run: no connection to the server");
      ++not_run_;
      records_.push_back(std::move(rec));
      return;
    } else {
      try {
        rec.outcome = body();
      } catch (const std::exception& e) {
        rec.outcome = check_outcome::fail(std::string("could not run: ") + e.what());
      }
    }
    rec.elapsed = monotonic_now() - t0;
    if (!o_.json) {
      const char* verdict = rec.outcome.skipped ? "SKIP" : rec.outcome.ok ? "PASS" : "FAIL";
      fmt::print("  {}  {:<68} {:>9}\n", verdict, name, human_duration(rec.elapsed));
      if (!rec.outcome.detail.empty() && (!rec.outcome.ok || rec.outcome.skipped))
        fmt::print("        {}\n", rec.outcome.detail);
      std::fflush(stdout);
    }
    records_.push_back(std::move(rec));
  }

  /// Runs |plans| at once on a fresh pool; results in plan order.
  std::vector<task_result> run_tasks(std::vector<task_plan> plans, pool_config pc) {
    client_pool pool(ctx_.loop, ctx_.tls, std::move(pc), ctx_.log);
    std::vector<task_result> results(plans.size());
    std::size_t done = 0;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      pool.submit(std::move(plans[i]), [&, i](const task_result& r) {
        results[i] = r;
        ++done;
      });
    }
    if (!pool.run_until([&] { return done == results.size(); }, ctx_.deadline))
      pool.shutdown("the run's deadline passed (--deadline)");
    pool.shutdown("finished");
    last_stats_ = pool.stats();
    return results;
  }

  /// Pass when every task passed; otherwise the first failure.
  static check_outcome judge(const std::vector<task_result>& results) {
    for (std::size_t i = 0; i < results.size(); ++i) {
      const task_result& r = results[i];
      if (r.ok()) continue;
      std::string where = results.size() > 1 ? fmt::format("task {}: ", i + 1) : std::string();
      return check_outcome::fail(fmt::format("{}{}: {}", where, to_string(r.error), r.detail));
    }
    return check_outcome::pass();
  }

  pool_config one_connection() const {
    pool_config pc = o_.pool;
    pc.connections = 1;
    return pc;
  }

  task_plan plan(std::string_view protocol, std::uint64_t bytes) {
    return protocol_plan(o_, protocol, next_index_++, bytes);
  }

  bool pass_through() const { return o_.expect && *o_.expect == detour::action::proceed; }

  void set_unreachable() { reachable_ = false; }
  /// Checks skipped because the handshake failed.
  std::size_t not_run() const { return not_run_; }
  const pool_stats& last_stats() const { return last_stats_; }
  const std::vector<check_record>& records() const { return records_; }
  probe_context& ctx() { return ctx_; }
  const probe_options& options() const { return o_; }

private:
  probe_context& ctx_;
  const probe_options& o_;
  std::vector<check_record> records_;
  pool_stats last_stats_;
  std::uint64_t next_index_ = 0;
  bool reachable_ = true;
  std::size_t not_run_ = 0;
};

// --- the checks --------------------------------------------------------------------------------

check_outcome check_handshake(suite& s) {
  probe_context& ctx = s.ctx();
  const probe_options& o = s.options();
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  pooled_connection& c = pool.dial();
  const nanoseconds limit = std::min(ctx.deadline, monotonic_now() + o.pool.quic.handshake_timeout +
                                                       nanoseconds_per_second);
  // Completed on our side, then confirmed by the server: with mutual TLS a refused client
  // certificate only shows as a close after our side completed.
  pool.wait_established(c, limit);
  pool.run_until([&] { return c.quic->confirmed() || c.quic->closed(); }, limit);
  if (!c.quic->confirmed()) {
    const std::string why = c.quic->closed() ? describe(c.quic->close_state())
                                             : "the server did not confirm the handshake in time";
    pool.shutdown("finished");
    s.set_unreachable();
    return check_outcome::fail(why);
  }
  const std::string alpn = c.quic->alpn();
  const auto ms = human_duration(c.quic->stats().handshake_done - c.quic->stats().started);
  pool.shutdown("finished");
  if (o.tls.alpn.empty() && !alpn.empty())
    return check_outcome::fail("no ALPN was offered, yet the server selected '" + alpn + "'");
  if (!o.tls.alpn.empty() && alpn.empty()) {
    return check_outcome::fail("ALPN was offered and the server selected none: a QUIC client "
                               "that offers ALPN, such as g3proxy's rustls, closes such a "
                               "connection (RFC 9001 §8.1)");
  }
  return check_outcome::pass(fmt::format("in {}, ALPN {}", ms, alpn.empty() ? "none" : alpn));
}

check_outcome check_stream_credit(suite& s) {
  probe_context& ctx = s.ctx();
  const probe_options& o = s.options();
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  pooled_connection& c = pool.dial();
  if (!pool.wait_established(c, ctx.deadline)) {
    pool.shutdown("finished");
    return check_outcome::fail(describe(c.quic->close_state()));
  }
  const std::uint64_t granted = c.quic->streams_left();
  pool.shutdown("finished");
  const std::uint64_t needed = 2 * o.pool.reuse_limit;
  if (granted < needed) {
    return check_outcome::fail(fmt::format(
        "the server grants {} bidirectional streams; g3proxy needs 2 per task, {} for a reuse "
        "limit of {} (tasks beyond would wait for its 30 s stream_open_timeout)",
        granted, needed, o.pool.reuse_limit));
  }
  return check_outcome::pass(fmt::format("{} streams granted", granted));
}

check_outcome check_resumption(suite& s) {
  probe_context& ctx = s.ctx();
  const probe_options& o = s.options();
  if (!o.tls.resume_sessions) return check_outcome::skip("--no-resume");
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  pooled_connection& first = pool.dial();
  if (!pool.wait_established(first, ctx.deadline))
    return check_outcome::fail("first connection: " + describe(first.quic->close_state()));
  // TLS 1.3 tickets come after the handshake: give them a moment (bounded).
  const nanoseconds wait = std::min(ctx.deadline, monotonic_now() + 2 * nanoseconds_per_second);
  pool.run_until([&] { return ctx.tls.has_cached_session(); }, wait);
  if (!ctx.tls.has_cached_session()) {
    pool.shutdown("finished");
    return check_outcome::fail("the server sent no session ticket within 2 s (g3proxy resumes "
                               "sessions; without tickets every connection pays a full handshake)");
  }
  pool.close(first);
  pooled_connection& second = pool.dial();
  if (!pool.wait_established(second, ctx.deadline)) {
    const std::string why = describe(second.quic->close_state());
    pool.shutdown("finished");
    return check_outcome::fail("second connection: " + why);
  }
  const bool resumed = second.quic->resumed();
  // A task on the resumed connection must work like any other.
  task_result result;
  bool done = false;
  pool.submit_on(second, s.plan("http_2", 4096), [&](const task_result& r) {
    result = r;
    done = true;
  });
  pool.run_until([&] { return done; }, ctx.deadline);
  pool.shutdown("finished");
  if (!resumed) return check_outcome::fail("the second connection did a full handshake");
  if (!result.ok())
    return check_outcome::fail(fmt::format("task on the resumed connection: {}: {}",
                                           to_string(result.error), result.detail));
  return check_outcome::pass("resumed");
}

check_outcome check_reuse_cycle(suite& s) {
  const probe_options& o = s.options();
  const std::size_t limit = o.pool.reuse_limit;
  std::vector<task_plan> plans;
  for (std::size_t i = 0; i <= limit; ++i) plans.push_back(s.plan("http_2", 2048));
  const auto results = s.run_tasks(std::move(plans), s.one_connection());
  if (auto j = suite::judge(results); !j.ok) return j;
  std::set<std::uint16_t> ids;
  for (std::size_t i = 0; i < limit; ++i) {
    if (results[i].connection != results[0].connection)
      return check_outcome::fail(fmt::format("task {} ran on another connection", i + 1));
    ids.insert(results[i].match_id);
  }
  if (ids.size() != limit || *ids.begin() != 0 || *ids.rbegin() != limit - 1)
    return check_outcome::fail("the match ids of one connection were not 0.." +
                               std::to_string(limit - 1));
  const task_result& next = results[limit];
  if (next.connection == results[0].connection || next.match_id != 0)
    return check_outcome::fail("the task after the reuse limit did not start a new connection "
                               "at match id 0");
  const pool_stats& st = s.last_stats();
  if (st.closed_by_server > 0)
    return check_outcome::fail("the server closed a connection during the cycle");
  return check_outcome::pass(
      fmt::format("{} tasks, match ids 0-{}, then 0 \"finished\"", limit, limit - 1));
}

check_outcome check_match_ids_per_connection(suite& s) {
  probe_context& ctx = s.ctx();
  const probe_options& o = s.options();
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  pooled_connection& a = pool.dial();
  pooled_connection& b = pool.dial();
  if (!pool.wait_established(a, ctx.deadline) || !pool.wait_established(b, ctx.deadline)) {
    pool.shutdown("finished");
    return check_outcome::fail("could not open two connections");
  }
  std::vector<task_result> results(2);
  int done = 0;
  // Large enough that both relays are in flight together.
  pool.submit_on(a, s.plan("http_2", 512 * 1024), [&](const task_result& r) {
    results[0] = r;
    ++done;
  });
  pool.submit_on(b, s.plan("http_2", 512 * 1024), [&](const task_result& r) {
    results[1] = r;
    ++done;
  });
  pool.run_until([&] { return done == 2; }, ctx.deadline);
  pool.shutdown("finished");
  if (auto j = suite::judge(results); !j.ok) return j;
  if (results[0].match_id != 0 || results[1].match_id != 0)
    return check_outcome::fail("both tasks should have had match id 0");
  return check_outcome::pass();
}

check_outcome check_credit_renewal(suite& s) {
  probe_context& ctx = s.ctx();
  const probe_options& o = s.options();
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  pooled_connection& c = pool.dial();
  if (!pool.wait_established(c, ctx.deadline)) {
    pool.shutdown("finished");
    return check_outcome::fail(describe(c.quic->close_state()));
  }
  // One task after another until twice the initial grant of streams has been used.
  const std::uint64_t tasks = c.quic->streams_left() + 2;
  std::uint64_t done = 0;
  task_result failed;
  std::function<void()> next = [&] {
    pool.submit_on(c, s.plan("http_2", 64), [&](const task_result& r) {
      if (!r.ok() && failed.ok()) failed = r;
      if (++done < tasks && failed.ok()) next();
    });
  };
  next();
  pool.run_until([&] { return done == tasks || !failed.ok(); }, ctx.deadline);
  pool.shutdown("finished");
  if (!failed.ok())
    return check_outcome::fail(
        fmt::format("task {}: {}: {}", done, to_string(failed.error), failed.detail));
  if (done < tasks) return check_outcome::fail("the run's deadline passed");
  return check_outcome::pass(fmt::format("{} tasks, {} streams", tasks, 2 * tasks));
}

/// The longest upstream name that keeps the north header within g3proxy's 536 bytes.
task_plan largest_header_plan(suite& s) {
  task_plan p = s.plan("http_2", 4096);
  p.username = "a-rather-long-user-name@example.com";
  for (std::size_t n = 400; n > 0; --n) {
    p.upstream = std::string(n, 'h') + ".example.com:443";
    if (const auto h = g3_task::north_header(p, 0); h && h->size() == detour::g3_max_header_size)
      return p;
  }
  return p;
}

} // namespace

int run_check(probe_context& ctx) {
  const probe_options& o = ctx.options;
  suite s(ctx);
  if (!o.json) {
    fmt::print("check: detour server at {} (expecting {}; TLS name {})\n",
               o.pool.quic.server.to_string(), expected_text(o),
               o.pool.quic.tls_name.empty() ? o.pool.quic.server.host() : o.pool.quic.tls_name);
    std::fflush(stdout);
  }
  const std::string name =
      o.pool.quic.tls_name.empty() ? o.pool.quic.server.host() : o.pool.quic.tls_name;
  s.run(fmt::format("handshake: QUIC v1, TLS 1.3, {}, certificate for {}",
                    o.tls.alpn.empty() ? "no ALPN" : "ALPN offered", name),
        [&] { return check_handshake(s); });
  s.run(fmt::format("stream credit: at least 2 x {} bidirectional streams", o.pool.reuse_limit),
        [&] { return check_stream_credit(s); });

  // The four protocols g3proxy detours, IPv4 and IPv6, with and without a username.
  for (const std::string_view protocol : {"http_2", "websocket", "smtp", "imap"}) {
    for (const bool ipv6 : {false, true}) {
      for (const bool user : {false, true}) {
        const std::string title =
            fmt::format("{}, {} addresses, {}{}", protocol, ipv6 ? "IPv6" : "IPv4",
                        user ? "username" : "no username",
                        protocol == "smtp" || protocol == "imap" ? ", remote speaks first" : "");
        s.run(title, [&] {
          task_plan p = s.plan(protocol, 8 * 1024);
          use_family(p, ipv6, 7);
          if (user) p.username = "alice";
          return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
        });
      }
    }
  }

  s.run("upstream given as a bracketed IPv6 address", [&] {
    task_plan p = s.plan("imap", 4096);
    p.upstream = "[2001:db8::25]:993";
    return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
  });
  s.run("websocket payload: all seven headers, repeated extensions, raw bytes", [&] {
    task_plan p = s.plan("websocket", 4096);
    static constexpr std::pair<std::string_view, std::string_view> headers[] = {
        {"host", "chat.example.com:8443"},
        {"origin", "https://app.example.com"},
        {"sec-websocket-key", "x3JJHMbDL1EzLkh9GBhXDw=="},
        {"sec-websocket-version", "13"},
        {"sec-websocket-accept", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
        {"sec-websocket-protocol", "chat, superchat"},
        {"sec-websocket-extensions", "permessage-deflate; client_max_window_bits"},
        {"sec-websocket-extensions", "x-custom; note=\xff\xfe"},
    };
    p.payload = websocket_summary("/chat/room-1", headers);
    return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
  });
  s.run("north header of exactly 536 bytes (g3proxy's largest)",
        [&] { return suite::judge(s.run_tasks({largest_header_plan(s)}, s.one_connection())); });

  if (s.pass_through()) {
    s.run("empty relay: no bytes either way",
          [&] { return suite::judge(s.run_tasks({s.plan("http_2", 0)}, s.one_connection())); });
    s.run("large relay client -> remote (8 MiB on north)", [&] {
      task_plan p = s.plan("http_2", 0);
      p.client_bytes = 8 * 1024 * 1024;
      return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
    });
    s.run("large relay remote -> client (8 MiB on south)", [&] {
      task_plan p = s.plan("http_2", 0);
      p.remote_bytes = 8 * 1024 * 1024;
      return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
    });
    s.run("large relay both ways at once (8 MiB each)", [&] {
      return suite::judge(s.run_tasks({s.plan("http_2", 8 * 1024 * 1024)}, s.one_connection()));
    });
    s.run("remote speaks first: 256 KiB greeting on south, north silent", [&] {
      task_plan p = s.plan("smtp", 0);
      p.remote_bytes = 256 * 1024;
      p.client_bytes = 1024;
      return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
    });
    s.run("close, client ends first: north ends after our FINs, south stopped", [&] {
      task_plan p = s.plan("http_2", 32 * 1024);
      p.ends_first = ender::client;
      return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
    });
    s.run("close, remote ends first: south ends after our FINs, north stopped", [&] {
      task_plan p = s.plan("imap", 32 * 1024);
      p.ends_first = ender::remote;
      return suite::judge(s.run_tasks({std::move(p)}, s.one_connection()));
    });
    s.run("16 tasks relaying at once on one connection keep their bytes apart", [&] {
      std::vector<task_plan> plans;
      for (int i = 0; i < 16; ++i) plans.push_back(s.plan(i % 2 ? "http_2" : "smtp", 128 * 1024));
      pool_config pc = s.one_connection();
      pc.reuse_limit = std::max<std::size_t>(pc.reuse_limit, 16);
      return suite::judge(s.run_tasks(std::move(plans), pc));
    });
  } else {
    s.run("empty and large relays, close ordering, concurrent relays", [] {
      return check_outcome::skip("relays need a pass-through (--expect-action continue)");
    });
  }

  s.run(fmt::format("full reuse cycle: {} tasks on one connection, then a new one",
                    o.pool.reuse_limit),
        [&] { return check_reuse_cycle(s); });
  s.run("match ids are per connection: id 0 on two connections at once",
        [&] { return check_match_ids_per_connection(s); });
  s.run("stream credit is renewed as streams close", [&] { return check_credit_renewal(s); });
  s.run("TLS session resumption on a new connection", [&] { return check_resumption(s); });

  std::size_t passed = 0, failed = 0, skipped = 0;
  for (const auto& r : s.records()) {
    if (r.outcome.skipped)
      ++skipped;
    else if (r.outcome.ok)
      ++passed;
    else
      ++failed;
  }
  const bool ok = failed == 0;
  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "check")
        .field("server", o.pool.quic.server.to_string())
        .field("expect", expected_text(o))
        .key("checks")
        .begin_array();
    for (const auto& r : s.records()) {
      j.begin_object()
          .field("name", r.name)
          .field("ok", r.outcome.ok)
          .field("skipped", r.outcome.skipped)
          .field("detail", r.outcome.detail)
          .field("ms", to_ms(r.elapsed))
          .end_object();
    }
    j.end_array()
        .field("passed", static_cast<std::uint64_t>(passed))
        .field("failed", static_cast<std::uint64_t>(failed))
        .field("skipped", static_cast<std::uint64_t>(skipped))
        .field("ok", ok)
        .end_object();
    fmt::print("{}\n", j.str());
  } else {
    if (s.not_run() != 0) {
      fmt::print("  ...   the other {} checks need a connection to the server: not run\n",
                 s.not_run());
      fmt::print("result: FAIL ({} passed, {} failed, {} not run)\n", passed, failed - s.not_run(),
                 s.not_run());
    } else {
      fmt::print("result: {} ({} passed, {} failed, {} skipped)\n", ok ? "PASS" : "FAIL", passed,
                 failed, skipped);
    }
  }
  return ok ? exit_passed : exit_failed;
}

} // namespace detour::cli::probe
