// SPDX-License-Identifier: MIT
// cli/certs.cpp: certificate generation with wolfCrypt (see certs.hpp).
#include "certs.hpp"

#include "tls.hpp"

#include <wolfssl/options.h> // must precede every other wolfSSL header

#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string_view>
#include <system_error>

namespace detour::cli {

namespace {

[[noreturn]] void fail(const std::string& what, int code) {
  throw cert_error(what + ": " + wc_GetErrorString(code));
}

void check(int rc, const char* what) {
  if (rc < 0) fail(what, rc);
}

// Enough for one P-256 certificate with a few dozen names, or one PKCS#8 key.
constexpr std::size_t der_capacity = 8192;

class random_source {
public:
  random_source() { check(wc_InitRng(&rng_), "wc_InitRng"); }
  ~random_source() { wc_FreeRng(&rng_); }
  random_source(const random_source&) = delete;
  random_source& operator=(const random_source&) = delete;
  WC_RNG* get() noexcept { return &rng_; }

private:
  WC_RNG rng_{};
};

class ec_key {
public:
  ec_key() { check(wc_ecc_init(&key_), "wc_ecc_init"); }
  ~ec_key() { wc_ecc_free(&key_); }
  ec_key(const ec_key&) = delete;
  ec_key& operator=(const ec_key&) = delete;
  ecc_key* get() noexcept { return &key_; }

  void generate(random_source& rng) {
    check(wc_ecc_make_key_ex(rng.get(), 32, &key_, ECC_SECP256R1), "wc_ecc_make_key_ex(P-256)");
    check(wc_ecc_set_rng(&key_, rng.get()), "wc_ecc_set_rng");
  }

  void load_pem(const std::string& pem, random_source& rng) {
    std::vector<byte> der(der_capacity);
    const int n =
        wc_KeyPemToDer(reinterpret_cast<const byte*>(pem.data()), static_cast<int>(pem.size()),
                       der.data(), static_cast<int>(der.size()), nullptr);
    check(n, "reading the CA key (PEM)");
    word32 idx = 0; // PKCS#8 and SEC1 alike
    check(wc_EccPrivateKeyDecode(der.data(), &idx, &key_, static_cast<word32>(n)),
          "decoding the CA key (P-256 expected)");
    check(wc_ecc_set_rng(&key_, rng.get()), "wc_ecc_set_rng");
  }

  // PKCS#8 around a SEC1 ECPrivateKey that carries the curve and the public key (RFC 5915):
  // some TLS stacks (ring, in rustls) refuse a key without its public half.
  std::string pkcs8_pem() {
    std::vector<byte> sec1(der_capacity);
    const int sec1_len = wc_EccKeyToDer(&key_, sec1.data(), static_cast<word32>(sec1.size()));
    check(sec1_len, "wc_EccKeyToDer");
    const byte* oid = nullptr;
    word32 oid_len = 0;
    check(wc_ecc_get_oid(ECC_SECP256R1_OID, &oid, &oid_len), "wc_ecc_get_oid(P-256)");
    std::vector<byte> der(der_capacity);
    word32 len = static_cast<word32>(der.size());
    const int n = wc_CreatePKCS8Key(der.data(), &len, sec1.data(), static_cast<word32>(sec1_len),
                                    ECDSAk, oid, oid_len);
    check(n, "wc_CreatePKCS8Key");
    return to_pem(der.data(), static_cast<word32>(n), PKCS8_PRIVATEKEY_TYPE);
  }

