// SPDX-License-Identifier: MIT
// cli/tls.cpp: wolfSSL contexts and sessions for QUIC (see tls.hpp).
#include "tls.hpp"

#include "alpn.hpp"
#include "packet_protection.hpp"

#include <wolfssl/options.h> // must precede every other wolfSSL header

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h> // DecodedCert: wolfCrypt's own certificate parser
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_wolfssl.h>

#include <arpa/inet.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <mutex>
#include <optional>

namespace detour::cli {

namespace {

std::string last_wolfssl_error() {
  const unsigned long e = wolfSSL_ERR_get_error();
  if (e == 0) return "no further detail from wolfSSL";
  std::array<char, WOLFSSL_MAX_ERROR_SZ> buf{};
  wolfSSL_ERR_error_string_n(e, buf.data(), buf.size());
  return buf.data();
}

[[noreturn]] void fail(const std::string& what) {
  throw tls_error(what + ": " + last_wolfssl_error());
}

void init_wolfssl_once() {
  static std::once_flag once;
  std::call_once(once, [] { wolfSSL_Init(); });
}

// The ex_data slot of a WOLFSSL_CTX that points back to our state (for the session callback).
constexpr int state_ex_index = 0;

// The text wolfSSL compares an iPAddress subjectAltName with: dotted IPv4, or IPv6 as eight
// groups of four upper-case hex digits ("0000:...:0001"), not the short form. Empty when |name|
// is no address.
std::string wolfssl_ip_text(std::string_view name) {
  std::string s(name);
  std::array<unsigned char, 16> a{};
  if (::inet_pton(AF_INET, s.c_str(), a.data()) == 1) return s;
  if (::inet_pton(AF_INET6, s.c_str(), a.data()) != 1) return {};
  std::string out;
  static constexpr char hex[] = "0123456789ABCDEF";
  for (std::size_t i = 0; i < 16; ++i) {
    if (i > 0 && i % 2 == 0) out.push_back(':');
    out.push_back(hex[a[i] >> 4]);
    out.push_back(hex[a[i] & 0xf]);
  }
  return out;
}

} // namespace

session_identities::session_identities(std::size_t capacity)
    : capacity_(capacity < 1 ? 1 : capacity) {}

void session_identities::remember(std::span<const std::uint8_t> id, std::string subject) {
  const std::lock_guard lock(mutex_);
  const std::string_view key(reinterpret_cast<const char*>(id.data()), id.size());
  if (const auto it = by_id_.find(key); it != by_id_.end()) {
    it->second->subject = std::move(subject);
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  if (by_id_.size() == capacity_) {
    by_id_.erase(order_.back().id);
    order_.pop_back();
  }
  order_.push_front(entry{std::string(key), std::move(subject)});
  by_id_.emplace(order_.front().id, order_.begin()); // the key views the node's own string
}

std::string session_identities::find(std::span<const std::uint8_t> id) {
  const std::lock_guard lock(mutex_);
  const std::string_view key(reinterpret_cast<const char*>(id.data()), id.size());
  const auto it = by_id_.find(key);
  if (it == by_id_.end()) return {};
  order_.splice(order_.begin(), order_, it->second);
  return it->second->subject;
}

struct tls_context::state {
  WOLFSSL_CTX* ctx = nullptr;
  bool server = false;
  std::vector<std::uint8_t> alpn_wire; // server: accepted names; client: offered names
  WOLFSSL_SESSION* cached_session = nullptr;
  bool resume = false;
  // Server under mutual TLS: who each session's client was, for its resumptions.
  std::optional<session_identities> identities;

  state() = default;
  state(const state&) = delete;
  state& operator=(const state&) = delete;
  ~state() {
    if (cached_session) wolfSSL_SESSION_free(cached_session);
    if (ctx) wolfSSL_CTX_free(ctx);
  }
};

std::vector<std::uint8_t> encode_alpn(const std::vector<std::string>& names) {
  std::vector<std::uint8_t> wire;
  for (const auto& n : names) {
    if (n.empty() || n.size() > 255) {
      throw tls_error("ALPN name '" + n + "' must be 1 to 255 bytes long");
    }
    wire.push_back(static_cast<std::uint8_t>(n.size()));
    wire.insert(wire.end(), n.begin(), n.end());
  }
  return wire;
}

namespace {

int alpn_select_cb(WOLFSSL*, const unsigned char** out, unsigned char* outlen,
                   const unsigned char* in, unsigned int inlen, void* arg) {
  const auto* st = static_cast<const tls_context::state*>(arg);
  // No policy: accept the offer by selecting its first name (a QUIC client that offered ALPN
  // and gets none closes the connection, RFC 9001 §8.1); a malformed offer gets no answer.
  // With names: the first offered one on the list, or no_application_protocol.
  const bool policy = !st->alpn_wire.empty();
  const long at = policy ? select_alpn(in, inlen, st->alpn_wire.data(), st->alpn_wire.size())
                         : first_alpn(in, inlen);
  if (at < 0) return policy ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
  *out = in + at + 1;
  *outlen = in[at];
  return SSL_TLSEXT_ERR_OK;
}

int new_session_cb(WOLFSSL* ssl, WOLFSSL_SESSION* session) {
  auto* st = static_cast<tls_context::state*>(
      wolfSSL_CTX_get_ex_data(wolfSSL_get_SSL_CTX(ssl), state_ex_index));
  if (!st || !st->resume) return 0;
  if (st->cached_session) wolfSSL_SESSION_free(st->cached_session);
  st->cached_session = session;
  return 1; // we keep the reference
}

// An ASN.1 UTCTime or GeneralizedTime field (tag and length first) in seconds.
std::optional<std::int64_t> asn_time_seconds(const byte* field, int size) {
  const byte* date = nullptr;
  byte format = 0;
  int length = 0;
  std::tm tm{};
  if (!field || size <= 0 || wc_GetDateInfo(field, size, &date, &format, &length) != 0 ||
      wc_GetDateAsCalendarTime(date, length, format, &tm) != 0) {
    return std::nullopt;
  }
  return static_cast<std::int64_t>(::timegm(&tm));
}

// The first certificate of a PEM file.
std::optional<certificate_facts> first_certificate(const std::string& pem_file) {
  std::ifstream in(pem_file, std::ios::binary);
  if (!in) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return read_pem_certificate(text);
}

// Why a PEM file did not load, when the file itself says (wolfSSL often gives no reason):
// unreadable, not PEM, the other kind of PEM block, an encrypted key, an Ed448 key (this build
// signs with ECDSA, RSA and Ed25519). Empty when nothing explains it.
std::string pem_problem(const std::string& path, bool want_certificate) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::strerror(errno);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) return "the file is empty";
  const bool has_cert = text.find("-----BEGIN CERTIFICATE-----") != std::string::npos;
  const bool has_key = text.find("PRIVATE KEY-----") != std::string::npos;
  if (text.find("-----BEGIN ") == std::string::npos)
    return "not PEM (no -----BEGIN line; a DER file can be converted with openssl)";
  if (want_certificate && !has_cert && has_key) return "it holds a private key, not a certificate";
  if (!want_certificate && !has_key && has_cert) return "it holds a certificate, not a private key";
  if (!want_certificate && text.find("ENCRYPTED PRIVATE KEY") != std::string::npos)
    return "the key is encrypted with a passphrase: give it unencrypted (openssl pkey -in KEY "
           "-out KEY.plain)";
  // The OID of Ed448 (1.3.101.113), DER 06 03 2B 65 71, in the first block's DER (wolfSSL's
  // PEM reading does not depend on the key's algorithm).
  std::vector<unsigned char> der(text.size());
  const auto* pem = reinterpret_cast<const unsigned char*>(text.data());
  const int n = want_certificate ? wc_CertPemToDer(pem, static_cast<int>(text.size()), der.data(),
                                                   static_cast<int>(der.size()), CERT_TYPE)
                                 : wc_KeyPemToDer(pem, static_cast<int>(text.size()), der.data(),
                                                  static_cast<int>(der.size()), nullptr);
  const std::string_view bytes(reinterpret_cast<const char*>(der.data()),
                               n > 0 ? static_cast<std::size_t>(n) : 0);
  if (bytes.find(std::string{'\x06', '\x03', '\x2b', '\x65', '\x71'}) != std::string_view::npos)
    return "an Ed448 key: use an Ed25519, ECDSA (P-256, P-384) or RSA certificate (g3proxy's "
           "TLS library does not check Ed448 signatures either)";
  return {};
}

void load_chain_and_key(WOLFSSL_CTX* ctx, const std::string& cert, const std::string& key) {
  if (wolfSSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != WOLFSSL_SUCCESS) {
    if (const std::string why = pem_problem(cert, true); !why.empty())
      throw tls_error("cannot load the certificate chain " + cert + ": " + why);
    fail("cannot load the certificate chain " + cert);
  }
  if (wolfSSL_CTX_use_PrivateKey_file(ctx, key.c_str(), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
    if (const std::string why = pem_problem(key, false); !why.empty())
      throw tls_error("cannot load the private key " + key + ": " + why);
    fail("cannot load the private key " + key);
  }
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
    throw tls_error("the private key " + key + " does not match the certificate " + cert +
                    " (they are not one pair)");
  }
}

// --- the QUIC interface of wolfSSL -----------------------------------------------------------
// ngtcp2_crypto_wolfssl's method, with one difference: the Handshake, 0-RTT and 1-RTT keys are
// derived with hkdf_expand_label. Its own set_encryption_secrets goes through wolfSSL's EVP HKDF,
// which seeds a new random generator (an open of /dev/urandom and a DRBG self-test) for every
// key, IV and header protection key: about 14% of a server's CPU per handshake.

ngtcp2_conn* conn_of(WOLFSSL* ssl) {
  auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(wolfSSL_get_app_data(ssl));
  return ref->get_conn(ref);
}

// The peer's transport parameters, from its ClientHello or EncryptedExtensions, to ngtcp2.
bool take_remote_transport_params(ngtcp2_conn* conn, WOLFSSL* ssl) {
  const std::uint8_t* params = nullptr;
  std::size_t len = 0;
  wolfSSL_get_peer_quic_transport_params(ssl, &params, &len);
  if (const int rv = ngtcp2_conn_decode_and_set_remote_transport_params(conn, params, len);
      rv != 0) {
    ngtcp2_conn_set_tls_error(conn, rv);
    return false;
  }
  return true;
}

// Our transport parameters to TLS: the server's EncryptedExtensions, the client's ClientHello.
bool give_local_transport_params(ngtcp2_conn* conn, WOLFSSL* ssl) {
  std::array<std::uint8_t, 256> params{};
  const ngtcp2_ssize n =
      ngtcp2_conn_encode_local_transport_params(conn, params.data(), params.size());
  return n >= 0 && wolfSSL_set_quic_transport_params(
                       ssl, params.data(), static_cast<std::size_t>(n)) == WOLFSSL_SUCCESS;
}

// What ngtcp2_crypto_derive_and_install_rx_key / _tx_key do, step for step.
bool install_secret(WOLFSSL* ssl, ngtcp2_conn* conn, ngtcp2_encryption_level level, bool rx,
                    const std::uint8_t* secret, std::size_t secretlen) {
  const bool server = ngtcp2_conn_is_server(conn) != 0;
  // A server has no 0-RTT keys to send with, a client none to read with.
  if (level == NGTCP2_ENCRYPTION_LEVEL_0RTT && rx != server) return true;

  const ngtcp2_crypto_ctx* ctx = nullptr;
  std::uint32_t version = 0;
  ngtcp2_crypto_ctx fresh{};
  switch (level) {
  case NGTCP2_ENCRYPTION_LEVEL_0RTT:
    if (!ngtcp2_crypto_ctx_tls_early(&fresh, ssl)) return false;
    ngtcp2_conn_set_0rtt_crypto_ctx(conn, &fresh);
    ctx = ngtcp2_conn_get_0rtt_crypto_ctx(conn);
    version = ngtcp2_conn_get_client_chosen_version(conn);
    break;
  case NGTCP2_ENCRYPTION_LEVEL_HANDSHAKE:
    // A server learns the client's transport parameters (and so the version) here.
    if (server && ngtcp2_conn_get_negotiated_version(conn) == 0 &&
        !take_remote_transport_params(conn, ssl)) {
      return false;
    }
    [[fallthrough]];
  case NGTCP2_ENCRYPTION_LEVEL_1RTT:
    ctx = ngtcp2_conn_get_crypto_ctx(conn);
    version = ngtcp2_conn_get_negotiated_version(conn);
    if (!ctx->aead.native_handle) {
      if (!ngtcp2_crypto_ctx_tls(&fresh, ssl)) return false;
      ngtcp2_conn_set_crypto_ctx(conn, &fresh);
      ctx = ngtcp2_conn_get_crypto_ctx(conn);
    }
    break;
  default:
    return false;
  }

  // RFC 9001 §5.1 (RFC 9369 §3.3.2 for v2): key, IV and header protection key.
  const bool v2 = version == NGTCP2_PROTO_VER_V2;
  const std::size_t keylen = ngtcp2_crypto_aead_keylen(&ctx->aead);
  const std::size_t ivlen = ngtcp2_crypto_packet_protection_ivlen(&ctx->aead);
  std::array<std::uint8_t, 64> key{}, iv{}, hp_key{};
  if (keylen > key.size() || ivlen > iv.size()) return false;
  const std::span<const std::uint8_t> s{secret, secretlen};
  bool ok = hkdf_expand_label({key.data(), keylen}, s, v2 ? "quicv2 key" : "quic key") &&
            hkdf_expand_label({iv.data(), ivlen}, s, v2 ? "quicv2 iv" : "quic iv") &&
            hkdf_expand_label({hp_key.data(), keylen}, s, v2 ? "quicv2 hp" : "quic hp");

  ngtcp2_crypto_aead_ctx aead_ctx{};
  ngtcp2_crypto_cipher_ctx hp_ctx{};
  ok = ok && aead_ctx_init(aead_ctx, ctx->aead, key.data()) &&
       hp_ctx_init(hp_ctx, ctx->hp, hp_key.data());
  ::explicit_bzero(key.data(), key.size());
  ::explicit_bzero(hp_key.data(), hp_key.size());
  if (ok) {
    switch (level) {
    case NGTCP2_ENCRYPTION_LEVEL_0RTT:
      ok = ngtcp2_conn_install_0rtt_key(conn, &aead_ctx, iv.data(), ivlen, &hp_ctx) == 0;
      break;
    case NGTCP2_ENCRYPTION_LEVEL_HANDSHAKE:
      if (rx) {
        ok = ngtcp2_conn_install_rx_handshake_key(conn, &aead_ctx, iv.data(), ivlen, &hp_ctx) == 0;
      } else {
        ok = ngtcp2_conn_install_tx_handshake_key(conn, &aead_ctx, iv.data(), ivlen, &hp_ctx) == 0;
        if (ok && server && !give_local_transport_params(conn, ssl)) {
          return false; // the keys are installed: the connection owns and frees them
        }
      }
      break;
    default: // 1-RTT
      if (rx) {
        ok = (server || take_remote_transport_params(conn, ssl)) &&
             ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, iv.data(), ivlen,
                                        &hp_ctx) == 0;
      } else {
        ok = ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, iv.data(), ivlen,
                                        &hp_ctx) == 0;
      }
      break;
    }
  }
  if (ok) return true; // the connection owns the contexts now
  hp_ctx_free(hp_ctx);
  aead_ctx_free(aead_ctx);
  return false;
}

