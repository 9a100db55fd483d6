// SPDX-License-Identifier: MIT
// cli/probe_load.cpp: the measuring modes of `detour probe`: load (many tasks, latency
// percentiles, failures by kind), throughput (Gbit/s each way and client CPU), handshakes
// (new connections per second, each with a full handshake and one small task) and hold (many
// idle connections kept open, to measure what each costs a server).
#include "probe.hpp"
#include "probe_report.hpp"

#include <fmt/core.h>

#include <sys/resource.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace detour::cli::probe {

namespace {

/// Results of many tasks.
struct tally {
  struct kind {
    std::uint64_t count = 0;
    std::string first; ///< the first failure's detail, as an example
  };
  std::uint64_t passed = 0;
  std::uint64_t failed = 0;
  std::map<failure, kind> failures;
  std::vector<std::uint64_t> latencies;        ///< of passed tasks: open (or due) to close
  std::vector<std::uint64_t> answer_latencies; ///< of answered tasks: to the 4-byte answer
  /// Open loop (--rate): how late each task started against its schedule, and how many
  /// started late because --concurrency tasks were in flight when they were due.
  std::vector<std::uint64_t> start_lags;
  std::uint64_t slot_waits = 0;
  std::uint64_t north_bytes = 0; ///< verified echo, client -> remote direction
  std::uint64_t south_bytes = 0; ///< verified echo, remote -> client direction
  nanoseconds first_start = 0;
  nanoseconds last_finish = 0;

