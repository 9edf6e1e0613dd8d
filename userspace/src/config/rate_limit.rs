//! `rate_limit = { requests_per_sec = N, burst = M, per = "client" }` on a
//! `[[frontend]]`: how many requests it answers, per client address or
//! for all clients together, before it answers 429.

use super::{
    errors::Cx,
    raw::{RawRateLimit, S},
    values::{enum_value, int, required},
};

/// A frontend's request budget (GCRA): `burst` requests at once after
/// idling, refilled at `requests_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained (`requests_per_sec`, >= 1).
    pub requests_per_sec: u32,
    /// Requests allowed at once after idling (`burst`, >= 1); default
    /// `requests_per_sec`.
    pub burst: u32,
    /// Whose budget a request is taken from (`per`), default client.
    pub per: RateLimitPer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitPer {
    /// Each client IP address has its own budget.
    Client,
    /// One budget for all the frontend's clients.
    Frontend,
}

/// The largest `requests_per_sec` and `burst`: the limiter counts time in
/// nanoseconds, so one request per nanosecond is the finest rate.
pub(super) const MAX_RATE: i64 = 1_000_000_000;

/// The typed `rate_limit`, or `None` after reporting its errors.
pub(super) fn convert_rate_limit(cx: &mut Cx, table: &S<RawRateLimit>) -> Option<RateLimit> {
    let raw = table.get_ref();
    let errors = cx.errors.len();
    let section = "frontend rate_limit";
    let rate = required(
        cx,
        raw.requests_per_sec.as_ref(),
        "requests_per_sec",
        section,
        &table.span(),
    );
    let requests_per_sec = int(cx, rate, "rate_limit requests_per_sec", 1, MAX_RATE, 1);
    let burst = int(
        cx,
        raw.burst.as_ref(),
        "rate_limit burst",
        1,
        MAX_RATE,
        requests_per_sec,
    );
    let per = enum_value(
        cx,
        raw.per.as_ref(),
        "rate_limit per",
        &[
            ("client", RateLimitPer::Client),
            ("frontend", RateLimitPer::Frontend),
        ],
        RateLimitPer::Client,
    );
    (cx.errors.len() == errors).then_some(RateLimit {
        // In range: `int` checked 1..=MAX_RATE.
        requests_per_sec: requests_per_sec as u32,
        burst: burst as u32,
        per,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const FRONTEND: &str = "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                            bind = \"127.0.0.1:8080\"\ndefault_backend = \"web\"\n";

    fn rate_limit(value: &str) -> Option<RateLimit> {
        let text = format!("{FRONTEND}rate_limit = {value}\n");
        parse(&text, "f.toml")
            .unwrap_or_else(|e| panic!("{value}: {e}"))
            .frontend[0]
            .rate_limit
    }

    #[test]
    fn absent_by_default() {
        let c = parse(FRONTEND, "f.toml").unwrap();
        assert_eq!(c.frontend[0].rate_limit, None);
    }

    #[test]
    fn burst_defaults_to_the_rate_and_per_to_client() {
        assert_eq!(
            rate_limit("{ requests_per_sec = 100 }"),
            Some(RateLimit {
                requests_per_sec: 100,
                burst: 100,
                per: RateLimitPer::Client
            })
        );
        assert_eq!(
            rate_limit("{ requests_per_sec = 1, burst = 5, per = \"frontend\" }"),
            Some(RateLimit {
                requests_per_sec: 1,
                burst: 5,
                per: RateLimitPer::Frontend
            })
        );
    }
}
