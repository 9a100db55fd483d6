// SPDX-License-Identifier: MIT
// cli/task.cpp: the detour tasks of one connection (see task.hpp). The protocol work is the
// library's io::server_connection (sessions, answers, pairing, echo relays, deadlines); this
// file owns the QUIC stream objects, feeds it events and time, and writes the log lines.
#include "task.hpp"

#include "app_codes.hpp"
#include "inspection.hpp"

#include <detour/io/server_connection.hpp>

#include <unordered_map>
#include <vector>

namespace detour::cli {

namespace {

// The relays run the inspection features' inspector (capture, a custom server's hook).
using driver_set = io::server_connection<quic_stream, timestamp, serve_inspector>;
using io::stream_status;

bool final(stream_status s) {
  return s == stream_status::done || s == stream_status::failed;
}

// Errors that are the client's normal ways of ending or abandoning a stream: the task's log
// line says how it ended; they are no protocol violation worth a warning.
bool quiet_error(errc e) {
  return e == errc::stream_reset || e == errc::partner_aborted;
}

} // namespace

struct task_set::impl {
  // What a task's log line needs, copied when the task is answered: the library reuses the
  // stream's slot (and its request storage) once the stream is released.
  struct task {
    std::string id;
    std::string user;
    std::string upstream;
    std::string protocol;
    std::uint16_t match_id = 0;
    action decision = action::proceed;
    timestamp started = 0;
    std::optional<std::int64_t> north; // QUIC stream ids while the streams are tracked
    std::optional<std::int64_t> south;
    std::int64_t north_stream = -1; // the same, kept for the log line
    std::int64_t south_stream = -1;
    driver_set::stream_id north_sid = 0; // the library's id of the north stream
    bool north_final = false;
    bool south_final = false;
    std::uint64_t client_bytes = 0; // echoed on north
    std::uint64_t remote_bytes = 0; // echoed on south
    std::string how;                // the first abnormal end, if any
    // The audit record and the capture (inspection.hpp).
    std::shared_ptr<task_trace> trace;
  };

  struct stream_entry {
    stream_entry(ngtcp2_conn* conn, std::int64_t id, impl& m)
        : stream(conn, id, m.ctx.pool, m.ctx.config.send_buffer, m.ctx.budget, m.ctx.listener) {}
    quic_stream stream;
    std::optional<driver_set::stream_id> sid; // the library's id, until released
    task* owner = nullptr;
    bool final_seen = false;
    bool ready = false;
  };

  explicit impl(const context& c) : ctx(c) {
    io::server_options<timestamp> o;
    o.stream.session.limits.header.max_header_size = c.config.max_header_size;
    o.stream.session.limits.max_payload_length =
        static_cast<std::uint32_t>(c.config.max_payload_size);
    // Twice the streams QUIC lets the client have open: a north stream that ended before its
    // south arrived keeps its slot (for the pairing) after QUIC closed it, and must not make
    // the library refuse a stream QUIC allowed. Slots are created on first use.
    o.max_streams = 2 * static_cast<std::size_t>(c.config.max_streams);
    o.header_timeout = c.config.header_timeout;
    // A south hello whose match id has no task here is refused at once (unknown_match_id):
    // g3proxy sends it only after reading our answer, which follows the north's parking.
    o.accept_south_first = false;
    drivers =
        std::make_unique<driver_set>(c.config.pair_timeout, o, serve_inspector(c.config.features));
  }

  context ctx;
  std::unique_ptr<driver_set> drivers;
  std::unordered_map<std::int64_t, std::unique_ptr<stream_entry>> streams;
  std::unordered_map<task*, std::unique_ptr<task>> tasks;
  // Tasks by their north stream's library id: how a south stream finds its task. The library
  // keeps that id for the north until its south is done with it, even after QUIC closed it.
  std::unordered_map<driver_set::stream_id, task*> by_north;
  std::vector<std::int64_t> ready;
  task_counters counters;
  bool refusing = false;
  bool closed = false;

  stream_entry* find(std::int64_t id) {
    const auto it = streams.find(id);
    return it == streams.end() ? nullptr : it->second.get();
  }