  static std::string to_pem(const byte* der, word32 len, int type) {
    std::vector<byte> pem(len * 2 + 128);
    const int n = wc_DerToPem(der, len, pem.data(), static_cast<word32>(pem.size()), type);
    check(n, "wc_DerToPem");
    return {reinterpret_cast<const char*>(pem.data()), static_cast<std::size_t>(n)};
  }

private:
  ecc_key key_{};
};

// DER: a tag, a definite length, the content (X.690 §8.1).
void append_der(std::vector<byte>& out, byte tag, const byte* content, std::size_t len) {
  out.push_back(tag);
  if (len < 0x80) {
    out.push_back(static_cast<byte>(len));
  } else if (len <= 0xff) {
    out.push_back(0x81);
    out.push_back(static_cast<byte>(len));
  } else {
    out.push_back(0x82);
    out.push_back(static_cast<byte>(len >> 8));
    out.push_back(static_cast<byte>(len & 0xff));
  }
  out.insert(out.end(), content, content + len);
}

// GeneralNames (RFC 5280 §4.2.1.6): SEQUENCE OF [2] dNSName / [7] iPAddress, implicit tags.
std::vector<byte> encode_alt_names(const subject_names& names) {
  std::vector<byte> body;
  for (const auto& d : names.dns) {
    append_der(body, 0x82, reinterpret_cast<const byte*>(d.data()), d.size());
  }
  for (const auto& ip : names.ip) {
    std::array<byte, 16> addr{};
    if (::inet_pton(AF_INET, ip.c_str(), addr.data()) == 1) {
      append_der(body, 0x87, addr.data(), 4);
    } else if (::inet_pton(AF_INET6, ip.c_str(), addr.data()) == 1) {
      append_der(body, 0x87, addr.data(), 16);
    } else {
      throw cert_error("'" + ip + "' is not an IPv4 or IPv6 address");
    }
  }
  std::vector<byte> seq;
  append_der(seq, 0x30, body.data(), body.size());
  return seq;
}

void set_common_name(Cert& cert, const std::string& cn) {
  check_common_name(cn);
  std::strncpy(cert.subject.org, "detour", CTC_NAME_SIZE - 1);
  std::strncpy(cert.subject.commonName, cn.c_str(), CTC_NAME_SIZE - 1);
}

std::vector<byte> pem_to_der_cert(const std::string& pem) {
  std::vector<byte> der(der_capacity);
  const int n =
      wc_CertPemToDer(reinterpret_cast<const byte*>(pem.data()), static_cast<int>(pem.size()),
                      der.data(), static_cast<int>(der.size()), CERT_TYPE);
  check(n, "reading the CA certificate (PEM)");
  der.resize(static_cast<std::size_t>(n));
  return der;
}

// Encodes the to-be-signed body with |subject_key| and signs it with |signer|.
std::string sign(Cert& cert, ec_key& subject_key, ec_key& signer, random_source& rng) {
  std::vector<byte> der(der_capacity);
  cert.sigType = CTC_SHA256wECDSA;
  check(wc_MakeCert_ex(&cert, der.data(), static_cast<word32>(der.size()), ECC_TYPE,
                       subject_key.get(), rng.get()),
        "wc_MakeCert_ex");
  const int n = wc_SignCert_ex(cert.bodySz, cert.sigType, der.data(),
                               static_cast<word32>(der.size()), ECC_TYPE, signer.get(), rng.get());
  check(n, "wc_SignCert_ex");
  return ec_key::to_pem(der.data(), static_cast<word32>(n), CERT_TYPE);
}

// A dNSName in the preferred name syntax (RFC 1034 §3.5 as relaxed by RFC 1123 §2.1): why
// |name| is not one, or empty when it is.
std::string dns_name_problem(std::string_view name) {
  if (name.empty()) return "it is empty";
  if (name.size() > 253) return "it is longer than 253 bytes";
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2); // a wildcard, the whole leftmost label
  if (rest.find('*') != std::string_view::npos)
    return "a wildcard must be the whole leftmost label, as in *.example.com";
  while (true) {
    const std::size_t dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (label.empty()) return "it has an empty label (two dots, or a dot first or last)";
    if (label.size() > 63) return "the label '" + std::string(label) + "' is longer than 63 bytes";
    for (const char c : label) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-')
        return "'" + std::string(1, c) + "' is not a letter, digit, hyphen or dot";
    }
    if (label.front() == '-' || label.back() == '-')
      return "the label '" + std::string(label) + "' starts or ends with a hyphen";
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  std::array<byte, 16> addr{};
  if (::inet_pton(AF_INET, std::string(name).c_str(), addr.data()) == 1)
    return "it is an IP address: name it with --ip";
  return {};
}

struct x509_free {
  void operator()(WOLFSSL_X509* x) const noexcept { wolfSSL_X509_free(x); }
};
struct ctx_free {
  void operator()(WOLFSSL_CTX* c) const noexcept { wolfSSL_CTX_free(c); }
};

std::time_t to_time(const WOLFSSL_ASN1_TIME* t) {
  std::tm tm{};
  if (!t || wolfSSL_ASN1_TIME_to_tm(t, &tm) != WOLFSSL_SUCCESS) return -1;
  return ::timegm(&tm);
}

} // namespace

void check_subject_names(const subject_names& names) {
  for (const auto& d : names.dns) {
    if (const std::string why = dns_name_problem(d); !why.empty())
      throw cert_error("'" + d + "' is not a DNS name: " + why);
  }
  for (const auto& ip : names.ip) {
    std::array<byte, 16> addr{};
    const bool v4 = ::inet_pton(AF_INET, ip.c_str(), addr.data()) == 1;
    if (!v4 && ::inet_pton(AF_INET6, ip.c_str(), addr.data()) != 1)
      throw cert_error("'" + ip + "' is not an IPv4 or IPv6 address");
    if (std::all_of(addr.begin(), addr.begin() + (v4 ? 4 : 16), [](byte b) { return b == 0; })) {
      throw cert_error("'" + ip +
                       "' is the unspecified address, which g3proxy can never connect to: "
                       "name the address g3proxy connects to, such as --ip 10.0.0.5");
    }
  }
}