int set_encryption_secrets(WOLFSSL* ssl, WOLFSSL_ENCRYPTION_LEVEL wolfssl_level,
                           const std::uint8_t* rx_secret, const std::uint8_t* tx_secret,
                           std::size_t secretlen) {
  ngtcp2_conn* conn = conn_of(ssl);
  const ngtcp2_encryption_level level =
      ngtcp2_crypto_wolfssl_from_wolfssl_encryption_level(wolfssl_level);
  if (rx_secret && !install_secret(ssl, conn, level, true, rx_secret, secretlen)) return 0;
  if (tx_secret && !install_secret(ssl, conn, level, false, tx_secret, secretlen)) return 0;
  return 1;
}

int add_handshake_data(WOLFSSL* ssl, WOLFSSL_ENCRYPTION_LEVEL wolfssl_level,
                       const std::uint8_t* data, std::size_t len) {
  ngtcp2_conn* conn = conn_of(ssl);
  const int rv = ngtcp2_conn_submit_crypto_data(
      conn, ngtcp2_crypto_wolfssl_from_wolfssl_encryption_level(wolfssl_level), data, len);
  if (rv != 0) {
    ngtcp2_conn_set_tls_error(conn, rv);
    return 0;
  }
  return 1;
}

int flush_flight(WOLFSSL*) {
  return 1;
}

