//! The PROXY protocol (HAProxy's spec, v1 text and v2 binary), parsed and
//! built with the `ppp` crate.
//!
//! - Reading (`accept_proxy` on a `[[frontend]]`): the one header a
//!   balancer in front puts at the start of each client connection, read
//!   without consuming a byte past it (the TLS handshake or HTTP that
//!   follows stays in the socket).
//! - Writing (`send_proxy` on a `[[backend]]`): the header xlb puts at the
//!   start of each server connection, carrying the client's address, and
//!   the address-less one its health checks send.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use ppp::{v1, v2};
use tokio::{io::AsyncReadExt, net::TcpStream};

use super::upstream::Pool;
use crate::config::ProxyVersion;

/// The longest v1 header, `\r\n` included (the spec's limit).
pub const V1_MAX_BYTES: usize = 107;
/// The longest v2 header xlb takes: the 16 fixed bytes, the addresses (at
/// most 216, for unix sockets) and room for the TLVs balancers add (AWS,
/// Azure, GCP and HAProxy's SSL ones are well under this).
pub const V2_MAX_BYTES: usize = 1024;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The 12-byte v2 signature, then version/command, family/protocol and
/// the 2-byte length: 16 bytes.
const V2_FIXED: usize = 16;

/// What a client connection's PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A proxied TCP connection: the original client and the address it
    /// connected to.
    Proxied {
        client: SocketAddr,
        local: SocketAddr,
    },
    /// v1 `UNKNOWN`, v2 `LOCAL` (the balancer's own health checks), or a
    /// v2 family other than TCP over IPv4/IPv6: the socket's own
    /// addresses stand.
    Unknown,
}

/// Why a client connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Nothing at all arrived (a port check): not worth a log line.
    #[error("connection closed before sending anything")]
    Closed,
    #[error("connection closed within the PROXY header")]
    Truncated,
    #[error("no complete PROXY header within {0} ms")]
    Timeout(u128),
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than {V1_MAX_BYTES} bytes")]
    TooLongV1,
    #[error("PROXY v2 header of {0} bytes, over the {V2_MAX_BYTES}-byte limit")]
    TooLongV2(usize),
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    #[error("reading the PROXY header: {0}")]
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ReadError::Truncated
        } else {
            ReadError::Io(e)
        }
    }
}

/// A byte stream the header can be read from without reading past it:
/// a TCP socket (or, in tests and the lab's fuzz, a scripted one).
/// Public for that fuzz; its futures need no `Send` bound, as the reader
/// runs on the connection's own task.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// The bytes waiting, left in place; waits for some; 0 at the end.
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Takes exactly `buf.len()` bytes.
    async fn take(&mut self, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for TcpStream {
    async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf).await
    }

    async fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact(buf).await.map(|_| ())
    }
}

/// Reads the one PROXY header (v1 or v2, told by its first bytes) at the
/// start of `src`, within `limit`; what follows it stays unread.
pub async fn read(src: &mut impl Source, limit: Duration) -> Result<Received, ReadError> {
    tokio::time::timeout(limit, read_header(src))
        .await
        .unwrap_or(Err(ReadError::Timeout(limit.as_millis())))
}

async fn read_header(src: &mut impl Source) -> Result<Received, ReadError> {
    let mut head = [0u8; V1_MAX_BYTES];
    let n = src.peek(&mut head).await?;
    let seen = &head[..n];
    if n == 0 {
        return Err(ReadError::Closed);
    }
    // Garbage (an HTTP request, a TLS hello) is refused on its first
    // bytes, without waiting for more.
    if v2::PROTOCOL_PREFIX.starts_with(&seen[..n.min(v2::PROTOCOL_PREFIX.len())]) {
        read_v2(src).await
    } else if V1_PREFIX.starts_with(&seen[..n.min(V1_PREFIX.len())]) {
        read_v1(src, head).await
    } else {
        Err(ReadError::NotProxy)
    }
}

