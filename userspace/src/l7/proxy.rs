//! The request lifecycle: headers rewritten, a server chosen, a connection
//! checked out, the request sent (retried on another server when that is
//! safe), the response streamed back (compressed when it qualifies),
//! and one access log line when the last byte has gone. Failures become
//! short 502/503/504 answers and a log line, never a panic.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{
    HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header, request,
    uri::{Authority, PathAndQuery},
};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use smallvec::SmallVec;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::{
    access_log::{self, Logger},
    balance::{Balancer, InFlight, Key, Load, Pick},
    body::{self, Body, BoxError},
    compress,
    conn::{ConnState, RequestGuard},
    headers,
    proxy_protocol::{self, SendProxy},
    rate_limit,
    rules::{Route, Rules},
    tls,
    upstream::{self, Conn, Pool},
    websocket,
};
use crate::{
    config::{BackendL7, ForwardedHeaders, UpstreamProto},
    registry::Snapshot,
};

/// A backend pool as the L7 tier uses it.
pub struct Backend {
    pub name: String,
    pub settings: BackendL7,
    pub balancer: Balancer,
    /// TLS towards the servers (`tls = true`).
    pub tls: Option<tls::Upstream>,
}

/// One `[[frontend]]`, ready to serve.
pub struct Frontend {
    pub name: String,
    pub tls: Option<TlsAcceptor>,
    pub h2c: bool,
    pub backend: Arc<Backend>,
    pub compression: compress::Policy,
    pub log: Logger,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Tunnel `CONNECT` to the backend's servers (else 405).
    pub connect: bool,
    /// The forwarding headers its requests get (`forwarded_headers`).
    pub forwarded_headers: ForwardedHeaders,
    /// `h3=":PORT"; ma=86400` when the frontend serves HTTP/3: sent on
    /// every response of its TCP listener.
    pub alt_svc: Option<HeaderValue>,
    /// Where its answered requests are counted.
    pub metrics: crate::api::RouteMetrics,
    /// `[[frontend.rule]]`s: requests they match go to their backend
    /// (metrics and log included), with their path rewritten.
    pub rules: Rules,
    /// Its request budget (`rate_limit`): over it, 429.
    pub rate_limit: Option<rate_limit::Limiter>,
    /// The address clients connect to (`bind`).
    pub bind: SocketAddr,
    /// Each connection starts with a PROXY header (`accept_proxy`).
    pub accept_proxy: bool,
    /// Ask each connection's socket for the address it reached: `bind` is
    /// a wildcard and some backend's PROXY headers (`send_proxy`) name it.
    pub local_from_socket: bool,
}

impl Frontend {
    pub(super) fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The backend of a request on `route`: everything about a request
    /// (servers, retries, timeouts, TLS, log line) asks here.
    #[inline]
    pub(super) fn backend_for(&self, route: Route) -> &Backend {
        self.rules
            .target(route)
            .map_or(&*self.backend, |t| &*t.backend)
    }

    /// Where a request on `route` is counted (its backend's label).
    #[inline]
    fn metrics_for(&self, route: Route) -> &crate::api::RouteMetrics {
        self.rules
            .target(route)
            .map_or(&self.metrics, |t| &t.metrics)
    }

    /// Applies the rules to a request's `uri` and `headers` (rewriting
    /// its path if one says so) and returns its route; without rules,
    /// only the empty check.
    pub(super) fn route(&self, uri: &mut Uri, headers: &HeaderMap) -> Route {
        if self.rules.is_empty() {
            return Route::DEFAULT;
        }
        self.rules.apply(uri, headers)
    }

    /// [`Frontend::route`] for a whole request.
    pub(super) fn route_request<B>(&self, req: &mut Request<B>) -> Route {
        // The URI is taken out so that the headers can be read beside it.
        let mut uri = std::mem::take(req.uri_mut());
        let route = self.route(&mut uri, req.headers());
        *req.uri_mut() = uri;
        route
    }
}

/// What every frontend shares.
pub struct Shared {
    pub view: watch::Receiver<Arc<Snapshot>>,
    pub load: Arc<Load>,
    pub pool: Arc<Pool>,
}

