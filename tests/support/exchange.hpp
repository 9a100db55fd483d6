// SPDX-License-Identifier: MIT
// tests/support/exchange.hpp: runs whole detour tasks, client side (io::client_task, as g3proxy
// plays it) against server side (io::server_connection), over any transport that can make a
// connected pair of streams: the in-memory pipe or loopback TCP, through the same templates.
#pragma once

#include <detour/io/client_task.hpp>
#include <detour/io/memory_pipe.hpp>
#include <detour/io/server_connection.hpp>
#include <detour/posix/tcp_stream.hpp>

#include "support/stream_harness.hpp"
#include "support/tasks.hpp"

#include <catch2/catch_test_macros.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace detour::test {

/// In-memory transport: each stream is a memory_pipe; a client and a server end.
struct memory_net {
  using stream_type = io::pipe_end;
  static constexpr const char* name = "memory";
  io::pipe_options client_to_server{.capacity = 8 * 1024};
  io::pipe_options server_to_client{.capacity = 8 * 1024};

  struct link {
    link(const io::pipe_options& up, const io::pipe_options& down) : pipe(up, down) {}
    io::memory_pipe pipe;
    stream_type& client() { return pipe.a(); }
    stream_type& server() { return pipe.b(); }
  };
  std::unique_ptr<link> connect() {
    return std::make_unique<link>(client_to_server, server_to_client);
  }
  void wait(std::span<stream_type* const>) {} // nothing to wait for: everything is in memory
};

/// Loopback TCP transport: each stream is a TCP connection.
struct tcp_net {
  using stream_type = posix::tcp_stream;
  static constexpr const char* name = "tcp";
  posix::tcp_options options{.receive_buffer = 8 * 1024};
  posix::tcp_listener listener;
  posix::poller poller;

  tcp_net() {
    std::error_code ec;
    listener = posix::tcp_listener::listen("127.0.0.1", 0, ec);
    REQUIRE_FALSE(ec);
  }
  struct link {
    stream_type c, s;
    stream_type& client() { return c; }
    stream_type& server() { return s; }
  };
  std::unique_ptr<link> connect() {
    std::error_code ec;
    auto c = posix::connect("127.0.0.1", listener.port(), ec, options);
    REQUIRE(c);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      auto s = listener.accept(ec, options);
      REQUIRE_FALSE(ec);
      if (s) return std::make_unique<link>(link{std::move(*c), std::move(*s)});
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      (void)poller.wait({}, &listener, std::chrono::milliseconds(50), ec);
    }
  }
  void wait(std::span<stream_type* const> streams) {
    std::error_code ec;
    (void)poller.wait(streams, nullptr, std::chrono::milliseconds(20), ec);
    REQUIRE_FALSE(ec);
  }
};

/// One task to run: what g3proxy announces, what the server answers, what flows.
struct task_plan {
  task_spec spec;
  action answer = action::proceed;
  std::vector<std::uint8_t> up{};   // client bytes on north
  std::vector<std::uint8_t> down{}; // remote bytes on south
  int decide_after = 0;             // rounds between the request and the answer (async policy)
  int start_round = 0;              // round at which g3proxy opens the task
};

/// Runs tasks through one server_connection. `Net` is memory_net or tcp_net.
template <class Net, class Inspector = io::pass_through>
class exchange {
public:
  using stream_type = typename Net::stream_type;
  using connection = io::server_connection<stream_type, std::uint64_t, Inspector>;
  using stream_id = typename connection::stream_id;

  struct task {
    task_plan plan;
    std::vector<std::uint8_t> north_open, south_open;
    std::unique_ptr<typename Net::link> north, south;
    std::optional<io::client_task<stream_type>> client;
    writer up_w, down_w;
    reader up_r, down_r;
    std::optional<stream_id> north_id, south_id;
    bool north_released = false, south_released = false;
    // How each server stream ended, kept at release (a released id names the next stream).
    io::stream_status north_end = io::stream_status::active, south_end = io::stream_status::active;
    errc north_error = {}, south_error = {};
    int decision_round = -1;
    bool started = false;
  };

