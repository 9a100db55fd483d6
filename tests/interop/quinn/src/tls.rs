// SPDX-License-Identifier: MIT
//! TLS as g3proxy configures rustls for its detour client: TLS 1.3, no ALPN, session resumption
//! on, an optional client certificate, and the server certificate checked against the CA and
//! the name (`tls_name`, by default the server's IP address: RFC 5280 §4.2.1.6 iPAddress).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::client::{ServerCertVerified, ServerCertVerifier, WebPkiVerifier};
use rustls::{Certificate, ServerName};

use crate::Result;

/// The server certificate check g3proxy makes: chain to the configured CAs, then the name. rustls
/// 0.20's own verifier refuses IP names (`UnsupportedNameType`; webpki 0.22 cannot match IP
/// subjectAltNames, rustls 0.21+ can), so for an IP the chain goes through webpki and the name is
/// matched against the certificate's iPAddress subjectAltNames here (RFC 5280 §4.2.1.6).
/// Counting calls tells a resumed handshake (TLS 1.3 PSK: no certificate) from a full one.
pub struct Verifier {
    cas: Vec<Vec<u8>>,
    webpki: WebPkiVerifier,
    full_handshakes: AtomicUsize,
}

impl Verifier {
    /// Handshakes that verified a certificate so far: the ones that did not resume.
    pub fn full_handshakes(&self) -> usize {
        self.full_handshakes.load(Ordering::Relaxed)
    }
}

static SIGNATURE_ALGORITHMS: &[&webpki::SignatureAlgorithm] = &[
    &webpki::ECDSA_P256_SHA256,
    &webpki::ECDSA_P256_SHA384,
    &webpki::ECDSA_P384_SHA256,
    &webpki::ECDSA_P384_SHA384,
    &webpki::ED25519,
    &webpki::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    &webpki::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    &webpki::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    &webpki::RSA_PKCS1_2048_8192_SHA256,
    &webpki::RSA_PKCS1_2048_8192_SHA384,
    &webpki::RSA_PKCS1_2048_8192_SHA512,
];

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &Certificate,
        intermediates: &[Certificate],
        server_name: &ServerName,
        scts: &mut dyn Iterator<Item = &[u8]>,
        ocsp: &[u8],
        now: SystemTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.full_handshakes.fetch_add(1, Ordering::Relaxed);
        let ip = match server_name {
            ServerName::IpAddress(ip) => *ip,
            _ => {
                return self.webpki.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    scts,
                    ocsp,
                    now,
                )
            }
        };
        let bad = |e: webpki::Error| {
            rustls::Error::InvalidCertificateData(format!("server certificate: {e}"))
        };
        let anchors = self
            .cas
            .iter()
            .map(|der| webpki::TrustAnchor::try_from_cert_der(der))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(bad)?;
        let chain: Vec<&[u8]> = intermediates.iter().map(|c| c.0.as_slice()).collect();
        let time =
            webpki::Time::try_from(now).map_err(|_| rustls::Error::FailedToGetCurrentTime)?;
        webpki::EndEntityCert::try_from(end_entity.0.as_slice())
            .and_then(|cert| {
                cert.verify_is_valid_tls_server_cert(
                    SIGNATURE_ALGORITHMS,
                    &webpki::TlsServerTrustAnchors(&anchors),
                    &chain,
                    time,
                )
            })
            .map_err(bad)?;
        let wanted = match ip {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if ip_subject_alt_names(&end_entity.0).iter().any(|san| *san == wanted) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificateData(format!(
                "no IP subjectAltName {ip} in the server certificate"
            )))
        }
    }
}

/// One DER element: (tag, contents, the bytes after it); `None` when malformed.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let length = rest[..n].iter().fold(0usize, |l, &b| l << 8 | usize::from(b));
        rest = &rest[n..];
        length
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The iPAddress entries ([7]) of a certificate's subjectAltName extension (2.5.29.17), as the
/// raw 4 or 16 address bytes.
fn ip_subject_alt_names(certificate: &[u8]) -> Vec<&[u8]> {
    let mut found = Vec::new();
    let tbs = der(certificate).and_then(|(_, cert, _)| der(cert)).map(|(_, tbs, _)| tbs);
    let mut fields = tbs.unwrap_or_default();
    while let Some((tag, body, next)) = der(fields) {
        fields = next;
        if tag != 0xa3 {
            continue; // not [3] extensions
        }
        let mut extensions = der(body).map(|(_, e, _)| e).unwrap_or_default();
        while let Some((_, extension, next)) = der(extensions) {
            extensions = next;
            let Some((_, oid, mut rest)) = der(extension) else {
                continue;
            };
            if oid != [0x55, 0x1d, 0x11] {
                continue;
            }
            while let Some((tag, value, next)) = der(rest) {
                rest = next;
                if tag != 0x04 {
                    continue; // the critical flag
                }
                let mut names = der(value).map(|(_, n, _)| n).unwrap_or_default();
                while let Some((tag, name, next)) = der(names) {
                    names = next;
                    if tag == 0x87 {
                        found.push(name);
                    }
                }
            }
        }
    }
    found
}

fn read_pem(path: &str) -> Result<Vec<rustls_pemfile::Item>> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    rustls_pemfile::read_all(&mut std::io::BufReader::new(file)).map_err(|e| format!("{path}: {e}"))
}

/// The client configuration for `--ca` and the optional `--cert`/`--key`; the verifier counts
/// full handshakes.
pub fn config(
    ca: &str,
    client_cert: Option<&(String, String)>,
    alpn: &[String],
) -> Result<(Arc<rustls::ClientConfig>, Arc<Verifier>)> {
    let cas: Vec<Vec<u8>> = read_pem(ca)?
        .into_iter()
        .filter_map(|item| match item {
            rustls_pemfile::Item::X509Certificate(der) => Some(der),
            _ => None,
        })
        .collect();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(&cas);
    if added == 0 {
        return Err(format!("{ca}: no CA certificate"));
    }
    let verifier = Arc::new(Verifier {
        cas,
        webpki: WebPkiVerifier::new(roots, None),
        full_handshakes: AtomicUsize::new(0),
    });
    let builder = rustls::ClientConfig::builder()
        .with_safe_default_cipher_suites()
        .with_safe_default_kx_groups()
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_custom_certificate_verifier(verifier.clone());
    // No ALPN unless asked (g3proxy offers none); session resumption stays on (rustls' default
    // cache).
    let mut config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_pem(cert)?
                .into_iter()
                .filter_map(|item| match item {
                    rustls_pemfile::Item::X509Certificate(der) => Some(Certificate(der)),
                    _ => None,
                })
                .collect();
            let key = read_pem(key)?
                .into_iter()
                .find_map(|item| match item {
                    rustls_pemfile::Item::PKCS8Key(k)
                    | rustls_pemfile::Item::ECKey(k)
                    | rustls_pemfile::Item::RSAKey(k) => Some(rustls::PrivateKey(k)),
                    _ => None,
                })
                .ok_or(format!("{key}: no private key"))?;
            builder.with_single_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
        }
    };
    config.alpn_protocols = alpn.iter().map(|n| n.as_bytes().to_vec()).collect();
    Ok((Arc::new(config), verifier))
}