/// One client connection.
pub struct ConnCtx {
    pub fe: Arc<Frontend>,
    pub shared: Arc<Shared>,
    pub client: SocketAddr,
    /// The address the client connected to (`send_proxy` headers name it).
    pub local: SocketAddr,
    pub state: Arc<ConnState>,
    /// Server connections that carry this client's PROXY header.
    pub private_pools: proxy_protocol::PrivatePools,
    /// What its requests add to the forwarding headers.
    pub forwarded: headers::Forwarded,
    /// `client` as the access log writes it, formatted for the
    /// connection's first line.
    client_text: OnceLock<String>,
}

impl ConnCtx {
    pub fn new(
        fe: Arc<Frontend>,
        shared: Arc<Shared>,
        client: SocketAddr,
        local: SocketAddr,
        state: Arc<ConnState>,
    ) -> Self {
        Self::with_private_pools(fe, shared, client, local, state, Default::default())
    }

    /// [`ConnCtx::new`] with `private_pools` that outlive it: an HTTP/3
    /// connection makes a context per request (each request gets the
    /// frontend as it is then) and shares its pools between them.
    pub fn with_private_pools(
        fe: Arc<Frontend>,
        shared: Arc<Shared>,
        client: SocketAddr,
        local: SocketAddr,
        state: Arc<ConnState>,
        private_pools: proxy_protocol::PrivatePools,
    ) -> Self {
        let forwarded = headers::Forwarded::new(client.ip(), fe.scheme(), fe.forwarded_headers);
        ConnCtx {
            fe,
            shared,
            client,
            local,
            state,
            private_pools,
            forwarded,
            client_text: OnceLock::new(),
        }
    }

    /// Where a request to `be`'s servers gets its connection: the shared
    /// pool, or with `send_proxy` this client connection's own one, whose
    /// new connections start with the returned PROXY header.
    pub(super) fn upstream(&self, be: &Backend) -> (&Arc<Pool>, Option<SendProxy>) {
        match self.send_proxy(be) {
            None => (&self.shared.pool, None),
            Some(p) => (self.private_pools.get(p.version), Some(p)),
        }
    }

    /// The PROXY header new connections to `be`'s servers start with
    /// (`send_proxy`), if any.
    pub(super) fn send_proxy(&self, be: &Backend) -> Option<SendProxy> {
        be.settings.send_proxy.map(|version| SendProxy {
            version,
            client: self.client,
            local: self.local,
        })
    }
}

/// Methods whose repetition has the effect of one request (RFC 9110 §9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The access log fields known before the response body ends. Cheap to
/// fill on every request: names and the request line are only looked up
/// and formatted when a line is written.
pub(super) struct Entry {
    received: Instant,
    cx: Arc<ConnCtx>,
    method: Method,
    /// The request target as received (`CONNECT`: the authority).
    target: Uri,
    version: Version,
    /// Which backend serves it (by the frontend's rules).
    pub(super) route: Route,
    /// The snapshot the server was chosen from, and the server's id.
    pub(super) server: Option<(Arc<Snapshot>, u32)>,
    pub(super) status: u16,
    accept: Duration,
    pub(super) connect: Option<Duration>,
    pub(super) response: Option<Duration>,
    pub(super) retries: u32,
    pub(super) error: Option<String>,
}

impl Entry {
    /// An entry for a request just received on this connection.
    fn new<B>(cx: &Arc<ConnCtx>, received: Instant, accept: Duration, req: &Request<B>) -> Self {
        Entry {
            received,
            cx: cx.clone(),
            method: req.method().clone(),
            target: req.uri().clone(),
            version: req.version(),
            route: Route::DEFAULT,
            server: None,
            status: 0,
            accept,
            connect: None,
            response: None,
            retries: 0,
            error: None,
        }
    }

    /// `METHOD TARGET VERSION`, made safe for one log line.
    pub(super) fn request_line(&self) -> String {
        let mut line = String::with_capacity(64);
        self.push_request_line(&mut line);
        line
    }

