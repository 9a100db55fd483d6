// SPDX-License-Identifier: MIT
// cli/probe_pool.cpp: the connection pool of `detour probe` (see probe_pool.hpp).
#include "probe_pool.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <stdexcept>

namespace detour::cli::probe {

/// One running task: its two streams on one connection, its timer, and the g3_task.
class client_pool::binding final : public stream_observer, public task_io {
public:
  binding(client_pool& pool, pooled_connection& c, pending_task&& p, std::uint16_t match_id)
      : pool_(pool), conn_(&c), task_(std::move(p.plan), match_id), done_(std::move(p.done)),
        timer_(pool.loop_, [this] { on_timer(); }) {}

  /// Opens north then south, as g3proxy opens its two streams back to back. Neither is visible
  /// to the server before something is written on it.
  bool open() {
    north_ = conn_->quic->open_stream(this);
    if (north_ < 0) return false;
    south_ = conn_->quic->open_stream(this);
    return south_ >= 0;
  }

  void start() {
    pool_.log_.debug("probe.task.start", {{"conn", conn_->quic->id()},
                                          {"north", north_},
                                          {"south", south_},
                                          {"match", task_.match_id()},
                                          {"protocol", task_.plan().protocol}});
    task_.start(*this, monotonic_now());
    settle();
  }

  // stream_observer
  void on_data(std::int64_t id, std::span<const std::uint8_t> bytes, bool fin) override {
    task_.on_data(*this, side_of(id), bytes, fin, monotonic_now());
    settle();
  }
  void on_reset(std::int64_t id, std::uint64_t code) override {
    task_.on_reset(*this, side_of(id), code, monotonic_now());
    settle();
  }
  void on_stop_sending(std::int64_t id, std::optional<std::uint64_t> code) override {
    task_.on_stop_sending(*this, side_of(id), code, monotonic_now());
    settle();
  }
  void on_writable(std::int64_t id) override {
    task_.on_writable(*this, side_of(id), monotonic_now());
    settle();
  }

  // task_io
  std::size_t write(side s, std::span<const std::uint8_t> bytes) override {
    return conn_ ? conn_->quic->write_some(id_of(s), bytes) : 0;
  }
  void finish(side s) override {
    if (conn_) conn_->quic->finish(id_of(s));
  }
  void stop_sending(side s, std::uint64_t code) override {
    if (conn_) conn_->quic->stop_sending(id_of(s), code);
  }

  /// Fails the task from outside (connection closed, shutdown).
  void fail(failure f, const std::string& why) {
    task_.fail(f, why, monotonic_now());
    settle();
  }

  /// Forgets the streams (the task is over): later events on them are dropped.
  void detach() {
    if (!conn_) return;
    if (north_ >= 0) conn_->quic->set_observer(north_, nullptr);
    if (south_ >= 0) conn_->quic->set_observer(south_, nullptr);
    timer_.cancel();
    conn_ = nullptr;
  }

  /// The result, with where the task ran.
  task_result result() const {
    task_result r = task_.result();
    r.connection = connection_id_;
    r.north_stream = north_;
    r.south_stream = south_;
    return r;
  }

  pooled_connection* connection() const noexcept { return conn_; }
  const task_done& done_callback() const noexcept { return done_; }
  bool finished_reported = false;
  std::uint64_t connection_id_ = 0;

private:
  side side_of(std::int64_t id) const noexcept { return id == north_ ? side::north : side::south; }
  std::int64_t id_of(side s) const noexcept { return s == side::north ? north_ : south_; }

  void on_timer() {
    task_.on_timer(*this, monotonic_now());
    settle();
  }

  void settle() {
    if (task_.done()) {
      if (!finished_reported) {
        finished_reported = true;
        pool_.task_finished(*this);
      }
      return;
    }
    if (const nanoseconds at = task_.next_deadline(); at != 0) timer_.arm_at(at);
  }

