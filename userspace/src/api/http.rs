//! The metrics listener (`[global] metrics`): `GET /metrics` in the
//! Prometheus/OpenMetrics text format, `GET /stats` a plain-text table of
//! the servers (the rows of `show stat`).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, info};

use super::{collect::Sources, show};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

struct Pages {
    registry: Registry,
    sources: Sources,
}

/// Binds `addr` (an error names it) and serves until the task is aborted.
pub async fn spawn(
    addr: SocketAddr,
    registry: Registry,
    sources: Sources,
) -> anyhow::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: binding {addr}"))?;
    info!(%addr, "metrics listening (/metrics, /stats)");
    let pages = Arc::new(Pages { registry, sources });
    Ok(tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    debug!("metrics accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let pages = pages.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let pages = pages.clone();
                    async move { Ok::<_, Infallible>(answer(&pages, &req)) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, "metrics connection: {e}");
                }
            });
        }
    }))
}

fn answer(pages: &Pages, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &pages.registry) {
                Ok(()) => Response::builder()
                    .header(header::CONTENT_TYPE, OPENMETRICS)
                    .body(Full::new(Bytes::from(text)))
                    .unwrap_or_default(),
                Err(_) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "encoding failed\n".into(),
                ),
            }
        }
        "/stats" => {
            let snapshot = pages.sources.servers.borrow().clone();
            let table = show::stat_table(
                &snapshot.servers,
                pages.sources.stats.as_deref(),
                &pages.sources.l7,
            );
            plain(StatusCode::OK, format!("xlb servers\n\n{table}"))
        }
        _ => plain(StatusCode::NOT_FOUND, "try /metrics or /stats\n".into()),
    }
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}
