//! Internet checksums of the Ethernet frames the XDP fixtures feed the
//! data path and get back: the one's-complement sum ([`ones_sum`]), an
//! IPv4 header checksum made right again after a test edits the header
//! ([`fix_ipv4_checksum`]), and [`verify_checksums`], which re-checks
//! every checksum of a frame from scratch, independently of the data path
//! and of the expected bytes a fixture compares with.

/// The one's-complement sum of `bytes` (an odd length padded with a zero
/// byte) plus `initial`, folded to 16 bits. A checksummed header or
/// message, checksum included, sums to `0xffff`.
pub fn ones_sum(initial: u32, bytes: &[u8]) -> u16 {
    let mut sum = initial as u64;
    for pair in bytes.chunks(2) {
        let hi = pair[0] as u64;
        let lo = pair.get(1).copied().unwrap_or(0) as u64;
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Recomputes the header checksum of the IPv4 header at `off` of `frame`
/// (its length from the IHL).
pub fn fix_ipv4_checksum(frame: &mut [u8], off: usize) {
    let ihl = (frame[off] & 0x0f) as usize * 4;
    frame[off + 10..off + 12].copy_from_slice(&[0, 0]);
    let sum = !ones_sum(0, &frame[off..off + ihl]);
    frame[off + 10..off + 12].copy_from_slice(&sum.to_be_bytes());
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const TPID_8021Q: u16 = 0x8100;
const TPID_8021AD: u16 = 0x88a8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_DSTOPTS: u8 = 60;

/// Checks every checksum of an Ethernet frame (after up to two VLAN tags)
/// from scratch, and panics, naming the frame `name`, on a wrong one:
/// - IPv4: the header checksum;
/// - TCP and UDP over IPv4 or IPv6, with their pseudo-header (after IPv6
///   hop-by-hop, destination options and atomic fragment headers). A zero
///   UDP checksum means none over IPv4, and is wrong over IPv6 (RFC 8200);
/// - ICMPv4, and the IPv4 header an ICMPv4 error quotes;
/// - ICMPv6, with its pseudo-header;
/// - IPv4 and IPv6 tunnels (IPIP, IP6IP6, 4in6, 6in4): the outer header,
///   then the inner packet the same way.
///
/// A frame it cannot check is a failure too, never a silent pass: not IP,
/// cut short, an IP fragment (the transport checksum covers the whole
/// datagram), or a protocol or extension header without a rule here.
pub fn verify_checksums(frame: &[u8], name: &str) {
    let mut off = 12;
    let ether_type = loop {
        let Some(t) = frame.get(off..off + 2) else {
            panic!(
                "{name}: frame cut short in the Ethernet header ({} bytes)",
                frame.len()
            );
        };
        let t = u16::from_be_bytes([t[0], t[1]]);
        off += 2;
        if (t == TPID_8021Q || t == TPID_8021AD) && off <= 12 + 2 * 4 {
            off += 2; // the tag's TCI; the next EtherType follows
            continue;
        }
        break t;
    };
    match ether_type {
        ETH_IPV4 | ETH_IPV6 => verify_ip(&frame[off..], name),
        t => panic!("{name}: EtherType {t:#06x} is not IP: no checksum to verify"),
    }
}

/// An IPv4 or IPv6 packet (by its version), up to its stated length.
fn verify_ip(ip: &[u8], name: &str) {
    match ip.first().map(|b| b >> 4) {
        Some(4) => verify_ipv4(ip, name),
        Some(6) => verify_ipv6(ip, name),
        Some(v) => panic!("{name}: IP version {v}"),
        None => panic!("{name}: no IP header"),
    }
}

fn verify_ipv4(ip: &[u8], name: &str) {
    assert!(ip.len() >= 20, "{name}: ipv4 header cut short");
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    assert!(
        ihl >= 20 && ihl <= total && total <= ip.len(),
        "{name}: ipv4 ihl {ihl} / total length {total} do not fit {} bytes",
        ip.len()
    );
    assert_eq!(
        ones_sum(0, &ip[..ihl]),
        0xffff,
        "{name}: ipv4 header checksum"
    );
    let flags_offset = u16::from_be_bytes([ip[6], ip[7]]);
    let (more, offset) = (flags_offset & 0x2000 != 0, flags_offset & 0x1fff);
    assert!(
        !more && offset == 0,
        "{name}: an ipv4 fragment (MF {more}, offset {offset}): its transport \
         checksum covers the whole datagram, so this frame cannot be verified"
    );
    let proto = ip[9];
    let payload = &ip[ihl..total];
    let pseudo = pseudo_sum(&ip[12..16], &ip[16..20], proto, payload.len());
    verify_l4(proto, payload, pseudo, false, name);
}

fn verify_ipv6(ip: &[u8], name: &str) {
    assert!(ip.len() >= 40, "{name}: ipv6 header cut short");
    let len = u16::from_be_bytes([ip[4], ip[5]]) as usize;
    assert!(
        40 + len <= ip.len(),
        "{name}: ipv6 payload length {len} does not fit {} bytes",
        ip.len()
    );
    let (src, dst) = (&ip[8..24], &ip[24..40]);
    let mut next = ip[6];
    let mut rest = &ip[40..40 + len];
    // Extension headers before the upper layer: the pseudo-header's
    // length is the upper-layer packet's (RFC 8200 8.1).
    loop {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_DSTOPTS => {
                assert!(rest.len() >= 8, "{name}: ipv6 options header cut short");
                let hdr = (rest[1] as usize + 1) * 8;
                assert!(rest.len() >= hdr, "{name}: ipv6 options header cut short");
                next = rest[0];
                rest = &rest[hdr..];
            }
            IPPROTO_FRAGMENT => {
                assert!(rest.len() >= 8, "{name}: ipv6 fragment header cut short");
                let field = u16::from_be_bytes([rest[2], rest[3]]);
                let (offset, more) = (field >> 3, field & 1 != 0);
                assert!(
                    !more && offset == 0,
                    "{name}: an ipv6 fragment (M {more}, offset {offset}): its transport \
                     checksum covers the whole datagram, so this frame cannot be verified"
                );
                // An atomic fragment (RFC 6946) is the whole datagram.
                next = rest[0];
                rest = &rest[8..];
            }
            _ => break,
        }
    }
    let pseudo = pseudo_sum(src, dst, next, rest.len());
    verify_l4(next, rest, pseudo, true, name);
}

/// The sum of the TCP/UDP/ICMPv6 pseudo-header (unfolded): addresses,
/// protocol and upper-layer length.
fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u32 {
    let mut sum = ones_sum(0, src) as u32 + ones_sum(0, dst) as u32;
    sum += proto as u32 + (len as u32 >> 16) + (len as u32 & 0xffff);
    sum
}

/// The upper-layer packet `l4` of protocol `proto`; `pseudo` is its
/// pseudo-header sum, `v6` whether it came over IPv6.
fn verify_l4(proto: u8, l4: &[u8], pseudo: u32, v6: bool, name: &str) {
    match proto {
        IPPROTO_IPIP | IPPROTO_IPV6 => verify_ip(l4, &format!("{name} (inner)")),
        IPPROTO_TCP => {
            assert!(l4.len() >= 20, "{name}: tcp header cut short");
            assert_eq!(ones_sum(pseudo, l4), 0xffff, "{name}: tcp checksum");
        }
        IPPROTO_UDP => {
            assert!(l4.len() >= 8, "{name}: udp header cut short");
            let checksum = u16::from_be_bytes([l4[6], l4[7]]);
            if checksum == 0 {
                assert!(
                    !v6,
                    "{name}: udp over ipv6 with a zero checksum (RFC 8200 8.1 requires one)"
                );
            } else {
                assert_eq!(ones_sum(pseudo, l4), 0xffff, "{name}: udp checksum");
            }
        }
        IPPROTO_ICMP if !v6 => {
            assert!(l4.len() >= 8, "{name}: icmp header cut short");
            assert_eq!(ones_sum(0, l4), 0xffff, "{name}: icmp checksum");
            // Destination unreachable, time exceeded, parameter problem:
            // the quoted IPv4 header is whole, so its checksum holds.
            if matches!(l4[0], 3 | 11 | 12) && l4.len() >= 8 + 20 {
                let quoted = &l4[8..];
                let ihl = (quoted[0] & 0x0f) as usize * 4;
                assert!(
                    ihl >= 20 && quoted.len() >= ihl,
                    "{name}: quoted ipv4 header cut short"
                );
                assert_eq!(
                    ones_sum(0, &quoted[..ihl]),
                    0xffff,
                    "{name}: quoted ipv4 header checksum"
                );
            }
        }
        IPPROTO_ICMPV6 if v6 => {
            assert!(l4.len() >= 4, "{name}: icmpv6 header cut short");
            assert_eq!(ones_sum(pseudo, l4), 0xffff, "{name}: icmpv6 checksum");
        }
        p => panic!(
            "{name}: ip protocol {p} over ipv{}: no checksum rule for it here",
            if v6 { 6 } else { 4 }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 UDP datagram in an Ethernet frame, its checksum right.
    fn udp6() -> Vec<u8> {
        let mut f = vec![0u8; 14];
        f[12..14].copy_from_slice(&ETH_IPV6.to_be_bytes());
        let payload = b"hello";
        let len = 8 + payload.len();
        let mut ip = vec![0x60, 0, 0, 0, 0, len as u8, IPPROTO_UDP, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
        let mut udp = vec![0x9c, 0x40, 0, 80, 0, len as u8, 0, 0];
        udp.extend_from_slice(payload);
        let pseudo = pseudo_sum(&ip[8..24], &ip[24..40], IPPROTO_UDP, len);
        let sum = !ones_sum(pseudo, &udp);
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&udp);
        f
    }

    fn fails(frame: &[u8]) -> bool {
        std::panic::catch_unwind(|| verify_checksums(frame, "t")).is_err()
    }

    #[test]
    fn ipv6_udp_checked_over_its_pseudo_header() {
        let good = udp6();
        verify_checksums(&good, "good");
        let mut bad_payload = good.clone();
        *bad_payload.last_mut().unwrap() ^= 1;
        assert!(fails(&bad_payload));
        // The source address is in the pseudo-header only.
        let mut bad_src = good.clone();
        bad_src[14 + 8 + 15] ^= 1;
        assert!(fails(&bad_src));
        let mut zero = good.clone();
        zero[14 + 40 + 6..14 + 40 + 8].copy_from_slice(&[0, 0]);
        assert!(fails(&zero), "zero udp checksum over ipv6");
    }

    #[test]
    fn frames_it_cannot_check_fail() {
        let good = udp6();
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(fails(&arp), "not ip");
        assert!(fails(&good[..14 + 20]), "cut short");
        let mut unknown = good.clone();
        unknown[14 + 6] = 132; // SCTP
        assert!(fails(&unknown), "no rule for the protocol");
    }
}
