//! TLS offload with rustls (ring provider): certificate chains and keys
//! from PEM files, several certificates chosen by SNI (each by the names
//! it carries), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1` (and TLS 1.3
//! with ALPN `h3` for QUIC, on the same certificates). Also the
//! client side towards backends (`tls = true` on a `[[backend]]`).

use std::{net::SocketAddr, path::Path, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, ring},
    server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::warn;

use crate::config::{Tls, UpstreamProto};

/// The frontend's acceptor type (also the test servers' TLS).
pub type Acceptor = TlsAcceptor;

pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_H1: &[u8] = b"http/1.1";

/// Loads a certificate chain and its key and checks they belong together.
/// The error is a complete sentence for `xlb check`.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls cert \"{}\": not a PEM certificate file: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls cert \"{}\": no CERTIFICATE block found",
            cert.display()
        ));
    }
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "tls key \"{}\": no PEM private key found (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY): {e}",
            key.display()
        )
    })?;
    let signer = ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("tls key \"{}\": unusable private key: {e}", key.display()))?;
    let pair = CertifiedKey::new(certs, signer);
    match pair.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "tls key \"{}\" does not match the certificate \"{}\" (their public keys differ)",
                key.display(),
                cert.display()
            ));
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "tls cert \"{}\": cannot be parsed: {e}",
                cert.display()
            ));
        }
    }
    Ok(Arc::new(pair))
}

/// The [`crate::config::Checks::tls`] hook.
pub fn check(cert: &Path, key: &Path) -> Result<(), String> {
    load_pair(cert, key).map(|_| ())
}

/// The frontend's TLS acceptor.
pub fn acceptor(tls: &Tls) -> anyhow::Result<TlsAcceptor> {
    acceptor_with(certificates(tls)?)
}

/// A frontend's certificates and their choice by SNI, loaded once and
/// shared by its TCP TLS listener and its HTTP/3 endpoint.
pub type Certificates = Arc<dyn ResolvesServerCert>;

/// Loads the frontend's default certificate and its `sni` ones.
pub fn certificates(tls: &Tls) -> anyhow::Result<Certificates> {
    let default = load_pair(&tls.cert, &tls.key).map_err(anyhow::Error::msg)?;
    let mut sni = Vec::new();
    for pair in &tls.sni {
        sni.push(load_pair(&pair.cert, &pair.key).map_err(anyhow::Error::msg)?);
    }
    Ok(Arc::new(SniResolver { default, sni }))
}

/// The TCP listener's acceptor over `certs`: TLS 1.2 and 1.3, ALPN h2
/// and http/1.1.
pub fn acceptor_with(certs: Certificates) -> anyhow::Result<TlsAcceptor> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// ALPN of HTTP/3 (RFC 9114).
pub const ALPN_H3: &[u8] = b"h3";

/// Sessions a frontend with `http3_0rtt` remembers for resumption and
/// 0-RTT (rustls' default of 256 would let a few hundred clients evict
/// each other; an entry is a few hundred bytes).
const EARLY_DATA_SESSIONS: usize = 8192;

/// The QUIC (HTTP/3) side over `certs`: TLS 1.3 only (QUIC has no
/// other), ALPN h3; 0-RTT only with `early_data` (`http3_0rtt`).
pub fn quic_with(
    certs: Certificates,
    early_data: bool,
) -> anyhow::Result<quinn::crypto::rustls::QuicServerConfig> {
    quinn::crypto::rustls::QuicServerConfig::try_from(quic_tls(certs, early_data)?)
        .map_err(|e| anyhow::anyhow!("QUIC TLS settings: {e}"))
}

/// The rustls side of [`quic_with`]. Resumption is stateful (rustls'
/// session cache, no ticketer): a ticket is an id taken out of the cache
/// on use, so each one resumes, and carries 0-RTT, at most once (RFC
/// 8446 §8.1), and only on the xlb process that issued it; rustls
/// accepts early data on no other kind of ticket. (`send_half_rtt_data`
/// is for TLS over TCP: over QUIC, quinn sends 0.5-RTT data itself.)
fn quic_tls(certs: Certificates, early_data: bool) -> anyhow::Result<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H3.to_vec()];
    if early_data {
        // QUIC allows no other non-zero value (RFC 9001 §4.6.1): the
        // amount is bounded by QUIC's flow control instead.
        config.max_early_data_size = u32::MAX;
        config.session_storage = ServerSessionMemoryCache::new(EARLY_DATA_SESSIONS);
    } else {
        config.max_early_data_size = 0;
    }
    Ok(config)
}

