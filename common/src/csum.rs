//! Incremental Internet checksum updates (RFC 1624), shared so user-space
//! tests can check the exact arithmetic the data path uses.

use crate::PROTO_UDP;

/// Fold a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// `sum` plus the 16-bit words `words` (as they sit in the packet): the
/// one's-complement sum a checksum is computed from, not folded yet. The
/// one loop every checksum computed from scratch goes through.
#[inline(always)]
// Indexed, as the XDP crate's loops over fixed arrays are: the verifier
// follows these where iterator chains can hide the bounds.
#[allow(clippy::needless_range_loop)]
pub fn sum_words<const N: usize>(mut sum: u32, words: &[u16; N]) -> u32 {
    for i in 0..N {
        sum += words[i] as u32;
    }
    sum
}

/// The checksum field's value for a (not yet folded) sum.
#[inline(always)]
pub fn finish(sum: u32) -> u16 {
    !fold(sum)
}

/// New checksum after a 16-bit field changes from `old` to `new`.
/// All values as they sit in the packet (any byte order, used consistently).
#[inline(always)]
pub fn replace16(check: u16, old: u16, new: u16) -> u16 {
    // HC' = ~(~HC + ~m + m')
    let sum = (!check as u32) + (!old as u32) + new as u32;
    !fold(sum)
}

/// New checksum after a 32-bit field changes from `old` to `new`.
#[inline(always)]
pub fn replace32(check: u16, old: u32, new: u32) -> u16 {
    let sum = (!check as u32) + (!old & 0xffff) + (!old >> 16) + (new & 0xffff) + (new >> 16);
    !fold(sum)
}

/// The checksum of a `proto` packet after an update computed `updated`
/// from `check`: UDP's zero means "none" and stays zero, and a computed
/// zero is sent as 0xffff (RFC 768); TCP's is taken as computed.
#[inline(always)]
fn l4_rule(proto: u8, check: u16, updated: u16) -> u16 {
    if proto != PROTO_UDP {
        updated
    } else if check == 0 {
        0
    } else if updated == 0 {
        0xffff
    } else {
        updated
    }
}

/// The TCP or UDP checksum (`proto`) after a 32-bit field it covers
/// changes (see [`l4_rule`]).
#[inline(always)]
pub fn l4_replace32(proto: u8, check: u16, old: u32, new: u32) -> u16 {
    l4_rule(proto, check, replace32(check, old, new))
}

/// [`l4_replace32`] for a 16-bit field (a port).
#[inline(always)]
pub fn l4_replace16(proto: u8, check: u16, old: u16, new: u16) -> u16 {
    l4_rule(proto, check, replace16(check, old, new))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words as they sit in the packet: the bytes in memory order.
    fn words<const N: usize>(bytes: &[u8]) -> [u16; N] {
        core::array::from_fn(|i| u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]))
    }

    #[test]
    fn ipv4_header_checksum_from_scratch() {
        // A textbook header with its checksum field zero: 0xb861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let check = finish(sum_words(0, &words::<10>(&header)));
        assert_eq!(check.to_ne_bytes(), [0xb8, 0x61]);
    }

    #[test]
    fn udp_zero_rule() {
        // Received without a checksum: stays without.
        assert_eq!(l4_replace32(crate::PROTO_UDP, 0, 1, 2), 0);
        // A result of zero is sent as 0xffff; TCP keeps the plain result.
        let (old, new) = (0x0001, 0x0002);
        let check = replace16(0, old, new); // some check whose update gives 0
        assert_eq!(replace16(check, new, old), 0);
        assert_eq!(l4_replace16(crate::PROTO_UDP, check, new, old), 0xffff);
        assert_eq!(l4_replace16(crate::PROTO_TCP, check, new, old), 0);
    }
}
