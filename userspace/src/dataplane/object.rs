//! The XDP object built by `build.rs` from `xdp-ebpf/`.

use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp},
};

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

/// How many times a program load is tried while the kernel answers
/// `EAGAIN`, as libbpf does.
const LOAD_TRIES: usize = 5;

/// Loads one of the object's XDP programs into the kernel. The verifier
/// gives up with `EAGAIN` when a signal arrives for the loading thread
/// (a child's `SIGCHLD`, a reload's `SIGHUP`); the program is not at
/// fault, so the load is tried again.
pub fn load_xdp(program: &mut Xdp) -> Result<(), ProgramError> {
    let mut tries = 1;
    loop {
        match program.load() {
            Err(ProgramError::LoadError { ref io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && tries < LOAD_TRIES =>
            {
                tries += 1;
            }
            done => return done,
        }
    }
}
