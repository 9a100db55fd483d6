// SPDX-License-Identifier: MIT
// cli/cert.cpp: `detour cert`, which makes a certificate set for a detour server and g3proxy:
// a CA, a server certificate with the given names and addresses, a client certificate for
// mutual TLS. No openssl command needed.
#include "args.hpp"
#include "certs.hpp"
#include "commands.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <optional>
#include <string>

namespace detour::cli {

namespace {

constexpr std::string_view cert_help = R"(usage: detour cert [options]

Makes the certificates a detour server and g3proxy need (ECDSA P-256):
  ca.pem, ca.key          a CA; give ca.pem to g3proxy (tls_client: ca_certificate)
  server.pem, server.key  the server's certificate and key (detour serve --cert --key)
  client.pem, client.key  a client certificate for mutual TLS (g3proxy tls_client:
                          certificate, private_key; detour serve --client-ca ca.pem)

g3proxy checks the server certificate against the address it connects to (or tls_name), so
name every address g3proxy uses with --ip, and every host name with --dns.

Every value is checked before anything is written: a bad one (exit status 2) leaves no file
and no folder behind. Exit status 1: files exist (see --force), or cannot be read or written.

options:
  --out DIR            folder to write into (default: the state folder that `detour serve`
                       uses, $XDG_STATE_HOME/detour or ~/.local/state/detour)
  --ip ADDR            an IP subjectAltName of the server certificate (repeatable): the
                       address g3proxy connects to, not 0.0.0.0 or ::
  --dns NAME           a DNS subjectAltName of the server certificate (repeatable): letters,
                       digits, hyphens and dots, optionally after a `*.` wildcard label
                       (neither given: --ip 127.0.0.1 --ip ::1 --dns localhost)
  --client-name NAME   common name of the client certificate, 1 to 63 bytes (default: g3proxy;
                       also its DNS subjectAltName when it is a DNS name)
  --days N             validity of the server and client certificates (default 825; a new
                       CA's is 3650 days, or N when longer). They never outlive the CA:
                       with --ca-cert, a CA that ends sooner shortens the default to whole
                       days before its end (with a warning), and refuses --days N
  --ca-cert FILE       sign with this existing CA instead of making a new one: a CA
                       certificate (basicConstraints CA:TRUE) valid now, P-256
  --ca-key FILE        the existing CA's key (with --ca-cert); it must match --ca-cert
  --force              replace files that exist already
  -h, --help           this text

examples:
  detour cert                                  # loopback set in the state folder
  detour cert --out /etc/detour --ip 10.0.0.5  # for a server g3proxy reaches at 10.0.0.5
  detour cert --out /etc/detour/b --ca-cert /etc/detour/ca.pem --ca-key /etc/detour/ca.key \
              --ip 10.0.0.6                    # one more server, same CA, its own folder
)";

} // namespace

int run_cert(args a) {
  std::optional<std::filesystem::path> out;
  subject_names names;
  std::string client_name = "g3proxy";
  int days = leaf_days_valid;
  bool days_given = false;
  std::string ca_cert_file, ca_key_file;
  bool force = false;
  try {
    arg_reader r(a);
    while (r.next()) {
      if (r.is("-h") || r.is("--help")) {
        fmt::print("{}", cert_help);
        return 0;
      } else if (r.is("--out")) {
        out = std::filesystem::path(r.value());
      } else if (r.is("--ip")) {
        names.ip.emplace_back(r.value());
      } else if (r.is("--dns")) {
        names.dns.emplace_back(r.value());
      } else if (r.is("--client-name")) {
        client_name = r.value();
      } else if (r.is("--days")) {
        days = static_cast<int>(r.number(1, 36500));
        days_given = true;
      } else if (r.is("--ca-cert")) {
        ca_cert_file = r.value();
      } else if (r.is("--ca-key")) {
        ca_key_file = r.value();
      } else if (r.is("--force")) {
        r.flag();
        force = true;
      } else {
        r.unknown();
      }
    }
    if (ca_cert_file.empty() != ca_key_file.empty()) {
      throw usage_error("--ca-cert and --ca-key go together");
    }
  } catch (const usage_error& e) {
    fmt::print(stderr, "detour cert: {}\n", e.what());
    return 2;
  }
  if (names.ip.empty() && names.dns.empty()) names = {{"localhost"}, {"127.0.0.1", "::1"}};
  const bool reuse_ca = !ca_cert_file.empty();

  // Every value is checked before a folder is made or a file written.
  pem_credentials ca;
  subject_names client_names;
  try {
    check_subject_names(names);
    try {
      check_common_name(client_name);
    } catch (const cert_error& e) {
      throw cert_error(std::string("--client-name: ") + e.what());
    }
    // The client certificate repeats its name as a DNS subjectAltName when it is one; a name
    // such as "proxy eu 1" is the common name alone.
    try {
      check_subject_names({{client_name}, {}});
      client_names.dns = {client_name};
    } catch (const cert_error&) {
    }
    if (reuse_ca) {
      try {
        ca = {read_file(ca_cert_file), read_file(ca_key_file)};
      } catch (const cert_error& e) {
        fmt::print(stderr, "detour cert: {}\n", e.what());
        return 1;
      }
      const std::time_t now = std::time(nullptr);
      const ca_validity validity = check_ca(ca, ca_cert_file, ca_key_file, now);
      // A certificate that outlives its CA stops verifying when the CA ends.
      const int most = days_within(validity.not_after, now);
      if (most == 0) {
        throw cert_error("the CA " + ca_cert_file + " ends on " + utc_text(validity.not_after) +
                         ", in less than a day: renew the CA first");
      }
      if (days > most) {
        if (days_given) {
          throw cert_error(fmt::format("--days {} would outlive the CA {}, which ends on {}: use "
                                       "--days {} or less, or renew the CA",
                                       days, ca_cert_file, utc_text(validity.not_after), most));
        }
        fmt::print(stderr,
                   "detour cert: warning: the CA {} ends on {}: the certificates are valid for "
                   "{} days instead of {}, so as not to outlive it\n",
                   ca_cert_file, utc_text(validity.not_after), most, days);
        days = most;
      }
    }
  } catch (const cert_error& e) {
    fmt::print(stderr, "detour cert: {}\n", e.what());
    return 2;
  }

  try {
    const std::filesystem::path dir = out ? *out : default_state_dir();
    const cert_set_paths paths = cert_set_paths::in(dir);
    if (!force) {
      for (const auto* p : {&paths.ca_certificate, &paths.ca_key, &paths.server_certificate,
                            &paths.server_key, &paths.client_certificate, &paths.client_key}) {
        const bool is_given_ca = reuse_ca && (*p == paths.ca_certificate || *p == paths.ca_key);
        if (!is_given_ca && std::filesystem::exists(*p)) {
          fmt::print(stderr, "detour cert: {} exists; use --force to replace it\n", p->string());
          return 1;
        }
      }
    }
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw cert_error("cannot create " + dir.string() + ": " + ec.message());

    if (!reuse_ca) ca = make_ca("detour CA", std::max(ca_days_valid, days));
    const auto server = make_leaf(ca, "detour server", names, cert_usage::server, days);
    const auto client = make_leaf(ca, client_name, client_names, cert_usage::client, days);

    // Copy a reused CA into the set too (unless it is already there), so the folder is complete.
    if (!reuse_ca || std::filesystem::absolute(ca_cert_file) !=
                         std::filesystem::absolute(paths.ca_certificate)) {
      write_file(paths.ca_certificate, ca.certificate, 0644);
    }
    if (!reuse_ca) write_file(paths.ca_key, ca.private_key, 0600);
    write_file(paths.server_certificate, server.certificate, 0644);
    write_file(paths.server_key, server.private_key, 0600);
    write_file(paths.client_certificate, client.certificate, 0644);
    write_file(paths.client_key, client.private_key, 0600);

    fmt::print("wrote to {}:\n", dir.string());
    fmt::print("  CA                  {}{}\n", paths.ca_certificate.string(),
               reuse_ca ? "" : fmt::format("  (key {})", paths.ca_key.string()));
    fmt::print("  server certificate  {}  (key {})\n", paths.server_certificate.string(),
               paths.server_key.string());
    fmt::print("  client certificate  {}  (key {})\n", paths.client_certificate.string(),
               paths.client_key.string());
    std::string sans;
    for (const auto& ip : names.ip) sans += (sans.empty() ? "IP:" : ", IP:") + ip;
    for (const auto& d : names.dns) sans += (sans.empty() ? "DNS:" : ", DNS:") + d;
    fmt::print("  server names        {}\n", sans);
    fmt::print("\nrun: detour serve --cert {} --key {}\n"
               "     and add --client-ca {} to accept only clients with a certificate of this\n"
               "     CA (g3proxy's tls_client certificate and private_key: the client files)\n",
               paths.server_certificate.string(), paths.server_key.string(),
               paths.ca_certificate.string());
    return 0;
  } catch (const cert_error& e) {
    fmt::print(stderr, "detour cert: {}\n", e.what());
    return 1;
  }
}

} // namespace detour::cli
