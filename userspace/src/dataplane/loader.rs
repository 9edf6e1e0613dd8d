//! Loading the XDP object with the configured sizes, pinning its maps under
//! bpffs, and attaching the L4 program to interfaces.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    programs::{ProgramError, Xdp, XdpMode},
};
use xlb_common::{GLOBAL_RING_SIZE, MAP_RING, MAX_VIPS};

use super::object::{PROG_L4, XDP_OBJECT, load_xdp};
use crate::config::{XdpInterface, XdpMode as ConfigMode};

/// `statfs` magic of bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Load the object: the ring map sized for `ring_size` slots per VIP.
pub fn load(ring_size: u32) -> anyhow::Result<Ebpf> {
    let ring_entries = MAX_VIPS
        .checked_mul(ring_size)
        .context("maglev_size too large")?;
    EbpfLoader::new()
        .map_max_entries(MAP_RING, ring_entries)
        .override_global(GLOBAL_RING_SIZE, &ring_size, true)
        .load(XDP_OBJECT)
        .context("loading the XDP object")
}

/// Pins every map as `<dir>/<MAP NAME>` so operators and `xlb stats` can
/// read them. Leftovers of a crashed run are replaced.
/// Call before maps are taken out of `ebpf`. Returns what to unpin on exit.
pub fn pin_maps(ebpf: &Ebpf, dir: &Path) -> anyhow::Result<Pins> {
    ensure_bpffs(dir)?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut pins = Pins {
        dir: dir.to_path_buf(),
        files: Vec::new(),
    };
    for (name, map) in ebpf.maps() {
        // Sections such as `.rodata` (the patched globals) are internal and
        // bpffs refuses names with a dot.
        if name.starts_with('.') {
            continue;
        }
        let path = dir.join(name);
        if path.exists() {
            fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
        }
        map.pin(&path)
            .with_context(|| format!("pinning {name} at {}", path.display()))?;
        pins.files.push(path);
    }
    Ok(pins)
}

/// Pinned map files; removed (with the directory when empty) on drop.
pub struct Pins {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl Drop for Pins {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = fs::remove_file(file);
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// bpffs may be missing, e.g. inside `ip netns exec`, which remounts /sys:
/// mount it on the nearest existing parent under /sys/fs/bpf.
fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    let mount_point: PathBuf = if dir.starts_with("/sys/fs/bpf") {
        PathBuf::from("/sys/fs/bpf")
    } else {
        match dir.parent() {
            Some(p) => p.to_path_buf(),
            None => bail!("bpf_pin_path {} has no parent", dir.display()),
        }
    };
    if is_bpffs(&mount_point) {
        return Ok(());
    }
    fs::create_dir_all(&mount_point)
        .with_context(|| format!("creating {}", mount_point.display()))?;
    let target = std::ffi::CString::new(mount_point.as_os_str().as_encoded_bytes())?;
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "{} is not a bpffs and mounting one failed: {}",
            mount_point.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC }
}

/// Attach the L4 program to every `[[xdp]]` interface. The links live as
/// long as `ebpf`: dropping it detaches.
pub fn attach(ebpf: &mut Ebpf, interfaces: &[XdpInterface]) -> anyhow::Result<()> {
    let program: &mut Xdp = ebpf
        .program_mut(PROG_L4)
        .context("program xlb_l4 missing from the object")?
        .try_into()?;
    load_xdp(program).context("the kernel rejected xlb_l4")?;
    for iface in interfaces {
        let mode = match iface.mode {
            ConfigMode::Auto => XdpMode::default(),
            ConfigMode::Driver => XdpMode::Driver,
            ConfigMode::Skb => XdpMode::Skb,
        };
        program
            .attach(&iface.interface, mode)
            .map_err(|e| attach_error(&iface.interface, e))?;
    }
    Ok(())
}

fn attach_error(interface: &str, err: ProgramError) -> anyhow::Error {
    let busy = match &err {
        ProgramError::SyscallError(e) => matches!(
            e.io_error.raw_os_error(),
            Some(libc::EBUSY) | Some(libc::EEXIST)
        ),
        _ => format!("{err:?}").contains("EBUSY") || format!("{err:?}").contains("File exists"),
    };
    match err {
        ProgramError::UnknownInterface { .. } => {
            anyhow::anyhow!("interface {interface} does not exist")
        }
        _ if busy => anyhow::anyhow!(
            "interface {interface} already has an XDP program attached (another xlb running?)"
        ),
        other => anyhow::Error::new(other).context(format!("attaching to {interface}")),
    }
}
