//! The access log: one line per request, written by a background thread
//! so request tasks never block on the log's file or pipe.
//!
//! ```text
//! 2026-11-26T10:00:00.123Z 198.18.0.2:40312 web-l7 web/web1 "GET /index.html HTTP/1.1" 200 1043 accept=0.1 connect=0.4 response=1.2 total=1.5 retries=0
//! ```
//!
//! Fields, space separated: UTC time the request head was received; client
//! address; frontend; backend/server (`-` when none was reached, e.g.
//! `web/-`); request line in quotes; status sent to the client; body bytes
//! sent to the client; then timings in milliseconds: `accept` from the
//! connection's accept (or the end of its previous request) to the request
//! head, `connect` to get a server connection (0 when reused, `-` when
//! none), `response` from the request sent to the response head (`-` when
//! none), `total` from the request head to the last body byte sent;
//! `retries` = attempts beyond the first. A request xlb ends itself adds
//! `error="..."` at the end.
//!
//! Destinations: stderr, a file (appended), or syslog (one RFC 5424
//! datagram per line, see [`super::syslog`]). Each destination queues at
//! most [`QUEUE_LINES`] lines for its writer: when the writer cannot keep
//! up, further lines are dropped (counted in
//! `xlb_access_log_dropped_total`), never waited for. A reload opens a file
//! again at its path ([`reopen`], [`Logger::switch_to`]), so a log that
//! logrotate moved away is closed and a new one started.

use std::{
    fmt::Write as _,
    fs::OpenOptions,
    io::{BufWriter, Write},
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, TrySendError},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prometheus_client::metrics::counter::Counter;
use tracing::warn;

use super::syslog::Syslog;
use crate::config::AccessLog;

/// Lines one destination queues for its writer thread; a line that finds
/// the queue full is dropped. (The queue's slots are allocated up front:
/// 32 bytes each, 2 MiB, plus the lines queued.)
pub const QUEUE_LINES: usize = 65_536;

/// A handle to one log destination (cheap to clone). The writer thread
/// ends once every handle is gone and the queue is written.
#[derive(Clone)]
pub struct Logger {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::SyncSender<Msg>,
    shared: Arc<Shared>,
}

/// What the request side and the writer thread share.
struct Shared {
    /// Lines dropped at a full queue, all destinations together (the
    /// `xlb_access_log_dropped_total` counter).
    dropped: Counter,
    /// Lines dropped here since the writer last warned about it.
    lost: AtomicU64,
    /// Set with `reopened`: the writer switches before its next line.
    switch: AtomicBool,
    /// The destination opened anew by a reload ([`Logger::switch_to`]).
    reopened: Mutex<Option<Output>>,
}

enum Msg {
    Line(String),
    /// Nothing to write: look at `Shared::switch` now.
    Wake,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.enabled() {
            "Logger"
        } else {
            "Logger(off)"
        })
    }
}

/// A file destination opened again by a reload, not written to yet
/// ([`reopen`], then [`Logger::switch_to`]).
pub struct Reopened(Output);

/// First half of a reload for a file log: the file at `path` opened
/// anew (a log that logrotate moved away is not written to any more once
/// the writer switches, and the path gets a new file). Changes nothing
/// that runs; dropping the result closes the file again.
pub fn reopen(path: &Path) -> std::io::Result<Reopened> {
    Ok(Reopened(Output::stream(open_file(path)?)))
}

impl Logger {
    pub fn off() -> Logger {
        Logger { inner: None }
    }

    /// Opens `dest` and starts its writer thread; lines dropped at a full
    /// queue are counted on `dropped`. Fails when the file cannot be
    /// opened or the syslog socket not connected (no daemon on
    /// `/dev/log`).
    pub fn open(dest: &AccessLog, dropped: Counter) -> std::io::Result<Logger> {
        let out = match dest {
            AccessLog::Off => return Ok(Logger::off()),
            AccessLog::Stderr => Output::stream(std::io::stderr()),
            AccessLog::File(p) => Output::stream(open_file(p)?),
            AccessLog::Syslog(target) => Output::Syslog(Syslog::open(*target)?),
        };
        Logger::start(out, QUEUE_LINES, dropped)
    }

