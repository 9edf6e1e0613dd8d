//! A bounded mutation fuzz of xlb's user-space parsers, with a fixed seed
//! (`XLB_FUZZ_SEED`, hex, and `XLB_FUZZ_CASES` override it and the case
//! count, as for `xdp_fuzz`):
//!
//! - the PROXY protocol reader (`l7::proxy_protocol::read`), fed valid v1
//!   and v2 headers followed by payload, mutated, arriving in random
//!   pieces: it never panics nor hangs, accepts only input that starts
//!   with a PROXY signature, then has taken exactly the header (the
//!   payload stays unread) and reports the addresses written in it;
//! - the runtime API's command parser (`api::command::parse`), fed every
//!   command form mutated as bytes, and lines of its words in any order:
//!   it never panics, its refusals are one non-empty line, and what it
//!   accepts, written back, parses the same;
//! - the config parser and checks the daemon and `xlb check` run
//!   (`config::parse_with` with `l7::config_checks`, TLS files included),
//!   fed the example configs and a TLS one, mutated as bytes and as lines
//!   (lines dropped, repeated, swapped; numbers made huge, negative or
//!   zero; strings emptied): it never panics and every error has a
//!   message and a position inside the file.
//!
//! Each case runs with its panic caught; every violation is reported with
//! the input (hex or escaped); at the end the test fails with their count
//! and the first ones.

