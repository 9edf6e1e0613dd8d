//! Header rewriting between client and server: hop-by-hop headers removed
//! (RFC 9110 §7.6.1), `X-Forwarded-For`/`-Proto` and `Forwarded` added
//! (those of them the frontend's `forwarded_headers` names).

use std::{fmt::Write as _, net::IpAddr, sync::Mutex};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderName, HeaderValue,
    header::{self, Entry},
};
use smallvec::SmallVec;

use crate::config::ForwardedHeaders;

/// Whether a lower-case header name is one that only concerns one
/// connection (RFC 9110 §7.6.1, plus the legacy `keep-alive` and
/// `proxy-connection`). A `match` on the name: a length test rejects
/// almost every other header without comparing bytes.
fn is_hop_by_hop(lower: &str) -> bool {
    matches!(
        lower,
        "connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "keep-alive"
            | "proxy-connection"
    )
}

/// [`is_hop_by_hop`] for a token of a `Connection` header, in any case.
fn names_hop_by_hop(token: &str) -> bool {
    let mut lower = [0u8; 24];
    let Some(buf) = lower.get_mut(..token.len()) else {
        return false; // longer than any hop-by-hop name
    };
    buf.copy_from_slice(token.as_bytes());
    buf.make_ascii_lowercase();
    std::str::from_utf8(buf).is_ok_and(is_hop_by_hop)
}

