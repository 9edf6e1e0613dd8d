//! One health probe: TCP connect, or an HTTP/1.0 GET whose status must be
//! 2xx or 3xx, each after a PROXY header for `send_proxy` backends.
//! Everything is bounded by the check timeout.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

use crate::{
    config::{CheckKind, HealthCheck, ProxyVersion},
    l7::proxy_protocol,
};

pub async fn check(
    spec: &HealthCheck,
    addr: SocketAddr,
    send_proxy: Option<ProxyVersion>,
    limit: Duration,
) -> Result<(), String> {
    match timeout(limit, probe(spec, addr, send_proxy)).await {
        Ok(result) => result,
        Err(_) => Err(format!("timeout after {} ms", limit.as_millis())),
    }
}

async fn probe(
    spec: &HealthCheck,
    addr: SocketAddr,
    send_proxy: Option<ProxyVersion>,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    if let Some(version) = send_proxy {
        let header = proxy_protocol::local_header(version).map_err(|e| e.to_string())?;
        stream
            .write_all(&header)
            .await
            .map_err(|e| format!("send the PROXY header: {e}"))?;
    }
    if spec.check != CheckKind::Http {
        return Ok(());
    }
    let host = match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: xlb-health\r\nConnection: close\r\n\r\n",
        spec.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    // The status line fits in the first read of any sane server; read until
    // the first line ends or 512 bytes.
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') && buf.len() < 512 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    status_ok(&buf)
}

/// `HTTP/1.x NNN ...`: up for 2xx and 3xx.
fn status_ok(head: &[u8]) -> Result<(), String> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err("no HTTP status line".into());
    };
    if !version.starts_with("HTTP/") {
        return Err(format!("not an HTTP response: {:?}", line.trim()));
    }
    match code.parse::<u16>() {
        Ok(200..=399) => Ok(()),
        Ok(code) => Err(format!("HTTP status {code}")),
        Err(_) => Err(format!("bad status line: {:?}", line.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::status_ok;

    #[test]
    fn status_classes() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.0 302 Found\r\n").is_ok());
        assert!(status_ok(b"HTTP/1.1 404 Not Found\r\n").is_err());
        assert!(status_ok(b"HTTP/1.1 503 Unavailable\r\n").is_err());
        assert!(status_ok(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status_ok(b"").is_err());
        assert!(status_ok(b"HTTP/1.1 abc\r\n").is_err());
    }
}
