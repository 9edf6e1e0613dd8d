//! The flow hash: both the XDP program and user space (the reference model,
//! the tests) pick a Maglev slot with it, so every LB node running the same
//! config sends a flow to the same backend.

#[inline(always)]
const fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
const fn mix(h: u32, word: u32) -> u32 {
    // murmur3's block step: cheap in BPF (no loops, no tables).
    let k = word
        .wrapping_mul(0xcc9e_2d51)
        .rotate_left(15)
        .wrapping_mul(0x1b87_3593);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

/// Hash of the client side of a flow: source address and port, destination
/// address and port, protocol. Fields are taken as they sit in the packet.
#[inline(always)]
pub fn flow_hash(src: &[u32; 4], dst: &[u32; 4], sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = 0x9747_b28c_u32;
    h = mix(h, src[0]);
    h = mix(h, src[1]);
    h = mix(h, src[2]);
    h = mix(h, src[3]);
    h = mix(h, dst[0]);
    h = mix(h, dst[1]);
    h = mix(h, dst[2]);
    h = mix(h, dst[3]);
    h = mix(h, ((sport as u32) << 16) | dport as u32);
    h = mix(h, proto as u32);
    fmix32(h)
}

/// A stable 64-bit hash of a byte string (FNV-1a, then a final mix), used
/// for Maglev permutations so that every node derives the same table from
/// the same server names.
pub fn name_hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The bits of a DSR outer source address taken from the flow: a cheap mix
/// of the client address and ports, so a backend's receive hashing (which
/// sees only the outer header) spreads flows. Per packet, so kept short.
#[inline(always)]
pub fn encap_source_bits(src: &[u32; 4], sport: u16, dport: u16) -> u32 {
    let mut h = src[0] ^ src[1] ^ src[2] ^ src[3] ^ (((sport as u32) << 16) | dport as u32);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^ (h >> 15)
}
