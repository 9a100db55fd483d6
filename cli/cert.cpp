// SPDX-License-Identifier: MIT
// cli/cert.cpp: `detour cert`, which makes a certificate set for a detour server and g3proxy:
// a CA, a server certificate with the given names and addresses, a client certificate for
// mutual TLS. No openssl command needed.
#include "args.hpp"
#include "certs.hpp"
#include "commands.hpp"

#include <fmt/core.h>

#include <filesystem>
#include <optional>

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

options:
  --out DIR            folder to write into (default: the state folder that `detour serve`
                       uses, $XDG_STATE_HOME/detour or ~/.local/state/detour)
  --ip ADDR            an IP subjectAltName of the server certificate (repeatable)
  --dns NAME           a DNS subjectAltName of the server certificate (repeatable)
                       (neither given: --ip 127.0.0.1 --ip ::1 --dns localhost)
  --client-name NAME   common name of the client certificate (default: g3proxy)
  --days N             validity of the server and client certificates (default 825; the CA's
                       is 3650)
  --ca-cert FILE       sign with this existing CA instead of making a new one
  --ca-key FILE        the existing CA's key (with --ca-cert)
  --force              replace files that exist already
  -h, --help           this text

examples:
  detour cert                                  # loopback set in the state folder
  detour cert --out /etc/detour --ip 10.0.0.5  # for a server g3proxy reaches at 10.0.0.5
  detour cert --out /etc/detour --ca-cert /etc/detour/ca.pem --ca-key /etc/detour/ca.key \
              --ip 10.0.0.6 --force            # one more server, same CA
)";

} // namespace

int run_cert(args a) {
  std::optional<std::filesystem::path> out;
  subject_names names;
  std::string client_name = "g3proxy";
  int days = leaf_days_valid;
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

  try {
    const std::filesystem::path dir = out ? *out : default_state_dir();
    const cert_set_paths paths = cert_set_paths::in(dir);
    const bool reuse_ca = !ca_cert_file.empty();
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

    pem_credentials ca;
    if (reuse_ca) {
      ca = {read_file(ca_cert_file), read_file(ca_key_file)};
    } else {
      ca = make_ca("detour CA", ca_days_valid);
    }
    const auto server = make_leaf(ca, "detour server", names, cert_usage::server, days);
    const auto client = make_leaf(ca, client_name, {{client_name}, {}}, cert_usage::client, days);

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
    fmt::print("\nrun: detour serve --cert {} --key {} --client-ca {}\n",
               paths.server_certificate.string(), paths.server_key.string(),
               paths.ca_certificate.string());
    return 0;
  } catch (const cert_error& e) {
    fmt::print(stderr, "detour cert: {}\n", e.what());
    return 1;
  }
}

} // namespace detour::cli
