//! Incremental Internet checksum updates (RFC 1624), shared so user-space
//! tests can check the exact arithmetic the data path uses.

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
