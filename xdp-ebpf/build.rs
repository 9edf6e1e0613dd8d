use which::which;

/// Rebuild the eBPF object when bpf-linker changes (it is a "linker", which
/// cargo does not track on its own).
fn main() {
    if let Ok(linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
}
