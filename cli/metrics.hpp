// SPDX-License-Identifier: MIT
// cli/metrics.hpp: the counters and histograms of `detour serve` (docs/metrics.md), rendered in
// the Prometheus text exposition format (version 0.0.4) by a tiny read-only HTTP/1.1 responder
// on the event loop (`--metrics ADDR:PORT`), and summed up in a periodic log line.
#pragma once

#include "event_loop.hpp"
#include "udp.hpp"

#include <detour/error.hpp>
#include <detour/response.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace detour::cli {

/// Values read from elsewhere when the metrics are rendered (the server's own counters, the
/// audit and capture writers).
struct metrics_gauges {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_open = 0;
  std::uint64_t connections_refused = 0;
  std::uint64_t retries = 0;
  std::uint64_t stateless_resets = 0;
  std::uint64_t version_negotiations = 0;
  std::uint64_t packets_forwarded = 0; ///< --workers: handed to the worker owning them
  bool audit = false; ///< the audit values below mean something
  std::uint64_t audit_written = 0;
  std::uint64_t audit_dropped = 0;
  std::uint64_t audit_write_errors = 0;
  bool capture = false; ///< the capture values below mean something
  std::uint64_t capture_packets = 0;
  std::uint64_t capture_bytes = 0;
  std::uint64_t capture_dropped = 0;
  std::uint64_t capture_rotations = 0;
  std::uint64_t capture_write_errors = 0;
};

/// A cumulative histogram with fixed upper bounds (Prometheus `le` buckets).
class histogram {
public:
  explicit histogram(std::vector<double> bounds);
  void observe(double v) noexcept;
  const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Observations <= bounds()[i] (cumulative), then the total count (the +Inf bucket).
  std::uint64_t cumulative(std::size_t i) const noexcept;
  std::uint64_t count() const noexcept { return count_; }
  double sum() const noexcept { return sum_; }

private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> buckets_; // per bucket, not cumulative; last is +Inf
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

/// @brief The server's counters. Updated on the event loop only; rendering reads them there.
///
/// Label values are bounded: protocols outside g3proxy's four become "other" (the E4 text comes
/// from the peer), task ends are "finished", an error name, or "connection_closed".
class metrics {
public:
  metrics();

  /// A task was answered.
  void task_answered(std::string_view protocol, action a);
  /// A task ended after `duration_ns`, having relayed those bytes; `end` as in the task.end
  /// log line ("finished", an error name, or why the connection closed).
  void task_ended(std::string_view protocol, action a, std::string_view end,
                  std::uint64_t client_bytes, std::uint64_t remote_bytes,
                  std::uint64_t duration_ns);
  /// A stream was reset for a protocol error or a timeout.
  void stream_error(errc e);
  /// A handshake failed: "tls" (certificate, ALPN, ...) or "timeout".
  void handshake_failed(std::string_view reason);
  /// A policy reload on SIGHUP succeeded or was refused.
  void policy_reload(bool ok);

  /// The whole exposition, every family with HELP and TYPE.
  std::string render(const metrics_gauges& g) const;

  std::uint64_t tasks_answered() const noexcept;
  std::uint64_t tasks_ended() const noexcept { return duration_.count(); }
  std::uint64_t stream_errors() const noexcept;
  std::uint64_t handshake_failures() const noexcept;
  std::uint64_t client_bytes() const noexcept { return client_bytes_; }
  std::uint64_t remote_bytes() const noexcept { return remote_bytes_; }

  /// The bounded label value for an E4 protocol name.
  static std::string_view protocol_label(std::string_view protocol) noexcept;
  /// The bounded label value for how a task ended.
  static std::string_view end_label(std::string_view end) noexcept;

private:
  static constexpr std::size_t protocols = 5; // http_2, websocket, smtp, imap, other
  static constexpr std::size_t actions = 3;
  static std::size_t protocol_index(std::string_view protocol) noexcept;

  std::array<std::array<std::uint64_t, actions>, protocols> answered_{};
  std::map<std::string, std::uint64_t, std::less<>> ended_; // "protocol\tend" -> count
  std::map<std::string, std::uint64_t, std::less<>> stream_errors_;
  std::map<std::string, std::uint64_t, std::less<>> handshake_failures_;
  std::uint64_t client_bytes_ = 0;
  std::uint64_t remote_bytes_ = 0;
  std::uint64_t reloads_ok_ = 0;
  std::uint64_t reloads_refused_ = 0;
  histogram duration_;
};

/// Settings of the HTTP endpoint.
struct metrics_http_options {
  /// Clients served at once; more are closed at once. Prometheus scrapes one request at a time.
  std::size_t max_clients = 16;
  /// A client must send its request and read the answer within this, or it is closed.
  timestamp client_timeout = 5 * nanoseconds_per_second;
  /// Largest request head read (a scrape's is a few hundred bytes).
  std::size_t max_request = 8192;
};

/// @brief A read-only HTTP/1.1 responder on the event loop: `GET /metrics` (or `/`) answers
/// 200 with `render()`'s text; other paths 404, other methods 405; one request per connection.
class metrics_http {
public:
  using render_fn = std::function<std::string()>;

  /// Listens on `address` (TCP). Throws std::system_error naming the address.
  metrics_http(event_loop& loop, const socket_address& address, render_fn render,
               metrics_http_options options = {});
  ~metrics_http();
  metrics_http(const metrics_http&) = delete;
  metrics_http& operator=(const metrics_http&) = delete;

  /// The address bound (a port 0 becomes the kernel's choice).
  socket_address local_address() const;
  std::uint64_t requests() const noexcept { return requests_; }

private:
  struct client;
  void on_accept();
  void on_client(client& c, std::uint32_t events);
  void close_client(client& c);

  event_loop& loop_;
  render_fn render_;
  metrics_http_options options_;
  int fd_ = -1;
  std::unique_ptr<io_watch> watch_;
  std::unordered_map<client*, std::unique_ptr<client>> clients_;
  std::vector<client*> closing_;
  deferred reaper_;
  std::uint64_t requests_ = 0;
};

} // namespace detour::cli