void check_common_name(const std::string& common_name) {
  if (common_name.empty() || common_name.size() >= CTC_NAME_SIZE) {
    throw cert_error("the common name '" + common_name + "' must be 1 to " +
                     std::to_string(CTC_NAME_SIZE - 1) + " bytes long");
  }
}

ca_validity check_ca(const pem_credentials& ca, const std::string& cert_name,
                     const std::string& key_name, std::time_t now) {
  const std::unique_ptr<WOLFSSL_X509, x509_free> x(wolfSSL_X509_load_certificate_buffer(
      reinterpret_cast<const unsigned char*>(ca.certificate.data()),
      static_cast<int>(ca.certificate.size()), WOLFSSL_FILETYPE_PEM));
  if (!x) {
    // wolfSSL's X509 objects take no Ed25519 or Ed448 key; wolfCrypt's parser names it.
    if (const auto facts = read_pem_certificate(ca.certificate);
        facts && facts->key_type != certificate_facts::key::other) {
      const bool ed25519 = facts->key_type == certificate_facts::key::ed25519;
      throw cert_error(cert_name + " is an " + (ed25519 ? "Ed25519" : "Ed448") +
                       " CA: detour cert signs with an ECDSA P-256 CA only (openssl makes "
                       "Ed25519 certificates, which detour serve takes)");
    }
    throw cert_error(cert_name + " holds no PEM certificate");
  }
  if (wolfSSL_X509_get_isCA(x.get()) != 1) {
    throw cert_error(cert_name +
                     " is not a CA certificate (no basicConstraints CA:TRUE): give the CA that "
                     "signs, such as the ca.pem of a `detour cert` folder");
  }
  if (const unsigned usage = wolfSSL_X509_get_keyUsage(x.get());
      usage != 0 && (usage & KEYUSE_KEY_CERT_SIGN) == 0) {
    throw cert_error(cert_name + " is a CA whose keyUsage does not allow keyCertSign: "
                                 "certificates it signs do not verify");
  }
  ca_validity v;
  v.not_before = to_time(wolfSSL_X509_get_notBefore(x.get()));
  v.not_after = to_time(wolfSSL_X509_get_notAfter(x.get()));
  if (v.not_before < 0 || v.not_after < 0)
    throw cert_error(cert_name + ": cannot read its validity period");
  if (v.not_after <= now)
    throw cert_error("the CA " + cert_name + " expired on " + utc_text(v.not_after));
  if (v.not_before > now)
    throw cert_error("the CA " + cert_name + " is not valid before " + utc_text(v.not_before));

  try {
    random_source rng;
    ec_key key;
    key.load_pem(ca.private_key, rng);
  } catch (const cert_error& e) {
    throw cert_error(key_name + ": " + e.what());
  }
  // As `detour serve` checks --key against --cert (tls.cpp): wolfSSL compares the key with the
  // certificate's public key.
  const std::unique_ptr<WOLFSSL_CTX, ctx_free> ctx(wolfSSL_CTX_new(wolfTLSv1_3_server_method()));
  if (!ctx) throw cert_error("wolfSSL_CTX_new failed");
  if (wolfSSL_CTX_use_certificate_buffer(
          ctx.get(), reinterpret_cast<const unsigned char*>(ca.certificate.data()),
          static_cast<long>(ca.certificate.size()), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_use_PrivateKey_buffer(
          ctx.get(), reinterpret_cast<const unsigned char*>(ca.private_key.data()),
          static_cast<long>(ca.private_key.size()), WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
      wolfSSL_CTX_check_private_key(ctx.get()) != WOLFSSL_SUCCESS) {
    throw cert_error("the key " + key_name + " does not match the certificate " + cert_name);
  }
  return v;
}

int days_within(std::time_t ca_not_after, std::time_t now) noexcept {
  // A minute to spare: the leaf is made a moment after this is computed.
  const std::time_t left = ca_not_after - now - 60;
  return left < 86400 ? 0 : static_cast<int>(std::min<std::time_t>(left / 86400, 36500));
}

std::string utc_text(std::time_t t) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  std::array<char, 32> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%d %H:%M UTC", &tm);
  return {buf.data(), n};
}

pem_credentials make_ca(const std::string& common_name, int days_valid) {
  random_source rng;
  ec_key key;
  key.generate(rng);
  auto cert = std::make_unique<Cert>(); // large (altNames buffer): keep it off the stack
  check(wc_InitCert(cert.get()), "wc_InitCert");
  set_common_name(*cert, common_name);
  cert->daysValid = days_valid;
  cert->isCA = 1;
  check(wc_SetKeyUsage(cert.get(), "keyCertSign,cRLSign"), "wc_SetKeyUsage");
  check(wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, key.get()),
        "wc_SetSubjectKeyIdFromPublicKey_ex");
  pem_credentials out;
  out.certificate = sign(*cert, key, key, rng);
  out.private_key = key.pkcs8_pem();
  return out;
}

