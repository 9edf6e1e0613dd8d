//! WebSocket over HTTP/2 (RFC 8441 extended CONNECT).
//!
//! An HTTP/2 client opens a WebSocket with `CONNECT` and the `:protocol`
//! pseudo-header `websocket` on one stream. Servers speak the HTTP/1.1
//! handshake (RFC 6455), so xlb translates: it picks a server as for any
//! request, opens a fresh HTTP/1.1 connection to it, sends `GET path`
//! with `Upgrade: websocket` and a key of its own, and on `101` answers
//! the client `200` and copies bytes both ways between the HTTP/2 stream
//! and the upgraded server connection. Any other answer is passed back
//! (a `2xx` that is not a switch becomes `502`: the client would take it
//! for an open WebSocket).

use std::{
    hash::{BuildHasher, RandomState},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use ring::{
    digest,
    rand::{SecureRandom, SystemRandom},
};

use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use hyper::{body::Incoming, ext::Protocol};
use smallvec::SmallVec;
use tracing::warn;

use super::{
    balance::Key,
    body::{self, Body},
    headers,
    proxy::{ConnCtx, Started, finish, next_attempt, refuse, tunnel},
    upstream,
};

/// Whether `req` is an extended CONNECT (it carries `:protocol`); only
/// HTTP/2 requests can, and only when the listener enabled it.
pub fn is_extended_connect<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT && req.extensions().get::<Protocol>().is_some()
}

/// Handles an extended CONNECT: a refusal (`4xx`), the server's
/// non-`101` answer, or `200` and a tunnel to the server.
pub async fn handle(
    cx: Arc<ConnCtx>,
    mut req: Request<Incoming>,
    started: Started,
) -> Response<Body> {
    let (mut entry, guard) = started.entry(&cx, &req);
    entry.route = cx.fe.route_request(&mut req);
    let be = cx.fe.backend_for(entry.route);
    let upstream_req = match server_request(&cx, &req) {
        Ok(r) => r,
        Err(why) => return refuse(&cx, entry, guard, StatusCode::BAD_REQUEST, why),
    };
    let client_upgrade = hyper::upgrade::on(&mut req);

    // A server and a connection to it: like any request, a failed connect
    // tries another server (up to `retries`).
    let settings = &be.settings;
    let send_proxy = cx.send_proxy(be);
    let snap = cx.shared.view.borrow().clone();
    let key = Key {
        client: cx.client.ip(),
        path: req.uri().path(),
    };
    let mut tried: SmallVec<[u32; 4]> = SmallVec::new();
    let mut failure = (
        StatusCode::SERVICE_UNAVAILABLE,
        "no server available".to_string(),
    );
    let connected = loop {
        let Some((pick, in_flight)) = next_attempt(&cx, &snap, key, &mut tried, &mut entry) else {
            break None;
        };
        let started = Instant::now();
        let limit = Duration::from_millis(settings.connect_timeout_ms);
        let proxied = send_proxy.as_ref();
        match upstream::connect_upgradable(pick.address, limit, be.tls.as_ref(), proxied).await {
            Ok(sender) => {
                entry.connect = Some(started.elapsed());
                break Some((sender, pick, in_flight));
            }
            Err(e) => {
                warn!(frontend = %cx.fe.name, server = %pick.key, "{e}; trying another server");
                failure = (StatusCode::BAD_GATEWAY, e.to_string());
            }
        }
    };
    let Some((mut sender, pick, in_flight)) = connected else {
        return refuse(&cx, entry, guard, failure.0, failure.1);
    };

    let accept = upstream_req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| accept_for(key.as_bytes()));
    let sent = Instant::now();
    let limit = Duration::from_millis(settings.response_timeout_ms);
    let mut resp = match tokio::time::timeout(limit, sender.send_request(upstream_req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let why = format!("server error: {e}");
            return refuse(&cx, entry, guard, StatusCode::BAD_GATEWAY, why);
        }
        Err(_) => {
            let why = format!("server response timeout ({} ms)", limit.as_millis());
            return refuse(&cx, entry, guard, StatusCode::GATEWAY_TIMEOUT, why);
        }
    };
    entry.response = Some(sent.elapsed());

    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS && upgrades_to_websocket(resp.headers()) {
        let answered = resp.headers().get(header::SEC_WEBSOCKET_ACCEPT);
        if answered.map(HeaderValue::as_bytes) != accept.as_ref().map(|a| a.as_bytes()) {
            let why = "server switched to WebSocket with a wrong Sec-WebSocket-Accept".into();
            return refuse(&cx, entry, guard, StatusCode::BAD_GATEWAY, why);
        }
        let server_upgrade = hyper::upgrade::on(&mut resp);
        let mut answer = Response::new(body::empty());
        for h in ["sec-websocket-protocol", "sec-websocket-extensions"] {
            if let Some(v) = resp.headers().get(h) {
                answer.headers_mut().insert(h, v.clone());
            }
        }
        entry.status = StatusCode::OK.as_u16();
        // The open tunnel keeps the client connection busy (no idle
        // timeout) and counts as in flight to its server (`leastconn`).
        let (busy, _) = cx.state.request_started();
        tokio::spawn(tunnel(
            client_upgrade,
            server_upgrade,
            (in_flight, busy),
            pick.key.clone(),
        ));
        return finish(answer, entry, None, guard);
    }
    if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS {
        let why = format!(
            "server answered {} instead of switching to WebSocket",
            status.as_u16()
        );
        return refuse(&cx, entry, guard, StatusCode::BAD_GATEWAY, why);
    }
    entry.status = status.as_u16();
    let (mut parts, incoming) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    let resp = Response::from_parts(parts, body::boxed(incoming));
    finish(resp, entry, Some(in_flight), guard)
}