/// A v1 header ends at its first `\n`: the bytes before one are all
/// header, so they are taken as they come and the socket is only peeked
/// at for the end.
async fn read_v1(
    src: &mut impl Source,
    mut buf: [u8; V1_MAX_BYTES],
) -> Result<Received, ReadError> {
    let mut got = 0;
    loop {
        let n = src.peek(&mut buf[got..]).await?;
        if n == 0 {
            return Err(ReadError::Truncated);
        }
        let end = buf[got..got + n].iter().position(|&b| b == b'\n');
        let take = end.map_or(n, |i| i + 1);
        src.take(&mut buf[got..got + take]).await?;
        got += take;
        let p = got.min(V1_PREFIX.len());
        if buf[..p] != V1_PREFIX[..p] {
            return Err(ReadError::NotProxy);
        }
        if end.is_some() {
            return parse_v1(&buf[..got]);
        }
        if got == V1_MAX_BYTES {
            return Err(ReadError::TooLongV1);
        }
    }
}

/// A v2 header says its length in its 16 fixed bytes.
async fn read_v2(src: &mut impl Source) -> Result<Received, ReadError> {
    let mut fixed = [0u8; V2_FIXED];
    src.take(&mut fixed).await?;
    if !fixed.starts_with(v2::PROTOCOL_PREFIX) {
        return Err(ReadError::NotProxy);
    }
    let len = V2_FIXED + usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_BYTES {
        return Err(ReadError::TooLongV2(len));
    }
    let mut header = vec![0u8; len];
    header[..V2_FIXED].copy_from_slice(&fixed);
    src.take(&mut header[V2_FIXED..]).await?;
    parse_v2(&header)
}

/// A whole v1 header, `\r\n` included.
fn parse_v1(bytes: &[u8]) -> Result<Received, ReadError> {
    // A lone `\n` (no `\r` before it) ended our read. ppp refuses that
    // after TCP4/TCP6 addresses but takes `PROXY UNKNOWN \n` (a blank
    // before the `\n`), so it is checked here.
    let refused = || ReadError::Malformed("v1 header not ended by \\r\\n".into());
    if !bytes.ends_with(b"\r\n") {
        return Err(refused());
    }
    let header = v1::Header::try_from(bytes).map_err(|e| ReadError::Malformed(e.to_string()))?;
    if header.header.len() != bytes.len() {
        // ppp stopped at an earlier `\r`.
        return Err(refused());
    }
    Ok(match header.addresses {
        v1::Addresses::Tcp4(a) => Received::Proxied {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        },
        v1::Addresses::Tcp6(a) => Received::Proxied {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        },
        v1::Addresses::Unknown => Received::Unknown,
    })
}

/// A whole v2 header, TLVs included (they are not used).
fn parse_v2(bytes: &[u8]) -> Result<Received, ReadError> {
    let header = v2::Header::try_from(bytes).map_err(|e| ReadError::Malformed(e.to_string()))?;
    if header.command == v2::Command::Local || header.protocol != v2::Protocol::Stream {
        return Ok(Received::Unknown);
    }
    Ok(match header.addresses {
        v2::Addresses::IPv4(a) => Received::Proxied {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        },
        v2::Addresses::IPv6(a) => Received::Proxied {
            client: (a.source_address, a.source_port).into(),
            local: (a.destination_address, a.destination_port).into(),
        },
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => Received::Unknown,
    })
}

/// The header a server connection starts with: `version`, source the
/// client, destination the address the client connected to. An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as IPv4, so two
/// IPv4 addresses give `TCP4` / `AF_INET`; otherwise both are written as
/// IPv6 (`TCP6` / `AF_INET6`), an IPv4 one in its mapped form, as HAProxy
/// does: the client's address always reaches the server.
pub fn header(version: ProxyVersion, client: SocketAddr, local: SocketAddr) -> io::Result<Vec<u8>> {
    let (client, local) = match (unmapped(client), unmapped(local)) {
        (c @ SocketAddr::V4(_), l @ SocketAddr::V4(_)) => (c, l),
        (c, l) => (mapped(c), mapped(l)),
    };
    match version {
        ProxyVersion::V1 => Ok(v1::Addresses::from((client, local))
            .to_string()
            .into_bytes()),
        ProxyVersion::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (client, local),
        )
        .build(),
    }
}