    fn start(out: Output, queue: usize, dropped: Counter) -> std::io::Result<Logger> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(queue);
        let shared = Arc::new(Shared {
            dropped,
            lost: AtomicU64::new(0),
            switch: AtomicBool::new(false),
            reopened: Mutex::new(None),
        });
        let writer = shared.clone();
        std::thread::Builder::new()
            .name("xlb-access-log".into())
            .spawn(move || write_loop(rx, out, &writer))?;
        Ok(Logger {
            inner: Some(Arc::new(Inner { tx, shared })),
        })
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `line` for the writer, or drops it (and counts it) when
    /// the queue is full; never blocks.
    pub fn write(&self, line: String) {
        if let Some(inner) = &self.inner
            && let Err(TrySendError::Full(_)) = inner.tx.try_send(Msg::Line(line))
        {
            inner.shared.dropped.inc();
            inner.shared.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Second half of a reload: the writer thread writes the lines not
    /// written yet, and all later ones, to `out` (the old file is closed).
    pub fn switch_to(&self, out: Reopened) {
        let Some(inner) = &self.inner else {
            return;
        };
        *inner
            .shared
            .reopened
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(out.0);
        inner.shared.switch.store(true, Ordering::Release);
        // A full queue needs no wake-up: the writer is busy, and looks at
        // `switch` before each line.
        let _ = inner.tx.try_send(Msg::Wake);
    }
}

fn open_file(p: &Path) -> std::io::Result<std::fs::File> {
    OpenOptions::new().create(true).append(true).open(p)
}

/// What the writer thread writes to.
enum Output {
    /// Lines, buffered and flushed per batch.
    Stream(BufWriter<Box<dyn Write + Send>>),
    /// One datagram per line.
    Syslog(Syslog),
}

impl Output {
    fn stream(w: impl Write + Send + 'static) -> Output {
        Output::Stream(BufWriter::new(Box::new(w)))
    }

    fn line(&mut self, line: &str) {
        match self {
            Output::Stream(out) => {
                let _ = out.write_all(line.as_bytes());
                let _ = out.write_all(b"\n");
            }
            Output::Syslog(s) => s.send(line),
        }
    }

    fn flush(&mut self) {
        if let Output::Stream(out) = self {
            let _ = out.flush();
        }
    }
}

fn write_loop(rx: mpsc::Receiver<Msg>, mut out: Output, shared: &Shared) {
    while let Ok(mut msg) = rx.recv() {
        // Batch what is queued, then flush.
        let mut batch = 0;
        loop {
            batch += 1;
            if shared.switch.swap(false, Ordering::Acquire) {
                let new = shared
                    .reopened
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                if let Some(new) = new {
                    out.flush();
                    out = new;
                }
            }
            if let Msg::Line(line) = msg {
                out.line(&line);
            }
            match rx.try_recv() {
                Ok(next) => msg = next,
                Err(_) => break,
            }
        }
        out.flush();
        let lost = shared.lost.swap(0, Ordering::Relaxed);
        if lost > 0 {
            warn!(
                lost,
                "access log: lines dropped while the queue was full (the destination is too slow)"
            );
        }
        // Under load, let the next lines gather: the writer then wakes a
        // few hundred times a second instead of once per request (each
        // wake-up is a futex call on the request's thread). A lone line
        // is written at once.
        if batch >= GATHER_FROM {
            std::thread::sleep(GATHER);
        }
    }
}

/// How long the writer waits after a batch of at least [`GATHER_FROM`]
/// lines before taking the next: the most a line waits in the queue when
/// the writer keeps up.
const GATHER: Duration = Duration::from_millis(5);
const GATHER_FROM: usize = 8;

// The line's fields are appended to one buffer without `format!`: with
// it, formatting a line cost about a third of a proxied request (float
// formatting, a string per field, the date computed anew every time).

/// Appends milliseconds with one decimal (rounded), or `-`.
pub fn push_ms(out: &mut String, d: Option<Duration>) {
    let Some(d) = d else {
        out.push('-');
        return;
    };
    let tenths = (d.as_micros() + 50) / 100;
    push_int(out, (tenths / 10) as u64);
    out.push('.');
    out.push(char::from(b'0' + (tenths % 10) as u8));
}

/// Appends an integer.
pub fn push_int(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// Milliseconds with one decimal, or `-` (see [`push_ms`]).
#[cfg(test)]
fn ms(d: Option<Duration>) -> String {
    let mut s = String::new();
    push_ms(&mut s, d);
    s
}

thread_local! {
    /// The last second formatted on this thread, and its text up to the
    /// seconds (`2026-11-26T10:00:00.`): lines of the same second share it.
    static LAST_SECOND: std::cell::RefCell<(u64, String)> =
        const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// Appends RFC 3339 UTC with milliseconds.
pub fn push_timestamp(out: &mut String, t: SystemTime) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    LAST_SECOND.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
            let (y, m, day) = civil_from_days(days);
            last.1.clear();
            let _ = write!(
                last.1,
                "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
            );
            last.0 = secs;
        }
        out.push_str(&last.1);
    });
    let ms = d.subsec_millis();
    for digit in [ms / 100, ms / 10 % 10, ms % 10] {
        out.push(char::from(b'0' + digit as u8));
    }
    out.push('Z');
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    push_timestamp(&mut s, t);
    s
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends `s` with quotes and control characters replaced by `?`, so a
/// field cannot break the line or its quoting.
pub fn push_sanitized(out: &mut String, s: &str) {
    let unsafe_char = |c: char| c == '"' || c.is_control();
    if !s.contains(unsafe_char) {
        out.push_str(s);
        return;
    }
    out.extend(s.chars().map(|c| if unsafe_char(c) { '?' } else { c }));
}

/// `s` made safe for one log line (see [`push_sanitized`]).
pub fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_sanitized(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29T00:00:00.000Z");
        // The same second again (the cached part), then the next one.
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_007);
        assert_eq!(timestamp(t), "2000-02-29T00:00:00.007Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_401_250);
        assert_eq!(timestamp(t), "2000-02-29T00:00:01.250Z");
    }