int send_alert(WOLFSSL* ssl, WOLFSSL_ENCRYPTION_LEVEL, std::uint8_t alert) {
  ngtcp2_conn_set_tls_alert(conn_of(ssl), alert);
  return 1;
}

const WOLFSSL_QUIC_METHOD quic_method{set_encryption_secrets, add_handshake_data, flush_flight,
                                      send_alert};

// What ngtcp2_crypto_wolfssl_configure_{server,client}_context do, with our method.
void configure_quic(WOLFSSL_CTX* ctx) {
  wolfSSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  wolfSSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  if (wolfSSL_CTX_set_quic_method(ctx, &quic_method) != WOLFSSL_SUCCESS) {
    fail("wolfSSL_CTX_set_quic_method");
  }
}

} // namespace

tls_context tls_context::server(const tls_server_config& config) {
  init_wolfssl_once();
  auto st = std::make_shared<state>();
  st->server = true;
  st->alpn_wire = encode_alpn(config.alpn);
  st->ctx = wolfSSL_CTX_new(wolfTLSv1_3_server_method()); // TLS 1.3 only (RFC 9001 §4.2)
  if (!st->ctx) fail("wolfSSL_CTX_new");
  configure_quic(st->ctx);
  wolfSSL_CTX_set_ex_data(st->ctx, state_ex_index, st.get());
  load_chain_and_key(st->ctx, config.certificate_file, config.private_key_file);

  if (!config.client_ca_file.empty()) {
    if (wolfSSL_CTX_load_verify_locations(st->ctx, config.client_ca_file.c_str(), nullptr) !=
        WOLFSSL_SUCCESS) {
      if (const std::string why = pem_problem(config.client_ca_file, true); !why.empty())
        throw tls_error("cannot load the client CA file " + config.client_ca_file + ": " + why);
      fail("cannot load the client CA file " + config.client_ca_file);
    }
    // A leaf here (say server.pem for ca.pem) loads, and then every client is refused.
    if (const auto first = first_certificate(config.client_ca_file)) {
      if (!first->ca) {
        throw tls_error("the client CA file " + config.client_ca_file +
                        " starts with a certificate that is not a CA (no basicConstraints "
                        "CA:TRUE): give the CA that issued g3proxy's client certificate, such "
                        "as the ca.pem of a `detour cert` folder");
      }
    }
    wolfSSL_CTX_set_verify(st->ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                           nullptr);
    st->identities.emplace(config.remembered_identities);
  } else {
    wolfSSL_CTX_set_verify(st->ctx, WOLFSSL_VERIFY_NONE, nullptr);
  }

  // Always installed: with no names configured it selects the first name offered, so a client
  // offering ALPN is accepted with a protocol, and a client offering none never reaches it.
  wolfSSL_CTX_set_alpn_select_cb(st->ctx, alpn_select_cb, st.get());

  if (!config.session_tickets) wolfSSL_CTX_no_ticket_TLSv13(st->ctx);
  return tls_context(std::move(st));
}

