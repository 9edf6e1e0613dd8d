//! TLS 1.3 early data (0-RTT) on HTTP/3 frontends with `http3_0rtt`:
//! which requests go to a server before the client's handshake completes
//! (RFC 8470, RFC 9114 §10.9).
//!
//! Anyone who saw a client's first flight can send it again, 0-RTT data
//! and all, but cannot complete the handshake (that needs the keys). So a
//! request read before the handshake completes may be a replay, one read
//! after it is not. Early requests with a safe method (GET, HEAD,
//! OPTIONS) go at once, marked `Early-Data: 1` so the server may answer
//! `425 Too Early`; any other waits for the handshake and is dropped if
//! it fails. A client's own `Early-Data` is left as it came: it can only
//! make the server more careful, and an intermediary in front of xlb that
//! took the request in early data relies on it staying (RFC 8470 §5.1:
//! an intermediary MUST NOT remove it).

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{HeaderName, HeaderValue, Method, Request};

/// `Early-Data` (RFC 8470 §5.1).
pub const EARLY_DATA: HeaderName = HeaderName::from_static("early-data");

/// One QUIC connection's handshake, for its request tasks: whether it
/// completed (`Ok`) or failed (why), once known.
#[derive(Clone)]
pub struct Handshake(Shared<BoxFuture<'static, Result<(), Failure>>>);

/// Why a handshake did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not complete within the limit: xlb closed the connection.
    TimedOut(Duration),
    /// The connection was lost first (closed by the client, an error):
    /// quinn's reason.
    Lost(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::TimedOut(limit) => write!(
                f,
                "handshake not complete within {} ms, connection closed",
                limit.as_millis()
            ),
            Failure::Lost(why) => {
                write!(f, "connection lost before the handshake completed: {why}")
            }
        }
    }
}

impl Handshake {
    /// Follows the handshake of `conn`, accepted with `into_0rtt` (whose
    /// `done` resolves when the handshake completes or the connection is
    /// lost). A handshake not complete within `limit` closes the
    /// connection, as the header timeout does without 0-RTT.
    pub fn track(
        conn: quinn::Connection,
        done: quinn::ZeroRttAccepted,
        limit: Duration,
    ) -> Handshake {
        let probe = conn.clone();
        let timed_out = Arc::new(AtomicBool::new(false));
        let gave_up = timed_out.clone();
        let handshake = Handshake::new(async move {
            // `done` tells whether 0-RTT was accepted, and false on a
            // lost connection too: a connection still up completed it.
            let _ = done.await;
            match probe.close_reason() {
                None => Ok(()),
                Some(_) if timed_out.load(Ordering::Acquire) => Err(Failure::TimedOut(limit)),
                Some(e) => Err(Failure::Lost(e.to_string())),
            }
        });
        let watch = handshake.clone();
        tokio::spawn(async move {
            if tokio::time::timeout(limit, watch.completed())
                .await
                .is_err()
            {
                // Said before the close, which ends `done`.
                gave_up.store(true, Ordering::Release);
                // H3_NO_ERROR: given up on, not a protocol error.
                conn.close(quinn::VarInt::from_u32(0x100), b"handshake timed out");
            }
        });
        handshake
    }

    fn new(done: impl Future<Output = Result<(), Failure>> + Send + 'static) -> Handshake {
        Handshake(done.boxed().shared())
    }

    /// Looks without waiting. Polls quinn's own signal rather than a
    /// flag another task sets: the connection driver fires it before it
    /// wakes the streams whose data came with the client's Finished, so
    /// a request read after the handshake never looks early.
    fn is_complete(&self) -> bool {
        self.0.clone().now_or_never() == Some(Ok(()))
    }

    /// Waits until the handshake completes (`Ok`) or fails.
    async fn completed(self) -> Result<(), Failure> {
        self.0.await
    }
}

/// What [`admit`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The handshake had completed: forwarded as it came.
    Complete,
    /// Early, with a safe method: forwarded now with `Early-Data: 1`.
    Early,
    /// Early, with another method: held until the handshake completed,
    /// then forwarded as it came.
    Held,
    /// Held, and the handshake failed (why): not to be forwarded.
    Dropped(Failure),
}

