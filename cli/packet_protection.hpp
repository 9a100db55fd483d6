// SPDX-License-Identifier: MIT
// cli/packet_protection.hpp: QUIC packet protection (RFC 9001 §5.3 AEAD, §5.4 header protection)
// for ngtcp2 straight on wolfCrypt: AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 with keys
// expanded once, instead of ngtcp2_crypto_wolfssl's EVP contexts, which re-initialise the cipher
// and buffer (allocate and copy) every packet.
#pragma once

#include <cstddef>
#include <cstdint>

struct ngtcp2_conn;
struct ngtcp2_crypto_aead;
struct ngtcp2_crypto_aead_ctx;
struct ngtcp2_crypto_cipher;
struct ngtcp2_crypto_cipher_ctx;

namespace detour::cli {

/// An AEAD context for |aead| (ngtcp2_crypto_ctx::aead as ngtcp2_crypto_wolfssl fills it: one
/// of wolfSSL's EVP AES-GCM or ChaCha20-Poly1305 ciphers) keyed with |key| (the cipher's key
/// length). Both directions use the same context. False for another cipher or when wolfCrypt
/// refuses the key; |ctx| is then untouched. Freed by the delete_crypto_aead_ctx callback below.
bool aead_ctx_init(ngtcp2_crypto_aead_ctx& ctx, const ngtcp2_crypto_aead& aead,
                   const std::uint8_t* key) noexcept;

/// A header protection context for |hp| (ngtcp2_crypto_ctx::hp: wolfSSL's AES-CTR of the AES
/// suites, which stands for AES-ECB, or ChaCha20) keyed with |key|. As aead_ctx_init.
bool hp_ctx_init(ngtcp2_crypto_cipher_ctx& ctx, const ngtcp2_crypto_cipher& hp,
                 const std::uint8_t* key) noexcept;

void aead_ctx_free(ngtcp2_crypto_aead_ctx& ctx) noexcept;
void hp_ctx_free(ngtcp2_crypto_cipher_ctx& ctx) noexcept;

// ngtcp2 callbacks for connections whose every key was made by the functions above: encrypt,
// decrypt, hp_mask, delete_crypto_aead_ctx and delete_crypto_cipher_ctx.
int encrypt_cb(std::uint8_t* dest, const ngtcp2_crypto_aead* aead,
               const ngtcp2_crypto_aead_ctx* aead_ctx, const std::uint8_t* plaintext,
               std::size_t plaintextlen, const std::uint8_t* nonce, std::size_t noncelen,
               const std::uint8_t* aad, std::size_t aadlen);
int decrypt_cb(std::uint8_t* dest, const ngtcp2_crypto_aead* aead,
               const ngtcp2_crypto_aead_ctx* aead_ctx, const std::uint8_t* ciphertext,
               std::size_t ciphertextlen, const std::uint8_t* nonce, std::size_t noncelen,
               const std::uint8_t* aad, std::size_t aadlen);
int hp_mask_cb(std::uint8_t* dest, const ngtcp2_crypto_cipher* hp,
               const ngtcp2_crypto_cipher_ctx* hp_ctx, const std::uint8_t* sample);
void delete_crypto_aead_ctx_cb(ngtcp2_conn* conn, ngtcp2_crypto_aead_ctx* aead_ctx,
                               void* user_data);
void delete_crypto_cipher_ctx_cb(ngtcp2_conn* conn, ngtcp2_crypto_cipher_ctx* cipher_ctx,
                                 void* user_data);

} // namespace detour::cli
