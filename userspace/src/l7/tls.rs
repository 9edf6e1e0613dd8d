//! TLS offload with rustls (ring provider): certificate chains and keys
//! from PEM files, several certificates chosen by SNI (each by the names
//! it carries), TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`.

use std::{path::Path, sync::Arc};

use rustls::{
    ServerConfig,
    crypto::ring,
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio_rustls::TlsAcceptor;

use crate::config::Tls;

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
    let default = load_pair(&tls.cert, &tls.key).map_err(anyhow::Error::msg)?;
    let mut sni = Vec::new();
    for pair in &tls.sni {
        sni.push(load_pair(&pair.cert, &pair.key).map_err(anyhow::Error::msg)?);
    }
    let resolver = SniResolver { default, sni };
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
}
