// SPDX-License-Identifier: MIT
// cli/inspection_options.hpp: the options of `detour serve`'s inspection features (policy,
// audit, capture, metrics: docs/policy.md, audit.md, capture.md, metrics.md), kept apart from
// their implementation (inspection.hpp) so that the server's configuration stays light.
#pragma once

#include "event_loop.hpp"
#include "udp.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace detour::cli {

class arg_reader;

struct inspection_options {
  /// --policy: the rules file; empty: every task gets --action.
  std::string policy_file;
  /// --check-policy: validate this file, explain, and exit.
  std::string check_policy;
  /// --action was given (it cannot be combined with --policy: the default line decides).
  bool action_given = false;

  /// --audit: one JSON line per task; "-" for standard output; empty: no audit.
  std::string audit_file;
  /// --audit-queue: bytes of lines waiting for the disk at most; beyond, lines are dropped and
  /// counted. 16 MiB hold ~40000 typical lines: seconds of a busy server's tasks while the disk
  /// stalls.
  std::size_t audit_queue = std::size_t{16} << 20;

  /// --capture: the plaintext capture (pcap); empty: none.
  std::string capture_file;
  /// --capture-max-size: a new file is started at this size (the old one becomes FILE.1).
  std::uint64_t capture_max_size = std::uint64_t{256} << 20;
  /// --capture-files: files kept, the current one included, so the capture never takes more
  /// than about files x max size of disk.
  unsigned capture_files = 4;
  /// --capture-queue: packet bytes waiting for the disk at most; a task whose packets do not
  /// fit stops being captured. 64 MiB: a second or more of a busy server's relay traffic.
  std::size_t capture_queue = std::size_t{64} << 20;

  /// --metrics: the Prometheus endpoint; none when unset.
  std::optional<socket_address> metrics;
  /// --summary-interval: a metrics.summary log line this often; 0: never. A minute shows a
  /// trend in the log without flooding it.
  timestamp summary_interval = 60 * nanoseconds_per_second;
};

/// Handles `r`'s current option if it is an inspection option (throws usage_error on a bad
/// value); false when it is not one.
bool parse_inspection_option(arg_reader& r, inspection_options& o);
/// Checks the combination of options after parsing; throws usage_error.
void check_inspection_options(const inspection_options& o);

} // namespace detour::cli