/// The first `sni` certificate valid for the client's server name, else
/// the default one.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    sni: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = hello.server_name() {
            if let Ok(name) = ServerName::try_from(name) {
                for ck in &self.sni {
                    if valid_for(ck, &name) {
                        return Some(ck.clone());
                    }
                }
            }
        }
        Some(self.default.clone())
    }
}

fn valid_for(ck: &CertifiedKey, name: &ServerName<'_>) -> bool {
    let Some(der) = ck.cert.first() else {
        return false;
    };
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
}

/// Where Linux distributions keep the system CA bundle (as
/// `rustls-native-certs` and OpenSSL look for it); `SSL_CERT_FILE` first.
const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The PEM certificates of a CA file. The error is a complete sentence.
fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls_ca \"{}\": not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_ca \"{}\": no CERTIFICATE block found",
            path.display()
        ));
    }
    Ok(certs)
}

/// The [`crate::config::Checks::ca`] hook: the file holds at least one
/// usable CA certificate.
pub fn check_ca(path: &Path) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(load_ca(path)?);
    if added == 0 {
        return Err(format!(
            "tls_ca \"{}\": no usable CA certificate",
            path.display()
        ));
    }
    Ok(())
}

/// The certificates of the system CA bundle.
fn system_roots() -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let file = env
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!("no system CA bundle found (set tls_ca, or SSL_CERT_FILE)")
        })?;
    load_ca(&file).map_err(anyhow::Error::msg)
}

