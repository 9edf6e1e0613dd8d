//! The L7 tier: HTTP/1.1 and HTTP/2 reverse proxying for `[[frontend]]`
//! listeners, on the same server view (health, admin state, weights) as
//! the kernel tier.
//!
//! - [`workers`]: one event loop per thread; accepting and spreading
//!   connections over them.
//! - [`slice`]: lets the kernel end a busy worker's time slice on time.
//! - [`listener`]: TLS handshake, HTTP version, connection watchdog.
//! - [`conn`]: per-connection clock (header and idle timeouts).
//! - [`cork`]: write coalescing for HTTP/2 client connections.
//! - [`tls`]: certificates, SNI, ALPN; the `xlb check` TLS hook.
//! - [`h3`]: HTTP/3 (QUIC) endpoints of `http3 = true` frontends.
//! - [`proxy`]: the request lifecycle (retries, timeouts, errors, logging).
//! - [`rate_limit`]: a frontend's request budget (429 over it).
//! - [`rules`]: `[[frontend.rule]]` content switching and path rewrites.
//! - [`balance`]: the balancing algorithms over the server snapshot.
//! - [`upstream`]: server connections (pooled HTTP/1.1, shared HTTP/2).
//! - [`proxy_protocol`]: PROXY headers read from clients (`accept_proxy`)
//!   and written to servers (`send_proxy`).
//! - [`websocket`]: WebSocket over HTTP/2 (RFC 8441 extended CONNECT).
//! - [`headers`]: hop-by-hop removal, `X-Forwarded-*`, `Forwarded`.
//! - [`compress`]: gzip/brotli by `Accept-Encoding`, streamed.
//! - [`access_log`]: the per-request log line and its writer thread.
//! - [`syslog`]: the access log as RFC 5424 datagrams.
//! - [`body`]: the common body type and xlb's own short answers.

pub mod access_log;
pub mod balance;
pub mod body;
pub mod compress;
mod conn;
mod cork;
mod h3;
pub mod headers;
mod listener;
mod proxy;
pub mod proxy_protocol;
pub mod rate_limit;
mod rules;
mod slice;
pub mod syslog;
pub mod tls;
pub mod upstream;
mod websocket;
mod workers;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::watch;
use tracing::info;

use crate::{
    config::{AccessLog, Checks, Config},
    registry::Snapshot,
};

/// The hasher of the L7 tier's maps: their keys come from the config or
/// from xlb itself, never from clients.
type FastHash = foldhash::fast::RandomState;

/// The config checks `xlb check` and `xlb run` add: TLS certificates and
/// keys must load and belong together; backend `tls_ca` files must hold
/// CA certificates.
pub fn config_checks() -> Checks {
    Checks {
        tls: Some(tls::check),
        ca: Some(tls::check_ca),
    }
}

/// Pending connections a listener queues before the kernel refuses more.
const LISTEN_BACKLOG: i32 = 4096;

/// The running L7 tier. Dropping it stops its threads.
pub struct L7 {
    listeners: HashMap<SocketAddr, Arc<std::net::TcpListener>>,
    workers: workers::Workers,
    maglev_size: u32,
    /// The access logs of the running frontends, by destination.
    logs: HashMap<AccessLog, access_log::Logger>,
    /// The HTTP/3 endpoints by `bind` (sockets on worker 0, connections
    /// on every worker, see `h3`).
    quic: HashMap<SocketAddr, h3::Endpoint>,
    /// Each frontend gets its metrics handle from here.
    metrics: crate::api::HttpMetrics,
}

impl L7 {
    /// Starts the worker threads (`l7_threads`, default one per CPU),
    /// binds every frontend's listener and starts serving.
    pub async fn start(
        config: &Config,
        view: watch::Receiver<Arc<Snapshot>>,
        metrics: crate::api::HttpMetrics,
        load: Arc<balance::Load>,
    ) -> anyhow::Result<L7> {
        let threads = match config.global.l7_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = workers::Workers::start(threads, || proxy::Shared {
            view: view.clone(),
            load: load.clone(),
            pool: Arc::new(upstream::Pool::default()),
        })
        .context("starting the L7 threads")?;
        let mut l7 = L7 {
            listeners: HashMap::new(),
            workers,
            maglev_size: config.global.maglev_size,
            logs: HashMap::new(),
            quic: HashMap::new(),
            metrics,
        };
        let staged = l7.prepare(config).await?;
        l7.commit(staged);
        Ok(l7)
    }

