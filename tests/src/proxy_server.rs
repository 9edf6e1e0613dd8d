//! A test server that requires a PROXY header (v1 or v2, parsed with
//! `ppp`) at the start of every connection, then answers one HTTP/1.1
//! request with the header's source address as the body (`LOCAL` for
//! v1 `UNKNOWN` / v2 `LOCAL`). A connection without a valid header is
//! closed unanswered. Every header it saw is recorded.
//!
//! [`ProxiedHttp`]: the lab's [`crate::http_backend`] server (every route,
//! WebSocket echo included, cleartext or TLS) behind a PROXY header read
//! byte for byte: each connection's header and the first bytes after it
//! (the request, or the TLS ClientHello) are recorded as an [`Opening`].

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::Result;
use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::AsyncReadExt;

use crate::{
    http_backend::{ServerThread, serve_conn},
    netns::Namespace,
};

/// The running server: what each connection's header said, in order.
pub struct ProxyServer {
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl ProxyServer {
    /// Listens on `addr` inside `ns`; served from a thread until the
    /// process ends.
    pub fn start(ns: &Namespace, addr: SocketAddr) -> Result<ProxyServer> {
        let listener = ns.with(|| TcpListener::bind(addr))??;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                thread::spawn(move || serve(stream, &record));
            }
        });
        Ok(ProxyServer { seen })
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut s: TcpStream, record: &Mutex<Vec<String>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (source, used) = loop {
        let Ok(n) = s.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let parsed = HeaderResult::parse(&buf);
        if parsed.is_incomplete() {
            continue;
        }
        match parsed {
            HeaderResult::V1(Ok(h)) => {
                let source = match h.addresses {
                    v1::Addresses::Tcp4(a) => format!("{}:{}", a.source_address, a.source_port),
                    v1::Addresses::Tcp6(a) => format!("[{}]:{}", a.source_address, a.source_port),
                    v1::Addresses::Unknown => "LOCAL".into(),
                };
                break (source, h.header.len());
            }
            HeaderResult::V2(Ok(h)) => {
                let source = match (h.command, h.addresses) {
                    (v2::Command::Local, _) => "LOCAL".into(),
                    (_, v2::Addresses::IPv4(a)) => {
                        format!("{}:{}", a.source_address, a.source_port)
                    }
                    (_, v2::Addresses::IPv6(a)) => {
                        format!("[{}]:{}", a.source_address, a.source_port)
                    }
                    _ => "UNSPEC".into(),
                };
                break (source, h.header.len());
            }
            _ => {
                record.lock().unwrap().push("INVALID".into());
                return;
            }
        }
    };
    record.lock().unwrap().push(source.clone());
    buf.drain(..used);
    // Answer each request head on the connection (keep-alive).
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{source}",
                source.len()
            );
            if s.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How one connection to a [`ProxiedHttp`] server started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The PROXY header byte for byte, as far as it went (a v1 line to
    /// its `\n`, a v2 header to the end its length gives; the one byte
    /// read when the connection does not start like either).
    pub header: Vec<u8>,
    /// Whether `ppp` parses `header` as exactly one whole header.
    pub valid: bool,
    /// The first bytes that followed the header (one read's worth, at
    /// most 64; empty if none came within 5 s).
    pub next: Vec<u8>,
}