  exchange(Net& net, std::uint64_t pair_timeout,
           const io::server_options<std::uint64_t>& options = {}, Inspector prototype = {})
      : net_(net), conn_(pair_timeout, options, std::move(prototype)) {}

  task& add(task_plan plan) {
    auto t = std::make_unique<task>();
    t->plan = std::move(plan);
    t->north_open = north_bytes(t->plan.spec);
    t->south_open = south_bytes(t->plan.spec.match_id, t->plan.spec.ipv6);
    t->up_w.rest = t->plan.up;
    t->down_w.rest = t->plan.down;
    tasks_.push_back(std::move(t));
    return *tasks_.back();
  }

  /// A hook run once per round (checks).
  std::function<void(exchange&)> each_round;
  /// A hook run when a task's streams were just made, before anything used them (faults).
  std::function<void(task&)> on_start;

  /// Runs until every task settled or `max_rounds` passed; returns the rounds used.
  int run(int max_rounds = 200'000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    for (round_ = 0; round_ < max_rounds; ++round_) {
      const std::uint64_t now = static_cast<std::uint64_t>(round_);
      for (auto& t : tasks_) step_task(*t, now);
      if (const auto e = conn_.next_expiry(); e && *e <= now) conn_.expire(now);
      for (auto& t : tasks_) release_ended(*t);
      if (each_round) each_round(*this);
      if (settled()) return round_;
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      gather();
      net_.wait(all_);
    }
    return round_;
  }

  /// Every task settled and the server holds nothing any more (a task whose south stream never
  /// came stays in the pairing table until it expires).
  bool settled() {
    for (const auto& t : tasks_)
      if (!task_settled(*t)) return false;
    return conn_.pairing().empty();
  }

  /// Where every task stands, for failure messages.
  std::string describe() {
    std::string out;
    auto status = [&](const std::optional<stream_id>& id, bool released, io::stream_status end,
                      errc error) {
      if (!id) return std::string("-");
      if (released)
        return std::string(io::to_string(end)) + "/" + std::string(errc_name(error)) + "/released";
      std::string s = io::to_string(conn_.status(*id));
      s += "/";
      s += to_string(conn_.stream(*id).session().state());
      if (const auto e = conn_.stream(*id).error(); e != errc{})
        s += "/" + std::string(errc_name(e));
      return s;
    };
    for (auto& t : tasks_) {
      out += "task " + std::to_string(t->plan.spec.match_id) + ": client ";
      out += t->client ? std::to_string(static_cast<int>(t->client->status())) : std::string("-");
      out += " north " + status(t->north_id, t->north_released, t->north_end, t->north_error);
      out += " south " + status(t->south_id, t->south_released, t->south_end, t->south_error);
      out += " up " + std::to_string(t->up_r.count) + "/" + std::to_string(t->plan.up.size());
      out += " down " + std::to_string(t->down_r.count) + "/" + std::to_string(t->plan.down.size());
      out += task_settled(*t) ? " settled\n" : " RUNNING\n";
    }
    return out;
  }

  connection& server() { return conn_; }
  std::vector<std::unique_ptr<task>>& tasks() { return tasks_; }
  int round() const { return round_; }

  /// The client's view of a finished task, checked against its plan.
  static bool echoes_match(task& t) {
    return t.up_r.count == t.plan.up.size() && t.up_r.hash.value == hash_of(t.plan.up) &&
           t.down_r.count == t.plan.down.size() && t.down_r.hash.value == hash_of(t.plan.down);
  }

