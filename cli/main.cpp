// SPDX-License-Identifier: MIT
// cli/main.cpp: the `detour` binary's entry point; dispatches to a subcommand.
#include "commands.hpp"

#include <detour/version.hpp>

#include <fmt/core.h>

#include <array>
#include <cstdio>
#include <string_view>

namespace detour::cli {
namespace {

int run_version(args) {
  fmt::print("detour {}\n", version_string);
  return 0;
}

constexpr std::array commands{
    command{"version", "print the version", run_version},
    command{"serve", "run the pass-through detour server for g3proxy", run_serve},
    command{"probe", "test a detour server the way g3proxy uses it", run_probe},
    command{"cert", "make a CA, server and client certificates", run_cert},
    command{"decode", "decode a PROXY v2 / detour header from a byte dump", run_decode},
};

void usage(std::FILE* out) {
  fmt::print(out, "usage: detour <command> [options]\n"
                  "\n"
                  "A server and tools for g3proxy's stream detour protocol.\n"
                  "\n"
                  "commands:\n");
  for (const auto& c : commands) fmt::print(out, "  {:<10} {}\n", c.name, c.summary);
  fmt::print(out,
             "\nRun `detour <command> --help` (or `detour help <command>`) for the options of\n"
             "one command.\n");
}

} // namespace
} // namespace detour::cli

int main(int argc, char** argv) {
  using namespace detour::cli;
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string_view name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    // `detour help serve` is `detour serve --help`.
    if (name == "help" && argc > 2) {
      for (const auto& c : commands) {
        if (c.name == std::string_view(argv[2])) {
          static char help_arg[] = "--help";
          static char* const help_args[] = {help_arg};
          return c.run(args(help_args, 1));
        }
      }
      fmt::print(stderr, "detour: unknown command '{}'\n\n", argv[2]);
      usage(stderr);
      return 2;
    }
    usage(stdout);
    return 0;
  }
  if (name == "--version") return commands[0].run({});
  for (const auto& c : commands) {
    if (c.name == name) return c.run(args(argv + 2, static_cast<std::size_t>(argc - 2)));
  }
  fmt::print(stderr, "detour: unknown command '{}'\n\n", name);
  usage(stderr);
  return 2;
}