tls_context tls_context::client(const tls_client_config& config) {
  init_wolfssl_once();
  auto st = std::make_shared<state>();
  st->alpn_wire = encode_alpn(config.alpn);
  st->resume = config.resume_sessions;
  st->ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  if (!st->ctx) fail("wolfSSL_CTX_new");
  configure_quic(st->ctx);
  wolfSSL_CTX_UseSessionTicket(st->ctx);
  if (!config.cipher_suites.empty() &&
      wolfSSL_CTX_set_cipher_list(st->ctx, config.cipher_suites.c_str()) != WOLFSSL_SUCCESS) {
    throw tls_error("no TLS 1.3 cipher suite known in '" + config.cipher_suites +
                    "' (names like TLS13-AES128-GCM-SHA256, TLS13-AES256-GCM-SHA384, "
                    "TLS13-CHACHA20-POLY1305-SHA256, separated by ':')");
  }
  wolfSSL_CTX_set_ex_data(st->ctx, state_ex_index, st.get());
  if (config.verify_server) {
    if (config.ca_file.empty()) {
      if (wolfSSL_CTX_load_system_CA_certs(st->ctx) != WOLFSSL_SUCCESS) {
        fail("cannot load the system CA certificates");
      }
    } else if (wolfSSL_CTX_load_verify_locations(st->ctx, config.ca_file.c_str(), nullptr) !=
               WOLFSSL_SUCCESS) {
      if (const std::string why = pem_problem(config.ca_file, true); !why.empty())
        throw tls_error("cannot load the CA file " + config.ca_file + ": " + why);
      fail("cannot load the CA file " + config.ca_file);
    }
    wolfSSL_CTX_set_verify(st->ctx, WOLFSSL_VERIFY_PEER, nullptr);
  } else {
    wolfSSL_CTX_set_verify(st->ctx, WOLFSSL_VERIFY_NONE, nullptr);
  }
  if (!config.certificate_file.empty() || !config.private_key_file.empty()) {
    load_chain_and_key(st->ctx, config.certificate_file, config.private_key_file);
  }
  if (config.resume_sessions) {
    wolfSSL_CTX_sess_set_new_cb(st->ctx, new_session_cb);
  }
  return tls_context(std::move(st));
}

