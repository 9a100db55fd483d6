// SPDX-License-Identifier: MIT
// detour/posix/tcp_server.hpp: a small detour server over TCP (one TCP connection per detour
// stream), driven by poll(2): io::server_connection with a policy callback and an inspection
// hook, for tests and for trying inspection logic without QUIC (g3proxy stream detour over a
// transport that has no streams of its own).
#pragma once

#include <detour/io/inspect.hpp>
#include <detour/io/server_connection.hpp>
#include <detour/posix/tcp_stream.hpp>
#include <detour/response.hpp>
#include <detour/session.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace detour::posix {

/// @brief A detour server over TCP: every accepted connection is one detour stream, and all of
/// them share one `io::server_connection` (so pairing by match id spans the server: serve one
/// g3proxy-like client at a time, as tests do).
///
/// `poll()` accepts pending connections, waits up to a timeout for any socket to be ready,
/// steps every stream, asks the policy about each complete north request, releases (and
/// closes) the streams that ended, and runs the deadlines from `std::chrono::steady_clock`.
/// Not thread-safe; call `poll()` in a loop from one thread.
template <class Inspector = io::pass_through>
requires io::inspector<Inspector, task_request>
class tcp_server {
public:
  using clock = std::chrono::steady_clock;
  using connection = io::server_connection<tcp_stream, clock::time_point, Inspector>;
  /// Decides each north request; called once per task, from `poll()`.
  using policy = std::function<action(const task_request&)>;

  struct options {
    /// Limits, window, header timeout, most streams at once (beyond it a connection is reset).
    io::server_options<clock::duration> server{};
    /// How long a half waits for its partner.
    clock::duration pair_timeout = std::chrono::seconds(10);
    /// Each connection's receive buffer.
    tcp_options tcp{};
  };

  /// Serves the connections `listener` accepts; `decide` answers every north request.
  tcp_server(tcp_listener listener, policy decide, const options& o = {},
             Inspector prototype = Inspector{})
      : listener_(std::move(listener)), decide_(std::move(decide)), options_(o),
        conn_(o.pair_timeout, o.server, std::move(prototype)) {}

  tcp_server(const tcp_server&) = delete;
  tcp_server& operator=(const tcp_server&) = delete;

  /// One round: accept, wait up to `timeout` for readiness, step, answer, release, expire.
  void poll(std::chrono::milliseconds timeout, std::error_code& ec) {
    ec.clear();
    accept_all(ec);
    if (ec) return;
    fds_.clear();
    for (auto& e : entries_) fds_.push_back(&e->stream);
    (void)poller_.wait(fds_, &listener_, timeout, ec);
    if (ec) return;
    accept_all(ec);
    if (ec) return;
    const auto now = clock::now();
    if (const auto due = conn_.next_expiry(); due && *due <= now) conn_.expire(now);
    for (auto& e : entries_) step(*e, now);
    // A stream may have ended after its own step, when its partner failed: release it too.
    for (auto& e : entries_) {
      const auto st = e->released ? io::stream_status::done : conn_.status(e->id);
      if (!e->released && (st == io::stream_status::done || st == io::stream_status::failed)) {
        conn_.release(e->id);
        e->released = true;
      }
    }
    // Streams that ended are closed; keep the others in order.
    std::erase_if(entries_, [](const std::unique_ptr<entry>& e) { return e->released; });
  }

  std::uint16_t port() const noexcept { return listener_.port(); }
  /// The drivers, for inspection (pairing table, a stream's request, counters).
  const connection& tasks() const noexcept { return conn_; }
  /// TCP connections open (streams not yet ended).
  std::size_t streams() const noexcept { return entries_.size(); }
  /// North requests answered so far.
  std::uint64_t answered() const noexcept { return answered_; }

private:
  struct entry {
    explicit entry(tcp_stream s) : stream(std::move(s)) {}
    tcp_stream stream;
    typename connection::stream_id id = 0;
    bool released = false;
  };

  void accept_all(std::error_code& ec) {
    for (;;) {
      auto s = listener_.accept(ec, options_.tcp);
      if (ec || !s) return;
      auto e = std::make_unique<entry>(std::move(*s));
      const auto id = conn_.open(e->stream, clock::now());
      if (!id) { // more streams than the server tracks
        e->stream.reset_write(io::app_code_for(errc::pairing_full));
        continue;
      }
      e->id = *id;
      entries_.push_back(std::move(e));
    }
  }

  void step(entry& e, clock::time_point now) {
    if (e.released) return;
    auto st = conn_.step(e.id, now);
    if (st == io::stream_status::decision) {
      const auto* task = conn_.stream(e.id).task();
      st = conn_.decide(e.id, decide_(*task), now);
      ++answered_;
    }
    if (st == io::stream_status::done || st == io::stream_status::failed) {
      conn_.release(e.id);
      e.released = true; // the socket closes with the entry
    }
  }

  tcp_listener listener_;
  policy decide_;
  options options_;
  connection conn_;
  poller poller_;
  std::vector<std::unique_ptr<entry>> entries_;
  std::vector<tcp_stream*> fds_;
  std::uint64_t answered_ = 0;
};

} // namespace detour::posix