pem_credentials make_leaf(const pem_credentials& ca, const std::string& common_name,
                          const subject_names& names, cert_usage usage, int days_valid) {
  check_subject_names(names);
  random_source rng;
  ec_key ca_key;
  ca_key.load_pem(ca.private_key, rng);
  const std::vector<byte> ca_der = pem_to_der_cert(ca.certificate);

  ec_key key;
  key.generate(rng);
  auto cert = std::make_unique<Cert>();
  check(wc_InitCert(cert.get()), "wc_InitCert");
  set_common_name(*cert, common_name);
  cert->daysValid = days_valid;
  cert->isCA = 0;
  check(wc_SetIssuerBuffer(cert.get(), ca_der.data(), static_cast<int>(ca_der.size())),
        "the CA certificate cannot be used as issuer");
  check(wc_SetKeyUsage(cert.get(), "digitalSignature"), "wc_SetKeyUsage");
  check(wc_SetExtKeyUsage(cert.get(), usage == cert_usage::server ? "serverAuth" : "clientAuth"),
        "wc_SetExtKeyUsage");
  check(wc_SetSubjectKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, key.get()),
        "wc_SetSubjectKeyIdFromPublicKey_ex");
  check(wc_SetAuthKeyIdFromPublicKey_ex(cert.get(), ECC_TYPE, ca_key.get()),
        "wc_SetAuthKeyIdFromPublicKey_ex");
  if (!names.dns.empty() || !names.ip.empty()) {
    const std::vector<byte> alt = encode_alt_names(names);
    if (alt.size() > sizeof cert->altNames) throw cert_error("too many subjectAltNames");
    std::memcpy(cert->altNames, alt.data(), alt.size());
    cert->altNamesSz = static_cast<int>(alt.size());
  }
  pem_credentials out;
  out.certificate = sign(*cert, key, ca_key, rng);
  out.private_key = key.pkcs8_pem();
  return out;
}

cert_set_paths cert_set_paths::in(const std::filesystem::path& dir) {
  return {dir / "ca.pem",     dir / "ca.key",     dir / "server.pem",
          dir / "server.key", dir / "client.pem", dir / "client.key"};
}

cert_set_paths ensure_development_certs(const std::filesystem::path& dir, bool& created) {
  created = false;
  cert_set_paths paths = cert_set_paths::in(dir);
  if (std::filesystem::exists(paths.server_certificate) &&
      std::filesystem::exists(paths.server_key)) {
    return paths;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw cert_error("cannot create " + dir.string() + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);

  pem_credentials ca;
  if (std::filesystem::exists(paths.ca_certificate) && std::filesystem::exists(paths.ca_key)) {
    ca = {read_file(paths.ca_certificate), read_file(paths.ca_key)};
  } else {
    ca = make_ca("detour development CA", ca_days_valid);
    write_file(paths.ca_key, ca.private_key, 0600);
    write_file(paths.ca_certificate, ca.certificate, 0644);
  }
  const pem_credentials server =
      make_leaf(ca, "detour server", {{"localhost"}, {"127.0.0.1", "::1"}}, cert_usage::server,
                leaf_days_valid);
  write_file(paths.server_key, server.private_key, 0600);
  write_file(paths.server_certificate, server.certificate, 0644);
  created = true;
  return paths;
}

std::filesystem::path default_state_dir() {
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg) {
    return std::filesystem::path(xdg) / "detour";
  }
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::filesystem::path(home) / ".local" / "state" / "detour";
  }
  throw cert_error("neither XDG_STATE_HOME nor HOME is set: name a folder with --state-dir");
}

void write_file(const std::filesystem::path& path, const std::string& text, unsigned mode) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) {
    throw cert_error("cannot create " + tmp.string() + ": " + std::strerror(errno));
  }
  ::fchmod(fd, static_cast<mode_t>(mode)); // the umask must not widen nor narrow it
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      throw cert_error("cannot write " + tmp.string() + ": " + std::strerror(e));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    throw cert_error("cannot write " + tmp.string() + ": " + std::strerror(errno));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw cert_error("cannot rename " + tmp.string() + ": " + ec.message());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw cert_error("cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace detour::cli