  /// |scheduled|: when an open-loop run (--rate) meant the task to start, from which its
  /// latencies then count, the wait for a free slot included; 0: from the stream's opening.
  void add(const task_result& r, nanoseconds scheduled = 0) {
    const nanoseconds from = scheduled != 0 ? scheduled : r.started;
    if (r.ok()) {
      ++passed;
      latencies.push_back(r.finished > from ? r.finished - from : 0);
    } else {
      ++failed;
      auto& k = failures[r.error];
      if (k.count++ == 0) k.first = r.detail;
    }
    if (r.answered > r.started) answer_latencies.push_back(r.answered - from); // from <= started
    north_bytes += r.north_echoed;
    south_bytes += r.south_echoed;
    if (from != 0 && (first_start == 0 || from < first_start)) first_start = from;
    if (r.finished > last_finish) last_finish = r.finished;
  }
  std::uint64_t total() const noexcept { return passed + failed; }
};

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

double gbits(std::uint64_t bytes, nanoseconds elapsed) {
  return elapsed == 0 ? 0.0 : static_cast<double>(bytes) * 8 / static_cast<double>(elapsed);
}

/// Keeps |concurrency| tasks in flight until |count| were submitted, then waits for them all.
/// With a |rate| (tasks per second, --rate) the run is open-loop instead: task i is due at
/// i / rate seconds from the start and starts then, or as soon as fewer than |concurrency| are
/// in flight; its latency counts from when it was due, so a server that falls behind shows in
/// the percentiles instead of slowing the schedule down.
/// Returns false when the run's deadline cut it short (the rest failed with `deadline`).
bool drive(probe_context& ctx, client_pool& pool, std::uint64_t count, std::uint64_t concurrency,
           std::uint64_t rate, const std::function<task_plan(std::uint64_t)>& plan_for, tally& t) {
  std::uint64_t submitted = 0;
  std::uint64_t in_flight = 0;
  bool slots_full = false; // a due task found --concurrency in flight, and is still waiting
  const open_loop_schedule schedule(rate, monotonic_now());
  std::function<void()> submit_due;
  timer pacer(ctx.loop, [&] { submit_due(); });
  std::function<void()> submit_one = [&] {
    const std::uint64_t index = submitted++;
    nanoseconds due = 0;
    if (rate != 0) {
      due = schedule.due(index);
      const nanoseconds now = monotonic_now();
      t.start_lags.push_back(now > due ? now - due : 0);
      if (slots_full) ++t.slot_waits;
    }
    ++in_flight;
    pool.submit(plan_for(index), [&, due](const task_result& r) {
      --in_flight;
      t.add(r, due);
      if (rate != 0)
        submit_due();
      else if (submitted < count)
        submit_one();
    });
  };
  submit_due = [&] {
    const nanoseconds now = monotonic_now();
    while (submitted < count && schedule.due(submitted) <= now) {
      if (in_flight >= concurrency) {
        slots_full = true; // a completion submits it
        return;
      }
      submit_one();
    }
    slots_full = false;
    if (submitted < count) pacer.arm_at(schedule.due(submitted)); // not due yet
  };
  if (rate != 0)
    submit_due();
  else
    while (submitted < std::min(count, concurrency)) submit_one();
  const bool finished = pool.run_until([&] { return t.total() == count; }, ctx.deadline);
  pacer.cancel();
  if (!finished) {
    submitted = count; // nothing new from here
    pool.shutdown("the run's deadline passed (--deadline)");
  }
  pool.shutdown("finished");
  return finished;
}

void print_failures(const tally& t) {
  for (const auto& [f, k] : t.failures)
    fmt::print("  failed      {:<20} {:>8}  first: {}\n", to_string(f), k.count, k.first);
}

void write_failures(json_writer& j, const tally& t) {
  j.key("failures").begin_object();
  for (const auto& [f, k] : t.failures)
    j.key(to_string(f)).begin_object().field("count", k.count).field("first", k.first).end_object();
  j.end_object();
}

void write_pool(json_writer& j, const pool_stats& s) {
  j.key("pool")
      .begin_object()
      .field("opened", s.connections_opened)
      .field("handshakes", s.handshakes)
      .field("resumed", s.resumed)
      .field("connect_failures", s.connect_failures)
      .field("closed_by_server", s.closed_by_server)
      .field("idle_timeouts", s.idle_timeouts)
      .field("finished_closes", s.finished_closes)
      .end_object();
}

/// "rate 13000/s, " in the first line of an open-loop run.
std::string rate_text(std::uint64_t rate) {
  return rate != 0 ? fmt::format("rate {}/s, ", rate) : std::string();
}

/// Open loop: "target_rate" (--rate), "start_lag" (when each task started against when it was
/// due) and "slot_waits" (tasks that started late because --concurrency were in flight); nulls
/// for a closed loop.
void write_schedule(json_writer& j, std::uint64_t rate, tally& t) {
  if (rate == 0) {
    j.key("target_rate").null().key("start_lag").null().key("slot_waits").null();
    return;
  }
  j.field("target_rate", rate).key("start_lag");
  write_latency(j, summarize(t.start_lags));
  j.field("slot_waits", t.slot_waits);
}

/// Open loop: how far behind its schedule the run started tasks. Late starts are in the
/// latencies, which count from when each task was due.
void print_schedule(const probe_options& o, tally& t) {
  if (o.rate == 0) return;
  const latency_summary lag = summarize(t.start_lags);
  fmt::print("  schedule    {}/s asked; started late by p50 {}  p99 {}  max {}; {} waited for a "
             "free slot (--concurrency {})\n",
             o.rate, human_duration(lag.p50), human_duration(lag.p99), human_duration(lag.max),
             t.slot_waits, o.concurrency);
}

std::string verdict(bool ok) {
  return ok ? "PASS" : "FAIL";
}

/// Opens |connections| of the pool with an empty task each before a measurement starts, as
/// g3proxy keeps its pool open. A failure is reported (as |mode|'s result) and ends the run.
bool warm_up(probe_context& ctx, client_pool& pool, std::uint64_t connections,
             std::string_view mode) {
  const probe_options& o = ctx.options;
  tally w;
  for (std::uint64_t i = 0; i < connections; ++i)
    pool.submit(protocol_plan(o, o.protocol, 1'000'000 + i, 0),
                [&](const task_result& r) { w.add(r); });
  pool.run_until([&] { return w.total() == connections; }, ctx.deadline);
  if (w.failed == 0 && w.total() == connections) return true;
  const std::string why = w.failed > 0 ? fmt::format("{}: {}", to_string(w.failures.begin()->first),
                                                     w.failures.begin()->second.first)
                                       : std::string("the run's deadline passed");
  if (o.json) {
    json_writer j;
    j.begin_object().field("mode", mode).field("ok", false).field("error", why).end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("  warm-up task failed ({})\nresult: FAIL\n", why);
  }
  pool.shutdown("finished");
  return false;
}

} // namespace

