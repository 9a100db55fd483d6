// SPDX-License-Identifier: MIT
// cli/task.cpp: the detour tasks of one connection (see task.hpp). All protocol work is the
// library's: stream_session reads headers and holds the answer, pairing_table pairs by match
// id, io::relay echoes with back-pressure and propagates ends. This file only wires them to
// QUIC streams, deadlines and log lines.
#include "task.hpp"

#include "app_codes.hpp"

#include <detour/io/relay.hpp>
#include <detour/pairing.hpp>
#include <detour/session.hpp>

#include <deque>
#include <unordered_map>
#include <vector>

namespace detour::cli {

namespace {

using echo_relay = io::relay<quic_stream, quic_stream>;
using io::relay_state;

// How a task (or a stream without one) ended, for its log line.
constexpr std::string_view how_finished = "finished";

} // namespace

struct task_set::impl {
  struct task;

  // One client stream: its session until the header is through, then its relay.
  struct stream_ctx {
    stream_ctx(ngtcp2_conn* conn, std::int64_t id, impl& set)
        : stream(conn, id, set.ctx.pool, set.ctx.config.send_buffer, set.ctx.listener),
          session(set.session_opts) {}
    quic_stream stream;
    stream_session session;
    std::optional<echo_relay> relay;
    task* owner = nullptr;
    timestamp opened = 0;
    bool paired_in_table = false; // in the pairing table (until its relay ends)
    bool final = false;           // nothing more to do on it
    bool ready = false;           // stepped at the next step()
  };

  // A task: its north stream (which carries the request) and, after "continue", its south.
  struct task {
    stream_ctx* north = nullptr;
    stream_ctx* south = nullptr;
    std::uint16_t match_id = 0;
    timestamp started = 0;
    std::string how; // set when it failed; "finished" otherwise
    bool logged = false;
  };

  explicit impl(const context& c)
      : ctx(c), pairing(default_pairing_capacity, c.config.pair_timeout) {
    session_opts.limits.header.max_header_size = c.config.max_header_size;
    session_opts.limits.max_payload_length = static_cast<std::uint32_t>(c.config.max_payload_size);
    relay_opts.window = 64 * 1024;
  }

  context ctx;
  session_options session_opts;
  io::relay_options relay_opts;
  pairing_table<stream_ctx*, timestamp> pairing;
  std::unordered_map<std::int64_t, std::unique_ptr<stream_ctx>> streams;
  std::unordered_map<task*, std::unique_ptr<task>> tasks;
  // Streams still reading their header, in opening order: with one timeout for all, the
  // front has the earliest deadline.
  std::deque<std::pair<timestamp, std::int64_t>> header_deadlines;
  std::vector<std::int64_t> ready;
  task_counters counters;
  bool refusing = false;
  bool closed = false;

  // --- helpers -----------------------------------------------------------------------------------

  stream_ctx* find(std::int64_t id) {
    const auto it = streams.find(id);
    return it == streams.end() ? nullptr : it->second.get();
  }

  void log_stream_error(stream_ctx& c, errc e, std::uint64_t offset) {
    ++counters.bad_streams;
    const bool known = c.session.kind().has_value();
    ctx.log.warn(
        "stream.error",
        {{"conn", ctx.conn_id},
         {"stream", c.stream.id()},
         {"match", known ? std::to_string(c.session.match_id()) : std::string("-")},
         {"kind", known ? (c.session.kind() == stream_kind::north ? "north" : "south") : "unknown"},
         {"error", errc_name(e)},
         {"offset", offset},
         {"code", code_for(e)}});
  }

  // Ends a stream's both directions with |code| (RESET_STREAM + STOP_SENDING).
  static void reset_both(stream_ctx& c, app_code code) {
    if (c.relay && !c.relay->done()) {
      c.relay->abort(code);
    } else {
      c.stream.stop_reading(code);
      c.stream.reset_write(code);
    }
  }

  void leave_pairing(stream_ctx& c) {
    if (!c.paired_in_table) return;
    c.paired_in_table = false;
    const stream_kind k = c.session.kind().value_or(stream_kind::north);
    (void)pairing.remove(k, c.session.match_id());
  }

  // A stream failed: protocol error, timeout, expiry. Resets it with the error's code.
  void fail(stream_ctx& c, errc e, std::uint64_t offset, bool log_it) {
    if (c.final) return;
    if (log_it) log_stream_error(c, e, offset);
    c.session.fail(e, offset);
    reset_both(c, code_for(e));
    c.final = true;
    leave_pairing(c);
    if (c.owner) task_half_failed(*c.owner, c, std::string(errc_name(e)));
  }