/// The pool's id for server connections made with these settings (see
/// [`Upstream::id`]): a SHA-256 of everything the handshake depends on
/// (ALPN by `proto`, the name sent and verified, the CA certificates
/// verified against or `None` for `tls_verify = false`), cut to 64 bits.
/// Never 0, which stands for cleartext.
fn settings_id(
    proto: UpstreamProto,
    server_name: Option<&str>,
    roots: Option<&[CertificateDer<'_>]>,
) -> u64 {
    use ::ring::digest;
    let mut d = digest::Context::new(&digest::SHA256);
    let mut field = |b: &[u8]| {
        d.update(&(b.len() as u64).to_be_bytes());
        d.update(b);
    };
    field(b"xlb upstream tls");
    field(match proto {
        UpstreamProto::H1 => ALPN_H1,
        UpstreamProto::H2 => ALPN_H2,
    });
    match server_name {
        Some(name) => {
            field(b"name");
            field(name.as_bytes());
        }
        None => field(b"by address"),
    }
    match roots {
        Some(certs) => {
            field(b"verify");
            field(&(certs.len() as u64).to_be_bytes());
            for c in certs {
                field(c.as_ref());
            }
        }
        None => field(b"no verify"),
    }
    let hash = d.finish();
    let mut first = [0; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    u64::from_be_bytes(first).max(1)
}

/// TLS towards one backend's servers.
pub struct Upstream {
    /// ALPN per the backend's `proto`.
    connector: TlsConnector,
    /// ALPN `http/1.1` only: for upgrades (WebSocket).
    h1: TlsConnector,
    name: Option<ServerName<'static>>,
    /// Tells server connections made with different settings apart in
    /// the pool (never 0, which stands for cleartext): derived from the
    /// settings' content, so a backend whose TLS settings (and CA file
    /// contents) a reload leaves alone keeps its pooled connections.
    pub id: u64,
}

impl Upstream {
    /// Builds the client side for backend `backend`.
    pub fn new(
        backend: &str,
        cfg: &crate::config::UpstreamTls,
        proto: UpstreamProto,
    ) -> anyhow::Result<Upstream> {
        let provider = Arc::new(ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let ca = if cfg.verify {
            Some(match &cfg.ca {
                Some(ca) => load_ca(ca).map_err(anyhow::Error::msg)?,
                None => system_roots()?,
            })
        } else {
            None
        };
        let id = settings_id(proto, cfg.server_name.as_deref(), ca.as_deref());
        let mut config = if let Some(ca) = ca {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(ca);
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            warn!(
                backend,
                "tls_verify = false: the servers' certificates are not verified (insecure)"
            );
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        };
        let mut h1 = config.clone();
        h1.alpn_protocols = vec![ALPN_H1.to_vec()];
        config.alpn_protocols = match proto {
            UpstreamProto::H1 => vec![ALPN_H1.to_vec()],
            UpstreamProto::H2 => vec![ALPN_H2.to_vec()],
        };
        let name = cfg
            .server_name
            .as_deref()
            .map(|n| ServerName::try_from(n.to_string()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("tls_server_name: {e}"))?;
        Ok(Upstream {
            connector: TlsConnector::from(Arc::new(config)),
            h1: TlsConnector::from(Arc::new(h1)),
            name,
            id,
        })
    }

    /// The connector (`upgrade`: HTTP/1.1 only) and the name to verify
    /// server `addr` by: `tls_server_name`, else its IP address.
    pub fn for_server(
        &self,
        addr: SocketAddr,
        upgrade: bool,
    ) -> (&TlsConnector, ServerName<'static>) {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        (if upgrade { &self.h1 } else { &self.connector }, name)
    }
}

/// `tls_verify = false`: any certificate is accepted; the handshake
/// signatures are still checked (the peer holds the key it presents).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, tag: &str, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let c = dir.join(format!("{tag}.crt"));
        let k = dir.join(format!("{tag}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn pairs_load_and_mismatches_are_named() {
        let dir = std::env::temp_dir().join(format!("xlb-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca, ka) = write_pair(&dir, "a", "a.example");
        let (_cb, kb) = write_pair(&dir, "b", "b.example");
        assert!(check(&ca, &ka).is_ok());
        let e = check(&ca, &kb).unwrap_err();
        assert!(e.contains("does not match the certificate"), "{e}");
        let e = check(&ca, &ca).unwrap_err();
        assert!(e.contains("no PEM private key"), "{e}");
        let e = check(&ka, &ka).unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = check_ca(&ka).unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        assert!(check_ca(&ca).is_ok());
        let pair = load_pair(&ca, &ka).unwrap();
        assert!(valid_for(
            &pair,
            &ServerName::try_from("a.example").unwrap()
        ));
        assert!(!valid_for(
            &pair,
            &ServerName::try_from("b.example").unwrap()
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A self-signed CA certificate as PEM.
    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn upstream_ids_follow_the_settings_content() {
        let dir = std::env::temp_dir().join(format!("xlb-tls-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, ca_pem("one")).unwrap();
        let settings = crate::config::UpstreamTls {
            ca: Some(ca.clone()),
            server_name: Some("web.internal".into()),
            verify: true,
        };
        let id = |s: &crate::config::UpstreamTls, proto| Upstream::new("web", s, proto).unwrap().id;
        // Built again (as a reload does) with the same settings: same id.
        let first = id(&settings, UpstreamProto::H1);
        assert_ne!(first, 0);
        assert_eq!(id(&settings, UpstreamProto::H1), first);
        // The same settings under another backend name: same connections.
        assert_eq!(
            Upstream::new("other", &settings, UpstreamProto::H1)
                .unwrap()
                .id,
            first
        );
        // Anything the handshake depends on changes it.
        assert_ne!(id(&settings, UpstreamProto::H2), first, "ALPN");
        let by_address = crate::config::UpstreamTls {
            server_name: None,
            ..settings.clone()
        };
        assert_ne!(id(&by_address, UpstreamProto::H1), first, "no server name");
        let other_name = crate::config::UpstreamTls {
            server_name: Some("api.internal".into()),
            ..settings.clone()
        };
        assert_ne!(id(&other_name, UpstreamProto::H1), first, "server name");
        let no_verify = crate::config::UpstreamTls {
            verify: false,
            ..settings.clone()
        };
        let unverified = id(&no_verify, UpstreamProto::H1);
        assert_ne!(unverified, first, "tls_verify");
        assert_eq!(id(&no_verify, UpstreamProto::H1), unverified);
        // Same path, new contents (a CA file replaced before a reload).
        std::fs::write(&ca, ca_pem("two")).unwrap();
        assert_ne!(id(&settings, UpstreamProto::H1), first, "CA contents");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// 0-RTT is on the QUIC side only, and only with `http3_0rtt`: QUIC
    /// then needs exactly u32::MAX (quinn refuses anything else), and
    /// rustls needs stateful resumption to take early data at all.
    #[test]
    fn early_data_only_on_quic_with_http3_0rtt() {
        let dir = std::env::temp_dir().join(format!("xlb-tls-0rtt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (c, k) = write_pair(&dir, "a", "a.example");
        let certs: Certificates = Arc::new(SniResolver {
            default: load_pair(&c, &k).unwrap(),
            sni: Vec::new(),
        });
        let on = quic_tls(certs.clone(), true).unwrap();
        assert_eq!(on.max_early_data_size, u32::MAX);
        assert!(!on.ticketer.enabled() && on.session_storage.can_cache());
        let off = quic_tls(certs.clone(), false).unwrap();
        assert_eq!(off.max_early_data_size, 0);
        assert!(quic_with(certs.clone(), true).is_ok());
        assert!(quic_with(certs.clone(), false).is_ok());
        let tcp = acceptor_with(certs).unwrap();
        assert_eq!(tcp.config().max_early_data_size, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
