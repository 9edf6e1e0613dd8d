//! Addresses and ports in the data path's layout (network byte order words).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use xlb_common::{AF_INET, AF_INET6};

pub fn ip_words(ip: IpAddr) -> ([u32; 4], u8) {
    match ip {
        IpAddr::V4(v4) => ([u32::from_ne_bytes(v4.octets()), 0, 0, 0], AF_INET),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            ([w(0), w(4), w(8), w(12)], AF_INET6)
        }
    }
}

pub fn words_ip(words: [u32; 4], family: u8) -> IpAddr {
    if family == AF_INET {
        IpAddr::V4(Ipv4Addr::from(words[0].to_ne_bytes()))
    } else {
        let mut o = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::V6(Ipv6Addr::from(o))
    }
}

/// Address words, port as it sits in the packet, family.
pub fn socket_words(addr: SocketAddr) -> ([u32; 4], u16, u8) {
    let (words, family) = ip_words(addr.ip());
    (words, addr.port().to_be(), family)
}