int run_load(probe_context& ctx) {
  const probe_options& o = ctx.options;
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  const std::uint64_t bytes = o.bytes;
  if (!o.json) {
    fmt::print("load: {} {} tasks against {} ({}concurrency {}, {} each way, {} connections x {} "
               "tasks)\n",
               o.tasks, o.protocol, o.pool.quic.server.to_string(), rate_text(o.rate),
               o.concurrency, human_bytes(bytes), o.pool.connections, o.pool.reuse_limit);
    std::fflush(stdout);
  }
  // An open loop measures a steady state: its first tasks must not wait for the pool's
  // handshakes (a closed loop counts from a task's streams, which excludes them).
  if (o.rate != 0 && !warm_up(ctx, pool, o.pool.connections, "load")) return exit_failed;
  tally t;
  const double cpu0 = cpu_seconds();
  const bool in_time = drive(
      ctx, pool, o.tasks, o.concurrency, o.rate,
      [&](std::uint64_t i) { return protocol_plan(o, o.protocol, i, bytes); }, t);
  const double cpu = cpu_seconds() - cpu0;
  const nanoseconds elapsed = t.last_finish > t.first_start ? t.last_finish - t.first_start : 0;
  const latency_summary lat = summarize(t.latencies);
  const latency_summary ans = summarize(t.answer_latencies);
  const double rate =
      elapsed ? static_cast<double>(t.passed) * 1e9 / static_cast<double>(elapsed) : 0;
  const bool ok = in_time && t.failed == 0 && t.passed == o.tasks;
  const pool_stats& ps = pool.stats();

  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "load")
        .field("server", o.pool.quic.server.to_string())
        .field("protocol", o.protocol)
        .field("tasks", o.tasks)
        .field("concurrency", o.concurrency)
        .field("bytes_each_way", bytes)
        .field("passed", t.passed)
        .field("failed", t.failed)
        .field("elapsed_s", static_cast<double>(elapsed) / 1e9)
        .field("tasks_per_s", rate);
    j.key("latency");
    write_latency(j, lat);
    j.key("answer_latency");
    write_latency(j, ans);
    write_schedule(j, o.rate, t);
    j.field("north_gbit_s", gbits(t.north_bytes, elapsed))
        .field("south_gbit_s", gbits(t.south_bytes, elapsed))
        .field("client_cpu_s", cpu);
    write_pool(j, ps);
    write_failures(j, t);
    j.field("deadline_hit", !in_time).field("ok", ok).end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("  passed      {} / {}\n", t.passed, o.tasks);
    fmt::print("  rate        {:.1f} tasks/s over {}\n", rate, human_duration(elapsed));
    print_schedule(o, t);
    // Percentiles of nothing would read as 0 us: say there is nothing to measure.
    if (lat.count == 0)
      fmt::print("  latency     none: no task passed\n");
    else
      fmt::print("  latency     p50 {}  p99 {}  max {}{}\n", human_duration(lat.p50),
                 human_duration(lat.p99), human_duration(lat.max),
                 o.rate != 0 ? "  (from when each task was due)" : "");
    if (ans.count == 0)
      fmt::print("  answer      none: no answer arrived\n");
    else
      fmt::print("  answer      p50 {}  p99 {}  max {}  ({} to the 4-byte answer)\n",
                 human_duration(ans.p50), human_duration(ans.p99), human_duration(ans.max),
                 o.rate != 0 ? "due" : "open");
    fmt::print("  throughput  client->remote {:.3f} Gbit/s  remote->client {:.3f} Gbit/s "
               "(verified echo)\n",
               gbits(t.north_bytes, elapsed), gbits(t.south_bytes, elapsed));
    fmt::print("  connections {} opened, {} handshakes ({} resumed), {} failed to connect, {} "
               "closed by the server\n",
               ps.connections_opened, ps.handshakes, ps.resumed, ps.connect_failures,
               ps.closed_by_server);
    fmt::print("  client cpu  {:.2f} s\n", cpu);
    print_failures(t);
    if (!in_time) fmt::print("  the run's deadline passed before all tasks ended\n");
    fmt::print("result: {}\n", verdict(ok));
  }
  return ok ? exit_passed : exit_failed;
}

