// SPDX-License-Identifier: MIT
// cli/packet_protection.cpp: QUIC packet and header protection on wolfCrypt (see
// packet_protection.hpp).
#include "packet_protection.hpp"

#include <wolfssl/options.h> // must precede every other wolfSSL header

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/chacha.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>

#include <array>
#include <cstring>
#include <new>

namespace detour::cli {

namespace {

constexpr std::size_t tag_size = 16; // every QUIC AEAD (RFC 9001 §5.3)

// The state behind an AEAD or a header protection context: an expanded AES key (for GCM with
// its GHASH key), or the ChaCha20 key, which has no schedule.
struct cipher_state {
  bool chacha = false;
  Aes aes;
  std::array<std::uint8_t, CHACHA_MAX_KEY_SZ> key{};
};
static_assert(CHACHA_MAX_KEY_SZ == CHACHA20_POLY1305_AEAD_KEYSIZE);

enum class use : std::uint8_t { aead, hp };

// |cipher| as ngtcp2_crypto_wolfssl names it: the AEAD (AES-GCM, ChaCha20-Poly1305) or, for
// header protection, AES-CTR (standing for AES-ECB) or ChaCha20. Null for another cipher or
// when wolfCrypt refuses the key.
cipher_state* make_state(const void* handle, use u, const std::uint8_t* key) noexcept {
  const auto* cipher = static_cast<const WOLFSSL_EVP_CIPHER*>(handle);
  const bool aead = u == use::aead;
  word32 key_size = 0;
  if (cipher == (aead ? wolfSSL_EVP_aes_128_gcm() : wolfSSL_EVP_aes_128_ctr())) {
    key_size = 16;
  } else if (cipher == (aead ? wolfSSL_EVP_aes_256_gcm() : wolfSSL_EVP_aes_256_ctr())) {
    key_size = 32;
  } else if (cipher != (aead ? wolfSSL_EVP_chacha20_poly1305() : wolfSSL_EVP_chacha20())) {
    return nullptr;
  }
  auto* st = new (std::nothrow) cipher_state;
  if (!st) return nullptr;
  st->chacha = key_size == 0;
  if (st->chacha) {
    std::memcpy(st->key.data(), key, st->key.size());
    return st;
  }
  if (wc_AesInit(&st->aes, nullptr, INVALID_DEVID) != 0) {
    delete st;
    return nullptr;
  }
  if ((aead ? wc_AesGcmSetKey(&st->aes, key, key_size)
            : wc_AesSetKey(&st->aes, key, key_size, nullptr, AES_ENCRYPTION)) != 0) {
    wc_AesFree(&st->aes);
    delete st;
    return nullptr;
  }
  return st;
}

void free_state(void*& handle) noexcept {
  auto* st = static_cast<cipher_state*>(handle);
  if (!st) return;
  if (!st->chacha) wc_AesFree(&st->aes);
  ::explicit_bzero(st, sizeof *st);
  delete st;
  handle = nullptr;
}

} // namespace

bool aead_ctx_init(ngtcp2_crypto_aead_ctx& ctx, const ngtcp2_crypto_aead& aead,
                   const std::uint8_t* key) noexcept {
  cipher_state* st = make_state(aead.native_handle, use::aead, key);
  if (st) ctx.native_handle = st;
  return st != nullptr;
}

bool hp_ctx_init(ngtcp2_crypto_cipher_ctx& ctx, const ngtcp2_crypto_cipher& hp,
                 const std::uint8_t* key) noexcept {
  cipher_state* st = make_state(hp.native_handle, use::hp, key);
  if (st) ctx.native_handle = st;
  return st != nullptr;
}

void aead_ctx_free(ngtcp2_crypto_aead_ctx& ctx) noexcept {
  free_state(ctx.native_handle);
}

void hp_ctx_free(ngtcp2_crypto_cipher_ctx& ctx) noexcept {
  free_state(ctx.native_handle);
}

int encrypt_cb(std::uint8_t* dest, const ngtcp2_crypto_aead*,
               const ngtcp2_crypto_aead_ctx* aead_ctx, const std::uint8_t* plaintext,
               std::size_t plaintextlen, const std::uint8_t* nonce, std::size_t noncelen,
               const std::uint8_t* aad, std::size_t aadlen) {
  auto* st = static_cast<cipher_state*>(aead_ctx->native_handle);
  const auto len = static_cast<word32>(plaintextlen);
  int rv = 0;
  if (st->chacha) {
    if (noncelen != CHACHA20_POLY1305_AEAD_IV_SIZE) return NGTCP2_ERR_CALLBACK_FAILURE;
    rv = wc_ChaCha20Poly1305_Encrypt(st->key.data(), nonce, aad, static_cast<word32>(aadlen),
                                     plaintext, len, dest, dest + plaintextlen);
  } else {
    rv = wc_AesGcmEncrypt(&st->aes, dest, plaintext, len, nonce, static_cast<word32>(noncelen),
                          dest + plaintextlen, tag_size, aad, static_cast<word32>(aadlen));
  }
  return rv == 0 ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

int decrypt_cb(std::uint8_t* dest, const ngtcp2_crypto_aead*,
               const ngtcp2_crypto_aead_ctx* aead_ctx, const std::uint8_t* ciphertext,
               std::size_t ciphertextlen, const std::uint8_t* nonce, std::size_t noncelen,
               const std::uint8_t* aad, std::size_t aadlen) {
  // A packet that fails to open is dropped (RFC 9001 §5.3), hence NGTCP2_ERR_DECRYPT.
  if (ciphertextlen < tag_size) return NGTCP2_ERR_DECRYPT;
  auto* st = static_cast<cipher_state*>(aead_ctx->native_handle);
  const std::size_t len = ciphertextlen - tag_size;
  const std::uint8_t* tag = ciphertext + len;
  int rv = 0;
  if (st->chacha) {
    if (noncelen != CHACHA20_POLY1305_AEAD_IV_SIZE) return NGTCP2_ERR_DECRYPT;
    rv = wc_ChaCha20Poly1305_Decrypt(st->key.data(), nonce, aad, static_cast<word32>(aadlen),
                                     ciphertext, static_cast<word32>(len), tag, dest);
  } else {
    rv = wc_AesGcmDecrypt(&st->aes, dest, ciphertext, static_cast<word32>(len), nonce,
                          static_cast<word32>(noncelen), tag, tag_size, aad,
                          static_cast<word32>(aadlen));
  }
  return rv == 0 ? 0 : NGTCP2_ERR_DECRYPT;
}

int hp_mask_cb(std::uint8_t* dest, const ngtcp2_crypto_cipher*,
               const ngtcp2_crypto_cipher_ctx* hp_ctx, const std::uint8_t* sample) {
  auto* st = static_cast<cipher_state*>(hp_ctx->native_handle);
  if (st->chacha) {
    // RFC 9001 §5.4.4: counter = sample[0..3] (little-endian), nonce = sample[4..15], five
    // bytes of key stream.
    ChaCha chacha;
    const word32 counter = static_cast<word32>(sample[0]) | static_cast<word32>(sample[1]) << 8 |
                           static_cast<word32>(sample[2]) << 16 |
                           static_cast<word32>(sample[3]) << 24;
    static constexpr std::array<std::uint8_t, NGTCP2_HP_MASKLEN> zeros{};
    const bool ok = wc_Chacha_SetKey(&chacha, st->key.data(), CHACHA_MAX_KEY_SZ) == 0 &&
                    wc_Chacha_SetIV(&chacha, sample + 4, counter) == 0 &&
                    wc_Chacha_Process(&chacha, dest, zeros.data(), NGTCP2_HP_MASKLEN) == 0;
    ::explicit_bzero(&chacha, sizeof chacha);
    return ok ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
  }
  // RFC 9001 §5.4.3: mask = AES-ECB(hp_key, sample); ngtcp2 takes its first 5 bytes. The
  // sample sits anywhere in the packet, and wolfSSL's AES-NI path copies an input that is not
  // 16-byte aligned through a block it allocates and frees: once per packet sent or received.
  // An aligned copy here costs a 16-byte move instead.
  alignas(16) std::array<std::uint8_t, AES_BLOCK_SIZE> block;
  std::memcpy(block.data(), sample, block.size());
  if (wc_AesEncryptDirect(&st->aes, block.data(), block.data()) != 0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  std::memcpy(dest, block.data(), NGTCP2_HP_MASKLEN);
  return 0;
}

void delete_crypto_aead_ctx_cb(ngtcp2_conn*, ngtcp2_crypto_aead_ctx* aead_ctx, void*) {
  aead_ctx_free(*aead_ctx);
}

void delete_crypto_cipher_ctx_cb(ngtcp2_conn*, ngtcp2_crypto_cipher_ctx* cipher_ctx, void*) {
  hp_ctx_free(*cipher_ctx);
}

} // namespace detour::cli