    /// The client connections (TCP and QUIC) open on each L7 thread, from
    /// thread 0 (`show info`).
    pub fn open_per_thread(&self) -> Vec<usize> {
        self.workers.open()
    }

    /// First half of applying a (re)loaded config: builds every frontend
    /// (TLS, access logs) and binds the listeners of new `bind` addresses,
    /// changing nothing that runs; an error leaves the running tier as it
    /// was. [`L7::commit`] then switches over.
    pub async fn prepare(&mut self, config: &Config) -> anyhow::Result<Staged> {
        let mut backends: HashMap<&str, Arc<proxy::Backend>> = HashMap::new();
        for b in &config.backend {
            let tls =
                b.l7.tls
                    .as_ref()
                    .map(|t| tls::Upstream::new(&b.name, t, b.l7.proto))
                    .transpose()
                    .with_context(|| format!("backend {}: TLS towards the servers", b.name))?;
            backends.insert(
                b.name.as_str(),
                Arc::new(proxy::Backend {
                    name: b.name.clone(),
                    settings: b.l7.clone(),
                    balancer: balance::Balancer::new(&b.name, b.balance, self.maglev_size),
                    tls,
                }),
            );
        }
        // A wildcard bind learns each connection's local address from its
        // socket only when a PROXY header may have to name it.
        let any_send_proxy = config.backend.iter().any(|b| b.l7.send_proxy.is_some());
        let mut frontends = Vec::new();
        let mut listeners = HashMap::new();
        let mut quic = Vec::new();
        let mut quic_bound = HashMap::new();
        let mut logs: HashMap<AccessLog, access_log::Logger> = HashMap::new();
        for f in &config.frontend {
            let backend = backends
                .get(f.default_backend.as_str())
                .with_context(|| {
                    format!("frontend {}: unknown backend {}", f.name, f.default_backend)
                })?
                .clone();
            let certs = f
                .tls
                .as_ref()
                .map(tls::certificates)
                .transpose()
                .with_context(|| format!("frontend {}: TLS", f.name))?;
            let tls = certs
                .clone()
                .map(tls::acceptor_with)
                .transpose()
                .with_context(|| format!("frontend {}: TLS", f.name))?;
            let log = match logs.get(&f.access_log) {
                Some(l) => l.clone(),
                None => {
                    // A running log keeps its writer (files are opened
                    // anew below); a new one starts one.
                    let l = match self.logs.get(&f.access_log) {
                        Some(l) => l.clone(),
                        None => access_log::Logger::open(
                            &f.access_log,
                            self.metrics.access_log_dropped(),
                        )
                        .with_context(|| format!("frontend {}: opening the access log", f.name))?,
                    };
                    logs.insert(f.access_log.clone(), l.clone());
                    l
                }
            };
            let fe = Arc::new(proxy::Frontend {
                metrics: self.metrics.route(&f.name, &f.default_backend),
                name: f.name.clone(),
                tls,
                h2c: f.h2c,
                backend,
                compression: compress::Policy {
                    encodings: f
                        .compression
                        .iter()
                        .filter_map(|c| compress::Encoding::from_config(c))
                        .collect(),
                    min_bytes: f.compression_min_bytes,
                },
                log,
                header_timeout: Duration::from_millis(f.header_timeout_ms),
                idle_timeout: Duration::from_millis(f.idle_timeout_ms),
                max_header_bytes: f.max_header_bytes,
                max_headers: f.max_headers,
                connect: f.connect,
                forwarded_headers: f.forwarded_headers,
                bind: f.bind,
                accept_proxy: f.accept_proxy,
                local_from_socket: any_send_proxy && f.bind.ip().is_unspecified(),
                alt_svc: f.http3.then(|| h3::alt_svc(f.bind.port())),
                rate_limit: f
                    .rate_limit
                    .as_ref()
                    .map(|r| rate_limit::Limiter::start(r, self.metrics.rate_limited(&f.name))),
                rules: rules::Rules::build(&f.rules, &f.name, &backends, &self.metrics)?,
            });
            if f.http3 {
                let certs = certs
                    .clone()
                    .with_context(|| format!("frontend {}: http3 = true needs tls", f.name))?;
                let config = h3::server_config(certs, fe.idle_timeout, f.http3_0rtt)
                    .with_context(|| format!("frontend {}: HTTP/3", f.name))?;
                if !self.quic.contains_key(&f.bind) {
                    let runtime = self.workers.spread().first();
                    let endpoint = h3::Endpoint::bind(f.bind, config.clone(), fe.clone(), runtime)
                        .with_context(|| {
                            format!("frontend {}: HTTP/3 (QUIC) on UDP {}", f.name, f.bind)
                        })?;
                    quic_bound.insert(f.bind, endpoint);
                }
                quic.push((f.bind, config, fe.clone()));
            }
            let listener = match self.listeners.get(&f.bind) {
                Some(l) => l.clone(),
                None => Arc::new(
                    bind(f.bind)
                        .with_context(|| format!("frontend {}: binding {}", f.name, f.bind))?,
                ),
            };
            listeners.insert(f.bind, listener.clone());
            frontends.push((fe, listener, f.bind));
        }
        // Last, after all else here that can fail: the kept log files
        // opened anew at their paths (a file logrotate moved away is
        // closed at commit; dropping `Staged` closes the new ones).
        let mut reopened = Vec::new();
        for (dest, log) in &logs {
            let AccessLog::File(path) = dest else {
                continue;
            };
            if self.logs.contains_key(dest) {
                let file = access_log::reopen(path)
                    .with_context(|| format!("access log {}: opening it again", path.display()))?;
                reopened.push((log.clone(), file));
            }
        }
        Ok(Staged {
            frontends,
            listeners,
            quic,
            quic_bound,
            logs,
            reopened,
        })
    }