  // --- after every call into the drivers: see what changed --------------------------------------

  // Looks at a stream and at its partner after the library moved them.
  void sync_pair(stream_entry& e, timestamp now) {
    sync(e, now);
    if (!e.sid) return;
    if (const auto p = drivers->partner(*e.sid)) {
      for (auto& [id, other] : streams) {
        if (other->sid == p) {
          sync(*other, now);
          break;
        }
      }
    }
  }

  void sync(stream_entry& e, timestamp now) {
    if (!e.sid || e.final_seen) return;
    const auto sid = *e.sid;
    const auto& d = drivers->stream(sid);
    // A south stream joins its task once the library paired it with the north.
    if (!e.owner && d.kind() == stream_kind::south) {
      if (const auto p = drivers->partner(sid)) {
        if (const auto it = by_north.find(*p); it != by_north.end()) {
          e.owner = it->second;
          e.owner->south = e.stream.id();
          e.owner->south_stream = e.stream.id();
        }
      }
    }
    const stream_status st = drivers->status(sid);
    if (!final(st)) return;
    account(e);
    if (st == stream_status::failed && !quiet_error(d.error())) log_stream_error(e, d.error());
    if (task* t = e.owner) {
      (d.kind() == stream_kind::north ? t->north_final : t->south_final) = true;
      if (st == stream_status::failed && t->how.empty()) t->how = errc_name(d.error());
      maybe_log(*t, now);
    }
  }

  // Counts a stream's relayed bytes, once: when it ends, or when the connection ends under it.
  void account(stream_entry& e) {
    if (!e.sid || e.final_seen) return;
    e.final_seen = true;
    const auto& d = drivers->stream(*e.sid);
    counters.bytes_in += d.bytes_in();
    counters.bytes_out += d.bytes_out();
    if (task* t = e.owner)
      (d.kind() == stream_kind::north ? t->client_bytes : t->remote_bytes) = d.bytes_in();
  }

  void log_stream_error(stream_entry& e, errc err) {
    ++counters.bad_streams;
    if (ctx.config.features) ctx.config.features->stream_error(err);
    const auto& d = drivers->stream(*e.sid);
    const bool known = d.kind().has_value();
    ctx.log.warn(
        "stream.error",
        {{"conn", ctx.conn_id},
         {"stream", e.stream.id()},
         {"match", known ? std::to_string(d.match_id()) : std::string("-")},
         {"kind", known ? (d.kind() == stream_kind::north ? "north" : "south") : "unknown"},
         {"error", errc_name(err)},
         {"offset", d.session().error_offset()},
         {"code", io::app_code_for(err)}});
  }

  // A task is over when its north is, and, after "continue", its south too (or when no south
  // can come any more: the match id left the pairing table, or the north failed).
  void maybe_log(task& t, timestamp now) {
    if (!t.north_final) return;
    if (t.decision == action::proceed && t.how.empty() && !t.south_final) {
      if (t.south) return;
      const auto e = drivers->pairing().find(t.match_id);
      if (e && e->north) return; // still waiting for its south
      t.how = errc_name(errc::pairing_expired);
    }
    log_task(t, t.how.empty() ? std::string_view("finished") : std::string_view(t.how), now);
  }

  void log_task(task& t, std::string_view how, timestamp now) {
    if (t.trace) ctx.config.features->end_task(*t.trace, t.client_bytes, t.remote_bytes, how, now);
    ctx.log.info("task.end", {{"conn", ctx.conn_id},
                              {"task", t.id},
                              {"match", t.match_id},
                              {"north", t.north_stream},
                              {"south", t.south_stream},
                              {"user", t.user},
                              {"upstream", t.upstream},
                              {"protocol", t.protocol},
                              {"action", to_string(t.decision)},
                              {"client_bytes", t.client_bytes},
                              {"remote_bytes", t.remote_bytes},
                              {"ms", (now - t.started) / nanoseconds_per_millisecond},
                              {"how", how}});
    for (auto& [id, e] : streams) {
      if (e->owner == &t) e->owner = nullptr;
    }
    if (const auto it = by_north.find(t.north_sid); it != by_north.end() && it->second == &t) {
      by_north.erase(it);
    }
    tasks.erase(&t);
  }

