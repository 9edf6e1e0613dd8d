//! `lab-backend`: a tiny backend for the xlb lab (std only).
//!
//! ```text
//! lab-backend --name NAME [--listen ADDR:PORT] [--udp ADDR:PORT] [--udp-log FILE]
//! ```
//!
//! - HTTP/1.1 on `--listen`: every request (any method and path, including
//!   `/healthz`) gets `200 OK`, `Content-Type: text/plain`, body `NAME\n`.
//!   Keep-alive is honored (HTTP/1.1 default, `Connection: close` ends the
//!   connection; HTTP/1.0 needs `Connection: keep-alive`). One thread per
//!   connection; idle connections close after 60 s.
//! - UDP on `--udp`: each datagram's payload becomes one line (trailing
//!   newline dropped, inner newlines escaped as `\n`) appended to stdout or
//!   to `--udp-log FILE`; so lines = datagrams.
//! - After every socket is bound it prints `listening on ADDR` (TCP) and
//!   `listening on udp ADDR` to stdout, flushed: the readiness signal.

use std::{
    fs::OpenOptions,
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    thread,
    time::Duration,
};

const USAGE: &str =
    "usage: lab-backend --name NAME [--listen ADDR:PORT] [--udp ADDR:PORT] [--udp-log FILE]";
const MAX_LINE: u64 = 8192;
const MAX_HEADERS: usize = 100;
const IDLE: Duration = Duration::from_secs(60);

struct Args {
    name: String,
    listen: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    udp_log: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut name = None;
    let mut listen = None;
    let mut udp = None;
    let mut udp_log = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        if key == "-h" || key == "--help" {
            return Err(USAGE.to_owned());
        }
        let value = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(format!("{key} needs a value\n{USAGE}")),
        };
        let addr = |v: &str| {
            v.parse::<SocketAddr>()
                .map_err(|e| format!("{key} {v:?}: {e}"))
        };
        match key.as_str() {
            "--name" => name = Some(value),
            "--listen" => listen = Some(addr(&value)?),
            "--udp" => udp = Some(addr(&value)?),
            "--udp-log" => udp_log = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown argument {key:?}\n{USAGE}")),
        }
    }
    let name = name.ok_or_else(|| format!("--name is required\n{USAGE}"))?;
    if listen.is_none() && udp.is_none() {
        return Err(format!("give --listen and/or --udp\n{USAGE}"));
    }
    Ok(Args {
        name,
        listen,
        udp,
        udp_log,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab-backend: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-backend: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> io::Result<()> {
    let tcp = args.listen.map(TcpListener::bind).transpose()?;
    let udp = args.udp.map(UdpSocket::bind).transpose()?;
    let mut log: Box<dyn Write + Send> = match &args.udp_log {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(io::stdout()),
    };
    {
        let mut out = io::stdout().lock();
        if let Some(l) = &tcp {
            writeln!(out, "listening on {}", l.local_addr()?)?;
        }
        if let Some(u) = &udp {
            writeln!(out, "listening on udp {}", u.local_addr()?)?;
        }
        out.flush()?;
    }

    let udp_thread = udp.map(|sock| thread::spawn(move || serve_udp(sock, &mut log)));
    if let Some(listener) = tcp {
        let body: Arc<str> = format!("{}\n", args.name).into();
        let name: Arc<str> = args.name.into();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (body, name) = (body.clone(), name.clone());
            thread::spawn(move || {
                let _ = serve_http(stream, &name, &body);
            });
        }
    }
    if let Some(t) = udp_thread {
        t.join()
            .map_err(|_| io::Error::other("udp thread panicked"))??;
    }
    Ok(())
}

fn serve_udp(sock: UdpSocket, log: &mut dyn Write) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = sock.recv_from(&mut buf)?;
        let text = String::from_utf8_lossy(&buf[..n]);
        let line = text.trim_end_matches(['\n', '\r']).replace('\n', "\\n");
        writeln!(log, "{line}")?;
        log.flush()?;
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; `None` at EOF.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    let s = String::from_utf8_lossy(&buf);
    Ok(Some(s.trim_end_matches(['\n', '\r']).to_owned()))
}

struct Request {
    head: bool,
    keep_alive: bool,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads one request (discarding its body); `None` on a clean EOF.
fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerated before a request
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(_target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad("unsupported version")),
    };
    let mut content_length: u64 = 0;
    let mut chunked = false;
    let mut close = false;
    let mut keep = false;
    for i in 0.. {
        if i == MAX_HEADERS {
            return Err(bad("too many headers"));
        }
        let Some(h) = read_line(r)? else {
            return Err(bad("eof in headers"));
        };
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(bad("bad header"));
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
        match k.as_str() {
            "content-length" => content_length = v.parse().map_err(|_| bad("content-length"))?,
            "transfer-encoding" => chunked = v.split(',').any(|t| t.trim() == "chunked"),
            "connection" => {
                close |= v.split(',').any(|t| t.trim() == "close");
                keep |= v.split(',').any(|t| t.trim() == "keep-alive");
            }
            _ => {}
        }
    }
    if chunked {
        discard_chunked(r)?;
    } else if content_length > 0 {
        let n = io::copy(&mut r.take(content_length), &mut io::sink())?;
        if n != content_length {
            return Err(bad("short body"));
        }
    }
    Ok(Some(Request {
        head: method == "HEAD",
        keep_alive: if http10 { keep && !close } else { !close },
    }))
}

fn discard_chunked(r: &mut impl BufRead) -> io::Result<()> {
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("eof in chunk size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad("chunk size"))?;
        if size == 0 {
            // Trailers up to the empty line.
            while !read_line(r)?
                .ok_or_else(|| bad("eof in trailers"))?
                .is_empty()
            {}
            return Ok(());
        }
        let n = io::copy(&mut r.take(size), &mut io::sink())?;
        if n != size || read_line(r)?.as_deref() != Some("") {
            return Err(bad("bad chunk"));
        }
    }
}

fn serve_http(stream: TcpStream, name: &str, body: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let msg = "bad request\n";
                write!(
                    writer,
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{msg}",
                    msg.len()
                )?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let conn = if req.keep_alive {
            "keep-alive"
        } else {
            "close"
        };
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             X-Backend: {name}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        if !req.head {
            resp.push_str(body);
        }
        writer.write_all(resp.as_bytes())?;
        if !req.keep_alive {
            return Ok(());
        }
    }
}
