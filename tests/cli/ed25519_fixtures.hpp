// SPDX-License-Identifier: MIT
// tests/cli/ed25519_fixtures.hpp: Ed25519 and Ed448 certificates for the TLS and certificate
// tests (`detour cert` makes P-256 ones only).
#pragma once

namespace detour::cli::test {

// Made by openssl 3.0 (req -x509 -newkey ed25519 / ed448; the leaf signed by the CA, valid
// from 2026-11-27T11:36:18Z for 3650 days, subjectAltName IP:127.0.0.1, basicConstraints
// CA:FALSE).
inline constexpr const char* ed25519_ca_pem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBTzCCAQGgAwIBAgIUHxo3x8a9xRHiZ63RBUaUYwqow84wBQYDK2VwMBUxEzAR\n"
    "BgNVBAMMCmVkMjU1MTktY2EwHhcNMjYxMTI3MTEzNjE4WhcNMzYxMTI0MTEzNjE4\n"
    "WjAVMRMwEQYDVQQDDAplZDI1NTE5LWNhMCowBQYDK2VwAyEADi7oU/qP30D/dxXt\n"
    "GnxokNgfapF7RSFyVGmxe90GR4ijYzBhMB0GA1UdDgQWBBQFHrZhnllWirbO9pu/\n"
    "5ZYYSZUFgTAfBgNVHSMEGDAWgBQFHrZhnllWirbO9pu/5ZYYSZUFgTAPBgNVHRMB\n"
    "Af8EBTADAQH/MA4GA1UdDwEB/wQEAwICBDAFBgMrZXADQQAlqgY/UdvYOeEde8Aj\n"
    "1iRop463EgsADVcDIxW0wYwqFYzgC0bUHr275N1lfaA774WzIeKEOQpz4hFFK7U1\n"
    "StwJ\n"
    "-----END CERTIFICATE-----\n";

inline constexpr const char* ed25519_ca_key =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIMXJ7ZFumae9H1G5NYCce5gWSnWGgn+Jk8POLt5nucxu\n"
    "-----END PRIVATE KEY-----\n";

inline constexpr const char* ed25519_leaf_pem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBRTCB+KADAgECAhQJdYrH9YIpseI92bFCGZnX9y38CTAFBgMrZXAwFTETMBEG\n"
    "A1UEAwwKZWQyNTUxOS1jYTAeFw0yNjExMjcxMTM2MThaFw0zNjExMjQxMTM2MTha\n"
    "MBExDzANBgNVBAMMBmRldG91cjAqMAUGAytlcAMhAJFX9Zeny+OKpKaJCtpGBi3K\n"
    "dAXSdLSrrw3Ln31IQXjjo14wXDAPBgNVHREECDAGhwR/AAABMAkGA1UdEwQCMAAw\n"
    "HQYDVR0OBBYEFF6RsGCZUdAMjf27tGJaABtzKkStMB8GA1UdIwQYMBaAFAUetmGe\n"
    "WVaKts72m7/llhhJlQWBMAUGAytlcANBANw9mS82qqKC0UuvTLQrymMUaOmet9c7\n"
    "yYRLGdX8d12RXLrfEV2+P0r0nWlaqHmD9KoU0YKH/rAJzckrJx3MAQI=\n"
    "-----END CERTIFICATE-----\n";

inline constexpr const char* ed25519_leaf_key =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIBKZ1kCygnFCEAidDoRhn0w48m6WK4DsuwmKyR1HKkVa\n"
    "-----END PRIVATE KEY-----\n";

inline constexpr const char* ed448_pem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBgDCCAQCgAwIBAgIUTgVNz4WagdPJCclS4+GMZtltGfowBQYDK2VxMBAxDjAM\n"
    "BgNVBAMMBWVkNDQ4MB4XDTI2MTEyNzExMzYxOFoXDTM2MTEyNDExMzYxOFowEDEO\n"
    "MAwGA1UEAwwFZWQ0NDgwQzAFBgMrZXEDOgAPuWZwhSzBgljlHTwdqp5w6V7LmF/j\n"
    "2LQukFTQio9gRdHKfvyi81Elmqn1SS4hAOln1GQOwgM8V4CjUzBRMB0GA1UdDgQW\n"
    "BBTxbAJneVSstIjgQuZ0KVSWVm6R7jAfBgNVHSMEGDAWgBTxbAJneVSstIjgQuZ0\n"
    "KVSWVm6R7jAPBgNVHRMBAf8EBTADAQH/MAUGAytlcQNzAEWsCNmAs9JSs53rOY/6\n"
    "4sTbm30LE5XHkf3AZMppfssmcmNlUfkMBuGF2zUjx1Vce03PFh1KdGyWAFW8Dvbf\n"
    "3ir+rU8koz95Qn6yvCh2+OAWZipNzB6kRakxTp0IspTglSiaEeICHFmfE6zuyvxj\n"
    "CJI+AA==\n"
    "-----END CERTIFICATE-----\n";

} // namespace detour::cli::test
