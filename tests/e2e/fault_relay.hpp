// SPDX-License-Identifier: MIT
// tests/e2e/fault_relay.hpp: a fault-injecting UDP relay for the end-to-end tests (the kernel
// here has no netem): it sits between clients and a server on loopback and drops, duplicates,
// reorders and delays datagrams, and can black out all traffic for a while.
#pragma once

#include "event_loop.hpp"
#include "udp.hpp"

#include <cstdint>
#include <memory>
#include <queue>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

namespace detour::test {

/// What the relay does to each datagram, independently per direction. Probabilities are in
/// [0, 1]; the random sequence is fixed by |seed|, so a run can be repeated.
struct fault_profile {
  double drop = 0;           ///< lose the datagram
  double duplicate = 0;      ///< send it twice (the copy after a further delay)
  double reorder = 0;        ///< hold it back by |reorder_delay| so later ones overtake it
  cli::timestamp delay = 0;  ///< fixed one-way delay added to every datagram
  cli::timestamp jitter = 0; ///< plus a uniform random delay in [0, jitter]
  cli::timestamp reorder_delay = 5 * cli::nanoseconds_per_millisecond;
  std::uint64_t seed = 1;
};

/// Counters, for the test's own report.
struct fault_stats {
  std::uint64_t forwarded = 0; ///< datagrams sent on (copies included)
  std::uint64_t dropped = 0;   ///< lost at random
  std::uint64_t blacked_out = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
};

/// Listens on 127.0.0.1 (or ::1) with an ephemeral port; each client address gets its own
/// upstream socket to the server, as a NAT would, so the server sees one address per client.
class fault_relay {
public:
  fault_relay(cli::event_loop& loop, const cli::socket_address& server, fault_profile profile);
  ~fault_relay();
  fault_relay(const fault_relay&) = delete;
  fault_relay& operator=(const fault_relay&) = delete;

  /// Where clients should send: the relay's own address.
  const cli::socket_address& address() const noexcept { return front_.local_address(); }
  /// Drops everything, both ways, from now until now + |duration|.
  void blackout(cli::timestamp duration);
  /// NAT rebinding: every client gets a new upstream socket (a new source port) from now on,
  /// so the server sees each connection's packets arrive from a new address.
  void rebind();
  /// Changes the faults from now on (e.g. a clean phase after a lossy one).
  void set_profile(const fault_profile& p) noexcept { profile_ = p; }
  const fault_stats& stats() const noexcept { return stats_; }

private:
  struct flow {
    cli::socket_address client;
    cli::udp_socket upstream;
    std::unique_ptr<cli::io_watch> watch;
  };
  struct pending {
    cli::timestamp due;
    std::uint64_t seq; // keeps equal due times in arrival order
    flow* to_server;   // null: towards the client
    cli::socket_address client;
    std::vector<std::uint8_t> bytes;
    bool operator>(const pending& o) const noexcept {
      return due != o.due ? due > o.due : seq > o.seq;
    }
  };

  void on_front();
  void on_upstream(flow& f);
  void inject(flow* to_server, const cli::socket_address& client,
              std::span<const std::uint8_t> bytes);
  void schedule(cli::timestamp due, flow* to_server, const cli::socket_address& client,
                std::span<const std::uint8_t> bytes);
  void release();
  double uniform();

  cli::event_loop& loop_;
  cli::socket_address server_;
  fault_profile profile_;
  cli::udp_socket front_;
  std::unique_ptr<cli::io_watch> front_watch_;
  cli::receive_batch batch_{16, 65536};
  std::unordered_map<std::string, std::unique_ptr<flow>> flows_;
  std::priority_queue<pending, std::vector<pending>, std::greater<>> queue_;
  cli::timer release_timer_;
  std::mt19937_64 rng_;
  std::uint64_t seq_ = 0;
  cli::timestamp blackout_until_ = 0;
  fault_stats stats_;
};

} // namespace detour::test