use std::{
    collections::VecDeque,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use ppp::v2;
use xlb::{
    api::{
        command::{self, Command},
        control::admin_name,
    },
    config,
    l7::{
        self,
        proxy_protocol::{self, ReadError, Received, Source},
    },
};
use xlb_lab::{
    TempDir,
    fuzz::{self, Rng, Watchdog, hex},
    l7::{SNI_TLS, sni_certs},
};

/// A case that runs longer than this (a hang) fails the test with its
/// input.
const CASE_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- PROXY

const PROXY_SEED: u64 = 0x0050_5258_5900_2026;
const PROXY_CASES: usize = 30_000;
/// Inputs stay below this: over the longest v2 header xlb takes.
const PROXY_MAX: usize = 1400;
/// Each case's limit. The source below never stalls (EOF after the last
/// byte), so a timeout is a reader that loops.
const PROXY_LIMIT: Duration = Duration::from_secs(2);
const V2_SIG: &[u8] = v2::PROTOCOL_PREFIX;

/// A connection's bytes arriving in pieces (`chunks`: their lengths), then
/// EOF. Every call yields to the runtime first, so a reader that loops on
/// it still lets its timeout fire.
struct Conn {
    data: Vec<u8>,
    chunks: VecDeque<usize>,
    arrived: usize,
    taken: usize,
}

impl Conn {
    fn new(data: Vec<u8>, chunks: &[usize]) -> Self {
        Conn {
            data,
            chunks: chunks.iter().copied().collect(),
            arrived: 0,
            taken: 0,
        }
    }

    /// The next piece arrives: false at EOF.
    fn arrive(&mut self) -> bool {
        if self.arrived == self.data.len() {
            return false;
        }
        let n = self.chunks.pop_front().unwrap_or(usize::MAX).max(1);
        self.arrived = self.data.len().min(self.arrived.saturating_add(n));
        true
    }

    fn unread(&self) -> &[u8] {
        &self.data[self.taken..self.arrived]
    }
}

impl Source for Conn {
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        tokio::task::yield_now().await;
        if self.unread().is_empty() && !self.arrive() {
            return Ok(0);
        }
        let n = self.unread().len().min(buf.len());
        buf[..n].copy_from_slice(&self.unread()[..n]);
        Ok(n)
    }

    async fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
        tokio::task::yield_now().await;
        while self.unread().len() < buf.len() {
            if !self.arrive() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        buf.copy_from_slice(&self.unread()[..buf.len()]);
        self.taken += buf.len();
        Ok(())
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn proxied(client: &str, local: &str) -> Received {
    Received::Proxied {
        client: addr(client),
        local: addr(local),
    }
}

fn v2_header(
    command: v2::Command,
    protocol: v2::Protocol,
    addresses: impl Into<v2::Addresses>,
    tlvs: &[(v2::Type, &[u8])],
) -> Vec<u8> {
    let mut b = v2::Builder::with_addresses(v2::Version::Two | command, protocol, addresses);
    for (t, v) in tlvs {
        b = b.write_tlv(*t, v).unwrap();
    }
    b.build().unwrap()
}

/// Valid headers (v1 TCP4/TCP6/UNKNOWN, v2 IPv4/IPv6/LOCAL/UNSPEC, with
/// and without TLVs), what each says, and the payload after it.
fn proxy_seeds() -> Vec<(Vec<u8>, Received, &'static [u8])> {
    use v2::{Command::*, Protocol::*, Type};
    let http: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let tls: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
    let again: &[u8] = b"PROXY TCP4 198.18.9.9 198.18.0.1 1 2\r\nGET /";
    let (c4, l4) = ("198.18.77.7:40000", "198.18.0.100:8080");
    let (c6, l6) = ("[2001:db8::7]:1", "[2001:db8::100]:443");
    let tlvs: &[(Type, &[u8])] = &[
        (Type::UniqueId, b"abc"),
        (Type::Authority, b"a.xlb.test"),
        (Type::NoOp, &[0; 5]),
    ];
    let v4 = (addr(c4), addr(l4));
    let v6 = (addr(c6), addr(l6));
    let unspec = v2::Addresses::Unspecified;
    vec![
        (
            b"PROXY TCP4 198.18.77.7 198.18.0.100 40000 8080\r\n".to_vec(),
            proxied(c4, l4),
            http,
        ),
        (
            b"PROXY TCP6 2001:db8::7 2001:db8::100 1 443\r\n".to_vec(),
            proxied(c6, l6),
            tls,
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), Received::Unknown, http),
        (
            b"PROXY UNKNOWN 2001:db8::7 2001:db8::100 1 443\r\n".to_vec(),
            Received::Unknown,
            again,
        ),
        (v2_header(Proxy, Stream, v4, &[]), proxied(c4, l4), http),
        (v2_header(Proxy, Stream, v4, tlvs), proxied(c4, l4), again),
        (v2_header(Proxy, Stream, v6, &[]), proxied(c6, l6), tls),
        (v2_header(Proxy, Stream, v6, tlvs), proxied(c6, l6), http),
        (
            v2_header(Local, Unspecified, unspec, &[]),
            Received::Unknown,
            http,
        ),
        (v2_header(Local, Stream, v4, tlvs), Received::Unknown, tls),
        (
            v2_header(Proxy, Unspecified, unspec, &[]),
            Received::Unknown,
            http,
        ),
        (
            v2_header(Proxy, Unspecified, unspec, tlvs),
            Received::Unknown,
            tls,
        ),
        (v2_header(Proxy, Datagram, v4, &[]), Received::Unknown, http),
    ]
}

/// What a v2 header's fixed part and addresses say: `Received` as the
/// spec reads it, the header's length.
fn v2_expected(input: &[u8]) -> Result<(Received, usize), String> {
    let len = 16 + usize::from(u16::from_be_bytes([input[14], input[15]]));
    let a = &input[16..len.min(input.len())];
    // Only a PROXY command's TCP addresses are read.
    let need = match (input[12] & 0x0f, input[13]) {
        (1, 0x11) => 12,
        (1, 0x21) => 36,
        _ => 0,
    };
    if a.len() < need {
        return Err(format!(
            "accepted a v2 header of {len} bytes, short of its addresses"
        ));
    }
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let r = match (input[12] & 0x0f, input[13]) {
        (1, 0x11) => {
            let ip =
                |i: usize| IpAddr::from(Ipv4Addr::from(<[u8; 4]>::try_from(&a[i..i + 4]).unwrap()));
            Received::Proxied {
                client: (ip(0), port(8)).into(),
                local: (ip(4), port(10)).into(),
            }
        }
        (1, 0x21) => {
            let ip = |i: usize| {
                IpAddr::from(Ipv6Addr::from(<[u8; 16]>::try_from(&a[i..i + 16]).unwrap()))
            };
            Received::Proxied {
                client: (ip(0), port(32)).into(),
                local: (ip(16), port(34)).into(),
            }
        }
        _ => Received::Unknown,
    };
    Ok((r, len))
}

/// What a v1 header line says, when its words parse with the standard
/// library (`None` when they do not: the reader may be more lenient).
fn v1_expected(line: &[u8]) -> Option<Received> {
    let text = std::str::from_utf8(line.strip_suffix(b"\r\n")?).ok()?;
    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Some(Received::Unknown),
        ["PROXY", fam @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let (src, dst): (IpAddr, IpAddr) = (src.parse().ok()?, dst.parse().ok()?);
            if src.is_ipv4() != (*fam == "TCP4") || dst.is_ipv4() != src.is_ipv4() {
                return None;
            }
            Some(Received::Proxied {
                client: (src, sport.parse().ok()?).into(),
                local: (dst, dport.parse().ok()?).into(),
            })
        }
        _ => None,
    }
}

