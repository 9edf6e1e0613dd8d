//! `xlb decap --interface IFACE --vip ADDR...`: the backend side of DSR.
//! Loads the `xlb_decap` XDP program (see `xdp-ebpf/src/decap.rs` for the
//! rule), fills its VIP map, attaches it and keeps it attached until
//! SIGINT/SIGTERM, then logs its counters and detaches.
//!
//! The program lives in the same object as the L4 balancer, and loading the
//! object creates every map in it. The L4 tier's tables (the connection
//! table alone preallocates on the order of 100 MB) are shrunk to one entry
//! here: the decap program never touches them.

use std::{collections::HashSet, net::IpAddr};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
};
use tracing::info;
use xlb_common::{
    DECAP_ANY_VIP, DecapStat, DecapVipKey, MAP_DECAP_STATS, MAP_DECAP_VIPS, MAX_DECAP_VIPS,
};

use crate::dataplane::{
    addr::{ip_words, words_ip},
    object::{PROG_DECAP, XDP_OBJECT, load_xdp},
};

/// `--mode`: how to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Driver mode where the driver has it, else generic.
    #[default]
    Auto,
    /// Generic XDP (in the stack, any device).
    Skb,
    /// Native XDP (fails if the driver has none).
    Driver,
}

impl Mode {
    fn xdp(self) -> XdpMode {
        match self {
            Mode::Auto => XdpMode::default(),
            Mode::Skb => XdpMode::Skb,
            Mode::Driver => XdpMode::Driver,
        }
    }
}

pub struct Options {
    pub interface: String,
    pub vips: Vec<IpAddr>,
    pub mode: Mode,
}

/// The log line printed once the program is attached.
pub const READY: &str = "xlb decap running";

/// `xlb decap`: run until SIGINT/SIGTERM.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    if ifindex(&opts.interface).is_none() {
        bail!("interface {} does not exist", opts.interface);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        // Handlers first: a signal right after the ready line still detaches.
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;

        let mut decap = Decap::load()?;
        for vip in &opts.vips {
            decap.add_vip(*vip)?;
        }
        if opts.vips.is_empty() {
            // The contract's plain `xlb decap --interface IFACE`: every
            // tunnel; the stack drops inner packets not for this host.
            decap.add_any_vip()?;
            info!("no --vip: decapsulating tunnels to any inner destination");
        }
        decap.attach(&opts.interface, opts.mode)?;
        info!(
            interface = %opts.interface,
            vips = ?opts.vips,
            mode = ?opts.mode,
            "{READY}"
        );
        tokio::select! {
            _ = sigterm.recv() => {}
            _ = sigint.recv() => {}
        }
        let counters = decap
            .stats()?
            .iter()
            .map(|(stat, n)| format!("{}={n}", stat.name()))
            .collect::<Vec<_>>()
            .join(" ");
        info!("xlb decap stopping: {counters}");
        drop(decap);
        info!("detached from {}", opts.interface);
        Ok(())
    })
}

/// The loaded decap program and its maps.
pub struct Decap {
    ebpf: Ebpf,
    vips: HashMap<MapData, DecapVipKey, u32>,
    stats: PerCpuArray<MapData, u64>,
}