impl Opening {
    /// The header's (source, destination) addresses; `None` for v1
    /// `UNKNOWN`, v2 `LOCAL` or `UNSPEC`, or an invalid header.
    pub fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        match HeaderResult::parse(&self.header) {
            HeaderResult::V1(Ok(h)) => match h.addresses {
                v1::Addresses::Tcp4(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                v1::Addresses::Tcp6(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                v1::Addresses::Unknown => None,
            },
            HeaderResult::V2(Ok(h)) if h.command == v2::Command::Proxy => match h.addresses {
                v2::Addresses::IPv4(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                v2::Addresses::IPv6(a) => Some((
                    (a.source_address, a.source_port).into(),
                    (a.destination_address, a.destination_port).into(),
                )),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The lab's HTTP server (`HttpBackend`'s routes, cleartext or TLS) on
/// connections that must start with a PROXY header: it takes the header
/// off byte for byte, records it with what came next ([`Opening`]), then
/// serves the rest of the connection (for TLS: handshake first). A
/// connection without a valid header is recorded and closed. Dropping it
/// stops the server and closes every connection.
pub struct ProxiedHttp {
    openings: Arc<Mutex<Vec<Opening>>>,
    _server: ServerThread,
}

impl ProxiedHttp {
    /// Serves cleartext HTTP/1.1 and HTTP/2 as `name` on `addr` in `ns`.
    pub fn start(ns: &Namespace, name: &str, addr: SocketAddr) -> Result<ProxiedHttp> {
        Self::start_with(ns, name, addr, None)
    }

    /// [`ProxiedHttp::start`] over TLS (after the header) with the
    /// certificate chain `cert` and its key `key` (PEM files); responses
    /// carry `x-tls: ALPN` as `HttpBackend::start_tls`'s do.
    pub fn start_tls(
        ns: &Namespace,
        name: &str,
        addr: SocketAddr,
        cert: &Path,
        key: &Path,
    ) -> Result<ProxiedHttp> {
        Self::start_with(
            ns,
            name,
            addr,
            Some(crate::http_backend::tls_acceptor(cert, key)?),
        )
    }

    fn start_with(
        ns: &Namespace,
        name: &str,
        addr: SocketAddr,
        tls: Option<xlb::l7::tls::Acceptor>,
    ) -> Result<ProxiedHttp> {
        let openings = Arc::new(Mutex::new(Vec::new()));
        let record = openings.clone();
        let name: Arc<str> = name.into();
        let server = ServerThread::spawn(ns, addr, format!("proxied-{name}"), move |stream| {
            tokio::spawn(serve_proxied(
                stream,
                name.clone(),
                tls.clone(),
                record.clone(),
            ));
        })?;
        Ok(ProxiedHttp {
            openings,
            _server: server,
        })
    }

    /// Every connection's opening so far, in the order they were read.
    pub fn openings(&self) -> Vec<Opening> {
        self.openings.lock().unwrap().clone()
    }
}

async fn serve_proxied(
    mut stream: tokio::net::TcpStream,
    name: Arc<str>,
    tls: Option<xlb::l7::tls::Acceptor>,
    record: Arc<Mutex<Vec<Opening>>>,
) {
    let limit = Duration::from_secs(5);
    let Ok(Ok(header)) = tokio::time::timeout(limit, take_header(&mut stream)).await else {
        return;
    };
    let valid = matches!(
        HeaderResult::parse(&header),
        HeaderResult::V1(Ok(ref h)) if h.header.len() == header.len()
    ) || matches!(
        HeaderResult::parse(&header),
        HeaderResult::V2(Ok(ref h)) if h.header.len() == header.len()
    );
    let mut next = [0u8; 64];
    let n = match tokio::time::timeout(limit, stream.peek(&mut next)).await {
        Ok(Ok(n)) => n,
        _ => 0,
    };
    record.lock().unwrap().push(Opening {
        header,
        valid,
        next: next[..n].to_vec(),
    });
    if !valid {
        return;
    }
    match tls {
        None => serve_conn(stream, name, None).await,
        Some(acceptor) => {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let alpn = stream.get_ref().1.alpn_protocol().map_or_else(
                || "none".to_string(),
                |p| String::from_utf8_lossy(p).into_owned(),
            );
            serve_conn(stream, name, Some(alpn)).await;
        }
    }
}

/// Reads the PROXY header at the start of `s` and not a byte more: a v1
/// line (`P`...) to its `\n` (at most 107 bytes), a v2 header (`\r`...)
/// to the end of its length; for anything else, the one byte read.
async fn take_header(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![s.read_u8().await?];
    match buf[0] {
        b'P' => {
            while buf.last() != Some(&b'\n') && buf.len() < 107 {
                buf.push(s.read_u8().await?);
            }
        }
        b'\r' => {
            buf.resize(16, 0);
            s.read_exact(&mut buf[1..]).await?;
            let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
            let fixed = buf.len();
            buf.resize(fixed + len, 0);
            s.read_exact(&mut buf[fixed..]).await?;
        }
        _ => {}
    }
    Ok(buf)
}
