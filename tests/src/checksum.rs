//! Internet checksums of the Ethernet frames the XDP fixtures feed the
//! data path: the one's-complement sum ([`ones_sum`]) and an IPv4 header
//! checksum made right again after a test edits the header
//! ([`fix_ipv4_checksum`]).

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