int run_throughput(probe_context& ctx) {
  const probe_options& o = ctx.options;
  pool_config pc = o.pool;
  pc.connections = std::min<std::size_t>(pc.connections, o.streams);
  client_pool pool(ctx.loop, ctx.tls, pc, ctx.log);
  if (!o.json) {
    fmt::print("throughput: {} task(s) x {} each way against {} ({} connection(s))\n", o.streams,
               human_bytes(o.bytes), o.pool.quic.server.to_string(), pc.connections);
    std::fflush(stdout);
  }
  // Connect first, so that the handshake is not part of the measurement.
  if (!warm_up(ctx, pool, pc.connections, "throughput")) return exit_failed;
  tally t;
  const double cpu0 = cpu_seconds();
  const nanoseconds t0 = monotonic_now();
  for (std::uint64_t i = 0; i < o.streams; ++i) {
    task_plan p = protocol_plan(o, o.protocol, i, o.bytes);
    p.remote_speaks_first = false; // both directions at once, whatever the protocol
    pool.submit(std::move(p), [&](const task_result& r) { t.add(r); });
  }
  const bool in_time = pool.run_until([&] { return t.total() == o.streams; }, ctx.deadline);
  const nanoseconds elapsed = monotonic_now() - t0;
  const double cpu = cpu_seconds() - cpu0;
  if (!in_time) pool.shutdown("the run's deadline passed (--deadline)");
  pool.shutdown("finished");
  const bool ok = in_time && t.failed == 0;
  const double north = gbits(t.north_bytes, elapsed), south = gbits(t.south_bytes, elapsed);
  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "throughput")
        .field("server", o.pool.quic.server.to_string())
        .field("streams", o.streams)
        .field("bytes_each_way", o.bytes)
        .field("elapsed_s", static_cast<double>(elapsed) / 1e9)
        .field("north_gbit_s", north)
        .field("south_gbit_s", south)
        .field("client_cpu_s", cpu)
        .field("passed", t.passed)
        .field("failed", t.failed);
    write_failures(j, t);
    j.field("ok", ok).end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("  client->remote  {:.3f} Gbit/s ({} verified)\n", north,
               human_bytes(t.north_bytes));
    fmt::print("  remote->client  {:.3f} Gbit/s ({} verified)\n", south,
               human_bytes(t.south_bytes));
    fmt::print("  elapsed         {}\n", human_duration(elapsed));
    fmt::print("  client cpu      {:.2f} s ({:.0f}% of one core)\n", cpu,
               elapsed ? cpu * 1e11 / static_cast<double>(elapsed) : 0.0);
    print_failures(t);
    fmt::print("result: {}\n", verdict(ok));
  }
  return ok ? exit_passed : exit_failed;
}

