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

struct aead_state {
  bool chacha = false;
  Aes aes;                                                        // AES-GCM: key schedule and H
  std::array<std::uint8_t, CHACHA20_POLY1305_AEAD_KEYSIZE> key{}; // ChaCha20-Poly1305
};

struct hp_state {
  bool chacha = false;
  Aes aes;                                           // AES: the block cipher (ECB)
  std::array<std::uint8_t, CHACHA_MAX_KEY_SZ> key{}; // ChaCha20
};

const auto* evp(const void* handle) noexcept {
  return static_cast<const WOLFSSL_EVP_CIPHER*>(handle);
}

} // namespace

bool aead_ctx_init(ngtcp2_crypto_aead_ctx& ctx, const ngtcp2_crypto_aead& aead,
                   const std::uint8_t* key) noexcept {
  const auto* cipher = evp(aead.native_handle);
  word32 key_size = 0;
  bool chacha = false;
  if (cipher == wolfSSL_EVP_aes_128_gcm()) {
    key_size = 16;
  } else if (cipher == wolfSSL_EVP_aes_256_gcm()) {
    key_size = 32;
  } else if (cipher == wolfSSL_EVP_chacha20_poly1305()) {
    chacha = true;
  } else {
    return false;
  }
  auto* st = new (std::nothrow) aead_state;
  if (!st) return false;
  st->chacha = chacha;
  if (chacha) {
    std::memcpy(st->key.data(), key, st->key.size());
  } else if (wc_AesInit(&st->aes, nullptr, INVALID_DEVID) != 0) {
    delete st;
    return false;
  } else if (wc_AesGcmSetKey(&st->aes, key, key_size) != 0) {
    wc_AesFree(&st->aes);
    delete st;
    return false;
  }
  ctx.native_handle = st;
  return true;
}

bool hp_ctx_init(ngtcp2_crypto_cipher_ctx& ctx, const ngtcp2_crypto_cipher& hp,
                 const std::uint8_t* key) noexcept {
  const auto* cipher = evp(hp.native_handle);
  word32 key_size = 0;
  bool chacha = false;
  if (cipher == wolfSSL_EVP_aes_128_ctr()) {
    key_size = 16;
  } else if (cipher == wolfSSL_EVP_aes_256_ctr()) {
    key_size = 32;
  } else if (cipher == wolfSSL_EVP_chacha20()) {
    chacha = true;
  } else {
    return false;
  }
  auto* st = new (std::nothrow) hp_state;
  if (!st) return false;
  st->chacha = chacha;
  if (chacha) {
    std::memcpy(st->key.data(), key, st->key.size());
  } else if (wc_AesInit(&st->aes, nullptr, INVALID_DEVID) != 0) {
    delete st;
    return false;
  } else if (wc_AesSetKey(&st->aes, key, key_size, nullptr, AES_ENCRYPTION) != 0) {
    wc_AesFree(&st->aes);
    delete st;
    return false;
  }
  ctx.native_handle = st;
  return true;
}

void aead_ctx_free(ngtcp2_crypto_aead_ctx& ctx) noexcept {
  auto* st = static_cast<aead_state*>(ctx.native_handle);
  if (!st) return;
  if (!st->chacha) wc_AesFree(&st->aes);
  ::explicit_bzero(st, sizeof *st);
  delete st;
  ctx.native_handle = nullptr;
}

void hp_ctx_free(ngtcp2_crypto_cipher_ctx& ctx) noexcept {
  auto* st = static_cast<hp_state*>(ctx.native_handle);
  if (!st) return;
  if (!st->chacha) wc_AesFree(&st->aes);
  ::explicit_bzero(st, sizeof *st);
  delete st;
  ctx.native_handle = nullptr;
}

int encrypt_cb(std::uint8_t* dest, const ngtcp2_crypto_aead*,
               const ngtcp2_crypto_aead_ctx* aead_ctx, const std::uint8_t* plaintext,
               std::size_t plaintextlen, const std::uint8_t* nonce, std::size_t noncelen,
               const std::uint8_t* aad, std::size_t aadlen) {
  auto* st = static_cast<aead_state*>(aead_ctx->native_handle);
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
  auto* st = static_cast<aead_state*>(aead_ctx->native_handle);
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
  auto* st = static_cast<hp_state*>(hp_ctx->native_handle);
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
  // RFC 9001 §5.4.3: mask = AES-ECB(hp_key, sample); ngtcp2 takes its first 5 bytes.
  std::array<std::uint8_t, AES_BLOCK_SIZE> block{};
  if (wc_AesEncryptDirect(&st->aes, block.data(), sample) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
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