/// The properties of one read of `input` arriving in `chunks`: whether
/// it was accepted.
fn check_proxy(
    rt: &tokio::runtime::Runtime,
    input: &[u8],
    chunks: &[usize],
    want: Option<&Received>,
    lenient: &mut usize,
) -> Result<bool, String> {
    let mut conn = Conn::new(input.to_vec(), chunks);
    let r = rt.block_on(proxy_protocol::read(&mut conn, PROXY_LIMIT));
    let got = match r {
        Err(ReadError::Timeout(_)) => return Err("hung (timed out on a source at EOF)".into()),
        Err(e) if e.to_string().is_empty() => return Err(format!("empty error {e:?}")),
        Err(e) => match want {
            Some(_) => return Err(format!("a valid header refused: {e}")),
            None => return Ok(false),
        },
        Ok(got) => got,
    };
    let (expected, header_len) = if input.starts_with(V2_SIG) {
        let (r, len) = v2_expected(input)?;
        (Some(r), len)
    } else if input.starts_with(b"PROXY ") {
        let len = input
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("accepted a v1 header with no end")?
            + 1;
        let line = &input[..len];
        if !line.ends_with(b"\r\n") || len > proxy_protocol::V1_MAX_BYTES {
            return Err(format!(
                "accepted a v1 line of {len} bytes not ended by CRLF"
            ));
        }
        let e = v1_expected(line);
        *lenient += usize::from(e.is_none());
        (e, len)
    } else {
        return Err(format!("accepted input with no PROXY signature: {got:?}"));
    };
    // The reader took exactly the header: the payload is left unread.
    if conn.taken != header_len {
        return Err(format!(
            "took {} bytes of a {header_len}-byte header ({got:?})",
            conn.taken
        ));
    }
    if let Some(e) = expected
        && e != got
    {
        return Err(format!("read {got:?}, the header says {e:?}"));
    }
    if let Some(w) = want
        && *w != got
    {
        return Err(format!("read {got:?}, want {w:?}"));
    }
    Ok(true)
}

/// How the input arrives: whole most of the time, else in random pieces
/// (a byte at a time one case in 8).
fn chunking(rng: &mut Rng, len: usize) -> Vec<usize> {
    match rng.below(8) {
        0 => vec![1; len],
        1..=3 => (0..len).map(|_| 1 + rng.below(40)).collect(),
        _ => vec![len],
    }
}

/// Header bytes worth setting: CR, LF, blanks, digits, separators, the
/// v2 version/command, family and length bytes.
const PROXY_BYTES: &[u8] = b"\r\n \t.:0917\x00\x01\x02\x03\x10\x11\x12\x20\x21\x22\x31\x7f\x80\xff";

