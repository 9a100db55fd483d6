// SPDX-License-Identifier: MIT
// QUIC packet protection straight on wolfCrypt (cli/packet_protection.hpp): RFC 9001's header
// protection vectors, with the sample anywhere in memory, and no allocation per packet.
#include "packet_protection.hpp"

#include <wolfssl/options.h> // must precede every other wolfSSL header

#include <ngtcp2/ngtcp2.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/wolfcrypt/memory.h>

#include <catch2/catch_test_macros.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

std::vector<std::uint8_t> from_hex(const std::string& hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

ngtcp2_crypto_cipher cipher_of(const WOLFSSL_EVP_CIPHER* c) {
  ngtcp2_crypto_cipher cipher{};
  cipher.native_handle = const_cast<WOLFSSL_EVP_CIPHER*>(c);
  return cipher;
}

ngtcp2_crypto_aead aead_of(const WOLFSSL_EVP_CIPHER* c) {
  ngtcp2_crypto_aead aead{};
  aead.native_handle = const_cast<WOLFSSL_EVP_CIPHER*>(c);
  aead.max_overhead = 16;
  return aead;
}

// Counts wolfSSL's own allocations (XMALLOC) while it is installed.
struct counting_allocators {
  static inline std::size_t count = 0;
  wolfSSL_Malloc_cb mf = nullptr;
  wolfSSL_Free_cb ff = nullptr;
  wolfSSL_Realloc_cb rf = nullptr;
  counting_allocators() {
    REQUIRE(wolfSSL_GetAllocators(&mf, &ff, &rf) == 0);
    count = 0;
    REQUIRE(wolfSSL_SetAllocators(
                [](std::size_t n) -> void* {
                  ++count;
                  return std::malloc(n);
                },
                [](void* p) { std::free(p); },
                [](void* p, std::size_t n) -> void* {
                  ++count;
                  return std::realloc(p, n);
                }) == 0);
  }
  ~counting_allocators() { wolfSSL_SetAllocators(mf, ff, rf); }
  counting_allocators(const counting_allocators&) = delete;
  counting_allocators& operator=(const counting_allocators&) = delete;
};

struct hp_vector {
  const char* name;
  const WOLFSSL_EVP_CIPHER* (*cipher)();
  std::string key, sample, mask;
};

} // namespace

TEST_CASE("hp_mask_cb gives RFC 9001's header protection masks wherever the sample lies",
          "[tls][packet-protection]") {
  // RFC 9001 Appendix A.2 (the client Initial, AES-128) and A.5 (ChaCha20-Poly1305).
  const std::array<hp_vector, 2> vectors{{
      {"AES-128 (A.2)", wolfSSL_EVP_aes_128_ctr, "9f50449e04a0e810283a1e9933adedd2",
       "d1b1c98dd7689fb8ec11d242b123dc9b", "437b9aec36"},
      {"ChaCha20 (A.5)", wolfSSL_EVP_chacha20,
       "25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4",
       "5e5cd55c41f69080575d7999c25a5bfb", "aefefe7d03"},
  }};
  for (const hp_vector& v : vectors) {
    INFO(v.name);
    const auto key = from_hex(v.key);
    const auto sample = from_hex(v.sample);
    const auto mask = from_hex(v.mask);
    ngtcp2_crypto_cipher_ctx ctx{};
    REQUIRE(detour::cli::hp_ctx_init(ctx, cipher_of(v.cipher()), key.data()));
    // The sample sits at every offset of a packet, so at every alignment.
    alignas(64) std::array<std::uint8_t, 64> packet{};
    for (std::size_t offset = 0; offset < 16; ++offset) {
      INFO("sample at offset " << offset);
      std::copy(sample.begin(), sample.end(), packet.begin() + static_cast<std::ptrdiff_t>(offset));
      std::array<std::uint8_t, NGTCP2_HP_MASKLEN> out{};
      REQUIRE(detour::cli::hp_mask_cb(out.data(), nullptr, &ctx, packet.data() + offset) == 0);
      CHECK(std::vector<std::uint8_t>(out.begin(), out.end()) == mask);
    }
    detour::cli::hp_ctx_free(ctx);
    CHECK(ctx.native_handle == nullptr);
  }
}

TEST_CASE("packet protection allocates nothing per packet, whatever the alignment",
          "[tls][packet-protection]") {
  const std::array<std::uint8_t, 32> key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  const std::array<std::uint8_t, 12> nonce{9, 8, 7, 6, 5, 4, 3, 2, 1};
  const std::array<std::uint8_t, 20> aad{0x40, 1, 2, 3};
  for (const auto* c :
       {wolfSSL_EVP_aes_128_gcm(), wolfSSL_EVP_aes_256_gcm(), wolfSSL_EVP_chacha20_poly1305()}) {
    const auto* hp_cipher = c == wolfSSL_EVP_aes_128_gcm()   ? wolfSSL_EVP_aes_128_ctr()
                            : c == wolfSSL_EVP_aes_256_gcm() ? wolfSSL_EVP_aes_256_ctr()
                                                             : wolfSSL_EVP_chacha20();
    const ngtcp2_crypto_aead aead = aead_of(c);
    ngtcp2_crypto_aead_ctx aead_ctx{};
    ngtcp2_crypto_cipher_ctx hp_ctx{};
    REQUIRE(detour::cli::aead_ctx_init(aead_ctx, aead, key.data()));
    REQUIRE(detour::cli::hp_ctx_init(hp_ctx, cipher_of(hp_cipher), key.data()));
    std::vector<std::uint8_t> plain(1200 + 1), sealed(1200 + 16 + 1), opened(1200 + 1);
    for (std::size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<std::uint8_t>(i * 7);
    std::size_t allocations = 0;
    {
      counting_allocators counter;
      for (std::size_t offset = 0; offset < 2; ++offset) {
        // One byte off: the packet's payload and sample are rarely aligned.
        REQUIRE(detour::cli::encrypt_cb(sealed.data() + offset, &aead, &aead_ctx,
                                        plain.data() + offset, 1200, nonce.data(), nonce.size(),
                                        aad.data(), aad.size()) == 0);
        REQUIRE(detour::cli::decrypt_cb(opened.data() + offset, &aead, &aead_ctx,
                                        sealed.data() + offset, 1200 + 16, nonce.data(),
                                        nonce.size(), aad.data(), aad.size()) == 0);
        CHECK(std::equal(plain.begin() + static_cast<std::ptrdiff_t>(offset),
                         plain.begin() + static_cast<std::ptrdiff_t>(offset) + 1200,
                         opened.begin() + static_cast<std::ptrdiff_t>(offset)));
        std::array<std::uint8_t, NGTCP2_HP_MASKLEN> mask{};
        REQUIRE(detour::cli::hp_mask_cb(mask.data(), nullptr, &hp_ctx,
                                        sealed.data() + 1 + offset) == 0);
      }
      allocations = counting_allocators::count;
    }
    CHECK(allocations == 0);
    detour::cli::aead_ctx_free(aead_ctx);
    detour::cli::hp_ctx_free(hp_ctx);
  }
}
