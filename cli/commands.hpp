// SPDX-License-Identifier: MIT
// cli/commands.hpp: the subcommands of the `detour` binary. Each takes the arguments after its
// own name and returns the process exit code.
#pragma once

#include <span>
#include <string_view>

namespace detour::cli {

/// Arguments after the subcommand name (argv[0] of the span is the first option, not a name).
using args = std::span<char* const>;

struct command {
  std::string_view name;
  std::string_view summary;
  int (*run)(args);
};

int run_cert(args a);  // cert.cpp
int run_serve(args a); // serve.cpp
int run_decode(args a); // decode.cpp
int run_probe(args a);  // probe.cpp

} // namespace detour::cli
