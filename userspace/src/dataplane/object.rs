//! The XDP object built by `build.rs` from `xdp-ebpf/`.

use aya::{Ebpf, EbpfLoader};

/// The eBPF ELF object, embedded at build time.
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xlb"));

/// Program names inside [`XDP_OBJECT`].
pub const PROG_L4: &str = "xlb_l4";
pub const PROG_PASS: &str = "xlb_pass";
pub const PROG_BENCH: &str = "xlb_bench";
pub const PROG_DECAP: &str = "xlb_decap";

/// Load the object with default map sizes (for tests and the lab's
/// pass-through program).
pub fn load_default() -> Result<Ebpf, aya::EbpfError> {
    EbpfLoader::new().load(XDP_OBJECT)
}