impl Decap {
    /// Loads the object (the L4 maps shrunk to one entry), takes the decap
    /// maps and loads `xlb_decap` into the kernel (the verifier runs here).
    pub fn load() -> anyhow::Result<Decap> {
        let shrink = l4_table_names(XDP_OBJECT).context("reading the XDP object's maps")?;
        let mut loader = EbpfLoader::new();
        for name in &shrink {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader.load(XDP_OBJECT).context("loading the XDP object")?;
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .with_context(|| format!("map {name} missing from the XDP object"))
        };
        let vips = HashMap::try_from(take(MAP_DECAP_VIPS)?)?;
        let stats = PerCpuArray::try_from(take(MAP_DECAP_STATS)?)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROG_DECAP)
            .with_context(|| format!("program {PROG_DECAP} missing from the XDP object"))?
            .try_into()?;
        load_xdp(prog).with_context(|| format!("the kernel rejected {PROG_DECAP}"))?;
        Ok(Decap { ebpf, vips, stats })
    }

    /// Decapsulate packets whose inner destination is `vip`.
    pub fn add_vip(&mut self, vip: IpAddr) -> anyhow::Result<()> {
        self.vips
            .insert(vip_key(vip), 1, 0)
            .with_context(|| format!("adding VIP {vip} (at most {MAX_DECAP_VIPS})"))
    }

    /// Decapsulate tunnels whatever their inner destination.
    pub fn add_any_vip(&mut self) -> anyhow::Result<()> {
        self.vips
            .insert(DECAP_ANY_VIP, 1, 0)
            .context("adding the any-destination entry")
    }

    /// The VIPs in the map.
    pub fn vips(&self) -> anyhow::Result<HashSet<IpAddr>> {
        self.vips
            .keys()
            .map(|k| Ok(key_ip(&k?)))
            .collect::<anyhow::Result<_>>()
    }

    /// The loaded program (for BPF_PROG_TEST_RUN).
    pub fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROG_DECAP)
            .and_then(|p| p.try_into().ok())
            .expect("loaded in Decap::load")
    }

    /// Attaches to `interface`; dropping `self` detaches.
    pub fn attach(&mut self, interface: &str, mode: Mode) -> anyhow::Result<()> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(PROG_DECAP)
            .context("program missing")?
            .try_into()?;
        prog.attach(interface, mode.xdp())
            .map_err(|e| attach_error(interface, mode, e))?;
        Ok(())
    }

    /// Every counter, summed over CPUs, in [`DecapStat::ALL`] order.
    pub fn stats(&self) -> anyhow::Result<Vec<(DecapStat, u64)>> {
        DecapStat::ALL
            .iter()
            .map(|&s| Ok((s, self.stats.get(&(s as u32), 0)?.iter().sum())))
            .collect()
    }

    /// One counter, summed over CPUs.
    pub fn stat(&self, stat: DecapStat) -> anyhow::Result<u64> {
        Ok(self.stats.get(&(stat as u32), 0)?.iter().sum())
    }
}

/// The map key of `ip`: the address as it sits in the packet.
pub fn vip_key(ip: IpAddr) -> DecapVipKey {
    let (addr, family) = ip_words(ip);
    DecapVipKey {
        addr,
        family,
        pad: [0; 3],
    }
}

fn key_ip(key: &DecapVipKey) -> IpAddr {
    words_ip(key.addr, key.family)
}

fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: a valid C string; no other precondition.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

fn attach_error(interface: &str, mode: Mode, err: ProgramError) -> anyhow::Error {
    let os_error = match &err {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        _ => None,
    };
    let text = format!("{err:?}");
    let busy = matches!(os_error, Some(libc::EBUSY) | Some(libc::EEXIST))
        || text.contains("EBUSY")
        || text.contains("File exists")
        || text.contains("Device or resource busy");
    match err {
        ProgramError::UnknownInterface { .. } => {
            anyhow::anyhow!("interface {interface} does not exist")
        }
        _ if busy => anyhow::anyhow!(
            "interface {interface} already has an XDP program attached \
             (another xlb or xlb decap running?)"
        ),
        other => anyhow::Error::new(other).context(format!(
            "attaching {PROG_DECAP} to {interface} (mode {mode:?})"
        )),
    }
}

/// Map types whose size is only memory here: shrinking them to one entry
/// keeps the load valid (`BPF_MAP_TYPE_*`).
const SHRINKABLE_TYPES: [u32; 7] = [
    1,  // HASH
    2,  // ARRAY
    3,  // PROG_ARRAY
    5,  // PERCPU_HASH
    6,  // PERCPU_ARRAY
    9,  // LRU_HASH
    10, // LRU_PERCPU_HASH
];

