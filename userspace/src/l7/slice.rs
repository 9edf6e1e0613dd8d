//! Timely turns for L7 workers that share a CPU.
//!
//! Linux's scheduler (EEVDF) ends a running task's time slice only when
//! it accounts the task's run time: at the timer tick (every 4 ms with
//! `HZ=250`), when a task wakes on the same CPU, or when the task reads
//! its own CPU clock. Under load, two workers that land on one CPU both
//! always have work (each one's connections fill up while the other
//! runs), so nothing wakes there: each runs a whole tick while every
//! connection of the other waits. `perf sched` in the HTTP bench showed
//! xlb's two workers taking turns of up to 4 ms on one CPU where
//! HAProxy's threads took turns of at most about 1.5 ms (HAProxy reads
//! its thread CPU clock in its loop, measuring its own CPU time), and
//! xlb's HTTP/1.1 p99 was about 4-4.7 ms against HAProxy's 2.4-3.4 in
//! the same runs. A busy worker therefore reads its CPU clock at most
//! every [`INTERVAL`], and the kernel switches within that interval of
//! the slice running out (0.75 ms times 1 + log2 of the CPU count by
//! default). The
//! read comes with a request's start, the unit of work a loaded worker
//! goes through; one busy with a few large bodies is still switched at
//! the ticks.

use std::{cell::Cell, time::Duration, time::Instant};

/// How often at most a busy worker lets the kernel account its run time:
/// well under a slice, and one system call per many requests.
const INTERVAL: Duration = Duration::from_micros(100);

thread_local! {
    /// When this thread last read its CPU clock.
    static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Called with the time of each request's start (a clock read the request
/// makes anyway); reads the thread's CPU clock when [`INTERVAL`] has
/// passed since the last read. Returns whether it did.
pub fn checkpoint(now: Instant) -> bool {
    LAST.with(|last| {
        if last
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < INTERVAL)
        {
            return false;
        }
        last.set(Some(now));
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: writes one `timespec` to the pointer given. Only its side
        // effect matters: the kernel updates this thread's run time and
        // ends its slice if it is used up.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_clock_at_most_once_per_interval() {
        let t0 = Instant::now();
        assert!(checkpoint(t0), "the first request of a thread reads");
        assert!(!checkpoint(t0 + INTERVAL / 2));
        assert!(!checkpoint(t0 + INTERVAL - Duration::from_nanos(1)));
        assert!(checkpoint(t0 + INTERVAL));
        // The interval counts from the last read, not from the first.
        assert!(!checkpoint(t0 + INTERVAL + INTERVAL / 2));
        assert!(checkpoint(t0 + 2 * INTERVAL));
    }

    #[test]
    fn an_earlier_time_does_not_read() {
        let t0 = Instant::now() + Duration::from_secs(1);
        assert!(checkpoint(t0));
        // A reading taken before the last read (a request that started
        // earlier but reached the check later).
        assert!(!checkpoint(t0 - Duration::from_millis(5)));
    }
}