    /// Second half: new connections get the staged frontends; listeners of
    /// `bind` addresses kept stay bound (no connection is refused
    /// meanwhile), gone ones close; open connections keep their old
    /// settings. HTTP/3 endpoints likewise: a kept `bind` keeps its
    /// endpoint and QUIC connections, a gone one closes. Access log files
    /// kept switch to their reopened file (for every connection, old ones
    /// too); a log no frontend names any more ends with its last
    /// connection.
    pub fn commit(&mut self, staged: Staged) {
        let Staged {
            frontends,
            listeners,
            quic,
            mut quic_bound,
            logs,
            reopened,
        } = staged;
        for (log, file) in reopened {
            log.switch_to(file);
        }
        self.logs = logs;
        let mut serving = Vec::with_capacity(frontends.len());
        for (fe, listener, bind) in frontends {
            info!(
                frontend = %fe.name,
                %bind,
                tls = fe.tls.is_some(),
                h2c = fe.h2c,
                backend = %fe.backend.name,
                "L7 frontend listening"
            );
            serving.push(workers::Serving { fe, listener });
        }
        self.workers.serve(&serving);
        self.listeners = listeners;
        let mut old = std::mem::take(&mut self.quic);
        let spread = self.workers.spread().clone();
        for (bind, config, fe) in quic {
            let Some(mut endpoint) = quic_bound.remove(&bind).or_else(|| old.remove(&bind)) else {
                continue;
            };
            endpoint.update(config, fe.clone());
            endpoint.start(&spread);
            info!(frontend = %fe.name, %bind, "L7 frontend serving HTTP/3 (QUIC, UDP)");
            self.quic.insert(bind, endpoint);
        }
        // What is left in `old` belonged to removed frontends: closed here.
        drop(old);
    }
}

/// Frontends built and listeners bound by [`L7::prepare`], not serving yet.
pub struct Staged {
    frontends: Vec<(Arc<proxy::Frontend>, Arc<std::net::TcpListener>, SocketAddr)>,
    listeners: HashMap<SocketAddr, Arc<std::net::TcpListener>>,
    /// The HTTP/3 frontends: bind, QUIC settings, frontend.
    quic: Vec<(SocketAddr, h3::Settings, Arc<proxy::Frontend>)>,
    /// HTTP/3 endpoints of new `bind` addresses, not accepting yet.
    quic_bound: HashMap<SocketAddr, h3::Endpoint>,
    /// The access logs the staged frontends write to.
    logs: HashMap<AccessLog, access_log::Logger>,
    /// Running file logs and their files opened anew, to switch to.
    reopened: Vec<(access_log::Logger, access_log::Reopened)>,
}

/// A listening socket for `addr`, non-blocking, for every worker to
/// accept on.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
