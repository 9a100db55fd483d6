// SPDX-License-Identifier: MIT
// tests/e2e/client.hpp: the client side of the end-to-end tests: `detour probe`'s g3proxy-like
// connection pool (cli/probe_pool.hpp) for whole tasks, and a recorder for streams scripted by
// hand (resets, slow and malformed headers).
#pragma once

#include "event_loop.hpp"
#include "log.hpp"
#include "probe_pool.hpp"
#include "probe_quic.hpp"
#include "probe_task.hpp"
#include "server_process.hpp"
#include "tls.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace detour::test {

/// Client TLS settings for a server_process with development certificates.
inline cli::tls_client_config trusting(const server_process& srv) {
  cli::tls_client_config c;
  c.ca_file = srv.ca_file().string();
  return c;
}

/// A g3proxy-like client of one server: a probe pool plus helpers to run plans to completion.
struct g3_client {
  cli::event_loop loop;
  cli::logger log{cli::log_level::off};
  cli::tls_context tls;
  cli::probe::pool_config config;
  std::unique_ptr<cli::probe::client_pool> pool;

  /// |address| defaults to the server's; pass the fault relay's to go through it.
  g3_client(const server_process& srv, const cli::tls_client_config& tc,
            std::optional<cli::socket_address> address = std::nullopt, std::size_t connections = 2,
            std::size_t reuse_limit = 16)
      : tls(cli::tls_context::client(tc)) {
    config.quic.server = address.value_or(srv.address());
    config.quic.tls_name = srv.address().host();
    config.connections = connections;
    config.reuse_limit = reuse_limit;
    pool = std::make_unique<cli::probe::client_pool>(loop, tls, config, log);
  }
  explicit g3_client(const server_process& srv) : g3_client(srv, trusting(srv)) {}

  /// Sends to |address| from now on (a fault relay on this client's loop, say). Call before
  /// submitting tasks: the pool is made anew.
  void target(const cli::socket_address& address) {
    pool.reset();
    config.quic.server = address;
    pool = std::make_unique<cli::probe::client_pool>(loop, tls, config, log);
  }

  ~g3_client() {
    if (pool) {
      pool->shutdown("end of test");
      (void)pool->run_until([] { return false; },
                            cli::monotonic_now() + 200 * cli::nanoseconds_per_millisecond);
    }
  }

  /// Runs |plans| through the pool; returns their results in order (a task still running at
  /// the deadline fails with failure::deadline).
  std::vector<cli::probe::task_result> run(const std::vector<cli::probe::task_plan>& plans,
                                           cli::timestamp timeout = 120 *
                                                                    cli::nanoseconds_per_second) {
    std::vector<cli::probe::task_result> results(plans.size());
    std::size_t done = 0;
    for (std::size_t i = 0; i < plans.size(); ++i) {
      pool->submit(plans[i], [&results, &done, i](const cli::probe::task_result& r) {
        results[i] = r;
        ++done;
      });
    }
    (void)pool->run_until([&] { return done == plans.size(); }, cli::monotonic_now() + timeout);
    if (done < plans.size()) pool->shutdown("test deadline");
    return results;
  }
};

/// A plan with |bytes| each way and a distinct task id and data per |n|.
inline cli::probe::task_plan plan(std::uint64_t n, std::uint64_t bytes = 64 * 1024) {
  cli::probe::task_plan p;
  p.client_bytes = bytes;
  p.remote_bytes = bytes;
  p.seed = n + 1;
  for (std::size_t i = 0; i < 8; ++i) p.task_id.bytes[i] = static_cast<std::uint8_t>(n >> (8 * i));
  p.task_id.bytes[8] = 0xd7;
  return p;
}

/// Records everything that happens on hand-scripted streams.
struct stream_recorder final : cli::probe::stream_observer {
  struct events {
    std::vector<std::uint8_t> data;
    bool fin = false;
    std::optional<std::uint64_t> reset;
    bool stop_sending = false; ///< the peer stopped reading (its code, when the client knew it)
    std::optional<std::uint64_t> stop_sending_code;
  };
  std::map<std::int64_t, events> streams;

  void on_data(std::int64_t id, std::span<const std::uint8_t> bytes, bool fin) override {
    auto& e = streams[id];
    e.data.insert(e.data.end(), bytes.begin(), bytes.end());
    e.fin = e.fin || fin;
  }
  void on_reset(std::int64_t id, std::uint64_t code) override { streams[id].reset = code; }
  void on_stop_sending(std::int64_t id, std::optional<std::uint64_t> code) override {
    streams[id].stop_sending = true;
    if (code) streams[id].stop_sending_code = code;
  }
  void on_writable(std::int64_t) override {}
};

} // namespace detour::test
