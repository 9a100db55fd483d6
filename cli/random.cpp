// SPDX-License-Identifier: MIT
// cli/random.cpp: see random.hpp.
#include "random.hpp"

#include <wolfssl/options.h> // only to know whether wolfSSL takes its bytes from here

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace detour::cli {
namespace {

void from_kernel(std::uint8_t* out, std::size_t len) noexcept {
  while (len > 0) {
    const ssize_t n = ::getrandom(out, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::abort(); // no randomness: nothing secure can be done
    out += n;
    len -= static_cast<std::size_t>(n);
  }
}

// Bytes [used, size) of |bytes| are unused randomness; bytes before |used| are zero.
struct read_ahead {
  std::array<std::uint8_t, random_block_size> bytes{};
  std::size_t used = random_block_size;
};

thread_local read_ahead block;

} // namespace

void fill_random(std::span<std::uint8_t> out) noexcept {
  if (out.size() >= random_block_size) {
    from_kernel(out.data(), out.size());
    return;
  }
  std::size_t done = 0;
  while (done < out.size()) {
    if (block.used == block.bytes.size()) {
      from_kernel(block.bytes.data(), block.bytes.size());
      block.used = 0;
    }
    const std::size_t n = std::min(out.size() - done, block.bytes.size() - block.used);
    std::uint8_t* from = block.bytes.data() + block.used;
    std::memcpy(out.data() + done, from, n);
    // Erased as handed out: what was given (keys, nonces) cannot be read back from this block.
    std::memset(from, 0, n);
    block.used += n;
    done += n;
  }
}

} // namespace detour::cli

extern "C" int detour_random_block(unsigned char* output, unsigned int size) {
  detour::cli::fill_random({output, size});
  return 0;
}

#ifdef CUSTOM_RAND_GENERATE_BLOCK
// wolfSSL's seed source, which a wolfSSL built with CUSTOM_RAND_GENERATE_BLOCK leaves to the
// program (only wolfSSL_RAND_poll calls it): the same bytes. Any other wolfSSL has its own. The
// first parameter is wolfSSL's OS_Seed*, unused: declared as void* to need no other header.
extern "C" int wc_GenerateSeed(void* /* OS_Seed* */, unsigned char* output, unsigned int size) {
  detour::cli::fill_random({output, size});
  return 0;
}
#endif
