//! The L7 tier's request metrics: `xlb_http_requests_total{frontend,
//! backend,code}` and `xlb_http_request_duration_seconds{frontend,backend}`,
//! `xlb_http_rate_limited_total{frontend}` (requests a frontend's
//! `rate_limit` answered 429, see [`crate::l7::rate_limit`]), and
//! `xlb_access_log_dropped_total` (access log lines dropped at a full
//! queue, see [`crate::l7::access_log`]).
//!
//! Each frontend holds a [`RouteMetrics`] (from [`HttpMetrics::route`],
//! looked up when the frontend is built), and [`RouteMetrics::observe`]
//! runs once per request on every worker thread: the prometheus families
//! (which hash an owned label set per lookup) are only touched the first
//! time a code is seen; after that a request costs a histogram
//! observation and an atomic increment, with no lock or allocation.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    frontend: String,
    backend: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    frontend: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FrontendLabels {
    frontend: String,
}

type Durations = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// 0.5 ms to ~16 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// HTTP status codes are three digits (hyper allows 100..=999).
const CODES: usize = 1000;

/// The metrics of one frontend -> backend route, created on first use.
struct Route {
    frontend: String,
    backend: String,
    duration: Histogram,
    codes: Box<[OnceLock<Counter>]>,
}

struct Inner {
    requests: Family<RequestLabels, Counter>,
    durations: Durations,
    rate_limited: Family<FrontendLabels, Counter>,
    access_log_dropped: Counter,
    /// frontend -> backend -> route: looked up by `&str`, no allocation.
    routes: RwLock<HashMap<String, HashMap<String, Arc<Route>>>>,
}

/// The metrics of one frontend/backend pair: what a request is recorded
/// on, without a lookup.
#[derive(Clone)]
pub struct RouteMetrics {
    inner: Arc<Inner>,
    route: Arc<Route>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RouteMetrics({}/{})",
            self.route.frontend, self.route.backend
        )
    }
}

impl RouteMetrics {
    /// Record one answered request.
    pub fn observe(&self, code: u16, elapsed: Duration) {
        let route = &self.route;
        route.duration.observe(elapsed.as_secs_f64());
        let slot = usize::from(code).min(CODES - 1);
        route.codes[slot]
            .get_or_init(|| {
                self.inner.requests.get_or_create_owned(&RequestLabels {
                    frontend: route.frontend.clone(),
                    backend: route.backend.clone(),
                    code,
                })
            })
            .inc();
    }
}

/// A cheap-to-clone handle the L7 tier records every answered request on.
#[derive(Clone)]
pub struct HttpMetrics {
    inner: Arc<Inner>,
}

impl Default for HttpMetrics {
    /// Unregistered metrics (for tests, or when nothing is scraped).
    fn default() -> Self {
        HttpMetrics {
            inner: Arc::new(Inner {
                requests: Family::default(),
                durations: Family::new_with_constructor(duration_histogram),
                rate_limited: Family::default(),
                access_log_dropped: Counter::default(),
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl HttpMetrics {
    /// New metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> HttpMetrics {
        let metrics = HttpMetrics::default();
        registry.register(
            "xlb_http_requests",
            "HTTP requests answered by the L7 tier, by status code",
            metrics.inner.requests.clone(),
        );
        registry.register(
            "xlb_http_request_duration_seconds",
            "From the complete request head to the last response byte",
            metrics.inner.durations.clone(),
        );
        registry.register(
            "xlb_http_rate_limited",
            "HTTP requests a frontend's rate_limit answered with 429",
            metrics.inner.rate_limited.clone(),
        );
        registry.register(
            "xlb_access_log_dropped",
            "Access log lines dropped because the log's queue was full",
            metrics.inner.access_log_dropped.clone(),
        );
        metrics
    }

    /// The counter of access log lines dropped at a full queue (one for
    /// all destinations).
    pub fn access_log_dropped(&self) -> Counter {
        self.inner.access_log_dropped.clone()
    }

    /// The counter of `frontend`'s requests refused by its `rate_limit`
    /// (taken once, when a frontend with one is built).
    pub fn rate_limited(&self, frontend: &str) -> Counter {
        self.inner
            .rate_limited
            .get_or_create_owned(&FrontendLabels {
                frontend: frontend.to_string(),
            })
    }

    /// Record one answered request.
    pub fn observe(&self, frontend: &str, backend: &str, code: u16, elapsed: Duration) {
        self.route(frontend, backend).observe(code, elapsed);
    }

    /// The handle for one frontend/backend pair, looked up once (when the
    /// frontend is built) instead of on every request.
    pub fn route(&self, frontend: &str, backend: &str) -> RouteMetrics {
        let found = {
            let routes = self.inner.routes.read().unwrap_or_else(|e| e.into_inner());
            routes.get(frontend).and_then(|b| b.get(backend)).cloned()
        };
        RouteMetrics {
            inner: self.inner.clone(),
            route: found.unwrap_or_else(|| self.new_route(frontend, backend)),
        }
    }

    /// The slow path, once per frontend/backend pair.
    fn new_route(&self, frontend: &str, backend: &str) -> Arc<Route> {
        let mut routes = self.inner.routes.write().unwrap_or_else(|e| e.into_inner());
        let by_backend = routes.entry(frontend.to_string()).or_default();
        by_backend
            .entry(backend.to_string())
            .or_insert_with(|| {
                let labels = RouteLabels {
                    frontend: frontend.to_string(),
                    backend: backend.to_string(),
                };
                Arc::new(Route {
                    frontend: labels.frontend.clone(),
                    backend: labels.backend.clone(),
                    duration: self.inner.durations.get_or_create_owned(&labels),
                    codes: (0..CODES).map(|_| OnceLock::new()).collect(),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_observes_durations() {
        let mut registry = Registry::default();
        let m = HttpMetrics::register(&mut registry);
        for _ in 0..3 {
            m.observe("fe", "web", 200, Duration::from_millis(2));
        }
        m.clone()
            .observe("fe", "web", 503, Duration::from_millis(1));
        m.observe("fe2", "web", 200, Duration::from_secs(1));
        m.access_log_dropped().inc_by(3);
        m.rate_limited("fe").inc_by(2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"xlb_http_requests_total{frontend="fe",backend="web",code="200"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"xlb_http_requests_total{frontend="fe",backend="web",code="503"} 1"#)
        );
        assert!(
            text.contains(r#"xlb_http_requests_total{frontend="fe2",backend="web",code="200"} 1"#)
        );
        assert!(
            text.contains(
                r#"xlb_http_request_duration_seconds_count{frontend="fe",backend="web"} 4"#
            ),
            "{text}"
        );
        assert!(text.contains("xlb_access_log_dropped_total 3\n"), "{text}");
        assert!(
            text.contains(r#"xlb_http_rate_limited_total{frontend="fe"} 2"#),
            "{text}"
        );
    }
}