  client_pool& pool_;
  pooled_connection* conn_;
  g3_task task_;
  task_done done_;
  timer timer_;
  std::int64_t north_ = -1;
  std::int64_t south_ = -1;
};

// --- the pool ----------------------------------------------------------------------------------

client_pool::client_pool(event_loop& loop, const tls_context& tls, pool_config config, logger& log)
    : loop_(loop), tls_(tls), config_(std::move(config)), log_(log),
      reap_later_(loop, [this] { reap(); }), dispatch_later_(loop, [this] { dispatch(); }),
      pending_timer_(loop, [this] { check_pending_timeouts(); }) {
  if (config_.reuse_limit == 0) config_.reuse_limit = 1;
  if (config_.connections == 0) config_.connections = 1;
}

client_pool::~client_pool() {
  for (auto& b : bindings_) b->detach();
  for (auto& b : finished_) b->detach();
}

pooled_connection* client_pool::find(quic_connection& q) noexcept {
  for (auto& c : connections_)
    if (c.quic.get() == &q) return &c;
  return nullptr;
}

pooled_connection& client_pool::open_connection(bool dedicated) {
  auto quic = std::make_unique<quic_connection>(loop_, config_.quic, tls_, batch_, *this,
                                                next_connection_id_++);
  pooled_connection& c = connections_.emplace_back();
  c.quic = std::move(quic);
  c.dedicated = dedicated;
  ++stats_.connections_opened;
  log_.debug("probe.conn.open", {{"conn", c.quic->id()},
                                 {"local", c.quic->local_address().to_string()},
                                 {"server", config_.quic.server.to_string()},
                                 {"dedicated", dedicated}});
  c.quic->connect();
  return c;
}

pooled_connection& client_pool::dial() {
  return open_connection(true);
}

bool client_pool::wait_established(pooled_connection& c, nanoseconds deadline) {
  run_until([&] { return c.quic->established() || c.quic->closed(); }, deadline);
  return c.quic->established();
}

std::uint16_t client_pool::take_match_id(pooled_connection& c) {
  return static_cast<std::uint16_t>(c.tasks_started++ & 0xFFFF);
}

void client_pool::close(pooled_connection& c, std::uint64_t code, std::string_view reason) {
  if (c.quic->closed()) return;
  if (code == 0 && reason == "finished") ++stats_.finished_closes;
  log_.debug(
      "probe.conn.close",
      {{"conn", c.quic->id()}, {"code", code}, {"reason", reason}, {"tasks", c.tasks_started}});
  c.quic->close(code, reason);
}

void client_pool::submit(task_plan plan, task_done done) {
  pending_.push_back({std::move(plan), std::move(done), nullptr, monotonic_now()});
  dispatch_later_.schedule();
}

void client_pool::submit_on(pooled_connection& c, task_plan plan, task_done done) {
  pending_.push_back({std::move(plan), std::move(done), &c, monotonic_now()});
  dispatch_later_.schedule();
}

bool client_pool::run_until(const std::function<bool()>& done, nanoseconds deadline) {
  while (!done()) {
    if (monotonic_now() >= deadline) return false;
    loop_.run_once(deadline);
  }
  return true;
}

// --- dispatching -------------------------------------------------------------------------------

void client_pool::dispatch() {
  if (shutting_down_) return;
  // Tasks aimed at a connection that is gone can never start.
  std::vector<pending_task> orphans;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->target && it->target->quic->closed()) {
      orphans.push_back(std::move(*it));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& p : orphans) {
    task_result r;
    r.error = failure::connection_closed;
    r.detail =
        "the connection closed before the task started: " + describe(p.target->quic->close_state());
    r.started = p.queued_at;
    r.finished = monotonic_now();
    p.done(r);
  }

