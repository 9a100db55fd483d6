// SPDX-License-Identifier: MIT
// cli/probe.hpp: `detour probe`, a client that behaves like g3proxy's stream detour client, for
// conformance (check), load (load, throughput, handshakes) and robustness (abuse) tests of any
// detour server. The options every mode shares and the modes' entry points.
#pragma once

#include "event_loop.hpp"
#include "log.hpp"
#include "probe_pool.hpp"
#include "tls.hpp"

#include <detour/response.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace detour::cli::probe {

/// Process exit codes: scripts can tell a failed test from a broken setup.
inline constexpr int exit_passed = 0;      ///< everything passed
inline constexpr int exit_failed = 1;      ///< something failed (details in the report)
inline constexpr int exit_usage = 2;       ///< a command-line mistake
inline constexpr int exit_setup_error = 3; ///< the probe could not run (TLS files, sockets)

/// Every option of `detour probe`, with its default.
struct probe_options {
  std::string mode;
  pool_config pool;      ///< server, TLS name, timeouts, connections, reuse limit
  tls_client_config tls; ///< CA, client certificate, ALPN, resumption
  bool json = false;     ///< print one JSON document instead of text
  /// The whole run ends by then, whatever the server does (0: the mode's default).
  nanoseconds deadline = 0;
  nanoseconds response_timeout = 60'000'000'000; ///< g3proxy's request_timeout
  nanoseconds idle_timeout = 60'000'000'000;     ///< relay or close without progress
  /// The answer a task expects; unset: any answer is accepted.
  std::optional<detour::action> expect = detour::action::proceed;
  std::uint64_t seed = 1;
  std::string protocol = "http_2";
  /// load: relay a real conversation of --protocol (probe_script.hpp) instead of --bytes of
  /// the seeded pattern.
  bool protocol_data = false;
  // load, handshakes
  std::uint64_t tasks = 1000;
  std::uint64_t concurrency = 64;
  /// Tasks started per second on a fixed schedule (open loop), at most |concurrency| in
  /// flight; 0: closed loop, a new task as soon as one ends.
  std::uint64_t rate = 0;
  std::uint64_t bytes = 16 * 1024;
  // throughput
  std::uint64_t streams = 1;
  // hold: how long the idle connections stay open
  nanoseconds hold = 10'000'000'000;
  // abuse
  nanoseconds abuse_wait = 5'000'000'000;
  std::string only; ///< run only cases whose name contains this
  std::uint64_t abuse_streams = 300;
};

/// What a mode needs to run.
struct probe_context {
  const probe_options& options;
  event_loop& loop;
  const tls_context& tls;
  logger& log;
  /// The absolute deadline of the run.
  nanoseconds deadline;
};

/// A plan with the options' timeouts, seed and expectation filled in.
task_plan base_plan(const probe_options& o);

/// A task as g3proxy sends it for |protocol| (task number |index| of a run): a unique task id
/// and client port, the upstream port of the protocol, the WebSocket summary payload for
/// `websocket`, the remote speaking first for `smtp` and `imap`; |bytes| relayed each way
/// when a pass-through is expected.
task_plan protocol_plan(const probe_options& o, std::string_view protocol, std::uint64_t index,
                        std::uint64_t bytes);

/// g3proxy's WebSocket summary (resource line, then `name: value` lines) made with the library.
std::vector<std::uint8_t>
websocket_summary(std::string_view resource,
                  std::span<const std::pair<std::string_view, std::string_view>> headers);

/// The names of the abuse cases, in the order they run (what `--case TEXT` is matched against).
std::vector<std::string> abuse_case_names();

int run_check(probe_context& ctx);
int run_load(probe_context& ctx);
int run_throughput(probe_context& ctx);
int run_handshakes(probe_context& ctx);
int run_abuse(probe_context& ctx);
int run_hold(probe_context& ctx);

} // namespace detour::cli::probe