std::optional<certificate_facts> read_pem_certificate(std::string_view pem) {
  std::vector<unsigned char> der(pem.size());
  const int n = wc_CertPemToDer(reinterpret_cast<const unsigned char*>(pem.data()),
                                static_cast<int>(pem.size()), der.data(),
                                static_cast<int>(der.size()), CERT_TYPE);
  if (n <= 0) return std::nullopt;
  DecodedCert cert;
  wc_InitDecodedCert(&cert, der.data(), static_cast<word32>(n), nullptr);
  std::optional<certificate_facts> facts;
  if (wc_ParseCert(&cert, CERT_TYPE, NO_VERIFY, nullptr) == 0) {
    facts.emplace();
    if (cert.keyOID == ED25519k) facts->key_type = certificate_facts::key::ed25519;
    if (cert.keyOID == ED448k) facts->key_type = certificate_facts::key::ed448;
    facts->ca = cert.isCA;
    facts->not_before = asn_time_seconds(cert.beforeDate, cert.beforeDateLen);
    facts->not_after = asn_time_seconds(cert.afterDate, cert.afterDateLen);
  }
  wc_FreeDecodedCert(&cert);
  return facts;
}

std::optional<certificate_validity> read_certificate_validity(const std::string& pem_file) {
  init_wolfssl_once();
  const auto first = first_certificate(pem_file);
  if (!first || !first->not_before || !first->not_after) return std::nullopt;
  return certificate_validity{*first->not_before, *first->not_after};
}

WOLFSSL_CTX* tls_context::native_handle() const noexcept {
  return state_->ctx;
}
bool tls_context::is_server() const noexcept {
  return state_->server;
}
bool tls_context::has_cached_session() const noexcept {
  return state_->cached_session != nullptr;
}

tls_session::tls_session(const tls_context& context, ngtcp2_crypto_conn_ref& conn_ref,
                         std::string_view server_name)
    : context_(context.state_), ssl_(wolfSSL_new(context_->ctx)) {
  if (!ssl_) fail("wolfSSL_new");
  wolfSSL_set_app_data(ssl_, &conn_ref);
  // The quic_transport_parameters extension codepoint of RFC 9001 §8.2 (not the draft's 0xffa5).
  wolfSSL_set_quic_transport_version(ssl_, 0x39);
  if (context_->server) {
    wolfSSL_set_accept_state(ssl_);
    return;
  }
  wolfSSL_set_connect_state(ssl_);
  if (!context_->alpn_wire.empty() &&
      wolfSSL_set_alpn_protos(ssl_, context_->alpn_wire.data(),
                              static_cast<unsigned>(context_->alpn_wire.size())) != 0) {
    fail("wolfSSL_set_alpn_protos");
  }
  if (!server_name.empty()) {
    const std::string name(server_name);
    if (const std::string ip = wolfssl_ip_text(name); !ip.empty()) {
      // No SNI for an address (RFC 6066 §3); the certificate must carry an IP subjectAltName.
      if (wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(wolfSSL_get0_param(ssl_), ip.c_str()) !=
          WOLFSSL_SUCCESS) {
        fail("cannot verify against the address " + name);
      }
    } else {
      if (wolfSSL_check_domain_name(ssl_, name.c_str()) != WOLFSSL_SUCCESS) {
        fail("cannot verify against the name " + name);
      }
      if (wolfSSL_UseSNI(ssl_, WOLFSSL_SNI_HOST_NAME, name.data(),
                         static_cast<unsigned short>(name.size())) != WOLFSSL_SUCCESS) {
        fail("wolfSSL_UseSNI");
      }
    }
  }
  if (context_->cached_session) wolfSSL_set_session(ssl_, context_->cached_session);
}

