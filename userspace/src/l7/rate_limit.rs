//! `rate_limit` on a `[[frontend]]`: a GCRA budget (governor) per client
//! IP address, or one for the whole frontend. A request over it is
//! answered `429 Too Many Requests` with `Retry-After`, logged and
//! counted, and never reaches a server.
//!
//! One [`Limiter`] per frontend, shared by every L7 thread (governor's
//! state is atomics; per client, in a sharded map). Every
//! [`SWEEP_EVERY`] a task that ends with the limiter drops the state of
//! each client whose whole burst has been back for a refill interval, so
//! memory follows the clients seen in the last seconds, not all of them.
//! A reload builds new limiters: budgets start afresh.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed, keyed::DashMapStateStore},
};
use http::{HeaderValue, Request, Response, StatusCode, header};
use prometheus_client::metrics::counter::Counter;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use super::{
    body::{self, Body},
    proxy::{ConnCtx, Started, finish},
};
use crate::config::{RateLimit, RateLimitPer};

/// How often the states of idle clients are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// What a refused request's log line and body say.
const WHY: &str = "rate limit exceeded";

type PerClient<C> =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Whole<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A frontend's request budget (its `rate_limit`).
pub struct Limiter<C: Clock = DefaultClock> {
    budget: Budget<C>,
    /// `xlb_http_rate_limited_total{frontend}`.
    limited: Counter,
    /// The sweeping task of a per-client budget, stopped when the limiter
    /// drops (with the last connection of its frontend).
    _sweeper: Option<AbortOnDropHandle<()>>,
}

enum Budget<C: Clock> {
    PerClient(Arc<PerClient<C>>),
    Frontend(Whole<C>),
}

impl Limiter {
    /// The limiter of a frontend with `config`; refused requests are
    /// counted on `limited`. Per client, it starts its sweeping task on
    /// the current tokio runtime.
    pub fn start(config: &RateLimit, limited: Counter) -> Limiter {
        let limiter = Limiter::with_clock(config, DefaultClock::default(), limited);
        let sweeper = match &limiter.budget {
            Budget::PerClient(states) => Some(spawn_sweeper(Arc::downgrade(states))),
            Budget::Frontend(_) => None,
        };
        Limiter {
            _sweeper: sweeper,
            ..limiter
        }
    }
}

impl<C: Clock> Limiter<C> {
    /// A limiter on `clock`, without a sweeping task.
    fn with_clock(config: &RateLimit, clock: C, limited: Counter) -> Limiter<C> {
        let quota = quota(config);
        let budget = match config.per {
            RateLimitPer::Client => {
                Budget::PerClient(Arc::new(RateLimiter::dashmap_with_clock(quota, clock)))
            }
            RateLimitPer::Frontend => {
                Budget::Frontend(RateLimiter::direct_with_clock(quota, clock))
            }
        };
        Limiter {
            budget,
            limited,
            _sweeper: None,
        }
    }

    /// Takes one request from `client`'s budget: `Err` with the time until
    /// one would be allowed when none is left.
    fn take(&self, client: IpAddr) -> Result<(), Duration> {
        match &self.budget {
            Budget::PerClient(states) => states
                .check_key(&client)
                .map_err(|no| no.wait_time_from(states.clock().now())),
            Budget::Frontend(whole) => whole
                .check()
                .map_err(|no| no.wait_time_from(whole.clock().now())),
        }
    }

    /// Drops the states of clients whose budget has been full again for a
    /// refill interval (a full budget is the same as no state) and gives
    /// the freed memory back.
    fn sweep(states: &PerClient<C>) {
        states.retain_recent();
        states.shrink_to_fit();
    }
}

/// `requests_per_sec` refill, `burst` at once. The config keeps both in
/// 1..=1e9, so the refill interval is at least a nanosecond.
fn quota(config: &RateLimit) -> Quota {
    let rate = NonZeroU32::new(config.requests_per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// Sweeps `states` every [`SWEEP_EVERY`] while they exist.
fn spawn_sweeper(states: Weak<PerClient<DefaultClock>>) -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await; // the first tick is at once
        loop {
            every.tick().await;
            let Some(states) = states.upgrade() else {
                return;
            };
            Limiter::sweep(&states);
        }
    }))
}

/// `Retry-After` in whole seconds: `wait` rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The one rate check of every request (HTTP/1.1, HTTP/2 and HTTP/3 ask
/// before anything else is done with it): `Some(wait)` when the request is
/// over its frontend's `rate_limit` (counted; answer it with
/// [`too_many_requests`]). A frontend without one pays one `Option` check.
#[inline]
pub(super) fn exceeded(cx: &ConnCtx) -> Option<Duration> {
    let limiter = cx.fe.rate_limit.as_ref()?;
    let wait = limiter.take(cx.client.ip()).err()?;
    limiter.limited.inc();
    Some(wait)
}

