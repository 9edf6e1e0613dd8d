//! The access log's syslog output: each line becomes one RFC 5424
//! datagram (facility local0, severity info) to the local syslog daemon
//! (`/dev/log`) or to a syslog server over UDP.
//!
//! ```text
//! <134>1 2026-11-26T10:00:00.125Z lb1 xlb 4242 - - 2026-11-26T10:00:00.123Z 198.18.0.2:40312 web-l7 ...
//! ```
//!
//! Runs on the access log's writer thread only. A failed send loses that
//! line: the first failure of a run is warned about, and when sending
//! works again one more line says how many were lost. `/dev/log` is
//! connected again (at most once a second) after a failure, so a
//! restarted syslog daemon is found again.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use tracing::warn;

use super::access_log::timestamp;
use crate::config::SyslogTarget;

/// The local syslog daemon's socket.
pub const DEV_LOG: &str = "/dev/log";

/// `<PRI>`: facility local0 (16) * 8 + severity info (6).
const PRI: u8 = 16 * 8 + 6;

/// Longest datagram sent; longer lines are cut (RFC 5424 receivers must
/// take 480 bytes and should take 2048; rsyslog's default limit is 8 KiB).
const MAX_DATAGRAM: usize = 8192;

/// How long one send to `/dev/log` may block the writer thread (a stuck
/// syslog daemon must not make the log queue grow without bound).
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Between two attempts to connect `/dev/log` again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

enum Socket {
    Unix {
        sock: UnixDatagram,
        path: PathBuf,
        last_connect: Instant,
    },
    Udp(UdpSocket),
}

/// One syslog destination and its header fields.
pub struct Syslog {
    socket: Socket,
    /// `HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA`, fixed per process.
    fields: String,
    dest: String,
    buf: Vec<u8>,
    /// Lines lost since the current run of failures began.
    lost: Option<u64>,
}

impl Syslog {
    /// Connects to `target`; an error means nothing could be sent there
    /// (e.g. no syslog daemon listens on `/dev/log`).
    pub fn open(target: SyslogTarget) -> io::Result<Syslog> {
        match target {
            SyslogTarget::Local => Syslog::open_unix(Path::new(DEV_LOG)),
            SyslogTarget::Udp(addr) => Syslog::open_udp(addr),
        }
    }

    fn open_unix(path: &Path) -> io::Result<Syslog> {
        let sock = connect_unix(path)
            .map_err(|e| io::Error::new(e.kind(), format!("syslog {}: {e}", path.display())))?;
        let socket = Socket::Unix {
            sock,
            path: path.to_path_buf(),
            last_connect: Instant::now(),
        };
        Ok(Syslog::with(socket, path.display().to_string()))
    }

    fn open_udp(addr: SocketAddr) -> io::Result<Syslog> {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = UdpSocket::bind(local)
            .and_then(|s| s.connect(addr).map(|()| s))
            .map_err(|e| io::Error::new(e.kind(), format!("syslog udp {addr}: {e}")))?;
        Ok(Syslog::with(Socket::Udp(sock), format!("udp {addr}")))
    }

    fn with(socket: Socket, dest: String) -> Syslog {
        Syslog {
            socket,
            fields: format!("{} xlb {} - -", hostname(), std::process::id()),
            dest,
            buf: Vec::with_capacity(1024),
            lost: None,
        }
    }

    /// Sends `line` as one datagram; a failure is counted, not returned.
    pub fn send(&mut self, line: &str) {
        self.buf.clear();
        frame(&mut self.buf, &self.fields, SystemTime::now(), line);
        let result = match &mut self.socket {
            Socket::Udp(s) => s.send(&self.buf).map(drop),
            Socket::Unix {
                sock,
                path,
                last_connect,
            } => match sock.send(&self.buf) {
                Ok(_) => Ok(()),
                Err(e) if last_connect.elapsed() >= RECONNECT_EVERY => {
                    // The daemon may have restarted (new socket file).
                    *last_connect = Instant::now();
                    match connect_unix(path) {
                        Ok(s) => {
                            *sock = s;
                            sock.send(&self.buf).map(drop)
                        }
                        Err(_) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
        };
        match (result, &mut self.lost) {
            (Ok(()), lost @ Some(_)) => {
                let n = lost.take().unwrap_or(0);
                warn!(
                    "access log to syslog {} works again; {n} lines were lost",
                    self.dest
                );
            }
            (Ok(()), None) => {}
            (Err(_), Some(n)) => *n += 1,
            (Err(e), lost @ None) => {
                warn!(
                    "access log to syslog {}: {e}; lines are lost until it works again",
                    self.dest
                );
                *lost = Some(1);
            }
        }
    }
}

fn connect_unix(path: &Path) -> io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(path)?;
    sock.set_write_timeout(Some(SEND_TIMEOUT))?;
    Ok(sock)
}

/// `<PRI>1 TIMESTAMP FIELDS MSG` into `out`, at most [`MAX_DATAGRAM`]
/// bytes (the message cut on a character boundary).
fn frame(out: &mut Vec<u8>, fields: &str, now: SystemTime, msg: &str) {
    use std::io::Write as _;
    let _ = write!(out, "<{PRI}>1 {} {fields} ", timestamp(now));
    let mut room = MAX_DATAGRAM.saturating_sub(out.len()).min(msg.len());
    while !msg.is_char_boundary(room) {
        room -= 1;
    }
    out.extend_from_slice(&msg.as_bytes()[..room]);
}

/// This host's name as RFC 5424 allows it (printable ASCII, at most 255
/// bytes), else `-`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = &buf[..len.min(255)];
    if name.is_empty() || !name.iter().all(|b| (33..=126).contains(b)) {
        return "-".into();
    }
    String::from_utf8_lossy(name).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn frames_follow_rfc5424() {
        let mut out = Vec::new();
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        frame(&mut out, "lb1 xlb 42 - -", t, "a line");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<134>1 2026-11-18T11:06:40.123Z lb1 xlb 42 - - a line"
        );
        // Long lines are cut on a character boundary.
        let mut out = Vec::new();
        frame(&mut out, "h xlb 1 - -", t, &"é".repeat(MAX_DATAGRAM));
        assert!(out.len() <= MAX_DATAGRAM && out.len() >= MAX_DATAGRAM - 1);
        assert!(String::from_utf8(out).is_ok());
        let h = hostname();
        assert!(!h.is_empty() && !h.contains(' '), "{h:?}");
    }

    #[test]
    fn unix_datagrams_and_a_restarted_daemon() {
        let dir = std::env::temp_dir().join(format!("xlb-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        assert!(Syslog::open_unix(&path).is_err(), "nothing listens yet");
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut log = Syslog::open_unix(&path).unwrap();
        log.send("first");
        let mut buf = [0u8; 9000];
        let n = daemon.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(got.starts_with("<134>1 "), "{got}");
        assert!(got.ends_with(&format!(" xlb {} - - first", std::process::id())));

        // The daemon goes away: lines are counted as lost, no panic.
        drop(daemon);
        std::fs::remove_file(&path).unwrap();
        log.send("lost");
        assert_eq!(log.lost, Some(1));
        // It comes back on a new socket file: found again.
        let daemon = UnixDatagram::bind(&path).unwrap();
        daemon
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        if let Socket::Unix { last_connect, .. } = &mut log.socket {
            *last_connect -= RECONNECT_EVERY;
        }
        log.send("again");
        assert_eq!(log.lost, None);
        let n = daemon.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n]).unwrap().ends_with(" again"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