    fn push_request_line(&self, out: &mut String) {
        // CONNECT names an authority, extended CONNECT (RFC 8441) a path.
        let target = if self.method == Method::CONNECT && self.target.path_and_query().is_none() {
            self.target.authority().map_or("-", |a| a.as_str())
        } else {
            self.target.path_and_query().map_or("/", |p| p.as_str())
        };
        out.push_str(self.method.as_str());
        out.push(' ');
        access_log::push_sanitized(out, target);
        out.push(' ');
        out.push_str(match self.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        });
    }

    fn server_name(&self) -> &str {
        self.server
            .as_ref()
            .and_then(|(snap, id)| snap.servers.iter().find(|s| s.id == *id))
            .map_or("-", |s| s.name.as_str())
    }

    /// The log line of the request, `total` after it was received, with
    /// `bytes` of body sent.
    fn line(&self, total: Duration, bytes: u64) -> String {
        let mut line = String::with_capacity(192);
        // The wall clock is read here, only when a line is written.
        let received = SystemTime::now().checked_sub(total).unwrap_or(UNIX_EPOCH);
        access_log::push_timestamp(&mut line, received);
        line.push(' ');
        line.push_str(
            self.cx
                .client_text
                .get_or_init(|| self.cx.client.to_string()),
        );
        line.push(' ');
        line.push_str(&self.cx.fe.name);
        line.push(' ');
        line.push_str(&self.cx.fe.backend_for(self.route).name);
        line.push('/');
        line.push_str(self.server_name());
        line.push_str(" \"");
        self.push_request_line(&mut line);
        line.push_str("\" ");
        access_log::push_int(&mut line, self.status.into());
        line.push(' ');
        access_log::push_int(&mut line, bytes);
        for (name, value) in [
            (" accept=", Some(self.accept)),
            (" connect=", self.connect),
            (" response=", self.response),
            (" total=", Some(total)),
        ] {
            line.push_str(name);
            access_log::push_ms(&mut line, value);
        }
        line.push_str(" retries=");
        access_log::push_int(&mut line, self.retries.into());
        if let Some(e) = &self.error {
            line.push_str(" error=\"");
            access_log::push_sanitized(&mut line, e);
            line.push('"');
        }
        line
    }
}

/// The access log line for a connection the watchdog cut before a request.
pub fn cut_line(fe: &Frontend, client: SocketAddr, why: &str) -> String {
    cut_line_with(fe, client, 408, why)
}

/// The access log line for a connection closed before a request, with
/// the status it is logged with (none was sent).
pub fn cut_line_with(fe: &Frontend, client: SocketAddr, status: u16, why: &str) -> String {
    format!(
        "{} {client} {} {}/- \"-\" {status} 0 accept=- connect=- response=- total=- retries=0 error=\"{why}\"",
        access_log::timestamp(SystemTime::now()),
        fe.name,
        fe.backend.name,
    )
}

/// The answer to a request, on its way.
pub type Handling = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// A request from a hyper connection (HTTP/1.1, HTTP/2): upgrades,
/// `CONNECT` and WebSocket over HTTP/2 are handled here, everything else
/// by [`forward`]. Boxed: the proxy's future is large (2.4 KB), and
/// hyper moves the service future around (HTTP/2 spawns it as a task);
/// made directly in its box, it is not copied on the way.
pub fn handle(cx: Arc<ConnCtx>, mut req: Request<Incoming>) -> Handling {
    let started = Started::now(&cx.state);
    if let Some(wait) = rate_limit::exceeded(&cx) {
        let too_many = rate_limit::too_many_requests(&cx, &req, started, wait);
        return Box::pin(std::future::ready(too_many));
    }
    if websocket::is_extended_connect(&req) {
        Box::pin(websocket::handle(cx, req, started))
    } else if req.method() == Method::CONNECT {
        Box::pin(connect(cx, req, started))
    } else {
        let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        Box::pin(forward(cx, req.map(body::boxed), started, client_upgrade))
    }
}

/// A request as its connection saw it start: counted on the connection
/// until the guard drops, after `accept` idle, received at `received`.
pub(super) struct Started {
    pub(super) guard: RequestGuard,
    pub(super) accept: Duration,
    pub(super) received: Instant,
}

impl Started {
    /// A request received now on the connection of `state` (one clock
    /// read serves both).
    pub(super) fn now(state: &Arc<ConnState>) -> Started {
        let received = Instant::now();
        super::slice::checkpoint(received);
        let (guard, accept) = state.request_started_at(received);
        Started {
            guard,
            accept,
            received,
        }
    }