/// The RFC 6455 handshake the server gets for the client's extended
/// CONNECT: `GET path HTTP/1.1` with the client's end-to-end headers
/// (`Sec-WebSocket-Protocol`/`-Extensions`, `Origin`, cookies, ...),
/// `X-Forwarded-*`, `Upgrade: websocket` and a fresh key. `Err` says why
/// the request is malformed.
fn server_request(cx: &ConnCtx, req: &Request<Incoming>) -> Result<Request<Body>, String> {
    let protocol = req
        .extensions()
        .get::<Protocol>()
        .map_or("", |p| p.as_str());
    if !protocol.eq_ignore_ascii_case("websocket") {
        return Err(format!(
            "unsupported :protocol {} (only websocket)",
            super::access_log::sanitize(protocol)
        ));
    }
    if req.version() != Version::HTTP_2 {
        return Err("extended CONNECT is only for HTTP/2".into());
    }
    let path = match req.uri().path_and_query() {
        Some(p) if p.as_str().starts_with('/') => p.as_str(),
        _ => return Err("extended CONNECT without a :path".into()),
    };
    if !req.headers().contains_key(header::SEC_WEBSOCKET_VERSION) {
        return Err("WebSocket CONNECT without Sec-WebSocket-Version".into());
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| req.headers().get(header::HOST).cloned())
        .ok_or("extended CONNECT without an :authority")?;

    let mut out = Request::new(body::empty());
    *out.method_mut() = Method::GET;
    *out.version_mut() = Version::HTTP_11;
    *out.uri_mut() = path.parse::<Uri>().map_err(|e| format!("bad :path: {e}"))?;
    let h = out.headers_mut();
    *h = req.headers().clone();
    headers::strip_hop_by_hop(h, false);
    h.remove(header::SEC_WEBSOCKET_KEY);
    h.remove(header::SEC_WEBSOCKET_ACCEPT);
    headers::add_forwarded(h, &cx.forwarded, Some(&host));
    h.insert(header::HOST, host);
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_KEY, new_key());
    Ok(out)
}

/// Whether a `101` switches to WebSocket (not to some other protocol).
fn upgrades_to_websocket(h: &http::HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The `Sec-WebSocket-Accept` a server must answer `key` with: base64 of
/// the SHA-1 of the key and RFC 6455's GUID (§4.2.2).
fn accept_for(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    BASE64.encode(ctx.finish())
}

/// A `Sec-WebSocket-Key`: 16 random bytes, base64 (RFC 6455 §4.1).
fn new_key() -> HeaderValue {
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // The key only has to keep caches from answering (RFC 6455
        // §10.3): the standard library's randomly keyed hasher will do.
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&RandomState::new().hash_one(i).to_le_bytes());
        }
    }
    HeaderValue::from_str(&BASE64.encode(bytes)).expect("base64 is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matches_rfc6455_sample() {
        assert_eq!(
            accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_are_16_bytes_and_differ() {
        let (a, b) = (new_key(), new_key());
        assert_eq!(a.len(), 24);
        assert_eq!(BASE64.decode(a.as_bytes()).unwrap().len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn only_connect_with_protocol_is_extended() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri("198.18.1.11:8080")
            .body(())
            .unwrap();
        assert!(!is_extended_connect(&req));
        req.extensions_mut()
            .insert(Protocol::from_static("websocket"));
        assert!(is_extended_connect(&req));
        *req.method_mut() = Method::GET;
        assert!(!is_extended_connect(&req));
    }
}