/// The answer to a request over the limit: `429` with `Retry-After`
/// (`wait` in whole seconds) and a short body, and an access log line with
/// `error="rate limit exceeded"`. Not a warning in xlb's own log: a client
/// over its limit would flood it.
#[cold]
pub(super) fn too_many_requests<B>(
    cx: &Arc<ConnCtx>,
    req: &Request<B>,
    started: Started,
    wait: Duration,
) -> Response<Body> {
    let (mut entry, guard) = started.entry(cx, req);
    debug!(frontend = %cx.fe.name, client = %cx.client, "429 {}: {WHY}", entry.request_line());
    let status = StatusCode::TOO_MANY_REQUESTS;
    entry.status = status.as_u16();
    entry.error = Some(WHY.to_string());
    let mut resp = body::error_response(status, WHY);
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after_secs(wait)),
    );
    finish(resp, entry, None, guard)
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        requests_per_sec: u32,
        burst: u32,
        per: RateLimitPer,
    ) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let config = RateLimit {
            requests_per_sec,
            burst,
            per,
        };
        let limiter = Limiter::with_clock(&config, clock.clone(), Counter::default());
        (limiter, clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_at_once_then_refused_until_refilled() {
        let (l, clock) = limiter(2, 5, RateLimitPer::Client);
        let a = ip("198.18.0.2");
        for i in 0..5 {
            assert_eq!(l.take(a), Ok(()), "request {i} of the burst");
        }
        // One request per 500 ms comes back.
        assert_eq!(l.take(a), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(499));
        assert_eq!(l.take(a), Err(Duration::from_millis(1)));
        clock.advance(Duration::from_millis(1));
        assert_eq!(l.take(a), Ok(()));
        assert!(l.take(a).is_err());
        // Idle long enough, the whole burst is back.
        clock.advance(Duration::from_secs(10));
        for _ in 0..5 {
            assert_eq!(l.take(a), Ok(()));
        }
        assert!(l.take(a).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(999)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(7)), 7);
        // From the limiter: at 1 per second, 300 ms after the only
        // request the wait is 700 ms, sent as 1 s.
        let (l, clock) = limiter(1, 1, RateLimitPer::Frontend);
        let a = ip("198.18.0.2");
        assert_eq!(l.take(a), Ok(()));
        clock.advance(Duration::from_millis(300));
        let wait = l.take(a).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1, "{wait:?}");
    }

    #[test]
    fn clients_have_their_own_budgets() {
        let (l, _clock) = limiter(1, 2, RateLimitPer::Client);
        let (a, b, v6) = (ip("198.18.0.2"), ip("198.18.0.3"), ip("2001:db8::2"));
        for c in [a, a, b, v6, b, v6] {
            assert_eq!(l.take(c), Ok(()), "{c}");
        }
        for c in [a, b, v6] {
            assert!(l.take(c).is_err(), "{c}");
        }
        // A fresh address still has its whole burst.
        assert_eq!(l.take(ip("2001:db8::3")), Ok(()));
    }

    #[test]
    fn frontend_mode_shares_one_budget() {
        let (l, _clock) = limiter(1, 3, RateLimitPer::Frontend);
        assert_eq!(l.take(ip("198.18.0.2")), Ok(()));
        assert_eq!(l.take(ip("198.18.0.3")), Ok(()));
        assert_eq!(l.take(ip("2001:db8::2")), Ok(()));
        for c in ["198.18.0.2", "198.18.0.4", "2001:db8::9"] {
            assert!(l.take(ip(c)).is_err(), "{c}");
        }
    }

    #[test]
    fn sweeping_drops_only_clients_whose_budget_is_full_again() {
        let (l, clock) = limiter(1, 2, RateLimitPer::Client);
        let Budget::PerClient(states) = &l.budget else {
            panic!("per client")
        };
        assert_eq!(l.take(ip("198.18.0.2")), Ok(()));
        clock.advance(Duration::from_millis(500));
        assert_eq!(l.take(ip("198.18.0.3")), Ok(()));
        assert_eq!(states.len(), 2);
        // governor keeps a state one refill interval (here 1 s) past the
        // moment its budget is full: 198.18.0.2's at 2 s, .3's at 2.5 s.
        clock.advance(Duration::from_millis(1700));
        Limiter::sweep(states);
        assert_eq!(states.len(), 1);
        clock.advance(Duration::from_secs(2));
        Limiter::sweep(states);
        assert!(states.is_empty());
    }

    /// The sweeping task runs for per-client budgets only and ends with
    /// its limiter (a frontend replaced by a reload leaves none behind).
    #[test]
    fn the_sweeper_ends_with_its_limiter() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let config = |per| RateLimit {
                requests_per_sec: 1,
                burst: 1,
                per,
            };
            let shared = Limiter::start(&config(RateLimitPer::Frontend), Counter::default());
            assert!(shared._sweeper.is_none());
            let per_client = Limiter::start(&config(RateLimitPer::Client), Counter::default());
            let task = per_client._sweeper.as_ref().unwrap().abort_handle();
            tokio::task::yield_now().await;
            assert!(!task.is_finished());
            drop(per_client);
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(task.is_finished());
        });
    }
}