tls_session::~tls_session() {
  if (ssl_) wolfSSL_free(ssl_);
}

std::string tls_session::alpn() const {
  const unsigned char* data = nullptr;
  unsigned len = 0;
  wolfSSL_get0_alpn_selected(ssl_, &data, &len);
  return data ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

bool tls_session::resumed() const noexcept {
  return wolfSSL_session_reused(ssl_) == 1;
}

std::string tls_session::peer_subject() {
  // The session's id: random for a full handshake (wolfSSL's altSessionID, sealed into every
  // ticket it issues), taken back from the ticket on a resumption (WOLFSSL_TICKET_HAVE_ID).
  std::span<const std::uint8_t> id;
  if (const WOLFSSL_SESSION* session = wolfSSL_get_session(ssl_)) {
    unsigned len = 0;
    if (const unsigned char* p = wolfSSL_SESSION_get_id(session, &len)) id = {p, len};
  }
  std::string subject;
  if (WOLFSSL_X509* peer = wolfSSL_get_peer_certificate(ssl_)) {
    std::array<char, 256> buf{};
    wolfSSL_X509_NAME_oneline(wolfSSL_X509_get_subject_name(peer), buf.data(),
                              static_cast<int>(buf.size()));
    wolfSSL_X509_free(peer);
    subject = buf.data();
  }
  if (subject.empty()) {
    // Resumed: no certificate came, the one verified when the session began stands.
    if (context_->identities && resumed() && !id.empty()) return context_->identities->find(id);
    return {};
  }
  if (context_->identities && !id.empty()) context_->identities->remember(id, subject);
  return subject;
}

std::string tls_session::cipher() const {
  const char* name = wolfSSL_get_cipher_name(ssl_);
  return name ? name : "";
}

std::string tls_session::failure_reason() const {
  const long verify = wolfSSL_get_verify_result(ssl_);
  if (verify != 0) {
    return std::string("certificate verification failed: ") +
           wolfSSL_X509_verify_cert_error_string(verify);
  }
  const int err = wolfSSL_get_error(ssl_, 0);
  std::array<char, WOLFSSL_MAX_ERROR_SZ> buf{};
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(err), buf.data(), buf.size());
  return buf.data();
}

// --- key derivation for ngtcp2 ---------------------------------------------------------------

bool hkdf_expand_label(std::span<std::uint8_t> out, std::span<const std::uint8_t> secret,
                       std::string_view label) noexcept {
  constexpr std::string_view prefix = "tls13 ";
  int hash = 0;
  if (secret.size() == WC_SHA256_DIGEST_SIZE) hash = WC_SHA256;
  if (secret.size() == WC_SHA384_DIGEST_SIZE) hash = WC_SHA384;
  if (hash == 0 || out.size() > 255 || prefix.size() + label.size() > 255) return false;
  // HkdfLabel: uint16 length, opaque label<7..255>, opaque context<0..255> (empty).
  std::array<std::uint8_t, 2 + 1 + 255 + 1> info{};
  std::size_t n = 0;
  info[n++] = 0;
  info[n++] = static_cast<std::uint8_t>(out.size());
  info[n++] = static_cast<std::uint8_t>(prefix.size() + label.size());
  std::memcpy(info.data() + n, prefix.data(), prefix.size());
  n += prefix.size();
  std::memcpy(info.data() + n, label.data(), label.size());
  n += label.size();
  info[n++] = 0;
  return wc_HKDF_Expand(hash, secret.data(), static_cast<word32>(secret.size()), info.data(),
                        static_cast<word32>(n), out.data(), static_cast<word32>(out.size())) == 0;
}

bool stateless_reset_token(std::span<std::uint8_t, 16> out, std::span<const std::uint8_t> secret,
                           const ngtcp2_cid& cid) noexcept {
  static_assert(NGTCP2_STATELESS_RESET_TOKENLEN == 16);
  static constexpr std::string_view info = "stateless_reset";
  return wc_HKDF(WC_SHA256, secret.data(), static_cast<word32>(secret.size()), cid.data,
                 static_cast<word32>(cid.datalen), reinterpret_cast<const byte*>(info.data()),
                 static_cast<word32>(info.size()), out.data(),
                 static_cast<word32>(out.size())) == 0;
}

