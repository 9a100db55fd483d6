// SPDX-License-Identifier: MIT
// cli/random.hpp: the one source of random bytes of `detour serve` and `detour probe`, wolfSSL
// included: the kernel's getrandom(2), read ahead a block at a time per thread.
//
// wolfSSL's own generator (Hash_DRBG) costs a handshake far more than the bytes it gives: every
// WOLFSSL object instantiates one, with a known-answer self test and a seed read from
// /dev/urandom through open, read and close. The wolfSSL that scripts/deps builds is configured
// with CUSTOM_RAND_GENERATE_BLOCK=detour_random_block and takes its bytes from here instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace detour::cli {

/// Fills |out| with cryptographically random bytes from the kernel; aborts if the kernel
/// cannot give any (nothing secure can be done then). Small requests are served from a
/// per-thread block of read-ahead bytes, each erased as it is handed out; requests of
/// `random_block_size` bytes or more go to the kernel directly. (A process that forked would
/// share its unused read-ahead with the child; detour never forks.)
void fill_random(std::span<std::uint8_t> out) noexcept;

/// The read-ahead block of each thread.
inline constexpr std::size_t random_block_size = 512;

} // namespace detour::cli

/// wolfSSL's CUSTOM_RAND_GENERATE_BLOCK (scripts/deps): fills |output| as fill_random does and
/// returns 0.
extern "C" int detour_random_block(unsigned char* output, unsigned int size);