#[test]
fn proxy_protocol_reader_survives_mutated_headers() {
    let (seed, cases) = fuzz::seed_and_cases(PROXY_SEED, PROXY_CASES);
    let (violations, summary) = Watchdog::default().run(CASE_LIMIT, move |dog| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let seeds = proxy_seeds();
        let inputs: Vec<Vec<u8>> = seeds.iter().map(|(h, _, p)| [h, *p].concat()).collect();
        let mut violations = Vec::new();
        let mut lenient = 0;
        for ((header, want, _), input) in seeds.iter().zip(&inputs) {
            let r = fuzz::run_case(|| {
                check_proxy(&rt, input, &[input.len()], Some(want), &mut lenient)?;
                // Byte by byte too.
                check_proxy(&rt, input, &vec![1; input.len()], Some(want), &mut lenient)
            });
            if let Err(e) = r {
                violations.push(format!("seed {}: {e}", hex(header)));
            }
        }
        let found = fuzz::hunt(
            &mut Rng(seed),
            cases,
            Some(&dog),
            |rng| {
                let base = rng.pick(&inputs);
                let input = fuzz::mutate_bytes(rng, base, &inputs, PROXY_BYTES, PROXY_MAX);
                let chunks = chunking(rng, input.len());
                (input, chunks)
            },
            |(input, chunks)| format!("input {}\n  arriving in pieces of {chunks:?}", hex(input)),
            |(input, chunks)| check_proxy(&rt, input, chunks, None, &mut lenient),
        );
        let summary = format!(
            "{}, {lenient} v1 headers accepted that std would not parse",
            found.summary("PROXY", seed)
        );
        violations.extend(found.violations);
        (violations, summary)
    });
    eprintln!("{summary}");
    fuzz::assert_none("PROXY reader", seed, &violations, 10);
}

// ---------------------------------------------------------------- API

const API_SEED: u64 = 0x00a9_1c0d_e5ee_d026;
const API_CASES: usize = 50_000;

/// Every command form `parses_every_command` knows, and a few refusals.
const API_SEEDS: &[&str] = &[
    "help",
    "  show   info ",
    "show stat",
    "show servers state",
    "reload",
    "set server web/web2 state maint",
    "set server web/web2 state ready",
    "set server web/web2 state drain",
    "set server web/web2 weight 0",
    "add server web/web2 198.18.1.12:8080 weight 7",
    "add server web/web2 [2001:db8:1::12]:80",
    "del server web/web2",
    "set server web/web2 weight 1001",
    "add server web/web4 198.18.1.14:0",
];

/// A command as a line `parse` takes back.
fn print(c: &Command) -> String {
    match c {
        Command::Help => "help".into(),
        Command::ShowInfo => "show info".into(),
        Command::ShowStat => "show stat".into(),
        Command::ShowServersState => "show servers state".into(),
        Command::Reload => "reload".into(),
        Command::SetState(r, a) => format!("set server {r} state {}", admin_name(*a)),
        Command::SetWeight(r, w) => format!("set server {r} weight {w}"),
        Command::AddServer {
            target,
            address,
            weight,
        } => match weight {
            Some(w) => format!("add server {target} {address} weight {w}"),
            None => format!("add server {target} {address}"),
        },
        Command::DelServer(r) => format!("del server {r}"),
    }
}

fn check_command(line: &str) -> Result<bool, String> {
    match command::parse(line) {
        Err(e) if e.is_empty() => Err("empty error".into()),
        Err(e) if e.contains(['\n', '\r']) => Err(format!("error of several lines: {e:?}")),
        Err(_) => Ok(false),
        Ok(c) => {
            let printed = print(&c);
            match command::parse(&printed) {
                Ok(again) if again == c => Ok(true),
                other => Err(format!(
                    "accepted as {c:?}, written as {printed:?}, which parses as {other:?}"
                )),
            }
        }
    }
}

/// The command language's words, and values around its limits.
const API_WORDS: &[&str] = &[
    "help",
    "show",
    "info",
    "stat",
    "servers",
    "state",
    "set",
    "server",
    "weight",
    "add",
    "del",
    "reload",
    "ready",
    "drain",
    "maint",
    "web/web1",
    "web/",
    "/x",
    "a/b/c",
    "198.18.1.11:80",
    "[2001:db8::1]:80",
    "[::1]",
    "0",
    "1000",
    "1001",
    "-1",
    "99999999999999999999",
    "\u{0}",
    "\u{1b}[1m",
    "\u{e9}",
    "\r",
    "\t",
    "",
];