    /// A writer whose first write blocks until `release` says go; what
    /// it writes goes to `out`.
    struct Gate {
        entered: Option<mpsc::Sender<()>>,
        release: mpsc::Receiver<()>,
        out: mpsc::Sender<Vec<u8>>,
    }

    impl Write for Gate {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if let Some(entered) = self.entered.take() {
                entered.send(()).unwrap();
                self.release.recv().unwrap();
            }
            self.out.send(b.to_vec()).unwrap();
            Ok(b.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines() {
        let (entered, entered_rx) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let (out, written) = mpsc::channel();
        let gate = Gate {
            entered: Some(entered),
            release: release_rx,
            out,
        };
        let dropped = Counter::default();
        let log = Logger::start(Output::stream(gate), 4, dropped.clone()).unwrap();
        log.write("1".into());
        // The writer took line 1 and is stuck writing it.
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        for i in 2..=7 {
            log.write(i.to_string());
        }
        assert_eq!(dropped.get(), 2, "lines 6 and 7 found the queue full");
        release.send(()).unwrap();
        drop(log);
        // The writer writes what was queued, then ends (dropping `out`).
        let text: Vec<u8> = written.iter().flatten().collect();
        assert_eq!(String::from_utf8(text).unwrap(), "1\n2\n3\n4\n5\n");
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize("/a\"b\nc"), "/a?b?c");
        assert_eq!(ms(None), "-");
        assert_eq!(ms(Some(Duration::from_micros(1500))), "1.5");
        assert_eq!(ms(Some(Duration::from_micros(1449))), "1.4");
        assert_eq!(ms(Some(Duration::from_micros(1450))), "1.5");
        assert_eq!(ms(Some(Duration::from_micros(9_999_960))), "10000.0");
        assert_eq!(ms(Some(Duration::ZERO)), "0.0");
        assert_eq!(sanitize("/plain?q=1"), "/plain?q=1");
    }
}
