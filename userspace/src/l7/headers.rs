//! Header rewriting between client and server: hop-by-hop headers removed
//! (RFC 9110 §7.6.1), `X-Forwarded-For`/`-Proto` and `Forwarded` added.

use std::net::{IpAddr, SocketAddr};

use std::fmt::Write as _;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Headers that only concern one connection.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop headers and every header named in
/// `Connection`. `TE: trailers` survives (gRPC needs it end to end).
/// With `keep_upgrade` (a WebSocket handshake) `Upgrade` and
/// `Connection: upgrade` are kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests and responses have no `Connection` header at all.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = tokens(headers, &header::CONNECTION)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if keep_upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(&name);
        }
    }
    let te_trailers = tokens(headers, &header::TE).any(|t| t.eq_ignore_ascii_case("trailers"));
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if keep_upgrade {
        if let Some(u) = upgrade {
            headers.insert(header::UPGRADE, u);
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
}

/// Whether a request asks for a protocol upgrade (WebSocket): HTTP/1.1,
/// `Connection: upgrade` and an `Upgrade` header.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && tokens(headers, &header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

/// The comma-separated tokens of every line of a list header, trimmed.
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Appends the client to `X-Forwarded-For`, sets `X-Forwarded-Proto`, and
/// appends a `Forwarded` element (RFC 7239) with `for`, `proto` and `host`.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, proto: &str, host: Option<&str>) {
    // Every request passes here: names are built once, values written
    // straight into the buffers the headers keep.
    let mut ip = String::with_capacity(48);
    let _ = write!(ip, "{}", client.ip());

    let mut xff = previous(headers, &X_FORWARDED_FOR);
    xff.extend_from_slice(ip.as_bytes());
    set(headers, X_FORWARDED_FOR, xff);
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if proto == "https" { "https" } else { "http" }),
    );

    let mut fwd = previous(headers, &header::FORWARDED);
    fwd.extend_from_slice(b"for=");
    match client.ip() {
        IpAddr::V4(_) => fwd.extend_from_slice(ip.as_bytes()),
        IpAddr::V6(_) => {
            fwd.extend_from_slice(b"\"[");
            fwd.extend_from_slice(ip.as_bytes());
            fwd.extend_from_slice(b"]\"");
        }
    }
    fwd.extend_from_slice(b";proto=");
    fwd.extend_from_slice(proto.as_bytes());
    if let Some(h) = host.filter(|h| is_token_or_host(h)) {
        fwd.extend_from_slice(b";host=");
        // A host with ':' (a port or IPv6) is not a token: quote it.
        let quote = h.contains([':', '[']);
        if quote {
            fwd.push(b'"');
        }
        fwd.extend_from_slice(h.as_bytes());
        if quote {
            fwd.push(b'"');
        }
    }
    set(headers, header::FORWARDED, fwd);
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The list the header already holds (every line, joined), followed by
/// ", " when not empty: the start of the new value.
fn previous(headers: &HeaderMap, name: &HeaderName) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for v in headers.get_all(name) {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
    out
}

/// Replaces every line of `name` with `value` (dropped if not a valid
/// header value, which only a malformed earlier value can cause).
fn set(headers: &mut HeaderMap, name: HeaderName, value: Vec<u8>) {
    match HeaderValue::from_maybe_shared(Bytes::from(value)) {
        Ok(v) => {
            headers.insert(name, v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

fn is_token_or_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert(header::TE, "trailers, deflate".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn upgrade_is_kept_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        add_forwarded(
            &mut h,
            "198.18.0.2:5000".parse().unwrap(),
            "http",
            Some("example.com:8080"),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.18.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h[header::FORWARDED],
            "for=198.18.0.2;proto=http;host=\"example.com:8080\""
        );
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, "[2001:db8::2]:5000".parse().unwrap(), "https", None);
        assert_eq!(h[header::FORWARDED], "for=\"[2001:db8::2]\";proto=https");
        // Several lines of a list header: one list, every hop kept.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.append("x-forwarded-for", " 203.0.113.10 ".parse().unwrap());
        h.append(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
        add_forwarded(&mut h, "198.18.0.2:5000".parse().unwrap(), "http", None);
        assert_eq!(
            h["x-forwarded-for"],
            "203.0.113.9, 203.0.113.10, 198.18.0.2"
        );
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(
            h[header::FORWARDED],
            "for=203.0.113.9, for=198.18.0.2;proto=http"
        );
    }
}
