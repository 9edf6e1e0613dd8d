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

/// UDP: a zero checksum means "none" and must stay zero; a computed zero
/// is sent as 0xffff.
#[inline(always)]
pub fn udp_replace32(check: u16, old: u32, new: u32) -> u16 {
    if check == 0 {
        return 0;
    }
    let c = replace32(check, old, new);
    if c == 0 { 0xffff } else { c }
}

#[inline(always)]
pub fn udp_replace16(check: u16, old: u16, new: u16) -> u16 {
    if check == 0 {
        return 0;
    }
    let c = replace16(check, old, new);
    if c == 0 { 0xffff } else { c }
}

/// The TCP or UDP checksum (`proto`) after a 32-bit field it covers
/// changes: UDP's zero rule applied ([`udp_replace32`]), TCP's plain.
#[inline(always)]
pub fn l4_replace32(proto: u8, check: u16, old: u32, new: u32) -> u16 {
    if proto == PROTO_UDP {
        udp_replace32(check, old, new)
    } else {
        replace32(check, old, new)
    }
}

/// [`l4_replace32`] for a 16-bit field (a port).
#[inline(always)]
pub fn l4_replace16(proto: u8, check: u16, old: u16, new: u16) -> u16 {
    if proto == PROTO_UDP {
        udp_replace16(check, old, new)
    } else {
        replace16(check, old, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
