//! Bounds-checked access to the packet. Every read and write goes through
//! here, so the verifier sees one check per access.

use aya_ebpf::programs::XdpContext;

/// Offsets are masked to this, so the verifier always knows their range
/// (a header offset spilled to the stack and reloaded may lose it). Real
/// offsets here are far below.
const MAX_OFFSET: usize = 0x3fff;

#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    let offset = offset & MAX_OFFSET;
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *mut T)
}

/// Bytes between `data` and `data_end`.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}