  // One half of a task ended abnormally: the task is broken, the other half goes too.
  void task_half_failed(task& t, stream_ctx& c, std::string how) {
    if (t.how.empty()) t.how = std::move(how);
    stream_ctx* other = &c == t.north ? t.south : t.north;
    if (other && !other->final) {
      reset_both(*other, code_for(errc::partner_aborted));
      other->final = true;
      leave_pairing(*other);
    }
    maybe_log_task(t);
  }

  bool half_done(const stream_ctx* c) const { return c == nullptr || c->final; }

  void maybe_log_task(task& t) {
    if (t.logged) return;
    const bool failed = !t.how.empty();
    const bool continued = t.north->session.decision() == action::proceed;
    // A task is over when its north is; a continued one also needs its south (still on its way
    // when the north ends first, say with no client bytes at all), unless it failed.
    if (!half_done(t.north)) return;
    if (continued && !failed && (!t.south || !t.south->final)) return;
    log_task(t, failed ? std::string_view(t.how) : how_finished);
  }

  void log_task(task& t, std::string_view how) {
    if (t.logged) return;
    t.logged = true;
    const task_request& r = t.north->session.task();
    const auto id = to_text(r.request.task_id);
    const auto d = t.north->session.decision();
    const std::uint64_t client_bytes = t.north->relay ? t.north->relay->bytes_in() : 0;
    const std::uint64_t remote_bytes = t.south && t.south->relay ? t.south->relay->bytes_in() : 0;
    ctx.log.info("task.end", {{"conn", ctx.conn_id},
                              {"task", id.view()},
                              {"match", t.match_id},
                              {"user", r.request.username.value_or("-")},
                              {"upstream", r.request.upstream.text},
                              {"protocol", r.request.protocol_name},
                              {"action", d ? to_string(*d) : std::string_view("-")},
                              {"client_bytes", client_bytes},
                              {"remote_bytes", remote_bytes},
                              {"ms", (monotonic_now() - t.started) / nanoseconds_per_millisecond},
                              {"how", how}});
    release_task(t);
  }

  // The task is logged: its streams no longer need it, and go once ngtcp2 closed them.
  void release_task(task& t) {
    std::vector<std::int64_t> closed_ids;
    for (stream_ctx* c : {t.north, t.south}) {
      if (!c) continue;
      c->owner = nullptr;
      leave_pairing(*c);
      if (c->stream.closed()) closed_ids.push_back(c->stream.id());
    }
    tasks.erase(&t);
    for (auto id : closed_ids) free_if_done(id);
  }

  void free_if_done(std::int64_t id) {
    stream_ctx* c = find(id);
    if (!c || !c->stream.closed() || c->owner) return;
    counters.bytes_in += c->relay ? c->relay->bytes_in() : 0;
    counters.bytes_out += c->relay ? c->relay->bytes_out() : 0;
    leave_pairing(*c);
    streams.erase(id);
  }

  // --- the steps of one stream -----------------------------------------------------------------

  void step_stream(stream_ctx& c, timestamp now) {
    if (c.final) return;
    quic_stream& s = c.stream;
    // Header and payload: the session copies what it needs, so credit goes back at once.
    while (c.session.state() == session_state::header ||
           c.session.state() == session_state::payload) {
      if (s.receive_reset()) {
        // The client abandoned the stream before its header was through: a quiet abort.
        fail(c, errc::stream_reset, c.session.received(), false);
        return;
      }
      const auto view = s.readable();
      feed_result r;
      if (view.empty()) {
        if (!s.at_eof()) return; // wait for more
        r = c.session.end_of_stream();
      } else {
        r = c.session.feed(view);
        s.consume(r.consumed);
      }
      if (!on_session_event(c, r.event, now)) return;
    }
    if (c.session.state() == session_state::response) {
      const auto out = c.session.pending_output();
      c.session.output_written(s.write_some(out));
      if (c.session.state() == session_state::response) return; // no room yet
      if (c.session.state() == session_state::relay) start_north_relay(c, now);
    }
    if (c.session.state() == session_state::closing) {
      // Bypass or block: nothing more is expected; drop input until the client's FIN.
      const auto view = s.readable();
      if (!view.empty()) s.consume(c.session.feed(view).consumed);
      if (s.at_eof() && s.readable().empty()) (void)c.session.end_of_stream();
      if (s.receive_reset() || s.send_stopped()) {
        // g3proxy drops its receive side right after reading the answer: normal.
        s.stop_reading(code_no_error);
        finish_quietly(c);
        return;
      }
    }
    if (c.session.state() == session_state::finished) {
      finish_quietly(c);
      return;
    }
    if (c.relay) step_relay(c);
  }

