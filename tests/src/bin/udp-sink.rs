//! `udp-sink`: a UDP receiver for load tests (std and libc only).
//!
//! ```text
//! udp-sink --listen ADDR:PORT [--duration SECS]
//! ```
//!
//! Binds `--listen` (with a 4 MiB receive buffer), prints
//! `listening on udp ADDR` (flushed: the readiness line), then reads
//! datagrams in batches (`recvmmsg`) as fast as it can and counts them.
//! On SIGTERM or SIGINT, or after `--duration` seconds, it prints
//! `received N` and exits 0. Payloads are not looked at.
//!
//! Unlike `lab-backend --udp`, which writes a line per datagram, it keeps
//! up with a flood; its reads are what the kernel counts as `Udp:
//! InDatagrams` in `/proc/net/snmp`.

use std::{
    io::{self, Write},
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

const USAGE: &str = "usage: udp-sink --listen ADDR:PORT [--duration SECS]";
/// Datagrams per `recvmmsg`.
const BATCH: usize = 64;
/// Bytes kept of each datagram (the rest is truncated away).
const SLOT: usize = 2048;
const RCVBUF: libc::c_int = 4 << 20;
/// How long one read may block, so a stop request is seen promptly.
const POLL: Duration = Duration::from_millis(100);

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    let (listen, duration) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp-sink: {e}");
            return ExitCode::from(2);
        }
    };
    match run(listen, duration) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-sink: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<(SocketAddr, Option<Duration>), String> {
    let mut listen = None;
    let mut duration = None;
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{key} needs a value\n{USAGE}"))
        };
        match key.as_str() {
            "-h" | "--help" => return Err(USAGE.to_owned()),
            "--listen" => {
                let v = value()?;
                listen = Some(v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?);
            }
            "--duration" => {
                let v = value()?;
                let secs: f64 = v.parse().map_err(|e| format!("--duration {v:?}: {e}"))?;
                if !(secs.is_finite() && secs > 0.0) {
                    return Err(format!("--duration {v:?} must be a positive number"));
                }
                duration = Some(Duration::from_secs_f64(secs));
            }
            _ => return Err(format!("unknown argument {key:?}\n{USAGE}")),
        }
    }
    let listen = listen.ok_or_else(|| format!("--listen is required\n{USAGE}"))?;
    Ok((listen, duration))
}

fn setsockopt<T>(sock: &UdpSocket, level: libc::c_int, name: libc::c_int, value: &T) -> i32 {
    // SAFETY: `value` points to a live T of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    }
}

fn run(listen: SocketAddr, duration: Option<Duration>) -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to an
        // atomic. No SA_RESTART: a blocked read returns EINTR.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }

    let sock = UdpSocket::bind(listen)?;
    // SO_RCVBUFFORCE passes rmem_max when privileged; else try SO_RCVBUF.
    if setsockopt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &RCVBUF) != 0 {
        setsockopt(&sock, libc::SOL_SOCKET, libc::SO_RCVBUF, &RCVBUF);
    }
    sock.set_read_timeout(Some(POLL))?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "listening on udp {}", sock.local_addr()?)?;
        out.flush()?;
    }

    let mut bufs = vec![[0u8; SLOT]; BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: SLOT,
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed means no name, no control.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }

    let deadline = duration.map(|d| Instant::now() + d);
    let mut received: u64 = 0;
    while !STOP.load(Ordering::SeqCst) && deadline.is_none_or(|d| Instant::now() < d) {
        // SAFETY: `msgs` holds BATCH headers whose iovecs point into `bufs`,
        // all alive for the call.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            received += n as u64;
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR | libc::EAGAIN | libc::ETIMEDOUT) => {}
            _ => return Err(err),
        }
    }
    let mut out = io::stdout().lock();
    writeln!(out, "received {received}")?;
    out.flush()
}