/// Decides whether and when `req`, read on a connection whose handshake
/// is `handshake`, may go to a server (waiting for the handshake if it
/// must), and marks it as early data where needed.
pub async fn admit<B>(req: &mut Request<B>, handshake: &Handshake) -> Admission {
    if handshake.is_complete() {
        return Admission::Complete;
    }
    if is_safe(req.method()) {
        // One `1`, whatever the client sent (RFC 8470 §5.1).
        req.headers_mut()
            .insert(EARLY_DATA, HeaderValue::from_static("1"));
        return Admission::Early;
    }
    match handshake.clone().completed().await {
        Ok(()) => Admission::Held,
        Err(why) => Admission::Dropped(why),
    }
}

/// The methods forwarded in early data: safe ones, which a replay cannot
/// make do anything twice (RFC 9110 §9.2.1). TRACE, safe too, waits: no
/// one needs it fast.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handshake that completes (`Ok`) or fails (or dropped: lost)
    /// when the test says.
    fn handshake() -> (tokio::sync::oneshot::Sender<Result<(), Failure>>, Handshake) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done = async move {
            rx.await
                .unwrap_or_else(|_| Err(Failure::Lost("signal dropped".into())))
        };
        (tx, Handshake::new(done))
    }

    fn request(method: Method, early_data: Option<&'static str>) -> Request<()> {
        let mut req = Request::builder().method(method).body(()).unwrap();
        if let Some(v) = early_data {
            req.headers_mut()
                .append(EARLY_DATA, HeaderValue::from_static(v));
        }
        req
    }

    fn marks(req: &Request<()>) -> Vec<&str> {
        req.headers()
            .get_all(EARLY_DATA)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn safe_early_requests_go_at_once_marked() {
        block_on(async {
            let (_tx, hs) = handshake();
            for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
                let mut req = request(m.clone(), None);
                assert_eq!(admit(&mut req, &hs).await, Admission::Early, "{m}");
                assert_eq!(marks(&req), ["1"], "{m}");
            }
            // A client's "0" (or several values) cannot unmark it.
            let mut req = request(Method::GET, Some("0"));
            req.headers_mut()
                .append(EARLY_DATA, HeaderValue::from_static("0"));
            assert_eq!(admit(&mut req, &hs).await, Admission::Early);
            assert_eq!(marks(&req), ["1"]);
        });
    }

    #[test]
    fn other_early_requests_wait_for_the_handshake() {
        block_on(async {
            for m in [Method::POST, Method::PUT, Method::DELETE, Method::TRACE] {
                let (tx, hs) = handshake();
                let mut req = request(m.clone(), None);
                let held = tokio::spawn(async move {
                    let a = admit(&mut req, &hs).await;
                    (a, req)
                });
                tokio::task::yield_now().await;
                assert!(!held.is_finished(), "{m} went before the handshake");
                tx.send(Ok(())).unwrap();
                let (a, req) = held.await.unwrap();
                assert_eq!(a, Admission::Held, "{m}");
                assert!(marks(&req).is_empty(), "{m}");
            }
        });
    }

    #[test]
    fn held_requests_are_dropped_when_the_handshake_fails() {
        block_on(async {
            let limit = Duration::from_millis(250);
            let (tx, hs) = handshake();
            tx.send(Err(Failure::TimedOut(limit))).unwrap();
            let mut req = request(Method::POST, None);
            let dropped = admit(&mut req, &hs).await;
            assert_eq!(dropped, Admission::Dropped(Failure::TimedOut(limit)));
            // quinn's signal dropped (connection gone) is a failure too.
            let (tx, hs) = handshake();
            drop(tx);
            assert!(matches!(
                admit(&mut req, &hs).await,
                Admission::Dropped(Failure::Lost(_))
            ));
        });
    }

    #[test]
    fn after_the_handshake_requests_pass_as_they_came() {
        block_on(async {
            let (tx, hs) = handshake();
            tx.send(Ok(())).unwrap();
            // No other task has polled the signal yet: the check itself
            // must see it (a flag set by a task would still say pending).
            let mut req = request(Method::POST, None);
            assert_eq!(admit(&mut req, &hs).await, Admission::Complete);
            assert!(marks(&req).is_empty());
            // An intermediary's mark stays (RFC 8470 §5.1).
            let mut req = request(Method::GET, Some("1"));
            assert_eq!(admit(&mut req, &hs).await, Admission::Complete);
            assert_eq!(marks(&req), ["1"]);
        });
    }
}