  const bool want_pool = std::any_of(pending_.begin(), pending_.end(),
                                     [](const pending_task& p) { return p.target == nullptr; });
  if (want_pool) {
    const bool unreachable = connect_failures_in_row_ >= config_.max_connect_failures;
    if (unreachable) {
      // The server does not answer: fail what waits at once instead of dialing round after
      // round, and keep a single attempt going to notice its return (a handshake resets this).
      fail_pending(failure::connect,
                   fmt::format("{} connection attempts failed in a row, the last: {}",
                               connect_failures_in_row_, stats_.last_connect_error));
    }
    std::size_t live = 0, connecting = 0, free_now = 0;
    for (const auto& c : connections_) {
      if (c.dedicated || c.quic->closed() || c.retiring) continue;
      ++live;
      if (!c.quic->established())
        ++connecting;
      else if (c.active == 0 && c.tasks_started < config_.reuse_limit)
        ++free_now;
    }
    std::size_t target = unreachable ? (connecting == 0 ? live + 1 : live) : config_.connections;
    if (config_.dial_on_demand && !unreachable) {
      // One new connection per waiting task that no open or opening connection will take.
      const auto waiting = static_cast<std::size_t>(std::count_if(
          pending_.begin(), pending_.end(), [](const pending_task& p) { return !p.target; }));
      const std::size_t covered = connecting + free_now;
      target = std::min(target, live + (waiting > covered ? waiting - covered : 0));
    }
    for (; live < target; ++live) {
      try {
        open_connection(false);
      } catch (const std::exception& e) {
        ++stats_.connect_failures;
        ++connect_failures_in_row_;
        stats_.last_connect_error = e.what();
        fail_pending(failure::connect, std::string("cannot open a connection: ") + e.what());
        return;
      }
    }
  }

  for (auto it = pending_.begin(); it != pending_.end();) {
    pooled_connection* chosen = nullptr;
    if (it->target) {
      if (it->target->quic->established() && it->target->quic->streams_left() >= 2)
        chosen = it->target;
    } else {
      for (auto& c : connections_) {
        if (c.dedicated || c.retiring || !c.quic->established()) continue;
        if (c.tasks_started >= config_.reuse_limit || c.quic->streams_left() < 2) continue;
        // The least busy; among equals the one furthest into its reuse cycle, so that
        // connections fill up and rotate as g3proxy's do rather than all aging together.
        if (!chosen || c.active < chosen->active ||
            (c.active == chosen->active && c.tasks_started > chosen->tasks_started))
          chosen = &c;
      }
    }
    if (!chosen) {
      ++it;
      continue;
    }
    pending_task p = std::move(*it);
    it = pending_.erase(it);
    start(*chosen, p);
  }

  if (!pending_.empty()) {
    pending_timer_.arm_at(pending_.front().queued_at + config_.stream_open_timeout);
  } else {
    pending_timer_.cancel();
  }
}

bool client_pool::start(pooled_connection& c, pending_task& p) {
  const auto match_id = static_cast<std::uint16_t>(c.tasks_started++ & 0xFFFF);
  if (!c.dedicated && c.tasks_started >= config_.reuse_limit) c.retiring = true;
  auto owned = std::make_unique<binding>(*this, c, std::move(p), match_id);
  binding& b = *owned;
  b.connection_id_ = c.quic->id();
  bindings_.push_back(std::move(owned));
  ++c.active;
  ++running_;
  if (!b.open()) {
    // Credit was checked beforehand, so only a connection closing meanwhile gets here.
    b.fail(failure::stream_open_timeout, "the server granted no stream");
    return false;
  }
  b.start();
  return true;
}

void client_pool::task_finished(binding& b) {
  pooled_connection* c = b.connection();
  b.detach();
  if (c) --c->active;
  --running_;
  const auto it = std::find_if(bindings_.begin(), bindings_.end(),
                               [&](const auto& p) { return p.get() == &b; });
  if (it != bindings_.end()) {
    finished_.push_back(std::move(*it));
    bindings_.erase(it);
  }
  reap_later_.schedule();
}

void client_pool::reap() {
  // Results first: their callbacks may queue more work.
  auto done = std::move(finished_);
  finished_.clear();
  for (auto& b : done) {
    const task_result r = b->result();
    log_.debug("probe.task.done", {{"conn", r.connection},
                                   {"north", r.north_stream},
                                   {"south", r.south_stream},
                                   {"match", r.match_id},
                                   {"result", to_string(r.error)},
                                   {"detail", r.detail}});
    if (b->done_callback()) b->done_callback()(r);
  }
  done.clear();

  // Connections that served their share close with g3proxy's 0 "finished" once idle.
  for (auto& c : connections_) {
    if (c.retiring && c.active == 0 && !c.quic->closed()) close(c);
  }
  // Closed pooled connections whose close was handled can go.
  connections_.remove_if(
      [](const pooled_connection& c) { return !c.dedicated && c.reported && c.active == 0; });
  dispatch();
}