bool derive_initial_secrets(std::uint32_t version, std::span<const std::uint8_t> client_dcid,
                            std::span<std::uint8_t, 32> client_secret,
                            std::span<std::uint8_t, 32> server_secret) noexcept {
  // initial_salt of RFC 9001 §5.2 and RFC 9369 §3.3.1.
  static constexpr std::array<std::uint8_t, 20> salt_v1{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34,
                                                        0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                                                        0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};
  static constexpr std::array<std::uint8_t, 20> salt_v2{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6,
                                                        0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
                                                        0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9};
  const std::array<std::uint8_t, 20>* salt = nullptr;
  if (version == NGTCP2_PROTO_VER_V1) salt = &salt_v1;
  if (version == NGTCP2_PROTO_VER_V2) salt = &salt_v2;
  if (!salt || client_dcid.size() > NGTCP2_MAX_CIDLEN) return false;
  std::array<std::uint8_t, WC_SHA256_DIGEST_SIZE> initial{};
  const bool ok = wc_HKDF_Extract(WC_SHA256, salt->data(), static_cast<word32>(salt->size()),
                                  client_dcid.data(), static_cast<word32>(client_dcid.size()),
                                  initial.data()) == 0 &&
                  hkdf_expand_label(client_secret, initial, "client in") &&
                  hkdf_expand_label(server_secret, initial, "server in");
  ::explicit_bzero(initial.data(), initial.size());
  return ok;
}

namespace {

// The Initial keys of |version| from the client's first Destination Connection ID |dcid|
// installed in |conn|, as ngtcp2_crypto_derive_and_install_initial_key does (AES-128-GCM,
// SHA-256, AES-128-CTR header protection): a server reads with the client's keys and writes
// with its own, a client the other way round. |vneg|: the keys of the version that compatible
// version negotiation (RFC 9368) moves to, next to those of the client's first version.
bool install_initial_keys(ngtcp2_conn* conn, std::uint32_t version, const ngtcp2_cid& dcid,
                          bool vneg = false) {
  const bool v2 = version == NGTCP2_PROTO_VER_V2;
  // ngtcp2_crypto_ctx_initial of ngtcp2_crypto_wolfssl: the Initial packets' algorithms.
  ngtcp2_crypto_ctx ctx{};
  const auto* gcm = wolfSSL_EVP_aes_128_gcm();
  ctx.aead.native_handle = const_cast<WOLFSSL_EVP_CIPHER*>(gcm);
  ctx.aead.max_overhead = wolfSSL_quic_get_aead_tag_len(gcm);
  ctx.md.native_handle = const_cast<WOLFSSL_EVP_MD*>(wolfSSL_EVP_sha256());
  ctx.hp.native_handle = const_cast<WOLFSSL_EVP_CIPHER*>(wolfSSL_EVP_aes_128_ctr());
  if (!vneg) ngtcp2_conn_set_initial_crypto_ctx(conn, &ctx);

  std::array<std::uint8_t, 32> client{}, server{};
  struct keys {
    std::array<std::uint8_t, 16> key{}, hp{};
    std::array<std::uint8_t, 12> iv{};
  } rx, tx;
  const auto derive = [v2](keys& k, std::span<const std::uint8_t> secret) {
    return hkdf_expand_label(k.key, secret, v2 ? "quicv2 key" : "quic key") &&
           hkdf_expand_label(k.iv, secret, v2 ? "quicv2 iv" : "quic iv") &&
           hkdf_expand_label(k.hp, secret, v2 ? "quicv2 hp" : "quic hp");
  };
  const bool server_side = ngtcp2_conn_is_server(conn) != 0;
  if (!derive_initial_secrets(version, {dcid.data, dcid.datalen}, client, server) ||
      !derive(rx, server_side ? client : server) || !derive(tx, server_side ? server : client)) {
    return false;
  }
  ngtcp2_crypto_aead_ctx rx_aead{}, tx_aead{}, retry_aead_ctx{};
  ngtcp2_crypto_cipher_ctx rx_hp{}, tx_hp{};
  // A client checks the integrity tag of a Retry (RFC 9001 §5.8) with a fixed key, until it
  // has followed one.
  if (!vneg && !server_side && !ngtcp2_conn_after_retry(conn)) {
    const std::string_view retry_key = v2 ? NGTCP2_RETRY_KEY_V2 : NGTCP2_RETRY_KEY_V1;
    if (!aead_ctx_init(retry_aead_ctx, ctx.aead,
                       reinterpret_cast<const std::uint8_t*>(retry_key.data()))) {
      return false;
    }
  }
  bool ok =
      aead_ctx_init(rx_aead, ctx.aead, rx.key.data()) && hp_ctx_init(rx_hp, ctx.hp, rx.hp.data()) &&
      aead_ctx_init(tx_aead, ctx.aead, tx.key.data()) && hp_ctx_init(tx_hp, ctx.hp, tx.hp.data());
  if (ok && vneg) {
    ok = ngtcp2_conn_install_vneg_initial_key(conn, version, &rx_aead, rx.iv.data(), &rx_hp,
                                              &tx_aead, tx.iv.data(), &tx_hp, rx.iv.size()) == 0;
  } else if (ok) {
    ok = ngtcp2_conn_install_initial_key(conn, &rx_aead, rx.iv.data(), &rx_hp, &tx_aead,
                                         tx.iv.data(), &tx_hp, rx.iv.size()) == 0;
  }
  if (ok) {
    if (retry_aead_ctx.native_handle) {
      ngtcp2_crypto_aead retry_aead = ctx.aead; // AES-128-GCM, as the Initial packets
      ngtcp2_conn_set_retry_aead(conn, &retry_aead, &retry_aead_ctx);
    }
    return true; // the connection owns the contexts now
  }
  aead_ctx_free(retry_aead_ctx);
  aead_ctx_free(rx_aead);
  aead_ctx_free(tx_aead);
  hp_ctx_free(rx_hp);
  hp_ctx_free(tx_hp);
  return false;
}

} // namespace