  // --- the library asks for a decision ----------------------------------------------------------

  void answer(stream_entry& e, timestamp now) {
    const auto sid = *e.sid;
    const auto& tr = drivers->stream(sid).session().task();
    const auto& r = tr.request;
    // Draining: start no new relay. For a pass-through server "bypass" changes nothing for the
    // traffic (g3proxy relays it itself) and fails no task; bypass and block stay as they are.
    action a = ctx.config.decision;
    if (refusing && a == action::proceed) a = action::bypass;
    std::shared_ptr<task_trace> trace;
    if (ctx.config.features) {
      // The policy's decision (or --action), the audit record, the capture (inspection.hpp).
      trace = ctx.config.features->begin_task(drivers->stream(sid).session().task(), ctx.conn_id,
                                              ctx.config.decision, refusing, now);
      a = trace->record.decision;
    }

    auto t = std::make_unique<task>();
    t->id = std::string(to_text(r.task_id).view());
    t->user = std::string(r.username.value_or("-"));
    t->upstream = std::string(r.upstream.text);
    t->protocol = std::string(r.protocol_name);
    t->match_id = r.match_id;
    t->decision = a;
    t->started = now;
    t->north = e.stream.id();
    t->north_stream = e.stream.id();
    t->north_sid = sid;
    t->trace = std::move(trace);
    e.owner = t.get();
    by_north[sid] = t.get();
    tasks.emplace(t.get(), std::move(t));
    ++counters.tasks;
    if (tr.websocket_error != errc{}) {
      // g3proxy never sends such a summary. A pass-through server decides nothing from the
      // payload, so the task is answered as any other; the line tells who sent it.
      ctx.log.warn("task.bad_payload", {{"conn", ctx.conn_id},
                                        {"stream", e.stream.id()},
                                        {"task", e.owner->id},
                                        {"match", e.owner->match_id},
                                        {"protocol", e.owner->protocol},
                                        {"error", errc_name(tr.websocket_error)}});
    }
    ctx.log.debug("task.start", {{"conn", ctx.conn_id},
                                 {"stream", e.stream.id()},
                                 {"task", e.owner->id},
                                 {"match", e.owner->match_id},
                                 {"action", to_string(a)}});
    (void)drivers->decide(sid, a, now);
  }

  // A connection with nothing running gives back what its tasks needed (the library's slots
  // and pairing table, our maps' buckets): thousands of idle pooled connections then cost no
  // more than new ones. The next task allocates them again, once per busy period.
  void maybe_trim() {
    if (!streams.empty() || !tasks.empty() || !drivers->trim()) return;
    decltype(streams)().swap(streams);
    decltype(tasks)().swap(tasks);
    decltype(by_north)().swap(by_north);
    decltype(ready)().swap(ready);
    ctx.log.debug("conn.idle", {{"conn", ctx.conn_id}, {"tasks", counters.tasks}});
  }