private:
  void step_task(task& t, std::uint64_t now) {
    if (round_ < t.plan.start_round) return;
    if (!t.started) {
      t.started = true;
      t.north = net_.connect();
      t.south = net_.connect();
      t.client.emplace(t.north->client(), t.south->client(), t.north_open, t.south_open,
                       t.plan.spec.match_id);
      if (on_start) on_start(t);
    }
    const auto cs = t.client->step();
    // Client data may follow the answer at once, before the south hello is out.
    if (cs == io::client_status::proceeding || cs == io::client_status::relaying) {
      t.up_w.pump(t.north->client());
      t.up_r.pump(t.north->client());
    }
    if (cs == io::client_status::relaying) {
      t.down_w.pump(t.south->client());
      t.down_r.pump(t.south->client());
    }
    // The server sees a stream once something was written on it (quinn opens lazily).
    if (!t.north_id && appeared(t.north->server())) t.north_id = open(t.north->server(), now);
    if (!t.south_id && appeared(t.south->server())) t.south_id = open(t.south->server(), now);
    for (auto [id, released] :
         {std::pair{&t.north_id, t.north_released}, std::pair{&t.south_id, t.south_released}}) {
      if (!*id || released) continue; // a released id may already name another stream
      const auto st = conn_.step(**id, now);
      if (st == io::stream_status::decision) {
        if (t.decision_round < 0) t.decision_round = round_;
        if (round_ - t.decision_round >= t.plan.decide_after)
          (void)conn_.decide(**id, t.plan.answer, now);
      }
    }
  }

  std::optional<stream_id> open(stream_type& s, std::uint64_t now) {
    const auto id = conn_.open(s, now);
    REQUIRE(id);
    return id;
  }

  static bool appeared(stream_type& s) {
    return !s.readable().empty() || s.at_eof() || s.receive_reset().has_value();
  }

  void release_ended(task& t) {
    auto final = [](io::stream_status s) {
      return s == io::stream_status::done || s == io::stream_status::failed;
    };
    if (t.north_id && !t.north_released && final(conn_.status(*t.north_id))) {
      t.north_end = conn_.status(*t.north_id);
      t.north_error = conn_.stream(*t.north_id).error();
      conn_.release(*t.north_id);
      t.north_released = true;
    }
    if (t.south_id && !t.south_released && final(conn_.status(*t.south_id))) {
      t.south_end = conn_.status(*t.south_id);
      t.south_error = conn_.stream(*t.south_id).error();
      conn_.release(*t.south_id);
      t.south_released = true;
    }
  }

  // A fault injected into a server end (io::pipe_end::inject) is something the client "did"
  // without its client_task knowing, so only the server's side of such a task must settle.
  static bool faulted(task& t) {
    if constexpr (requires { t.north->server().fault_fired(); })
      return t.north->server().fault_fired() || t.south->server().fault_fired();
    return false;
  }

  bool task_settled(task& t) {
    if (!t.started || !t.client) return false;
    if (faulted(t)) return t.north_id && t.north_released && (!t.south_id || t.south_released);
    const auto cs = t.client->status();
    if (cs == io::client_status::active || cs == io::client_status::proceeding) return false;
    if (!t.north_id || !t.north_released) return false;
    if (cs == io::client_status::relaying) {
      if (!t.south_id || !t.south_released) return false;
      // The client got both echoes to their end (or the server ended a stream abnormally).
      return t.up_r.ended(t.north->client()) && t.down_r.ended(t.south->client());
    }
    // bypass, block, failed: the south stream, if the server saw one, has ended.
    return !t.south_id || t.south_released;
  }

  void gather() {
    all_.clear();
    for (auto& t : tasks_) {
      if (!t->started) continue;
      for (auto* l : {t->north.get(), t->south.get()}) {
        all_.push_back(&l->client());
        all_.push_back(&l->server());
      }
    }
  }

  Net& net_;
  connection conn_;
  std::vector<std::unique_ptr<task>> tasks_;
  std::vector<stream_type*> all_;
  int round_ = 0;
};

} // namespace detour::test
