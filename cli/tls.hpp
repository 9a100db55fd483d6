// SPDX-License-Identifier: MIT
// cli/tls.hpp: wolfSSL for QUIC (RFC 9001), server and client side: TLS 1.3 contexts configured
// for ngtcp2 (certificate chain and key, client-CA verification for mutual TLS, the ALPN policy
// g3proxy needs, session tickets and client-side resumption) and one TLS session per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// wolfSSL and ngtcp2 types, declared here so that this header needs neither library's headers.
struct WOLFSSL_CTX;
struct WOLFSSL;
struct ngtcp2_crypto_conn_ref;
struct ngtcp2_conn;
struct ngtcp2_cid;
struct ngtcp2_pkt_hd;
struct ngtcp2_crypto_aead_ctx;

namespace detour::cli {

/// A TLS setup failure (unreadable file, key not matching the certificate...), with wolfSSL's
/// own error text. Thrown only while building contexts and sessions, never during I/O.
class tls_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// The server side, as `detour serve` uses it.
struct tls_server_config {
  /// PEM file: the server certificate first, then any intermediate CA certificates.
  std::string certificate_file;
  /// PEM file: the certificate's private key (PKCS#8, SEC1 or PKCS#1).
  std::string private_key_file;
  /// PEM file of CA certificates for mutual TLS. When set, a client must present a certificate
  /// that chains to one of them, or the handshake fails. Empty: no client certificate is asked.
  std::string client_ca_file;
  /// ALPN names the server accepts. Empty: ALPN is ignored (g3proxy offers none). Otherwise the
  /// first name of the client's offer that is on this list is selected, an offer matching none
  /// is refused with the no_application_protocol alert, and a client offering no ALPN at all is
  /// still accepted.
  std::vector<std::string> alpn;
  /// Issue TLS 1.3 session tickets so that clients (rustls in g3proxy) can resume.
  bool session_tickets = true;
  /// Under mutual TLS: how many sessions' client certificate subjects are kept for their
  /// resumptions (session_identities). One per full handshake, as resumptions keep the id;
  /// 4096 covers 128 g3proxy instances with 32 pooled connections each, at ~200 bytes each.
  std::size_t remembered_identities = 4096;
};

/// The client side, for `detour probe` and the tests.
struct tls_client_config {
  /// PEM file of CA certificates that verify the server. Empty: the system's roots.
  std::string ca_file;
  /// Verify the server certificate (chain and name). Turn off only for diagnostics.
  bool verify_server = true;
  /// Optional client certificate chain and key (PEM) for mutual TLS.
  std::string certificate_file;
  std::string private_key_file;
  /// ALPN names to offer. Empty: offer none, exactly as g3proxy does.
  std::vector<std::string> alpn;
  /// Keep the latest session ticket and offer it on the next connection (rustls' default).
  bool resume_sessions = true;
  /// The TLS 1.3 cipher suites to offer, in order: wolfSSL's names separated by ':'
  /// ("TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256"). Empty: wolfSSL's default list.
  std::string cipher_suites;
};

/// Server side: the client certificate subject of each TLS session, by session id, so that a
/// resumed connection can still say who it is. TLS 1.3 resumption exchanges no certificates,
/// and wolfSSL's session tickets carry a fixed set of fields (no room for a subject), but a
/// ticket does carry its session's id, which every later ticket of a resumed session keeps. So
/// the id of the full handshake that verified the certificate names it on every resumption.
/// Bounded: the least recently used id is forgotten first (a resumption of a forgotten id has
/// no subject to show). Thread-safe: the workers of `detour serve` share one TLS context.
class session_identities {
public:
  /// |capacity|: the most ids kept (at least 1).
  explicit session_identities(std::size_t capacity);

  /// Records |subject| for session |id|, replacing what it had; the most recently used now.
  void remember(std::span<const std::uint8_t> id, std::string subject);
  /// The subject recorded for |id|, which becomes the most recently used; empty when unknown
  /// (never recorded, or forgotten to make room).
  std::string find(std::span<const std::uint8_t> id);

  std::size_t size() const {
    const std::lock_guard lock(mutex_);
    return by_id_.size();
  }
  std::size_t capacity() const noexcept { return capacity_; }

private:
  struct entry {
    std::string id;
    std::string subject;
  };
  std::size_t capacity_;
  std::list<entry> order_; // most recently used first
  std::unordered_map<std::string_view, std::list<entry>::iterator> by_id_;
  mutable std::mutex mutex_; // guards order_ and by_id_
};

/// A wolfSSL TLS 1.3 context configured for QUIC through ngtcp2_crypto_wolfssl. Cheap to copy
/// (shared); sessions keep their context alive, so replacing the server's context (a certificate
/// reload) never disturbs connections made with the old one.
class tls_context {
public:
  /// Throws tls_error.
  static tls_context server(const tls_server_config& config);
  /// Throws tls_error.
  static tls_context client(const tls_client_config& config);