  void step_entry(stream_entry& e, timestamp now) {
    if (!e.sid) return;
    if (drivers->step(*e.sid, now) == stream_status::decision && !e.owner) answer(e, now);
    sync_pair(e, now);
  }
};

// --- task_set ----------------------------------------------------------------------------------

task_set::task_set(const context& ctx) : impl_(std::make_unique<impl>(ctx)) {}

task_set::~task_set() = default;

quic_stream& task_set::open_stream(ngtcp2_conn* conn, std::int64_t id, timestamp now) {
  impl& m = *impl_;
  auto e = std::make_unique<impl::stream_entry>(conn, id, m);
  impl::stream_entry& ref = *e;
  m.streams[id] = std::move(e);
  ++m.counters.streams;
  ref.sid = m.drivers->open(ref.stream, now);
  if (!ref.sid) {
    // More streams than the library tracks: cannot happen while MAX_STREAMS grants no more
    // than --max-streams, which is the library's limit too.
    ref.stream.stop_reading(io::app_code_for(errc::pairing_full));
    ref.stream.reset_write(io::app_code_for(errc::pairing_full));
    ref.final_seen = true;
  }
  return ref.stream;
}

void task_set::on_event(quic_stream& s) {
  impl& m = *impl_;
  if (m.closed) return;
  if (auto* e = m.find(s.id()); e && !e->ready) {
    e->ready = true;
    m.ready.push_back(s.id());
  }
}

void task_set::wake_all() {
  impl& m = *impl_;
  if (m.closed) return;
  for (auto& [id, e] : m.streams) {
    if (!e->ready && !e->final_seen) {
      e->ready = true;
      m.ready.push_back(id);
    }
  }
}

void task_set::step(timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  std::vector<std::int64_t> ready;
  ready.swap(m.ready);
  for (const auto id : ready) {
    impl::stream_entry* e = m.find(id);
    if (!e) continue;
    e->ready = false;
    m.step_entry(*e, now);
  }
  if (m.ready.empty()) {
    // Hand the list back with its capacity: a step per packet, not an allocation per packet.
    ready.clear();
    m.ready.swap(ready);
  }
}

void task_set::on_closed(quic_stream& s, timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  impl::stream_entry* e = m.find(s.id());
  if (!e) return;
  // One last step sees the ends ngtcp2 reported with the close; then the library lets go (a
  // stream released before it ended counts as reset and aborts its partner).
  m.step_entry(*e, now);
  if (e->sid) {
    const auto partner = m.drivers->partner(*e->sid);
    if (!e->final_seen) {
      m.drivers->release(*e->sid);
      m.sync(*e, now);
    } else {
      m.drivers->release(*e->sid);
    }
    if (partner) {
      for (auto& [id, other] : m.streams) {
        if (other->sid == partner) {
          m.sync(*other, now);
          break;
        }
      }
    }
  }
  if (e->owner) {
    impl::task& t = *e->owner;
    if (t.north == s.id()) t.north.reset();
    if (t.south == s.id()) t.south.reset();
    e->owner = nullptr;
  }
  m.streams.erase(s.id());
  m.maybe_trim();
}

std::optional<timestamp> task_set::next_deadline() const {
  if (impl_->closed) return std::nullopt;
  return impl_->drivers->next_expiry();
}

void task_set::on_deadline(timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  const auto due = m.drivers->next_expiry();
  if (!due || *due > now) return;
  m.drivers->expire(now);
  // Expiry fails streams anywhere on the connection (slow headers, lonely halves).
  for (auto& [id, e] : m.streams) m.sync(*e, now);
  // A north that ended normally and waited in vain for its south is logged now.
  std::vector<impl::task*> waiting;
  for (auto& [t, owned] : m.tasks) waiting.push_back(t);
  for (impl::task* t : waiting) m.maybe_log(*t, now);
  m.maybe_trim();
}

void task_set::refuse_new() noexcept {
  impl_->refusing = true;
}

void task_set::connection_closed(std::string_view reason, timestamp now) {
  impl& m = *impl_;
  if (m.closed) return;
  m.closed = true;
  for (auto& [id, e] : m.streams) m.sync(*e, now);
  // What the streams cut short relayed still counts (task lines, audit, metrics).
  for (auto& [id, e] : m.streams) m.account(*e);
  std::vector<impl::task*> running;
  for (auto& [t, owned] : m.tasks) running.push_back(t);
  for (impl::task* t : running) {
    // A bypassed or blocked task whose answer was written is complete: only the client's FIN
    // was missing. Anything else was cut short by the connection's end (normal when g3proxy
    // retires a connection right after its last task).
    bool answered = t->decision != action::proceed && t->north_final;
    if (t->decision != action::proceed && t->north) {
      if (impl::stream_entry* n = m.find(*t->north); n && n->sid) {
        answered =
            answered || m.drivers->stream(*n->sid).session().state() == session_state::closing;
      }
    }
    m.log_task(*t, answered || (t->north_final && t->south_final) ? "finished" : reason, now);
  }
  // The drivers go first (they point at the streams); nothing here calls into ngtcp2.
  m.drivers.reset();
  m.streams.clear();
  m.ready.clear();
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