    /// The request's log entry, and the guard that counts it on its
    /// connection.
    pub(super) fn entry<B>(self, cx: &Arc<ConnCtx>, req: &Request<B>) -> (Entry, RequestGuard) {
        (Entry::new(cx, self.received, self.accept, req), self.guard)
    }
}

/// The proxy proper, for any client protocol: headers rewritten, a server
/// chosen and the request sent (retried when safe), the response
/// streamed back, compressed when it qualifies, and logged when it ends.
/// `client_upgrade` (HTTP/1.1 `Upgrade`, hyper only) tunnels the
/// connection after a 101.
pub(super) async fn forward(
    cx: Arc<ConnCtx>,
    req: Request<Body>,
    started: Started,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<Body> {
    let upgrade = client_upgrade.is_some();
    let (mut entry, guard) = started.entry(&cx, &req);
    let (mut parts, incoming) = req.into_parts();
    entry.route = cx.fe.route(&mut parts.uri, &parts.headers);
    let encoding = cx.fe.compression.negotiate(&parts.headers, &parts.method);
    let host = rewrite_request(&mut parts, upgrade);

    let no_body = incoming.is_end_stream();
    let replayable = no_body && idempotent(&parts.method);
    let mut body = (!no_body).then_some(incoming);

    let be = cx.fe.backend_for(entry.route);
    let settings = &be.settings;
    let (pool, send_proxy) = cx.upstream(be);
    let snap = cx.shared.view.borrow().clone();
    let key = Key {
        client: cx.client.ip(),
        path: parts.uri.path(),
    };
    let mut tried: SmallVec<[u32; 4]> = SmallVec::new();
    let mut free_retries = 2; // stale pooled connections, not counted
    let mut failure: Option<(StatusCode, String)> = None;
    let outcome = loop {
        let Some((pick, in_flight)) = next_attempt(&cx, &snap, key, &mut tried, &mut entry) else {
            if failure.is_none() {
                failure = Some((
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no server available".into(),
                ));
            }
            break None;
        };
        let started = Instant::now();
        let conn = if upgrade {
            Box::pin(upstream::connect_upgradable(
                pick.address,
                ms(settings.connect_timeout_ms),
                be.tls.as_ref(),
                send_proxy.as_ref(),
            ))
            .await
            .map(|sender| Conn::H1 {
                sender,
                reused: false,
            })
        } else {
            pool.checkout(
                started,
                pick.address,
                settings.proto,
                ms(settings.connect_timeout_ms),
                be.tls.as_ref(),
                send_proxy.as_ref(),
            )
            .await
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                warn!(frontend = %cx.fe.name, server = %pick.key, "{e}; trying another server");
                failure = Some((StatusCode::BAD_GATEWAY, e.to_string()));
                continue;
            }
        };
        let reused = conn.reused();
        // A pooled connection took no time to get: one clock read less.
        let sent = if reused { started } else { Instant::now() };
        entry.connect = Some(sent - started);
        let req_body = if no_body {
            body::empty()
        } else {
            match body.take() {
                Some(b) => b,
                None => break None, // consumed by a failed attempt
            }
        };
        // The request and the exchange are built inside the timeout: a
        // value moved into a future from a variable of this one keeps its
        // own slot in this one's state (over 1 KB, in every request's box).
        let deadline = sent + ms(settings.response_timeout_ms);
        let result = tokio::time::timeout_at(deadline.into(), async {
            let upstream_req = build(&cx, &parts, req_body, settings.proto, pick, host.as_ref());
            let resp =
                upstream::send(pool, pick.address, be.tls.as_ref(), conn, upstream_req).await?;
            Ok(body::read_small(resp).await)
        })
        .await;
        match result {
            Ok(Ok(Ok(resp))) => {
                entry.response = Some(sent.elapsed());
                break Some((resp, pick, in_flight));
            }
            Ok(Ok(Err(e))) => {
                warn!(frontend = %cx.fe.name, server = %pick.key, "reading the response body: {e}");
                failure = Some((
                    StatusCode::BAD_GATEWAY,
                    format!("server response body: {e}"),
                ));
                break None;
            }
            Err(_) => {
                warn!(
                    frontend = %cx.fe.name, server = %pick.key,
                    "no response within {} ms: 504 to the client", settings.response_timeout_ms
                );
                failure = Some((
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "server response timeout ({} ms)",
                        settings.response_timeout_ms
                    ),
                ));
                break None;
            }
            Ok(Err((e, unsent))) => {
                let stale = reused && (unsent.is_some() || replayable) && free_retries > 0;
                if let Some(r) = unsent {
                    if !no_body {
                        body = Some(r.into_body());
                    }
                } else if !replayable {
                    warn!(frontend = %cx.fe.name, server = %pick.key, "request failed after it was sent: {e}");
                    failure = Some((StatusCode::BAD_GATEWAY, format!("server error: {e}")));
                    break None;
                }
                if stale {
                    // A pooled connection the server had closed: try the
                    // same server again on a new one, without counting it.
                    debug!(server = %pick.key, "stale pooled connection: {e}");
                    free_retries -= 1;
                    tried.pop();
                } else {
                    warn!(frontend = %cx.fe.name, server = %pick.key, "request failed: {e}; trying another server");
                }
                failure = Some((StatusCode::BAD_GATEWAY, format!("server error: {e}")));
            }
        }
    };

    let Some((resp, pick, in_flight)) = outcome else {
        let (status, why) =
            failure.unwrap_or((StatusCode::BAD_GATEWAY, "all attempts failed".into()));
        return refuse(&cx, entry, guard, status, why);
    };

    entry.status = resp.status().as_u16();
    let (resp, in_flight) = respond(&cx, resp, pick, in_flight, client_upgrade, encoding);
    finish(resp, entry, in_flight, guard)
}

