// SPDX-License-Identifier: MIT
// cli/certs.hpp: X.509 certificates made with wolfSSL's certificate generation (ECDSA P-256,
// SHA-256): a CA, server certificates with DNS and IP subjectAltNames (what g3proxy verifies,
// RFC 5280 §4.2.1.6), client certificates for mutual TLS, and the development set that
// `detour serve` creates on first start.
#pragma once

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

/// A self-signed CA (basicConstraints CA:TRUE, keyUsage keyCertSign and cRLSign).
/// Throws cert_error.
pem_credentials make_ca(const std::string& common_name, int days_valid);

/// A leaf certificate signed by |ca|, with |names| as subjectAltNames and |common_name| as CN.
/// Throws cert_error (also for a malformed IP address in |names|).
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
