//! Health checks: one task per server, shared by both tiers. A server goes
//! down after `fall` failed checks in a row and up after `rise` good ones;
//! each transition is reported once on the channel.

mod probe;

use std::{net::SocketAddr, time::Duration};

use tokio::{sync::mpsc, task::JoinHandle};
use tracing::{info, warn};

use crate::config::{CheckKind, HealthCheck, ProxyVersion};

/// A server's verdict changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub server_id: u32,
    pub healthy: bool,
}

pub struct Target {
    pub server_id: u32,
    /// "backend/server", for logs.
    pub label: String,
    pub address: SocketAddr,
    pub check: HealthCheck,
    /// The backend's `send_proxy`: each check starts with the header of a
    /// connection made on xlb's own behalf (v1 `UNKNOWN`, v2 `LOCAL`).
    pub send_proxy: Option<ProxyVersion>,
}

/// Start checking `target`; the task ends when the handle is aborted or the
/// receiver is dropped. Servers are assumed healthy at start.
pub fn spawn(target: Target, events: mpsc::Sender<Transition>) -> Option<JoinHandle<()>> {
    if target.check.check == CheckKind::None {
        return None;
    }
    Some(tokio::spawn(run(target, events)))
}

async fn run(target: Target, events: mpsc::Sender<Transition>) {
    let interval = Duration::from_millis(target.check.interval_ms.max(1));
    let timeout = Duration::from_millis(target.check.timeout_ms.max(1));
    let mut verdict = Verdict::new(target.check.rise, target.check.fall);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = probe::check(&target.check, target.address, target.send_proxy, timeout).await;
        if let Err(e) = &result {
            tracing::debug!(server = %target.label, "check failed: {e}");
        }
        if let Some(healthy) = verdict.observe(result.is_ok()) {
            if healthy {
                info!(server = %target.label, "server is UP");
            } else {
                warn!(server = %target.label, reason = %result.err().unwrap_or_default(), "server is DOWN");
            }
            let event = Transition {
                server_id: target.server_id,
                healthy,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// rise/fall hysteresis.
#[derive(Debug)]
pub struct Verdict {
    healthy: bool,
    streak: u32,
    rise: u32,
    fall: u32,
}

impl Verdict {
    pub fn new(rise: u32, fall: u32) -> Self {
        Verdict {
            healthy: true,
            streak: 0,
            rise: rise.max(1),
            fall: fall.max(1),
        }
    }

    /// Feed one check result; returns the new state when it flips.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { self.fall } else { self.rise };
        if self.streak >= needed {
            self.healthy = ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Verdict;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut v = Verdict::new(2, 3);
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(false), None);
        assert_eq!(v.observe(false), Some(false));
        assert_eq!(v.observe(true), None);
        assert_eq!(v.observe(false), None, "a failure resets the rise streak");
        assert_eq!(v.observe(true), None);
        assert_eq!(v.observe(true), Some(true));
    }

    #[test]
    fn flapping_below_threshold_never_flips() {
        let mut v = Verdict::new(2, 2);
        for _ in 0..10 {
            assert_eq!(v.observe(false), None);
            assert_eq!(v.observe(true), None);
        }
    }
}
