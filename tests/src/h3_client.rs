//! The lab's HTTP/3 client (its curl has no HTTP/3): a QUIC endpoint
//! that trusts a test CA, and HTTP/3 on a QUIC connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context, Result};
use bytes::{Buf, Bytes};

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

/// Sends `req` with `body` (in 16 KiB frames) and reads the answer whole
/// within `limit`: the response, its body and its trailers.
pub async fn exchange(
    send: &mut SendRequest,
    req: http::Request<()>,
    body: &[u8],
    limit: Duration,
) -> Result<(http::Response<()>, Vec<u8>, Option<http::HeaderMap>)> {
    let exchange = async {
        let mut stream = send.send_request(req).await?;
        for chunk in body.chunks(16 * 1024) {
            stream.send_data(Bytes::copy_from_slice(chunk)).await?;
        }
        stream.finish().await?;
        let resp = stream.recv_response().await?;
        let mut out = Vec::new();
        while let Some(mut data) = stream.recv_data().await? {
            while data.has_remaining() {
                let chunk = data.chunk();
                out.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
        let trailers = stream.recv_trailers().await?;
        anyhow::Ok((resp, out, trailers))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .context("HTTP/3 request timed out")?
}

/// HTTP/3 on `conn`, its connection driver on a task of its own.
pub async fn h3_on(conn: quinn::Connection) -> Result<SendRequest> {
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok(send)
}