int run_handshakes(probe_context& ctx) {
  const probe_options& o = ctx.options;
  pool_config pc = o.pool;
  pc.connections = o.concurrency; // one task per connection, `concurrency` at once
  pc.reuse_limit = 1;
  pc.dial_on_demand = true; // exactly one connection per task, none kept in reserve
  client_pool pool(ctx.loop, ctx.tls, pc, ctx.log);
  if (!o.json) {
    fmt::print("handshakes: {} connections, {}{} at once, one {} task of {} each way each, "
               "against {}\n",
               o.tasks, rate_text(o.rate), o.concurrency, o.protocol, human_bytes(o.bytes),
               o.pool.quic.server.to_string());
    std::fflush(stdout);
  }
  tally t;
  const double cpu0 = cpu_seconds();
  const nanoseconds t0 = monotonic_now();
  const bool in_time = drive(
      ctx, pool, o.tasks, o.concurrency, o.rate,
      [&](std::uint64_t i) { return protocol_plan(o, o.protocol, i, o.bytes); }, t);
  const nanoseconds elapsed = monotonic_now() - t0;
  const double cpu = cpu_seconds() - cpu0;
  pool_stats ps = pool.stats();
  const latency_summary hs = summarize(ps.handshake_times);
  const latency_summary lat = summarize(t.latencies);
  const double rate =
      elapsed ? static_cast<double>(ps.handshakes) * 1e9 / static_cast<double>(elapsed) : 0;
  const bool ok = in_time && t.failed == 0 && ps.connect_failures == 0;
  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "handshakes")
        .field("server", o.pool.quic.server.to_string())
        .field("connections", o.tasks)
        .field("concurrency", o.concurrency)
        .field("handshakes", ps.handshakes)
        .field("resumed", ps.resumed)
        .field("connections_per_s", rate)
        .field("elapsed_s", static_cast<double>(elapsed) / 1e9)
        .field("client_cpu_s", cpu);
    j.key("handshake_latency");
    write_latency(j, hs);
    j.key("task_latency");
    write_latency(j, lat);
    write_schedule(j, o.rate, t);
    j.field("passed", t.passed).field("failed", t.failed);
    write_pool(j, ps);
    write_failures(j, t);
    j.field("ok", ok).end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("  handshakes  {} completed ({} resumed), {} failed\n", ps.handshakes, ps.resumed,
               ps.connect_failures);
    fmt::print("  rate        {:.1f} connections/s over {}\n", rate, human_duration(elapsed));
    print_schedule(o, t);
    if (hs.count == 0)
      fmt::print("  handshake   none completed\n");
    else
      fmt::print("  handshake   p50 {}  p99 {}  max {}\n", human_duration(hs.p50),
                 human_duration(hs.p99), human_duration(hs.max));
    fmt::print("  task        p50 {}  p99 {}  max {}  ({} passed{})\n", human_duration(lat.p50),
               human_duration(lat.p99), human_duration(lat.max), t.passed,
               o.rate != 0 ? ", from when each was due" : "");
    fmt::print("  client cpu  {:.2f} s\n", cpu);
    print_failures(t);
    if (!ps.last_connect_error.empty() && ps.connect_failures > 0)
      fmt::print("  last connection failure: {}\n", ps.last_connect_error);
    fmt::print("result: {}\n", verdict(ok));
  }
  return ok ? exit_passed : exit_failed;
}

