//! The lab's HTTP/3 client (its curl has no HTTP/3): a QUIC endpoint
//! that trusts a test CA, and HTTP/3 on a QUIC connection.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Result;
use bytes::Bytes;

/// What HTTP/3 requests are sent on.
pub type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A QUIC client endpoint bound to `bind` that verifies servers against
/// the PEM CA `ca_pem`, ALPN `h3`, TLS 1.3; with `early_data`, its
/// connections share rustls' in-memory session store and may send 0-RTT.
pub fn endpoint(ca_pem: &str, bind: SocketAddr, early_data: bool) -> Result<quinn::Endpoint> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    tls.enable_early_data = early_data;
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut endpoint = quinn::Endpoint::client(bind)?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    Ok(endpoint)
}

/// HTTP/3 on `conn`, its connection driver on a task of its own.
pub async fn h3_on(conn: quinn::Connection) -> Result<SendRequest> {
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(send)
}