/// The server for the next attempt at a request: `None` once the
/// backend's retries are used up or no server is left to try. The server
/// goes into `tried` and `entry`, and the attempt counts as in flight to
/// it until the returned guard drops.
pub(super) fn next_attempt<'s>(
    cx: &ConnCtx,
    snap: &'s Arc<Snapshot>,
    key: Key<'_>,
    tried: &mut SmallVec<[u32; 4]>,
    entry: &mut Entry,
) -> Option<(Pick<'s>, InFlight)> {
    let be = cx.fe.backend_for(entry.route);
    if tried.len() as u32 > be.settings.retries {
        return None;
    }
    let pick = be.balancer.pick(snap, key, tried, &cx.shared.load)?;
    tried.push(pick.id);
    entry.retries = tried.len() as u32 - 1;
    entry.server = Some((snap.clone(), pick.id));
    Some((pick, cx.shared.load.start(pick.id)))
}

/// Takes the hop-by-hop headers out of the request (`Upgrade` kept for a
/// WebSocket handshake). Returns the host the client asked for (`Host`,
/// or the URI's authority).
fn rewrite_request(parts: &mut request::Parts, upgrade: bool) -> Option<HeaderValue> {
    let host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    host
}

/// The server's response as the client gets it: hop-by-hop headers gone
/// and compressed when it qualifies; a `101` to an upgrade request starts
/// the tunnel between the two upgraded connections, which then holds the
/// request's in-flight count (returned otherwise, for the response body).
fn respond(
    cx: &ConnCtx,
    resp: Response<Body>,
    pick: Pick<'_>,
    in_flight: InFlight,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    encoding: Option<compress::Encoding>,
) -> (Response<Body>, Option<InFlight>) {
    let (mut rparts, rbody) = resp.into_parts();
    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, rparts.status)
    {
        headers::strip_hop_by_hop(&mut rparts.headers, true);
        // The upgraded response has an empty body; the tunnel carries the
        // rest.
        let mut resp = Response::from_parts(rparts, body::empty());
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let label = pick.key.clone();
        tokio::spawn(tunnel(client_upgrade, upstream_upgrade, in_flight, label));
        return (resp, None);
    }
    headers::strip_hop_by_hop(&mut rparts.headers, false);
    let resp = Response::from_parts(rparts, rbody);
    let resp = match encoding {
        Some(enc) => cx.fe.compression.apply(enc, resp),
        None => resp,
    };
    (resp, Some(in_flight))
}