  // Acts on a session event; returns whether to keep feeding.
  bool on_session_event(stream_ctx& c, session_event e, timestamp now) {
    switch (e) {
    case session_event::need_more:
      return true;
    case session_event::north_ready:
      if (refusing) {
        // Draining: no new task (south streams of running tasks are still welcome).
        ctx.log.info("task.refused", {{"conn", ctx.conn_id},
                                      {"stream", c.stream.id()},
                                      {"match", c.session.match_id()},
                                      {"reason", "shutting down"}});
        reset_both(c, code_shutting_down);
        c.final = true;
        return false;
      }
      answer(c, now);
      return false;
    case session_event::south_ready:
      start_south(c);
      return false;
    case session_event::finished:
      // An empty stream finished at once: g3proxy's quiet abort, or the empty south stream
      // that follows bypass and block. Normal.
      finish_quietly(c);
      return false;
    case session_event::error:
      fail(c, c.session.error(), c.session.error_offset(), true);
      return false;
    default:
      return false;
    }
  }

  // A north request is complete: decide, create the task, queue the 4-byte answer.
  void answer(stream_ctx& c, timestamp now) {
    (void)c.session.decide(ctx.config.decision);
    auto t = std::make_unique<task>();
    t->north = &c;
    t->match_id = c.session.match_id();
    t->started = c.opened;
    c.owner = t.get();
    tasks.emplace(t.get(), std::move(t));
    ++counters.tasks;
    ctx.log.debug("task.start", {{"conn", ctx.conn_id},
                                 {"stream", c.stream.id()},
                                 {"task", to_text(c.session.task().request.task_id).view()},
                                 {"match", c.session.match_id()},
                                 {"action", to_string(ctx.config.decision)}});
    step_stream(c, now); // write the answer now if there is room
  }

  // "continue" was written: park the north for its south, and echo at once (client bytes may
  // reach north before the south header arrives).
  void start_north_relay(stream_ctx& c, timestamp now) {
    const auto r = pairing.add(stream_kind::north, c.session.match_id(), &c, now);
    if (r.status == pairing_status::rejected) {
      fail(c, r.error, 0, true);
      return;
    }
    c.paired_in_table = true;
    if (r.status == pairing_status::paired) join(c, **r.partner);
    c.relay.emplace(c.stream, c.stream, stream_kind::north, relay_opts);
  }

  // A south hello is complete: pair it with its north (normally waiting already), then echo.
  void start_south(stream_ctx& c) {
    const auto r = pairing.add(stream_kind::south, c.session.match_id(), &c, monotonic_now());
    if (r.status == pairing_status::rejected) {
      fail(c, r.error, 0, true);
      return;
    }
    c.paired_in_table = true;
    if (r.status == pairing_status::paired) join(**r.partner, c);
    c.relay.emplace(c.stream, c.stream, stream_kind::south, relay_opts);
    step_relay(c);
  }

  // |north| and |south| belong to one task.
  static void join(stream_ctx& north, stream_ctx& south) {
    if (north.owner) {
      north.owner->south = &south;
      south.owner = north.owner;
    }
  }

  void step_relay(stream_ctx& c) {
    const relay_state st = c.relay->step();
    if (st == relay_state::running) return;
    c.final = true;
    // A north that ended normally stays in the pairing table until its south came (or did not
    // come in time): see maybe_log_task.
    if (st != relay_state::finished && st != relay_state::stopped) leave_pairing(c);
    if (!c.owner) {
      leave_pairing(c);
      return;
    }
    task& t = *c.owner;
    switch (st) {
    case relay_state::finished:
      break;
    case relay_state::stopped:
      // STOP_SENDING 0 is how g3proxy ends a task normally (it drops one receive side); any
      // other code is the client giving up on the task.
      if (c.relay->code().value_or(0) != 0) {
        task_half_failed(t, c, "stopped by client");
        return;
      }
      break;
    case relay_state::reset:
      task_half_failed(t, c, "reset by client");
      return;
    default:
      task_half_failed(t, c, "aborted");
      return;
    }
    maybe_log_task(t);
  }