/// Up to 7 of the language's words in any order: commands a byte
/// mutation of a valid one rarely reaches.
fn word_soup(rng: &mut Rng) -> String {
    (0..rng.below(8))
        .map(|_| *rng.pick(API_WORDS))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Blanks, separators, digits, control and non-ASCII bytes.
const API_BYTES: &[u8] = b" \t\r\n\x0b\x0c/:[].-_0179\x00\x1b\x7f\x85\xa0\xc2\xc3\xe2\xff";

#[test]
fn api_command_parser_survives_mutated_lines() {
    let (seed, cases) = fuzz::seed_and_cases(API_SEED, API_CASES);
    let (violations, summary) = Watchdog::default().run(CASE_LIMIT, move |dog| {
        let seeds: Vec<Vec<u8>> = API_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
        let mut violations = Vec::new();
        for s in API_SEEDS {
            if let Err(e) = fuzz::run_case(|| check_command(s).map(|_| ())) {
                violations.push(format!("seed {s:?}: {e}"));
            }
        }
        let max = command::MAX_LINE + 64;
        let found = fuzz::hunt(
            &mut Rng(seed),
            cases,
            Some(&dog),
            |rng| {
                if rng.chance(4) {
                    return word_soup(rng);
                }
                let base = rng.pick(&seeds);
                let bytes = fuzz::mutate_bytes(rng, base, &seeds, API_BYTES, max);
                String::from_utf8_lossy(&bytes).into_owned()
            },
            |line| format!("line {line:?}"),
            |line| check_command(line),
        );
        let summary = found.summary("API", seed);
        violations.extend(found.violations);
        (violations, summary)
    });
    eprintln!("{summary}");
    fuzz::assert_none("API command parser", seed, &violations, 10);
}

// ---------------------------------------------------------------- config

const CONFIG_SEED: u64 = 0x00c0_4f19_5eed_2026;
const CONFIG_CASES: usize = 5_000;
const CONFIG_MAX: usize = 32 * 1024;

/// An L7 config with every TLS file check: a frontend certificate with an
/// SNI one (the files of `sni_certs`) and a backend CA.
fn tls_config() -> String {
    format!(
        "[[backend]]\nname = \"api\"\nproto = \"h2\"\ntls = true\ntls_ca = \"ca.pem\"\n\
         tls_server_name = \"api.internal\"\n\n  [[backend.server]]\n  name = \"api1\"\n  \
         address = \"198.18.4.41:9000\"\n\n[[frontend]]\nname = \"https\"\n\
         bind = \"198.18.0.100:443\"\ndefault_backend = \"api\"\n{SNI_TLS}"
    )
}

/// Values a number becomes.
const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999",
    "1e308",
    "0.5",
    "nan",
    "-inf",
    "0x10",
    "1_000",
];

/// Values a string's contents become.
const STRINGS: &[&str] = &[
    "",
    " ",
    "0.0.0.0:0",
    "[::]:0",
    "198.18.0.100:65535",
    "[2001:db8::1]:80",
    "::",
    "web",
    "a/b",
    "/",
    "../../x",
    "\\u0000",
    "\\n",
    "é",
];

/// Byte ranges, start and end.
type Spans = Vec<(usize, usize)>;