/// Removes the hop-by-hop headers and every header named in
/// `Connection`. `TE: trailers` survives (gRPC needs it end to end).
/// With `keep_upgrade` (a WebSocket handshake) `Upgrade` and
/// `Connection: upgrade` are kept.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Every request and response passes here, and most carry none of
    // these or only `Connection`: one pass over the names finds them,
    // instead of a hashed lookup per hop-by-hop name.
    let mut found: SmallVec<[HeaderName; 4]> = SmallVec::new();
    for name in headers.keys() {
        if is_hop_by_hop(name.as_str()) {
            found.push(name.clone());
        }
    }
    if found.is_empty() {
        return;
    }
    if found.contains(&header::CONNECTION) {
        // Usually `keep-alive` or `close`: already handled, or no header
        // name at all; only other tokens are looked up as names.
        let named = tokens(headers, &header::CONNECTION)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !names_hop_by_hop(t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect::<SmallVec<[HeaderName; 4]>>();
        found.extend(named);
    }
    let te_trailers = found.contains(&header::TE)
        && tokens(headers, &header::TE).any(|t| t.eq_ignore_ascii_case("trailers"));
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    for name in &found {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
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

/// What one client connection's requests add to `X-Forwarded-For`,
/// `X-Forwarded-Proto` and `Forwarded` (RFC 7239), formatted once per
/// connection rather than per request; `None` for a header its frontend
/// does not add (`forwarded_headers`).
pub struct Forwarded {
    /// The client's address, as `X-Forwarded-For` lists it.
    ip: Option<HeaderValue>,
    proto: Option<HeaderValue>,
    /// `for=ADDR;proto=P`: this hop's `Forwarded` element without a host.
    element: Option<HeaderValue>,
    /// The element with the last host seen on the connection (`host=`
    /// added), and that host: requests on one connection mostly name
    /// the same one.
    with_host: Mutex<Option<(HeaderValue, HeaderValue)>>,
}

impl Forwarded {
    pub fn new(client: IpAddr, proto: &'static str, which: ForwardedHeaders) -> Self {
        // Addresses and a static protocol are valid header values.
        let ip = which.x_forwarded_for.then(|| {
            HeaderValue::from_str(&client.to_string()).expect("an IP address is a header value")
        });
        let element = which.forwarded.then(|| {
            let mut element = String::with_capacity(64);
            let _ = match client {
                IpAddr::V4(ip) => write!(element, "for={ip};proto={proto}"),
                IpAddr::V6(ip) => write!(element, "for=\"[{ip}]\";proto={proto}"),
            };
            HeaderValue::from_str(&element).expect("ASCII without controls")
        });
        Forwarded {
            ip,
            proto: which
                .x_forwarded_proto
                .then(|| HeaderValue::from_static(proto)),
            element,
            with_host: Mutex::new(None),
        }
    }

    /// This hop's `Forwarded` element (`base`, without a host), with
    /// `host` when it is a valid token or host name.
    fn element(&self, base: &HeaderValue, host: Option<&HeaderValue>) -> HeaderValue {
        let Some(host) = host.filter(|h| is_token_or_host(h.as_bytes())) else {
            return base.clone();
        };
        let mut last = self.with_host.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((h, v)) = &*last {
            if h == host {
                return v.clone();
            }
        }
        let h = host.as_bytes();
        let mut v = Vec::with_capacity(base.len() + h.len() + 8);
        v.extend_from_slice(base.as_bytes());
        v.extend_from_slice(b";host=");
        // A host with ':' (a port or IPv6) is not a token: quoted.
        let quote = h.iter().any(|b| matches!(b, b':' | b'['));
        if quote {
            v.push(b'"');
        }
        v.extend_from_slice(h);
        if quote {
            v.push(b'"');
        }
        let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) else {
            return base.clone();
        };
        *last = Some((host.clone(), v.clone()));
        v
    }
}

/// The most headers [`add_forwarded`] adds.
pub const MAX_ADDED: usize = 3;

/// Adds what the connection's frontend adds of: the client appended to
/// `X-Forwarded-For`, `X-Forwarded-Proto` set, and this hop's `Forwarded`
/// element (`for`, `proto`, `host`) appended.
pub fn add_forwarded(headers: &mut HeaderMap, fwd: &Forwarded, host: Option<&HeaderValue>) {
    let adds = [fwd.ip.is_some(), fwd.proto.is_some(), fwd.element.is_some()]
        .into_iter()
        .filter(|&added| added)
        .count();
    if adds == 0 {
        return;
    }
    headers.reserve(adds);
    if let Some(ip) = &fwd.ip {
        append_to_list(headers, X_FORWARDED_FOR, ip);
    }
    if let Some(proto) = &fwd.proto {
        headers.insert(X_FORWARDED_PROTO, proto.clone());
    }
    if let Some(base) = &fwd.element {
        append_to_list(headers, header::FORWARDED, &fwd.element(base, host));
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Appends `item` to the list header `name`: every line it already has
/// is joined into one, then `, item`. The usual case, no such header yet,
/// only shares `item`.
fn append_to_list(headers: &mut HeaderMap, name: HeaderName, item: &HeaderValue) {
    let mut entry = match headers.entry(name) {
        Entry::Vacant(v) => {
            v.insert(item.clone());
            return;
        }
        Entry::Occupied(o) => o,
    };
    let mut joined = Vec::with_capacity(64);
    for v in entry.iter() {
        let v = v.as_bytes().trim_ascii();
        if !v.is_empty() {
            joined.extend_from_slice(v);
            joined.extend_from_slice(b", ");
        }
    }
    joined.extend_from_slice(item.as_bytes());
    // Only a malformed earlier line can make the list invalid: then the
    // header goes.
    match HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        Ok(v) => {
            entry.insert(v);
        }
        Err(_) => {
            entry.remove_entry_mult().1.for_each(drop);
        }
    }
}

fn is_token_or_host(h: &[u8]) -> bool {
    !h.is_empty()
        && h.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(b))
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
    fn every_hop_by_hop_name_is_known_in_any_case() {
        for name in [
            header::CONNECTION,
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            header::PROXY_AUTHENTICATE,
            header::PROXY_AUTHORIZATION,
        ] {
            assert!(is_hop_by_hop(name.as_str()), "{name}");
            assert!(names_hop_by_hop(&name.as_str().to_uppercase()), "{name}");
        }
        assert!(names_hop_by_hop("Keep-Alive") && names_hop_by_hop("Proxy-Connection"));
        for other in [
            "host",
            "x-connection",
            "connectio",
            "user-agent",
            "x".repeat(40).as_str(),
        ] {
            assert!(!names_hop_by_hop(other), "{other}");
        }
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
        let v4 = Forwarded::new("198.18.0.2".parse().unwrap(), "http", ForwardedHeaders::ALL);
        let host = HeaderValue::from_static("example.com:8080");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        add_forwarded(&mut h, &v4, Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.18.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h[header::FORWARDED],
            "for=198.18.0.2;proto=http;host=\"example.com:8080\""
        );
        // The connection's next request, for another host: not the cached one.
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &v4, Some(&HeaderValue::from_static("b.test")));
        assert_eq!(
            h[header::FORWARDED],
            "for=198.18.0.2;proto=http;host=b.test"
        );
        // A host that is neither a token nor a host name is left out.
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &v4, Some(&HeaderValue::from_static("a b")));
        assert_eq!(h[header::FORWARDED], "for=198.18.0.2;proto=http");
        let v6 = Forwarded::new(
            "2001:db8::2".parse().unwrap(),
            "https",
            ForwardedHeaders::ALL,
        );
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &v6, None);
        assert_eq!(h[header::FORWARDED], "for=\"[2001:db8::2]\";proto=https");
        assert_eq!(h["x-forwarded-for"], "2001:db8::2");
        assert_eq!(h["x-forwarded-proto"], "https");
        // Several lines of a list header: one list, every hop kept.
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.append("x-forwarded-for", " 203.0.113.10 ".parse().unwrap());
        h.append(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
        add_forwarded(&mut h, &v4, None);
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

    #[test]
    fn only_x_forwarded_for() {
        let xff = ForwardedHeaders {
            x_forwarded_for: true,
            ..ForwardedHeaders::NONE
        };
        let fwd = Forwarded::new("198.18.0.2".parse().unwrap(), "https", xff);
        let host = HeaderValue::from_static("a.test");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &fwd, Some(&host));
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-forwarded-for"], "198.18.0.2");
        // Appended to the client's list; its other headers left as sent.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-proto", "http".parse().unwrap());
        h.insert(header::FORWARDED, "for=203.0.113.9".parse().unwrap());
        add_forwarded(&mut h, &fwd, Some(&host));
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.18.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h[header::FORWARDED], "for=203.0.113.9");
        assert_eq!(h.len(), 3, "{h:?}");
    }

    #[test]
    fn no_forwarding_headers() {
        let fwd = Forwarded::new(
            "2001:db8::2".parse().unwrap(),
            "http",
            ForwardedHeaders::NONE,
        );
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &fwd, Some(&HeaderValue::from_static("a.test")));
        assert!(h.is_empty(), "{h:?}");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        let before = h.clone();
        add_forwarded(&mut h, &fwd, None);
        assert_eq!(h, before);
    }

    #[test]
    fn proto_and_forwarded_without_x_forwarded_for() {
        let which = ForwardedHeaders {
            x_forwarded_for: false,
            ..ForwardedHeaders::ALL
        };
        let fwd = Forwarded::new("198.18.0.2".parse().unwrap(), "http", which);
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, &fwd, Some(&HeaderValue::from_static("a.test")));
        assert_eq!(h.len(), 2, "{h:?}");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(
            h[header::FORWARDED],
            "for=198.18.0.2;proto=http;host=a.test"
        );
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "a.test".parse().unwrap());
        h.append(header::ACCEPT, "text/plain".parse().unwrap());
        h.append(header::ACCEPT, "text/html".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }
}