/// Names of the maps in `elf` other than the decap program's whose type is
/// in [`SHRINKABLE_TYPES`]. aya-ebpf puts each map's definition
/// (`bpf_map_def`: type, key size, value size, max entries, ...) in the
/// `maps` section under the map's symbol.
fn l4_table_names(elf: &[u8]) -> anyhow::Result<Vec<String>> {
    let maps = elf_maps(elf).context("not a 64-bit little-endian ELF object")?;
    Ok(maps
        .into_iter()
        .filter(|(name, map_type)| {
            name != MAP_DECAP_VIPS && name != MAP_DECAP_STATS && SHRINKABLE_TYPES.contains(map_type)
        })
        .map(|(name, _)| name)
        .collect())
}

/// `(symbol, bpf_map_def.type)` of every object symbol in section `maps`.
fn elf_maps(elf: &[u8]) -> Option<Vec<(String, u32)>> {
    let u16_at = |off: usize| Some(u16::from_le_bytes(elf.get(off..off + 2)?.try_into().ok()?));
    let u32_at = |off: usize| Some(u32::from_le_bytes(elf.get(off..off + 4)?.try_into().ok()?));
    let u64_at =
        |off: usize| Some(u64::from_le_bytes(elf.get(off..off + 8)?.try_into().ok()?) as usize);
    let cstr = |off: usize| {
        let bytes = elf.get(off..)?;
        let end = bytes.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&bytes[..end]).ok()
    };
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = u16_at(0x3a)? as usize;
    let shnum = u16_at(0x3c)? as usize;
    let shstrndx = u16_at(0x3e)? as usize;
    // (name offset, type, file offset, size, link, entsize) per section.
    let section = |i: usize| {
        let h = shoff + i * shentsize;
        Some((
            u32_at(h)? as usize,
            u32_at(h + 4)?,
            u64_at(h + 24)?,
            u64_at(h + 32)?,
            u32_at(h + 40)? as usize,
            u64_at(h + 56)?,
        ))
    };
    let shstr_off = section(shstrndx)?.2;
    let mut maps_index = None;
    let mut symtab = None;
    for i in 0..shnum {
        let s = section(i)?;
        if cstr(shstr_off + s.0)? == "maps" {
            maps_index = Some((i, s.2));
        }
        if s.1 == 2 {
            // SHT_SYMTAB
            symtab = Some(s);
        }
    }
    let (maps_index, maps_off) = maps_index?;
    let (_, _, sym_off, sym_size, strtab, entsize) = symtab?;
    let str_off = section(strtab)?.2;
    let mut out = Vec::new();
    for k in 0..sym_size / entsize.max(1) {
        let s = sym_off + k * entsize;
        let (name, info, shndx, value) = (
            u32_at(s)? as usize,
            *elf.get(s + 4)?,
            u16_at(s + 6)? as usize,
            u64_at(s + 8)?,
        );
        // STT_OBJECT
        if shndx == maps_index && info & 0xf == 1 {
            out.push((cstr(str_off + name)?.to_owned(), u32_at(maps_off + value)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_maps_of_the_object() {
        let maps = elf_maps(XDP_OBJECT).expect("parse");
        let names: Vec<&str> = maps.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&MAP_DECAP_VIPS), "{names:?}");
        assert!(names.contains(&MAP_DECAP_STATS), "{names:?}");
        assert!(names.contains(&xlb_common::MAP_BACKENDS), "{names:?}");
        let shrink = l4_table_names(XDP_OBJECT).unwrap();
        assert!(shrink.iter().any(|n| n == xlb_common::MAP_BACKENDS));
        assert!(!shrink.iter().any(|n| n == MAP_DECAP_VIPS));
    }

    #[test]
    fn vip_keys_round_trip() {
        for ip in ["198.18.0.100", "2001:db8::100"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(key_ip(&vip_key(ip)), ip);
        }
        let k = vip_key("198.18.0.100".parse().unwrap());
        assert_eq!(k.addr[0].to_ne_bytes(), [198, 18, 0, 100]);
        assert_eq!(k.family, xlb_common::AF_INET);
    }
}