  WOLFSSL_CTX* native_handle() const noexcept;
  bool is_server() const noexcept;
  /// Client side: whether a session ticket from an earlier connection is waiting to be offered.
  bool has_cached_session() const noexcept;

  struct state; ///< implementation detail (tls.cpp)

private:
  friend class tls_session;
  explicit tls_context(std::shared_ptr<state> s) : state_(std::move(s)) {}
  std::shared_ptr<state> state_;
};

/// The TLS side of one QUIC connection. Construct it, then hand native_handle() to
/// ngtcp2_conn_set_tls_native_handle(); ngtcp2 drives the handshake from there.
class tls_session {
public:
  /// |conn_ref| (owned by the connection, outliving this session) is what ngtcp2's wolfSSL glue
  /// uses to find the connection. A client session names the server it verifies with
  /// |server_name|: an IP address text checks an IP subjectAltName (what g3proxy does by
  /// default), anything else a DNS name, which is also sent as SNI. Throws tls_error.
  tls_session(const tls_context& context, ngtcp2_crypto_conn_ref& conn_ref,
              std::string_view server_name = {});
  ~tls_session();
  tls_session(const tls_session&) = delete;
  tls_session& operator=(const tls_session&) = delete;

  WOLFSSL* native_handle() const noexcept { return ssl_; }