int run_hold(probe_context& ctx) {
  const probe_options& o = ctx.options;
  client_pool pool(ctx.loop, ctx.tls, o.pool, ctx.log);
  const std::size_t target = o.pool.connections;
  if (!o.json) {
    fmt::print("hold: {} idle connections against {}, {} handshakes at once, held {}\n", target,
               o.pool.quic.server.to_string(), o.concurrency, human_duration(o.hold));
    std::fflush(stdout);
  }
  // Open them in waves of --concurrency handshakes, so that a large count does not run into
  // the handshake timeout on a busy machine.
  std::vector<pooled_connection*> conns;
  conns.reserve(target);
  const auto connecting = [&] {
    std::size_t n = 0;
    for (pooled_connection* c : conns)
      if (!c->quic->established() && !c->quic->closed()) ++n;
    return n;
  };
  std::size_t in_flight = 0;
  const double cpu0 = cpu_seconds();
  const nanoseconds t0 = monotonic_now();
  bool in_time = true;
  while (in_time && (conns.size() < target || in_flight > 0)) {
    while (conns.size() < target && in_flight < o.concurrency) {
      conns.push_back(&pool.dial());
      ++in_flight;
    }
    in_time = pool.run_until(
        [&] {
          in_flight = connecting();
          return conns.size() < target ? in_flight < o.concurrency : in_flight == 0;
        },
        ctx.deadline);
  }
  const nanoseconds opened_in = monotonic_now() - t0;
  const double cpu = cpu_seconds() - cpu0;
  std::size_t established = 0;
  for (pooled_connection* c : conns)
    if (c->quic->established()) ++established;
  // Idle: only the connections' own keep-alives and timers run, until --hold has passed or the
  // run's deadline came first (then the hold fails with the kind `deadline`, as tasks do).
  const nanoseconds hold_start = monotonic_now();
  const nanoseconds hold_until = in_time ? std::min(hold_start + o.hold, ctx.deadline) : hold_start;
  const bool cut = hold_until < hold_start + o.hold;
  if (!o.json) {
    if (!in_time) {
      fmt::print("  the run's deadline passed while connecting ({} of {} established in {})\n",
                 established, target, human_duration(opened_in));
    } else if (cut) {
      fmt::print("  holding    {} connections for {}, not {}: the run's deadline comes first "
                 "(opened in {}, client cpu {:.2f} s)\n",
                 established, human_duration(hold_until - hold_start), human_duration(o.hold),
                 human_duration(opened_in), cpu);
    } else {
      fmt::print("  holding    {} connections for {} (opened in {}, client cpu {:.2f} s)\n",
                 established, human_duration(o.hold), human_duration(opened_in), cpu);
    }
    std::fflush(stdout);
  }
  if (in_time) pool.run_until([] { return false; }, hold_until);
  const nanoseconds held = monotonic_now() - hold_start;
  const bool deadline_hit = !in_time || cut;
  std::size_t still_open = 0;
  for (pooled_connection* c : conns)
    if (c->quic->established()) ++still_open;
  const pool_stats ps = pool.stats();
  pool.shutdown(deadline_hit ? "the run's deadline passed (--deadline)" : "finished");
  // Let the closes leave before the process ends (bounded, even past the deadline).
  pool.run_until([] { return false; }, monotonic_now() + 100'000'000);
  const bool ok = !deadline_hit && established == target && still_open == target;
  const std::string deadline_detail =
      !in_time ? fmt::format("the run's deadline passed while connecting ({} of {} established)",
                             established, target)
               : fmt::format("the run's deadline passed after holding {} of the {} asked",
                             human_duration(held), human_duration(o.hold));
  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "hold")
        .field("server", o.pool.quic.server.to_string())
        .field("connections", target)
        .field("established", established)
        .field("still_open", still_open)
        .field("open_s", static_cast<double>(opened_in) / 1e9)
        .field("hold_s", static_cast<double>(o.hold) / 1e9)
        .field("held_s", in_time ? static_cast<double>(held) / 1e9 : 0.0)
        .field("client_cpu_s", cpu);
    write_pool(j, ps);
    j.key("failures").begin_object();
    if (deadline_hit) {
      j.key(to_string(failure::deadline))
          .begin_object()
          .field("count", static_cast<std::uint64_t>(target))
          .field("first", deadline_detail)
          .end_object();
    }
    j.end_object();
    j.field("deadline_hit", deadline_hit).field("ok", ok).end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("  still open {} of {} at the end{}\n", still_open, target,
               deadline_hit && in_time ? fmt::format(" (held {})", human_duration(held)) : "");
    if (!ps.last_connect_error.empty() && ps.connect_failures > 0)
      fmt::print("  {} failed to connect; last: {}\n", ps.connect_failures, ps.last_connect_error);
    if (deadline_hit)
      fmt::print("  failed      {:<20} {:>8}  first: {}\n", to_string(failure::deadline), target,
                 deadline_detail);
    fmt::print("result: {}\n", verdict(ok));
  }
  return ok ? exit_passed : exit_failed;
}

} // namespace detour::cli::probe