/// Byte ranges of the digit runs and of the quoted strings' contents.
fn spans(text: &[u8]) -> (Spans, Spans) {
    let (mut numbers, mut strings) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < text.len() {
        if text[i].is_ascii_digit() {
            let start = i;
            while i < text.len() && text[i].is_ascii_digit() {
                i += 1;
            }
            numbers.push((start, i));
        } else if text[i] == b'"' {
            let start = i + 1;
            i = start;
            while i < text.len() && text[i] != b'"' && text[i] != b'\n' {
                i += 1;
            }
            if i < text.len() && text[i] == b'"' {
                strings.push((start, i));
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    (numbers, strings)
}

/// Line-level mutations: drop, repeat, swap lines, bring in a line of
/// another seed, change a number or a string.
fn mutate_config_lines(rng: &mut Rng, f: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let mut lines: Vec<Vec<u8>> = f.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    match rng.below(6) {
        0 => {
            lines.remove(rng.below(lines.len()));
        }
        1 => {
            let i = rng.below(lines.len());
            let l = lines[i].clone();
            lines.insert(rng.below(lines.len() + 1), l);
        }
        2 => {
            let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
            lines.swap(i, j);
        }
        3 => {
            let other: Vec<&[u8]> = rng.pick(seeds).split(|&b| b == b'\n').collect();
            let l = rng.pick(&other).to_vec();
            lines.insert(rng.below(lines.len() + 1), l);
        }
        k => {
            let (numbers, strings) = spans(f);
            let (pool, values) = if k == 4 {
                (numbers, NUMBERS)
            } else {
                (strings, STRINGS)
            };
            if !pool.is_empty() {
                let (s, e) = *rng.pick(&pool);
                f.splice(s..e, rng.pick(values).bytes());
            }
            return;
        }
    }
    *f = lines.join(&b'\n');
}

fn mutate_config(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut f = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        if rng.chance(3) {
            f = fuzz::mutate_bytes(rng, &f, seeds, CONFIG_BYTES, CONFIG_MAX);
        } else {
            mutate_config_lines(rng, &mut f, seeds);
        }
    }
    f
}

/// TOML's punctuation, quotes, escapes, digits and non-ASCII bytes.
const CONFIG_BYTES: &[u8] = b"\n\r\t =\"'[]{},.#\\:-0159\x00\x7f\xc3\xff";

fn check_config(text: &str, file: &str, checks: &config::Checks) -> Result<bool, String> {
    match config::parse_with(text, file, checks) {
        Ok(_) => Ok(true),
        Err(e) => {
            let lines = text.split('\n').count();
            if e.message.trim().is_empty() {
                Err(format!("empty message: {e:?}"))
            } else if e.file != file || e.line == 0 || e.col == 0 || e.line > lines {
                Err(format!("position outside the file ({lines} lines): {e:?}"))
            } else if e.to_string().is_empty() {
                Err("empty Display".into())
            } else {
                Ok(false)
            }
        }
    }
}

#[test]
fn config_parser_survives_mutated_configs() {
    let (seed, cases) = fuzz::seed_and_cases(CONFIG_SEED, CONFIG_CASES);
    let dir = TempDir::new("parsers-fuzz").unwrap();
    sni_certs(&dir).unwrap();
    let file = dir.path().join("xlb.toml").display().to_string();
    let (violations, summary) = Watchdog::default().run(CASE_LIMIT, move |dog| {
        let checks = l7::config_checks();
        let seeds: Vec<Vec<u8>> = [
            include_str!("../../examples/full.toml").to_string(),
            include_str!("../../examples/lab.toml").to_string(),
            tls_config(),
        ]
        .map(String::into_bytes)
        .into();
        let mut violations = Vec::new();
        for s in &seeds {
            let text = String::from_utf8_lossy(s);
            // The seeds are valid configs.
            if let Err(e) = config::parse_with(&text, &file, &checks) {
                violations.push(format!("seed refused: {e}\n  config {text:?}"));
            }
        }
        let found = fuzz::hunt(
            &mut Rng(seed),
            cases,
            Some(&dog),
            |rng| {
                let base = rng.pick(&seeds);
                String::from_utf8_lossy(&mutate_config(rng, base, &seeds)).into_owned()
            },
            |text| format!("config {text:?}"),
            |text| check_config(text, &file, &checks),
        );
        let summary = found.summary("config", seed);
        violations.extend(found.violations);
        (violations, summary)
    });
    drop(dir);
    eprintln!("{summary}");
    fuzz::assert_none("config parser", seed, &violations, 5);
}