int recv_client_initial_cb(ngtcp2_conn* conn, const ngtcp2_cid* dcid, void*) {
  return install_initial_keys(conn, ngtcp2_conn_get_client_chosen_version(conn), *dcid)
             ? 0
             : NGTCP2_ERR_CALLBACK_FAILURE;
}

int recv_retry_cb(ngtcp2_conn* conn, const ngtcp2_pkt_hd* hd, void*) {
  // RFC 9001 §5.2: after a Retry, the Initial keys come from the server's new connection ID.
  return install_initial_keys(conn, ngtcp2_conn_get_client_chosen_version(conn), hd->scid)
             ? 0
             : NGTCP2_ERR_CALLBACK_FAILURE;
}

int version_negotiation_cb(ngtcp2_conn* conn, std::uint32_t version, const ngtcp2_cid* client_dcid,
                           void*) {
  return install_initial_keys(conn, version, *client_dcid, true) ? 0 : NGTCP2_ERR_CALLBACK_FAILURE;
}

int client_initial_cb(ngtcp2_conn* conn, void*) {
  // What ngtcp2_crypto_client_initial_cb does: the Initial keys, the client's transport
  // parameters into its ClientHello, and the ClientHello itself.
  auto* ssl = static_cast<WOLFSSL*>(ngtcp2_conn_get_tls_native_handle(conn));
  if (!install_initial_keys(conn, ngtcp2_conn_get_client_chosen_version(conn),
                            *ngtcp2_conn_get_dcid(conn))) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  if (!give_local_transport_params(conn, ssl) ||
      ngtcp2_crypto_read_write_crypto_data(conn, NGTCP2_ENCRYPTION_LEVEL_INITIAL, nullptr, 0) !=
          0) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int update_key_cb(ngtcp2_conn* conn, std::uint8_t* rx_secret, std::uint8_t* tx_secret,
                  ngtcp2_crypto_aead_ctx* rx_aead_ctx, std::uint8_t* rx_iv,
                  ngtcp2_crypto_aead_ctx* tx_aead_ctx, std::uint8_t* tx_iv,
                  const std::uint8_t* current_rx_secret, const std::uint8_t* current_tx_secret,
                  std::size_t secretlen, void*) {
  const ngtcp2_crypto_ctx* ctx = ngtcp2_conn_get_crypto_ctx(conn);
  const bool v2 = ngtcp2_conn_get_negotiated_version(conn) == NGTCP2_PROTO_VER_V2;
  const std::size_t keylen = ngtcp2_crypto_aead_keylen(&ctx->aead);
  const std::size_t ivlen = ngtcp2_crypto_packet_protection_ivlen(&ctx->aead);
  std::array<std::uint8_t, 64> rx_key{}, tx_key{};
  if (keylen > rx_key.size() || secretlen > 64) return NGTCP2_ERR_CALLBACK_FAILURE;
  // RFC 9001 §6.1 (RFC 9369 §3.3.2 for v2): the next secret from the current one, then its
  // key and IV (the header protection key does not change).
  const auto derive = [&](std::uint8_t* next, const std::uint8_t* current, std::uint8_t* key,
                          std::uint8_t* iv) {
    return hkdf_expand_label({next, secretlen}, {current, secretlen},
                             v2 ? "quicv2 ku" : "quic ku") &&
           hkdf_expand_label({key, keylen}, {next, secretlen}, v2 ? "quicv2 key" : "quic key") &&
           hkdf_expand_label({iv, ivlen}, {next, secretlen}, v2 ? "quicv2 iv" : "quic iv");
  };
  if (!derive(rx_secret, current_rx_secret, rx_key.data(), rx_iv) ||
      !derive(tx_secret, current_tx_secret, tx_key.data(), tx_iv)) {
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  const bool ok = aead_ctx_init(*rx_aead_ctx, ctx->aead, rx_key.data());
  if (!ok || !aead_ctx_init(*tx_aead_ctx, ctx->aead, tx_key.data())) {
    if (ok) aead_ctx_free(*rx_aead_ctx);
    ::explicit_bzero(rx_key.data(), rx_key.size());
    ::explicit_bzero(tx_key.data(), tx_key.size());
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }
  ::explicit_bzero(rx_key.data(), rx_key.size());
  ::explicit_bzero(tx_key.data(), tx_key.size());
  return 0;
}

} // namespace detour::cli
