// SPDX-License-Identifier: MIT
// cli/certs.hpp: X.509 certificates made with wolfSSL's certificate generation (ECDSA P-256,
// SHA-256): a CA, server certificates with DNS and IP subjectAltNames (what g3proxy verifies,
// RFC 5280 §4.2.1.6), client certificates for mutual TLS, and the development set that
// `detour serve` creates on first start.
#pragma once

#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace detour::cli {

/// A certificate generation or storage failure, with wolfSSL's or the system's reason.
class cert_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A certificate and its private key, both PEM text (the key in PKCS#8).
struct pem_credentials {
  std::string certificate;
  std::string private_key;
};

/// What a leaf certificate is for: its extendedKeyUsage (RFC 5280 §4.2.1.12).
enum class cert_usage { server, client };

/// Subject alternative names of a leaf certificate.
struct subject_names {
  std::vector<std::string> dns; ///< dNSName entries, e.g. "localhost"
  std::vector<std::string> ip;  ///< iPAddress entries, IPv4 or IPv6 text, e.g. "127.0.0.1"
};

/// Checks |names| before a certificate is made for them. A DNS name is letters, digits and
/// hyphens in dot-separated labels of 1 to 63 bytes (no hyphen first or last), 253 bytes at
/// most, optionally after a `*.` wildcard label (RFC 1123 §2.1, RFC 6125 §6.4.3); an IP address
/// is IPv4 or IPv6 text and not the unspecified address (0.0.0.0, ::), which g3proxy can never
/// connect to. Throws cert_error naming the first bad entry and why.
void check_subject_names(const subject_names& names);

/// Checks a common name: 1 to 63 bytes, what a certificate subject made here holds. Throws
/// cert_error.
void check_common_name(const std::string& common_name);

/// The validity period of an existing CA certificate (seconds since the epoch, UTC).
struct ca_validity {
  std::time_t not_before = 0;
  std::time_t not_after = 0;
};

/// Checks that |ca| can sign certificates that verify against it at |now|: the certificate
/// parses, is a CA (basicConstraints CA:TRUE; keyCertSign when it has a keyUsage), is valid at
/// |now|, and the key is a P-256 key that matches it (as `detour serve` checks --key against
/// --cert). |cert_name| and |key_name| name the files in the messages. Returns the CA's
/// validity. Throws cert_error saying which check failed.
ca_validity check_ca(const pem_credentials& ca, const std::string& cert_name,
                     const std::string& key_name, std::time_t now);

/// The most days a leaf made at |now| may be valid without outliving a CA that ends at
/// |ca_not_after| (a leaf's notAfter is its making time plus its days); 0 when not even one.
int days_within(std::time_t ca_not_after, std::time_t now) noexcept;

/// "2031-05-04 12:00 UTC".
std::string utc_text(std::time_t t);

/// A self-signed CA (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign).
/// Throws cert_error.
pem_credentials make_ca(const std::string& common_name, int days_valid);

/// A leaf certificate signed by |ca|, with |names| as subjectAltNames and |common_name| as CN.
/// Throws cert_error (also for a name that check_subject_names refuses).
pem_credentials make_leaf(const pem_credentials& ca, const std::string& common_name,
                          const subject_names& names, cert_usage usage, int days_valid);

/// The file names of a certificate set inside its folder.
struct cert_set_paths {
  std::filesystem::path ca_certificate;     ///< ca.pem: give this to g3proxy (ca_certificate)
  std::filesystem::path ca_key;             ///< ca.key: keep private; signs more certificates
  std::filesystem::path server_certificate; ///< server.pem: --cert
  std::filesystem::path server_key;         ///< server.key: --key
  std::filesystem::path client_certificate; ///< client.pem: g3proxy tls_client certificate
  std::filesystem::path client_key;         ///< client.key: g3proxy tls_client private_key

  static cert_set_paths in(const std::filesystem::path& dir);
};

/// Validity of generated certificates, in days: long enough for a development setup to keep
/// working, short enough that a forgotten one expires. `detour cert --days` overrides the leaves.
inline constexpr int ca_days_valid = 3650;
inline constexpr int leaf_days_valid = 825;

/// The development set in |dir| (created 0700 when missing): reuses the server certificate and
/// key when both exist; otherwise makes what is missing, a CA (unless ca.pem and ca.key exist)
/// and a server certificate for IP 127.0.0.1, IP ::1 and DNS localhost. Sets |created| when it
/// wrote anything. Throws cert_error.
cert_set_paths ensure_development_certs(const std::filesystem::path& dir, bool& created);

/// The state folder: $XDG_STATE_HOME/detour, else $HOME/.local/state/detour.
/// Throws cert_error when neither variable is set.
std::filesystem::path default_state_dir();

/// Writes |text| to |path| atomically (a temporary file renamed over it), with |mode|
/// permissions. Throws cert_error.
void write_file(const std::filesystem::path& path, const std::string& text, unsigned mode);
/// Reads a whole file. Throws cert_error.
std::string read_file(const std::filesystem::path& path);

} // namespace detour::cli
