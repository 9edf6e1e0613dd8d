use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Builds the XDP programs (xdp-ebpf, nightly, bpfel-unknown-none) and leaves
/// the object in OUT_DIR for `include_bytes_aligned!`. `cargo xtask setup`
/// installs the toolchain pieces this needs.
fn main() -> anyhow::Result<()> {
    let meta = cargo_metadata()?;
    let ebpf = Package {
        name: "xlb-ebpf",
        root_dir: meta.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], Toolchain::default())
}

fn cargo_metadata() -> anyhow::Result<String> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("no workspace root"))?
        .join("xdp-ebpf");
    Ok(root.to_string_lossy().into_owned())
}
