// SPDX-License-Identifier: MIT
// cli/hook.hpp: how a custom server plugs into `detour serve`: the library's inspection hook
// (detour/io/inspect.hpp: per chunk of each relayed direction, pass, replace or end the task)
// run inside the server's relays, and the entry point that runs the server with it. A custom
// server is one source file: docs/examples/smtp_redactor.cpp.
#pragma once

#include "commands.hpp"

#include <detour/io/inspect.hpp>
#include <detour/request.hpp>
#include <detour/session.hpp>

#include <concepts>
#include <memory>
#include <string_view>
#include <utility>

namespace detour::cli {

/// One relay direction's inspector inside the server.
class direction_inspector {
public:
  virtual ~direction_inspector() = default;
  /// Called for each chunk of the direction, in order, and once more with `last` set; the
  /// contract is the library's (detour/io/inspect.hpp): runs on the event loop, must not throw,
  /// must not block, a replacement stays valid until the next call.
  virtual io::verdict inspect(const io::chunk<task_request>& c) = 0;
};

/// A custom server's hook: the server asks it for an inspector for each direction of each task
/// it relays (answered continue).
class task_hook {
public:
  virtual ~task_hook() = default;
  /// The inspector of one direction (`side`: north carries client bytes, south remote bytes) of
  /// `task`, or nullptr to let that direction pass untouched. `task` lives as long as the task.
  virtual std::unique_ptr<direction_inspector> open(const task_request& task, stream_kind side) = 0;
};

/// Turns a library inspector (any `io::inspector<I, task_request>`, the same type that
/// `io::server_connection` takes) into a task_hook: each direction gets its own copy of
/// `prototype`, exactly as the library's drivers do.
template <class Inspector>
requires io::inspector<Inspector, task_request> && std::copy_constructible<Inspector>
    std::shared_ptr<task_hook> make_task_hook(Inspector prototype) {
  struct direction final : direction_inspector {
    explicit direction(const Inspector& p) : inspector(p) {}
    io::verdict inspect(const io::chunk<task_request>& c) override { return inspector(c); }
    Inspector inspector;
  };
  struct hook final : task_hook {
    explicit hook(Inspector p) : prototype(std::move(p)) {}
    std::unique_ptr<direction_inspector> open(const task_request&, stream_kind) override {
      return std::make_unique<direction>(prototype);
    }
    Inspector prototype;
  };
  return std::make_shared<hook>(std::move(prototype));
}

/// What a custom server adds to `detour serve`.
struct serve_extensions {
  /// Runs inside every relay, after the policy answered continue; its output is what the
  /// client or the remote receives, and what --capture records.
  std::shared_ptr<task_hook> hook;
  /// The name in messages and --help ("detour serve" for the stock server).
  std::string_view name = "detour serve";
};

/// `detour serve` with extensions: the same options, signals, logs, policy, audit, capture and
/// metrics. Takes the arguments after the command name; returns the exit status.
int run_serve(args a, const serve_extensions& extensions);

} // namespace detour::cli