  /// After the handshake: the selected ALPN name, empty when none was negotiated.
  std::string alpn() const;
  /// After the handshake: whether a session ticket was used (resumption).
  bool resumed() const noexcept;
  /// After the handshake: the subject of the peer's certificate ("/O=detour/CN=g3proxy"),
  /// empty when it sent none, or when this wolfSSL cannot make an X509 object of it (an
  /// Ed25519 certificate: TLS verifies it, the OpenSSL-compatible layer has no such key type). A
  /// resumed session exchanges no certificates; on the server side it then names the certificate
  /// verified by the full handshake its ticket comes from, which the context remembers
  /// (tls_server_config::remembered_identities sessions at most), and is empty when that was
  /// forgotten. Call it once per session, after the handshake: a full handshake's subject is
  /// recorded for the session's later resumptions here.
  std::string peer_subject();
  /// The negotiated cipher suite name.
  std::string cipher() const;
  /// A description of why the handshake failed (verification result or last wolfSSL error).
  std::string failure_reason() const;

private:
  std::shared_ptr<tls_context::state> context_;
  WOLFSSL* ssl_ = nullptr;
};

/// What wolfCrypt's own certificate parser reads from the first certificate of a PEM text.
/// wolfSSL's X509 objects cannot hold a certificate with an Ed25519 key (its OpenSSL-compatible
/// layer has no Ed25519 public key type, so loading one fails) although TLS verifies and uses
/// them: this reads every certificate TLS accepts.
struct certificate_facts {
  enum class key { other, ed25519, ed448 };
  key key_type = key::other;
  bool ca = false;                                   ///< basicConstraints CA:TRUE
  std::optional<std::int64_t> not_before, not_after; ///< seconds since the Unix epoch
};
/// nullopt when the text holds no certificate wolfCrypt can parse.
std::optional<certificate_facts> read_pem_certificate(std::string_view pem);

/// The validity period of the first certificate in a PEM file, in seconds since the epoch (UTC).
struct certificate_validity {
  std::int64_t not_before = 0;
  std::int64_t not_after = 0;
};
/// Reads it; nullopt when the file has no readable certificate.
std::optional<certificate_validity> read_certificate_validity(const std::string& pem_file);

/// Where |now| falls in a validity period: clients refuse a certificate outside it.
enum class certificate_dates { valid, not_yet_valid, expired, expires_soon };
/// `expires_soon` when less than |soon| seconds are left.
constexpr certificate_dates classify_dates(const certificate_validity& v, std::int64_t now,
                                           std::int64_t soon = 30 * 86400) noexcept {
  if (now < v.not_before) return certificate_dates::not_yet_valid;
  if (now > v.not_after) return certificate_dates::expired; // RFC 5280 §4.1.2.5: inclusive
  return v.not_after - now < soon ? certificate_dates::expires_soon : certificate_dates::valid;
}

/// Encodes ALPN names in the wire form (each prefixed by its length). Throws tls_error for an
/// empty name or one longer than 255 bytes.
std::vector<std::uint8_t> encode_alpn(const std::vector<std::string>& names);

// The ALPN policy itself (select_alpn) is in alpn.hpp.

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context: |out|.size() bytes derived from
/// |secret| under "tls13 " + |label|, with SHA-256 for a 32-byte secret and SHA-384 for a
/// 48-byte one (the hashes of TLS 1.3's suites). Through wolfCrypt's HKDF directly: no heap, no
/// random generator. False for another secret size, an output over 255 bytes or a label over
/// 249 bytes.
bool hkdf_expand_label(std::span<std::uint8_t> out, std::span<const std::uint8_t> secret,
                       std::string_view label) noexcept;

/// The stateless reset token of |cid| (RFC 9000 §10.3.2) under the server's |secret|:
/// HKDF-SHA256 with the CID as salt and "stateless_reset" as info, the derivation of
/// ngtcp2_crypto_generate_stateless_reset_token (so the tokens are the same), through wolfCrypt's
/// HKDF directly: ngtcp2_crypto_wolfssl's seeds a random generator per call, and a server makes
/// one token per connection ID it issues. |out| is NGTCP2_STATELESS_RESET_TOKENLEN bytes. False if
/// wolfCrypt fails.
bool stateless_reset_token(std::span<std::uint8_t, 16> out, std::span<const std::uint8_t> secret,
                           const ngtcp2_cid& cid) noexcept;

/// The Initial secrets of a connection (RFC 9001 §5.2, RFC 9369 §3.3.1 for QUIC v2): the
/// client's and the server's, from the Destination Connection ID of the client's first Initial.
/// False for an unknown version or a CID over 20 bytes.
bool derive_initial_secrets(std::uint32_t version, std::span<const std::uint8_t> client_dcid,
                            std::span<std::uint8_t, 32> client_secret,
                            std::span<std::uint8_t, 32> server_secret) noexcept;

/// ngtcp2's `recv_client_initial` callback for a server: installs the Initial keys derived
/// from |dcid|, as ngtcp2_crypto_recv_client_initial_cb does (AES-128-GCM, SHA-256, AES-128-CTR
/// header protection), with derive_initial_secrets and hkdf_expand_label instead of wolfSSL's
/// EVP HKDF (see update_key_cb).
int recv_client_initial_cb(ngtcp2_conn* conn, const ngtcp2_cid* dcid, void* user_data);

/// ngtcp2's `recv_retry` callback for a client: the Initial keys again, from the Retry's
/// Source Connection ID (ngtcp2_crypto_recv_retry_cb with packet_protection.hpp's contexts).
int recv_retry_cb(ngtcp2_conn* conn, const ngtcp2_pkt_hd* hd, void* user_data);

/// ngtcp2's `version_negotiation` callback: the Initial keys of the version compatible version
/// negotiation chose (ngtcp2_crypto_version_negotiation_cb with packet_protection.hpp's
/// contexts).
int version_negotiation_cb(ngtcp2_conn* conn, std::uint32_t version, const ngtcp2_cid* client_dcid,
                           void* user_data);

/// ngtcp2's `client_initial` callback for a client: ngtcp2_crypto_client_initial_cb (the Initial
/// keys, the transport parameters handed to TLS, the ClientHello) with the Initial keys derived
/// as recv_client_initial_cb does.
int client_initial_cb(ngtcp2_conn* conn, void* user_data);

/// ngtcp2's `update_key` callback: the next 1-RTT keys (RFC 9001 §6), the same derivation as
/// ngtcp2_crypto_update_key_cb ("quic ku", then "quic key" and "quic iv"; the "quicv2" labels
/// for QUIC v2) but with hkdf_expand_label. ngtcp2 calls it once per connection when the
/// handshake completes, to have the keys ready; ngtcp2_crypto_wolfssl's own HKDF goes through
/// wolfSSL's EVP layer, which seeds a new random generator (an open of /dev/urandom and a
/// DRBG self-test) for every call.
int update_key_cb(ngtcp2_conn* conn, std::uint8_t* rx_secret, std::uint8_t* tx_secret,
                  ngtcp2_crypto_aead_ctx* rx_aead_ctx, std::uint8_t* rx_iv,
                  ngtcp2_crypto_aead_ctx* tx_aead_ctx, std::uint8_t* tx_iv,
                  const std::uint8_t* current_rx_secret, const std::uint8_t* current_tx_secret,
                  std::size_t secretlen, void* user_data);

} // namespace detour::cli