/// The header of a connection xlb makes on its own behalf (health
/// checks): v1 `PROXY UNKNOWN`, v2 `LOCAL`.
pub fn local_header(version: ProxyVersion) -> io::Result<Vec<u8>> {
    match version {
        ProxyVersion::V1 => Ok(v1::Addresses::Unknown.to_string().into_bytes()),
        ProxyVersion::V2 => v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Local,
            v2::Protocol::Unspecified,
            v2::Addresses::Unspecified,
        )
        .build(),
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d` (what a dual-stack socket reports for an
/// IPv4 peer).
pub(super) fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => (v4, v6.port()).into(),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// `a.b.c.d` as `::ffff:a.b.c.d`, to write it beside an IPv6 address.
fn mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => (v4.ip().to_ipv6_mapped(), v4.port()).into(),
        SocketAddr::V6(_) => addr,
    }
}

/// What a server connection of a `send_proxy` backend carries: the
/// version and the two addresses of the client connection it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendProxy {
    pub version: ProxyVersion,
    pub client: SocketAddr,
    pub local: SocketAddr,
}

impl SendProxy {
    /// Writes the header to a server connection just opened.
    pub async fn write_to(&self, stream: &mut TcpStream) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let bytes = header(self.version, self.client, self.local)?;
        stream.write_all(&bytes).await
    }
}

/// Server connections private to one client connection: those of
/// `send_proxy` backends carry the client's address in their first bytes,
/// so no other client may reuse them. Made on first use (one pool per
/// version, as two backends may reach one server with either), so a TCP
/// connection that never needs them allocates nothing, and closed with
/// the client connection. An HTTP/3 connection, which makes a
/// [`super::proxy::ConnCtx`] per request, gives each one a handle to its
/// own ([`PrivatePools::share`]: one small allocation per QUIC
/// connection; the last handle dropped closes them).
#[derive(Default)]
pub struct PrivatePools(OnceLock<Arc<[OnceLock<Arc<Pool>>; 2]>>);

impl PrivatePools {
    pub fn get(&self, version: ProxyVersion) -> &Arc<Pool> {
        let slots = self.0.get_or_init(Default::default);
        let slot = match version {
            ProxyVersion::V1 => &slots[0],
            ProxyVersion::V2 => &slots[1],
        };
        slot.get_or_init(Default::default)
    }

    /// Another handle to the same pools.
    pub fn share(&self) -> PrivatePools {
        PrivatePools(OnceLock::from(self.0.get_or_init(Default::default).clone()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// A connection's bytes, arriving in `chunks`; at the end either EOF
    /// or (`stall`) silence.
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        buffered: Vec<u8>,
        taken: usize,
        stall: bool,
    }

    impl Script {
        fn new(chunks: &[&[u8]]) -> Self {
            Script {
                chunks: chunks.iter().map(|c| c.to_vec()).collect(),
                buffered: Vec::new(),
                taken: 0,
                stall: false,
            }
        }

        fn stalling(mut self) -> Self {
            self.stall = true;
            self
        }

        fn one(bytes: &[u8]) -> Self {
            Script::new(&[bytes])
        }

        /// Waits for the next chunk: false at the end.
        async fn arrive(&mut self) -> bool {
            match self.chunks.pop_front() {
                Some(c) => {
                    self.buffered.extend_from_slice(&c);
                    true
                }
                None if self.stall => std::future::pending().await,
                None => false,
            }
        }

        fn unread(&self) -> &[u8] {
            &self.buffered[self.taken..]
        }
    }

    impl Source for Script {
        async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.unread().is_empty() && !self.arrive().await {
                return Ok(0);
            }
            let n = self.unread().len().min(buf.len());
            buf[..n].copy_from_slice(&self.unread()[..n]);
            Ok(n)
        }

        async fn take(&mut self, buf: &mut [u8]) -> io::Result<()> {
            while self.unread().len() < buf.len() {
                if !self.arrive().await {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            buf.copy_from_slice(&self.unread()[..buf.len()]);
            self.taken += buf.len();
            Ok(())
        }
    }

    const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const LIMIT: Duration = Duration::from_secs(5);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(client: &str, local: &str) -> Received {
        Received::Proxied {
            client: addr(client),
            local: addr(local),
        }
    }

    async fn read_all(mut s: Script) -> (Result<Received, ReadError>, Script) {
        let r = read(&mut s, LIMIT).await;
        (r, s)
    }

    fn v2_proxy(addresses: impl Into<v2::Addresses>) -> Vec<u8> {
        let command = v2::Version::Two | v2::Command::Proxy;
        v2::Builder::with_addresses(command, v2::Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    fn then_http(header: &[u8]) -> Vec<u8> {
        [header, HTTP].concat()
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_leave_the_http_bytes_unread() {
        for (header, want) in [
            (
                &b"PROXY TCP4 198.18.77.7 198.18.0.100 40000 8080\r\n"[..],
                proxied("198.18.77.7:40000", "198.18.0.100:8080"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::100 40000 443\r\n",
                proxied("[2001:db8::7]:40000", "[2001:db8::100]:443"),
            ),
            (b"PROXY UNKNOWN\r\n", Received::Unknown),
            (
                b"PROXY UNKNOWN 2001:db8::7 2001:db8::100 40000 443\r\n",
                Received::Unknown,
            ),
        ] {
            let (r, s) = read_all(Script::one(&then_http(header))).await;
            assert_eq!(r.unwrap(), want, "{}", String::from_utf8_lossy(header));
            assert_eq!(s.unread(), HTTP);
        }
    }

    #[tokio::test]
    async fn v2_proxy_and_local_leave_the_http_bytes_unread() {
        let v4 = v2_proxy((addr("198.18.77.7:40000"), addr("198.18.0.100:8080")));
        let v6 = v2_proxy((addr("[2001:db8::7]:1"), addr("[2001:db8::100]:443")));
        let with_tlv = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (addr("198.18.77.8:2"), addr("198.18.0.100:80")),
        )
        .write_tlv(v2::Type::UniqueId, b"abc")
        .unwrap()
        .build()
        .unwrap();
        let udp = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Datagram,
            (addr("198.18.77.9:3"), addr("198.18.0.100:80")),
        )
        .build()
        .unwrap();
        for (header, want) in [
            (v4, proxied("198.18.77.7:40000", "198.18.0.100:8080")),
            (v6, proxied("[2001:db8::7]:1", "[2001:db8::100]:443")),
            (with_tlv, proxied("198.18.77.8:2", "198.18.0.100:80")),
            (udp, Received::Unknown),
            (local_header(ProxyVersion::V2).unwrap(), Received::Unknown),
        ] {
            let (r, s) = read_all(Script::one(&then_http(&header))).await;
            assert_eq!(r.unwrap(), want, "{header:?}");
            assert_eq!(s.unread(), HTTP);
        }
    }

    /// A header split over many segments, a byte at a time, still reads
    /// whole and stops at its end.
    #[tokio::test]
    async fn headers_arriving_byte_by_byte() {
        let v1 = b"PROXY TCP4 198.18.77.7 198.18.0.100 40000 8080\r\n".to_vec();
        let v2 = v2_proxy((addr("198.18.77.7:40000"), addr("198.18.0.100:8080")));
        for header in [v1, v2] {
            let bytes = then_http(&header);
            let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
            let (r, s) = read_all(Script::new(&chunks)).await;
            assert_eq!(
                r.unwrap(),
                proxied("198.18.77.7:40000", "198.18.0.100:8080")
            );
            assert_eq!(s.taken, header.len());
        }
    }

    #[tokio::test]
    async fn garbage_truncated_and_oversized_are_refused() {
        let v2 = v2_proxy((addr("198.18.77.7:40000"), addr("198.18.0.100:8080")));
        let mut v2_long = v2[..V2_FIXED].to_vec();
        v2_long[14..16].copy_from_slice(&2000u16.to_be_bytes());
        let mut v2_v3 = v2.clone();
        v2_v3[12] = 0x31;
        let mut v2_short_len = v2.clone();
        v2_short_len[14..16].copy_from_slice(&4u16.to_be_bytes());
        let long_v1 = format!("PROXY UNKNOWN {}\r\n", "x".repeat(120));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (HTTP.to_vec(), "NotProxy"),
            (b"\x16\x03\x01\x02\x00".to_vec(), "NotProxy"),
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".to_vec(), "Malformed"),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n".to_vec(), "Malformed"),
            // Found by the lab's parsers_fuzz: ppp takes these (a blank
            // before the lone `\n`); the spec wants `\r\n`.
            (b"PROXY UNKNOWN \nGET / HTTP/1.1\r\n".to_vec(), "Malformed"),
            (
                b"PROXY UNKNOWN 2001:db8::7 2001:db8::100 1 \n43\r\n".to_vec(),
                "Malformed",
            ),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n".to_vec(), "Malformed"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2\r\n".to_vec(),
                "Malformed",
            ),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2".to_vec(), "Truncated"),
            (b"PROX".to_vec(), "Truncated"),
            (b"PROXX TCP4".to_vec(), "NotProxy"),
            (long_v1.into_bytes(), "TooLongV1"),
            ([b"PROXY ".as_slice(), &[0xff; 200]].concat(), "TooLongV1"),
            (v2[..10].to_vec(), "Truncated"),
            (v2[..20].to_vec(), "Truncated"),
            (v2_long, "TooLongV2"),
            (v2_v3, "Malformed"),
            (then_http(&v2_short_len), "Malformed"),
            (b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c".to_vec(), "NotProxy"),
            (Vec::new(), "Closed"),
        ];
        for (bytes, want) in cases {
            let (r, _) = read_all(Script::one(&bytes)).await;
            let got = format!("{:?}", r.expect_err(&format!("{bytes:?} accepted")));
            assert!(got.starts_with(want), "{bytes:?}: {got}, want {want}");
        }
    }

    /// No byte sequence panics the reader: every prefix of valid headers,
    /// and bytes from a fixed pseudo-random stream behind each signature.
    #[tokio::test]
    async fn no_byte_sequence_panics() {
        let v2 = v2_proxy((addr("[2001:db8::7]:1"), addr("[2001:db8::100]:443")));
        let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::100 40000 443\r\n".to_vec();
        for header in [&v1, &v2] {
            for end in 0..header.len() {
                let (r, _) = read_all(Script::one(&header[..end])).await;
                assert!(r.is_err(), "a prefix of {end} bytes was accepted");
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        };
        for round in 0..2000 {
            let prefix: &[u8] = match round % 3 {
                0 => v2::PROTOCOL_PREFIX,
                1 => b"PROXY ",
                _ => b"",
            };
            let len = usize::from(next()) % 300;
            let mut bytes = prefix.to_vec();
            bytes.extend((0..len).map(|_| next()));
            if round % 3 == 0 && bytes.len() > 15 {
                // A version and a length that often pass the first checks.
                bytes[12] = 0x20 | (bytes[12] & 1);
                bytes[14] = 0;
            }
            let _ = read_all(Script::one(&bytes)).await;
        }
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let mut s = Script::new(&[b"PROXY TCP4 1.2.3.4"]).stalling();
        let r = read(&mut s, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(ReadError::Timeout(50))), "{r:?}");
    }

    #[test]
    fn written_headers_parse_back_to_the_same_addresses() {
        let pairs = [
            ("198.18.77.7:40000", "198.18.0.100:8080"),
            ("[2001:db8::7]:40000", "[2001:db8::100]:443"),
        ];
        for (client, local) in pairs {
            let (c, l) = (addr(client), addr(local));
            let text = header(ProxyVersion::V1, c, l).unwrap();
            assert_eq!(parse_v1(&text).unwrap(), proxied(client, local));
            let parsed = v1::Header::try_from(text.as_slice()).unwrap();
            assert_eq!(parsed.addresses, v1::Addresses::from((c, l)));
            let binary = header(ProxyVersion::V2, c, l).unwrap();
            let parsed = v2::Header::try_from(binary.as_slice()).unwrap();
            assert_eq!(parsed.command, v2::Command::Proxy);
            assert_eq!(parsed.protocol, v2::Protocol::Stream);
            assert_eq!(parsed.addresses, v2::Addresses::from((c, l)));
        }
        assert_eq!(
            header(
                ProxyVersion::V1,
                addr("198.18.77.7:1"),
                addr("198.18.0.100:80")
            )
            .unwrap(),
            b"PROXY TCP4 198.18.77.7 198.18.0.100 1 80\r\n"
        );
    }

    /// An IPv4 client seen through a dual-stack socket is IPv4 in the
    /// header; when one side is IPv6 and the other IPv4 (or IPv4-mapped),
    /// both are written as IPv6, the IPv4 one mapped (HAProxy's
    /// `make_proxy_line_v1/v2`): the client's address is kept, never
    /// replaced by `UNKNOWN` / `UNSPEC`.
    #[test]
    fn mixed_families() {
        let mapped = addr("[::ffff:198.18.77.7]:40000");
        let v6_local = addr("[::ffff:198.18.0.100]:8080");
        let text = header(ProxyVersion::V1, mapped, v6_local).unwrap();
        assert_eq!(text, b"PROXY TCP4 198.18.77.7 198.18.0.100 40000 8080\r\n");
        let (v4, v6) = (addr("198.18.77.7:1"), addr("[2001:db8::100]:443"));
        for client in [v4, addr("[::ffff:198.18.77.7]:1")] {
            let text = header(ProxyVersion::V1, client, v6).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&text),
                "PROXY TCP6 ::ffff:198.18.77.7 2001:db8::100 1 443\r\n"
            );
            assert_eq!(
                parse_v1(&text).unwrap(),
                proxied("[::ffff:198.18.77.7]:1", "[2001:db8::100]:443")
            );
            let binary = header(ProxyVersion::V2, client, v6).unwrap();
            let mut want = v2::PROTOCOL_PREFIX.to_vec();
            want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
            want.extend_from_slice(
                &"::ffff:198.18.77.7"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            want.extend_from_slice(
                &"2001:db8::100"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
            want.extend_from_slice(&[0, 1, 0x01, 0xbb]);
            assert_eq!(binary, want);
            assert_eq!(
                parse_v2(&binary).unwrap(),
                proxied("[::ffff:198.18.77.7]:1", "[2001:db8::100]:443")
            );
        }
        // The other way round: an IPv6 client to an IPv4 address.
        let text = header(
            ProxyVersion::V1,
            addr("[2001:db8::7]:2"),
            addr("198.18.0.100:80"),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&text),
            "PROXY TCP6 2001:db8::7 ::ffff:198.18.0.100 2 80\r\n"
        );
    }

    #[test]
    fn health_check_headers_are_local() {
        assert_eq!(
            local_header(ProxyVersion::V1).unwrap(),
            b"PROXY UNKNOWN\r\n"
        );
        let binary = local_header(ProxyVersion::V2).unwrap();
        let parsed = v2::Header::try_from(binary.as_slice()).unwrap();
        assert_eq!(parsed.command, v2::Command::Local);
        assert_eq!(parsed.addresses, v2::Addresses::Unspecified);
        assert_eq!(binary.len(), V2_FIXED);
    }
}