/// `CONNECT host:port` (HTTP/1.1, `connect = true` on the frontend): the
/// target must be one of the backend's servers (403 otherwise) and up
/// (503); xlb connects to it, answers 200, then copies bytes both ways
/// until either side closes. Disabled, or over HTTP/2: 405.
async fn connect(cx: Arc<ConnCtx>, mut req: Request<Incoming>, started: Started) -> Response<Body> {
    let target = req.uri().authority().map(|a| a.as_str().to_string());
    let (mut entry, guard) = started.entry(&cx, &req);
    entry.route = cx.fe.route_request(&mut req);
    let be = cx.fe.backend_for(entry.route);
    if !cx.fe.connect {
        let why = "CONNECT is not enabled on this frontend".to_string();
        return refuse(&cx, entry, guard, StatusCode::METHOD_NOT_ALLOWED, why);
    }
    if req.version() != Version::HTTP_11 {
        let why = "CONNECT is only tunnelled over HTTP/1.1".to_string();
        return refuse(&cx, entry, guard, StatusCode::METHOD_NOT_ALLOWED, why);
    }
    let snap = cx.shared.view.borrow().clone();
    let addr: Option<SocketAddr> = target.as_deref().and_then(|t| t.parse().ok());
    let Some(server) = addr.and_then(|a| {
        snap.servers
            .iter()
            .find(|s| s.backend == be.name && s.address == a)
    }) else {
        let why = format!(
            "CONNECT target {} is not a server of backend {}",
            target.as_deref().unwrap_or("-"),
            be.name
        );
        return refuse(&cx, entry, guard, StatusCode::FORBIDDEN, why);
    };
    entry.server = Some((snap.clone(), server.id));
    if !server.is_live() {
        let why = format!("server {} is not up", server.key);
        return refuse(&cx, entry, guard, StatusCode::SERVICE_UNAVAILABLE, why);
    }
    let in_flight = cx.shared.load.start(server.id);
    let started = Instant::now();
    let limit = ms(be.settings.connect_timeout_ms);
    let send_proxy = cx.send_proxy(be);
    let mut stream = match upstream::connect_tcp(server.address, limit, send_proxy.as_ref()).await {
        Ok(s) => s,
        Err(e) => return refuse(&cx, entry, guard, StatusCode::BAD_GATEWAY, e.to_string()),
    };
    entry.connect = Some(started.elapsed());
    entry.status = StatusCode::OK.as_u16();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let label = server.key.clone();
    tokio::spawn(async move {
        let _in_flight = in_flight;
        match on_upgrade.await {
            Ok(up) => {
                let mut up = TokioIo::new(up);
                if let Err(e) = tokio::io::copy_bidirectional(&mut up, &mut stream).await {
                    debug!(server = %label, "CONNECT tunnel closed: {e}");
                }
            }
            Err(e) => debug!(server = %label, "CONNECT upgrade failed: {e}"),
        }
    });
    finish(Response::new(body::empty()), entry, None, guard)
}

/// xlb's own answer to a request it ends (`status` and why): a warning,
/// a short body, and the access log line with `error="why"`.
pub(super) fn refuse(
    cx: &ConnCtx,
    mut entry: Entry,
    guard: RequestGuard,
    status: StatusCode,
    why: String,
) -> Response<Body> {
    warn!(
        frontend = %cx.fe.name, backend = %cx.fe.backend_for(entry.route).name, client = %cx.client,
        "{} {}: {why}", status.as_u16(), entry.request_line()
    );
    entry.status = status.as_u16();
    let resp = body::error_response(status, &why);
    entry.error = Some(why);
    finish(resp, entry, None, guard)
}

/// The end of a request xlb drops without an answer (its stream is
/// reset): the access log line, logged with `status` (none was sent) and
/// `error="why"`, written now. Not counted in the metrics (no answer).
pub(super) fn unanswered(mut entry: Entry, guard: RequestGuard, status: StatusCode, why: String) {
    entry.status = status.as_u16();
    entry.error = Some(why);
    let log = &entry.cx.fe.log;
    if log.enabled() {
        log.write(entry.line(entry.received.elapsed(), 0));
    }
    drop(guard);
}