void client_pool::fail_pending(failure f, const std::string& why, pooled_connection* only) {
  std::deque<pending_task> failed;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if ((only && it->target == only) || (!only && it->target == nullptr)) {
      failed.push_back(std::move(*it));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  const nanoseconds now = monotonic_now();
  for (auto& p : failed) {
    task_result r;
    r.error = f;
    r.detail = why;
    r.started = p.queued_at;
    r.finished = now;
    p.done(r);
  }
}

void client_pool::check_pending_timeouts() {
  const nanoseconds now = monotonic_now();
  std::deque<pending_task> expired;
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now >= it->queued_at + config_.stream_open_timeout) {
      expired.push_back(std::move(*it));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& p : expired) {
    task_result r;
    r.error = failure::stream_open_timeout;
    r.detail = fmt::format("no connection with stream credit within {:g} s",
                           static_cast<double>(config_.stream_open_timeout) / 1e9);
    if (!stats_.last_connect_error.empty())
      r.detail += " (last connection failure: " + stats_.last_connect_error + ")";
    r.started = p.queued_at;
    r.finished = now;
    p.done(r);
  }
  dispatch();
}

// --- connection events -------------------------------------------------------------------------

void client_pool::on_handshake(quic_connection& q) {
  ++stats_.handshakes;
  if (q.resumed()) ++stats_.resumed;
  stats_.handshake_times.push_back(q.stats().handshake_done - q.stats().started);
  connect_failures_in_row_ = 0;
  log_.debug("probe.conn.ready", {{"conn", q.id()},
                                  {"resumed", q.resumed()},
                                  {"alpn", q.alpn()},
                                  {"streams", q.streams_left()}});
  dispatch_later_.schedule();
}

void client_pool::on_streams_available(quic_connection&) {
  dispatch_later_.schedule();
}

void client_pool::on_closed(quic_connection& q) {
  pooled_connection* c = find(q);
  if (!c || c->reported) return;
  c->reported = true;
  const close_info& info = q.close_state();
  const std::string why = describe(info);
  if (!q.stats().handshake_done) {
    ++stats_.connect_failures;
    ++connect_failures_in_row_;
    stats_.last_connect_error = why;
  }
  if (info.by == close_info::cause::peer) ++stats_.closed_by_server;
  if (info.by == close_info::cause::idle_timeout) ++stats_.idle_timeouts;
  log_.debug("probe.conn.closed", {{"conn", q.id()},
                                   {"cause", to_string(info.by)},
                                   {"code", info.code},
                                   {"reason", info.reason},
                                   {"tasks", c->tasks_started}});
  std::vector<binding*> victims;
  for (auto& b : bindings_)
    if (b->connection() == c) victims.push_back(b.get());
  for (binding* b : victims) b->fail(failure::connection_closed, "the connection ended: " + why);
  fail_pending(failure::connection_closed, "the connection ended before the task started: " + why,
               c);
  reap_later_.schedule();
}

void client_pool::shutdown(std::string_view why) {
  shutting_down_ = true;
  std::deque<pending_task> queued = std::move(pending_);
  pending_.clear();
  for (auto& p : queued) {
    task_result r;
    r.error = failure::deadline;
    r.detail = std::string(why);
    r.started = p.queued_at;
    r.finished = monotonic_now();
    p.done(r);
  }
  std::vector<binding*> running;
  for (auto& b : bindings_) running.push_back(b.get());
  for (binding* b : running) b->fail(failure::deadline, std::string(why));
  for (auto& c : connections_) close(c);
  for (auto& c : connections_) c.reported = true;
  reap();
  connections_.clear();
  pending_timer_.cancel();
  shutting_down_ = false;
}

} // namespace detour::cli::probe
