// SPDX-License-Identifier: MIT
// fuzz/replay_main.cpp: a main() for fuzz targets built without libFuzzer (any compiler, any
// build type). It runs every file named on the command line (directories are walked, in name
// order) through LLVMFuzzerTestOneInput once, each from an exactly-sized heap copy, so the
// corpora are regression tests with GCC too. A failing property aborts inside the target; the
// replay then names the input it was running. Exits non-zero when no input was given (an empty
// corpus) or a file cannot be read. Arguments starting with '-' (libFuzzer's options) are
// ignored, so a libFuzzer command line works unchanged.
#include <algorithm>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

// Called by AddressSanitizer and UndefinedBehaviorSanitizer before they end the process, when
// the target is built with one of them (a weak reference: absent otherwise).
extern "C" void __sanitizer_set_death_callback(void (*callback)()) __attribute__((weak));

namespace {

/// The input being run, for the report when it fails ("" between inputs).
char current[4096];

void say_current() {
  if (current[0] == '\0') return;
  const char* parts[] = {"replay: failed on ", current, "\n"};
  for (const char* p : parts) {
    // write(2) only: this runs inside a signal handler.
    ssize_t ignored = ::write(STDERR_FILENO, p, std::strlen(p));
    (void)ignored;
  }
}

extern "C" void on_abort(int sig) {
  say_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool run_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return false;
  }
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                                std::istreambuf_iterator<char>());
  // An exactly-sized heap copy, so AddressSanitizer sees any read past the end.
  const auto copy = std::make_unique<std::uint8_t[]>(bytes.empty() ? 1 : bytes.size());
  if (!bytes.empty()) std::memcpy(copy.get(), bytes.data(), bytes.size()); // no null source
  std::snprintf(current, sizeof current, "%s", path.c_str());
  LLVMFuzzerTestOneInput(copy.get(), bytes.size());
  current[0] = '\0';
  return true;
}

} // namespace

int main(int argc, char** argv) {
  std::signal(SIGABRT, on_abort);
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(say_current);
  std::size_t ran = 0;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg = argv[i];
    if (argv[i][0] == '-') continue; // a libFuzzer option
    if (std::filesystem::is_directory(arg)) {
      std::vector<std::filesystem::path> files;
      for (const auto& e : std::filesystem::recursive_directory_iterator(arg))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) {
        ok = run_file(f) && ok;
        ++ran;
      }
    } else {
      ok = run_file(arg) && ok;
      ++ran;
    }
  }
  std::printf("replay: %zu inputs\n", ran);
  if (ran == 0) {
    std::fprintf(stderr, "replay: no inputs given (empty corpus?)\n");
    return 1;
  }
  return ok ? 0 : 1;
}