/// Wraps the body so the log line is written when it ends.
pub(super) fn finish(
    resp: Response<Body>,
    entry: Entry,
    in_flight: Option<InFlight>,
    guard: RequestGuard,
) -> Response<Body> {
    let (parts, inner) = resp.into_parts();
    let logged = LoggedBody {
        inner,
        bytes: 0,
        entry: Some(entry),
        _in_flight: in_flight,
        _guard: guard,
    };
    Response::from_parts(parts, Body::new(logged))
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The request as the server gets it: origin-form for HTTP/1.1 (with a
/// `Host`), absolute URI (`:authority`) for HTTP/2.
fn build(
    cx: &ConnCtx,
    parts: &request::Parts,
    body: Body,
    proto: UpstreamProto,
    pick: Pick<'_>,
    host: Option<&HeaderValue>,
) -> Request<Body> {
    let path = || {
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"))
    };
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.headers_mut() = outgoing_headers(cx, &parts.headers, host);
    match proto {
        UpstreamProto::H1 => {
            *req.version_mut() = Version::HTTP_11;
            *req.uri_mut() = if parts.uri.authority().is_none() {
                // Origin-form already (the usual case): shared, not parsed again.
                parts.uri.clone()
            } else {
                Uri::from(path())
            };
            if !req.headers().contains_key(header::HOST) {
                let h = host
                    .cloned()
                    .or_else(|| HeaderValue::from_str(&pick.address.to_string()).ok());
                if let Some(v) = h {
                    req.headers_mut().insert(header::HOST, v);
                }
            }
        }
        UpstreamProto::H2 => {
            *req.version_mut() = Version::HTTP_2;
            // `:authority` is the client's host, or the server's address
            // when there is none or it is not a valid authority.
            let authority = host
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .or_else(|| Authority::try_from(pick.address.to_string()).ok());
            let mut uri = Uri::builder().scheme("http").path_and_query(path());
            if let Some(a) = authority {
                uri = uri.authority(a);
            }
            *req.uri_mut() = uri.build().unwrap_or_else(|_| Uri::from_static("/"));
            req.headers_mut().remove(header::HOST);
        }
    }
    req
}

/// The client's headers (hop-by-hop ones already gone) with what the
/// frontend adds (`X-Forwarded-For`, `Forwarded`, ...), in a map sized for
/// all of them and a `Host`: a copy grown afterwards would move every
/// header to a new allocation on every request.
fn outgoing_headers(cx: &ConnCtx, client: &HeaderMap, host: Option<&HeaderValue>) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(client.len() + headers::MAX_ADDED + 1);
    for (name, value) in client {
        headers.append(name.clone(), value.clone());
    }
    headers::add_forwarded(&mut headers, &cx.forwarded, host);
    headers
}

/// Copies bytes both ways between the upgraded client and server
/// connections until either side closes; `held` (counts, guards) lives
/// as long as the tunnel.
pub(super) async fn tunnel<Held>(
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
    held: Held,
    label: String,
) {
    let _held = held;
    let (c, s) = match tokio::try_join!(client, server) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(server = %label, "upgrade failed: {e}");
            return;
        }
    };
    let (mut c, mut s) = (TokioIo::new(c), TokioIo::new(s));
    if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut s).await {
        debug!(server = %label, "tunnel closed: {e}");
    }
}

/// The response body on its way to the client: counts bytes, and writes
/// the access log line when it ends or is dropped (client gone).
struct LoggedBody {
    inner: Body,
    bytes: u64,
    /// Also holds the connection, whose frontend has the log.
    entry: Option<Entry>,
    _in_flight: Option<InFlight>,
    _guard: RequestGuard,
}

impl LoggedBody {
    fn done(&mut self) {
        if let Some(e) = self.entry.take() {
            let total = e.received.elapsed();
            e.cx.fe.metrics_for(e.route).observe(e.status, total);
            let log = &e.cx.fe.log;
            if log.enabled() {
                log.write(e.line(total, self.bytes));
            }
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.done();
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Err(e))) => {
                if let Some(entry) = &mut self.entry {
                    entry.error = Some(format!("response body: {e}"));
                }
                self.done();
            }
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
