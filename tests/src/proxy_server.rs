//! A test server that requires a PROXY header (v1 or v2, parsed with
//! `ppp`) at the start of every connection, then answers one HTTP/1.1
//! request with the header's source address as the body (`LOCAL` for
//! v1 `UNKNOWN` / v2 `LOCAL`). A connection without a valid header is
//! closed unanswered. Every header it saw is recorded.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use anyhow::Result;
use ppp::{HeaderResult, PartialResult, v1, v2};

use crate::netns::Namespace;

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