  // The stream ended without a task of its own: FIN our side too (its receive side ended and
  // nothing was left to echo).
  void finish_quietly(stream_ctx& c) {
    if (c.final) return;
    c.final = true;
    if (!c.stream.send_stopped()) c.stream.close_write();
    if (c.owner) maybe_log_task(*c.owner);
  }
};

// --- task_set ----------------------------------------------------------------------------------

task_set::task_set(const context& ctx) : impl_(std::make_unique<impl>(ctx)) {}

task_set::~task_set() = default;

quic_stream& task_set::open_stream(ngtcp2_conn* conn, std::int64_t id, timestamp now) {
  impl& m = *impl_;
  auto c = std::make_unique<impl::stream_ctx>(conn, id, m);
  c->opened = now;
  impl::stream_ctx* raw = c.get();
  m.streams[id] = std::move(c);
  ++m.counters.streams;
  m.header_deadlines.emplace_back(now + m.ctx.config.header_timeout, id);
  return raw->stream;
}

void task_set::on_event(quic_stream& s) {
  impl& m = *impl_;
  if (m.closed) return;
  if (auto* c = m.find(s.id()); c && !c->ready) {
    c->ready = true;
    m.ready.push_back(s.id());
  }
}

void task_set::step(timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  std::vector<std::int64_t> ready;
  ready.swap(m.ready);
  for (const auto id : ready) {
    impl::stream_ctx* c = m.find(id);
    if (!c) continue;
    c->ready = false;
    m.step_stream(*c, now);
  }
}

void task_set::on_closed(quic_stream& s, timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  impl::stream_ctx* c = m.find(s.id());
  if (!c) return;
  const std::int64_t id = s.id();
  if (!c->final) {
    // ngtcp2 is done with a stream we were not done with (both sides ended under us): let the
    // machines see the ends once more, then consider it over.
    m.step_stream(*c, now);
    c = m.find(id); // stepping may have logged its task and freed it
    if (c && !c->final) {
      c->final = true;
      m.leave_pairing(*c);
      if (c->owner) m.task_half_failed(*c->owner, *c, "stream closed");
    }
  }
  m.free_if_done(id);
}

std::optional<timestamp> task_set::next_deadline() const {
  const impl& m = *impl_;
  if (m.closed) return std::nullopt;
  std::optional<timestamp> t = m.pairing.next_expiry();
  if (!m.header_deadlines.empty() && (!t || m.header_deadlines.front().first < *t)) {
    t = m.header_deadlines.front().first;
  }
  return t;
}

void task_set::on_deadline(timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  while (!m.header_deadlines.empty() && m.header_deadlines.front().first <= now) {
    const auto id = m.header_deadlines.front().second;
    m.header_deadlines.pop_front();
    impl::stream_ctx* c = m.find(id);
    if (!c || c->final) continue;
    const auto st = c->session.state();
    if (st == session_state::header || st == session_state::payload) {
      // A slow or silent sender (a stream opened and never written, a trickled header).
      m.fail(*c, errc::header_timeout, c->session.received(), true);
    }
  }
  while (const auto e = m.pairing.pop_expired(now)) {
    impl::stream_ctx* c = e->handle;
    c->paired_in_table = false; // pop_expired removed it
    if (!c->final) {
      m.fail(*c, errc::pairing_expired, 0, true);
    } else if (c->owner) {
      // The north already ended normally, but its south never came.
      m.log_stream_error(*c, errc::pairing_expired, 0);
      c->owner->how = errc_name(errc::pairing_expired);
      m.maybe_log_task(*c->owner);
    }
  }
}

void task_set::refuse_new() noexcept {
  impl_->refusing = true;
}

void task_set::connection_closed(std::string_view reason, timestamp) {
  impl& m = *impl_;
  if (m.closed) return;
  m.closed = true;
  std::vector<impl::task*> running;
  for (auto& [t, owned] : m.tasks) running.push_back(t);
  for (impl::task* t : running) {
    // A bypassed or blocked task whose answer went out is complete: the client only had its
    // FIN left to send.
    const bool answered = t->north->session.state() == session_state::closing ||
                          t->north->session.state() == session_state::finished;
    m.log_task(*t, answered && t->how.empty() ? how_finished : reason);
  }
  for (auto& [id, c] : m.streams) {
    m.counters.bytes_in += c->relay ? c->relay->bytes_in() : 0;
    m.counters.bytes_out += c->relay ? c->relay->bytes_out() : 0;
  }
  m.streams.clear();
  m.ready.clear();
  m.header_deadlines.clear();
}

std::size_t task_set::active() const noexcept {
  // A stream counts until ngtcp2 closed it, that is until the client acknowledged our last
  // byte and FIN: a draining server must not close the connection under an echo in flight.
  return impl_->streams.size();
}

const task_counters& task_set::counters() const noexcept {
  return impl_->counters;
}

} // namespace detour::cli
