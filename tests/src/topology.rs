//! The standard single-arm L4 lab used by the end-to-end tests and by
//! `cargo xtask run`:
//!
//! ```text
//!   client (198.18.0.2/24)          backendK (198.18.1.(10+K)/24)
//!     eth0 ── c0 ┐                 ┌ bK ── eth0
//!                br0 (namespace sw)
//!     eth0 ── lb0┘
//!   lb: 198.18.0.1/24 + 198.18.1.1/24 on eth0, VIP 198.18.0.100/32 on lo,
//!       ip_forward=1, send_redirects=0
//! ```
//!
//! Client and backends route via the lb, so without xlb the lb is a plain
//! router.
//!
//! [`L4Topology::build_dual`] adds IPv6 on top (all addresses `nodad`):
//!
//! ```text
//!   client 2001:db8::2/64, default via 2001:db8::1, VIP6 via 2001:db8::1
//!   lb     2001:db8::1/64 + 2001:db8:1::1/64 on eth0, VIP6 2001:db8::100/128
//!          on lo, net.ipv6.conf.all.forwarding=1
//!   backendK 2001:db8:1::(10+K)/64, default via 2001:db8:1::1
//! ```
//!
//! The client's route for the VIP6 is needed because the VIP6 lies in the
//! client's on-link /64 and Linux answers neighbour solicitations only for
//! addresses on the receiving interface (unlike ARP, where the VIP on `lo`
//! is answered). Every bridge port in `sw` carries a pass-through XDP program, so
//! XDP_TX / redirect from the hosts' `eth0` work.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use xlb::dataplane::object::{PROG_PASS, load_default, load_xdp};

use crate::{
    lab::Lab,
    link::{VethEnd, veth},
    netns::Namespace,
    process::Process,
};

/// The L4 VIP, on `lo` of the lb namespace.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The lb's address on the client subnet (the client's gateway).
pub const LB_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The lb's address on the backend subnet (the backends' gateway).
pub const LB_BACKEND_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The lb's only interface (where xlb attaches).
pub const LB_IFACE: &str = "eth0";
/// The bridge in `sw`.
pub const BRIDGE: &str = "br0";
/// Most backends the addressing plan allows.
pub const MAX_BACKENDS: usize = 200;

/// Address of backend `k` (1-based): 198.18.1.(10+k).
pub fn backend_addr(k: usize) -> Ipv4Addr {
    assert!((1..=MAX_BACKENDS).contains(&k), "backend index {k}");
    Ipv4Addr::new(198, 18, 1, 10 + k as u8)
}

/// The IPv6 L4 VIP ([`L4Topology::build_dual`]), on `lo` of the lb.
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
/// The client's IPv6 address.
pub const CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
/// The lb's IPv6 address on the client subnet (the client's gateway).
pub const LB_CLIENT_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// The lb's IPv6 address on the backend subnet (the backends' gateway).
pub const LB_BACKEND_ADDR6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// IPv6 address of backend `k` (1-based): `2001:db8:1::(10+k)`, the same
/// digits as the last octet of [`backend_addr`] (`2001:db8:1::11` for
/// backend 1).
pub fn backend_addr6(k: usize) -> Ipv6Addr {
    assert!((1..=MAX_BACKENDS).contains(&k), "backend index {k}");
    let last = u16::from_str_radix(&(10 + k).to_string(), 16).expect("hex digits");
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, last)
}

/// The built topology. Drop order: the XDP handle, then the namespaces
/// (processes first, see [`Lab`]).
pub struct L4Topology {
    // Keeps the pass-through programs attached; dropped first.
    _xdp: Ebpf,
    sw: Namespace,
    client: Namespace,
    lb: Namespace,
    backends: Vec<Namespace>,
    bridge_ports: Vec<String>,
    lab: Lab,
}

impl L4Topology {
    /// Builds the topology with `backends` backends (1..=200) in `lab`,
    /// which the topology then owns. On error everything made so far is
    /// removed.
    pub fn build(lab: Lab, backends: usize) -> Result<L4Topology> {
        if !(1..=MAX_BACKENDS).contains(&backends) {
            bail!("L4Topology needs 1..={MAX_BACKENDS} backends, got {backends}");
        }
        let sw = lab.namespace("sw")?;
        sw.add_bridge(BRIDGE)?;
        let mut bridge_ports = Vec::new();
        let mut host = |role: &str, port: &str| -> Result<Namespace> {
            let ns = bridged_host(&lab, &sw, role, port)?;
            bridge_ports.push(port.to_owned());
            Ok(ns)
        };
        let client = host("client", "c0")?;
        let lb = host("lb", "lb0")?;
        let backend_ns = (1..=backends)
            .map(|k| host(&format!("backend{k}"), &format!("b{k}")))
            .collect::<Result<Vec<_>>>()?;

        client.add_addr("eth0", &format!("{CLIENT_ADDR}/24"))?;
        client.add_route("default", &LB_CLIENT_ADDR.to_string())?;

        lb.add_addr(LB_IFACE, &format!("{LB_CLIENT_ADDR}/24"))?;
        lb.add_addr(LB_IFACE, &format!("{LB_BACKEND_ADDR}/24"))?;
        lb.add_addr("lo", &format!("{VIP}/32"))?;
        lb.sysctl("net.ipv4.ip_forward", "1")?;
        lb.sysctl("net.ipv4.conf.all.send_redirects", "0")?;
        lb.sysctl(&format!("net.ipv4.conf.{LB_IFACE}.send_redirects"), "0")?;

        for (i, ns) in backend_ns.iter().enumerate() {
            ns.add_addr("eth0", &format!("{}/24", backend_addr(i + 1)))?;
            ns.add_route("default", &LB_BACKEND_ADDR.to_string())?;
        }

        let xdp =
            attach_pass(&sw, &bridge_ports).context("pass-through XDP on the bridge ports")?;
        Ok(L4Topology {
            _xdp: xdp,
            sw,
            client,
            lb,
            backends: backend_ns,
            bridge_ports,
            lab,
        })
    }

    /// [`L4Topology::build`], plus IPv6 on every host (see the module
    /// docs): the IPv4 setup is exactly that of `build`.
    pub fn build_dual(lab: Lab, backends: usize) -> Result<L4Topology> {
        let topo = L4Topology::build(lab, backends)?;
        topo.add_ipv6().context("adding IPv6 to the L4 topology")?;
        Ok(topo)
    }

    fn add_ipv6(&self) -> Result<()> {
        let client = &self.client;
        client.add_addr("eth0", &format!("{CLIENT_ADDR6}/64"))?;
        client.add_route("default", &LB_CLIENT_ADDR6.to_string())?;
        client.add_route(&format!("{VIP6}/128"), &LB_CLIENT_ADDR6.to_string())?;

        let lb = &self.lb;
        lb.add_addr(LB_IFACE, &format!("{LB_CLIENT_ADDR6}/64"))?;
        lb.add_addr(LB_IFACE, &format!("{LB_BACKEND_ADDR6}/64"))?;
        lb.add_addr("lo", &format!("{VIP6}/128"))?;
        lb.sysctl("net.ipv6.conf.all.forwarding", "1")?;

        for (i, ns) in self.backends.iter().enumerate() {
            ns.add_addr("eth0", &format!("{}/64", backend_addr6(i + 1)))?;
            ns.add_route("default", &LB_BACKEND_ADDR6.to_string())?;
        }
        Ok(())
    }

    /// The lab (to add namespaces or read the test name).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    /// The switch namespace holding [`BRIDGE`].
    pub fn sw(&self) -> &Namespace {
        &self.sw
    }

    pub fn client(&self) -> &Namespace {
        &self.client
    }

    pub fn lb(&self) -> &Namespace {
        &self.lb
    }

    /// Backend namespace `k`, 1-based (`backend1` is `backend(1)`).
    pub fn backend(&self, k: usize) -> &Namespace {
        &self.backends[k - 1]
    }

    /// All backend namespaces, `backend1` first.
    pub fn backends(&self) -> &[Namespace] {
        &self.backends
    }

    /// Backend addresses, `backend1` first.
    pub fn backend_addrs(&self) -> Vec<Ipv4Addr> {
        (1..=self.backends.len()).map(backend_addr).collect()
    }

    pub fn client_addr(&self) -> Ipv4Addr {
        CLIENT_ADDR
    }

    pub fn vip(&self) -> Ipv4Addr {
        VIP
    }

    /// IPv6 backend addresses ([`L4Topology::build_dual`]), `backend1`
    /// first.
    pub fn backend_addrs6(&self) -> Vec<Ipv6Addr> {
        (1..=self.backends.len()).map(backend_addr6).collect()
    }

    /// The lb's interface name (`eth0`), where xlb attaches.
    pub fn lb_iface(&self) -> &'static str {
        LB_IFACE
    }

    /// The bridge ports in `sw` (`c0`, `lb0`, `b1`, ...), each with the
    /// pass-through XDP program.
    pub fn bridge_ports(&self) -> &[String] {
        &self.bridge_ports
    }

    /// Starts `lab-backend` in every backend namespace on
    /// `backendK-addr:port`, named `backendK`; returns the guards in order.
    pub fn spawn_backends(&self, port: u16) -> Result<Vec<Process>> {
        self.backends
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let addr = SocketAddr::from((backend_addr(i + 1), port));
                ns.spawn_backend(&format!("backend{}", i + 1), addr)
            })
            .collect()
    }
}

/// A new host `role` whose `eth0` is linked to port `port` of [`BRIDGE`]
/// in `sw`, computing its own checksums.
pub(crate) fn bridged_host(lab: &Lab, sw: &Namespace, role: &str, port: &str) -> Result<Namespace> {
    let ns = lab.namespace(role)?;
    veth(VethEnd::new(&ns, "eth0"), VethEnd::new(sw, port))?;
    software_checksums(&ns, "eth0")?;
    sw.enslave(port, BRIDGE)?;
    Ok(ns)
}

/// A veth hands on frames with the L4 checksum left to offload
/// (CHECKSUM_PARTIAL); native XDP on an lb cannot see that and would send
/// them on unfinished. Real NICs give XDP complete checksums, so the lab's
/// hosts compute theirs in software.
pub(crate) fn software_checksums(ns: &Namespace, dev: &str) -> Result<()> {
    ns.run(&["ethtool", "-K", dev, "tx", "off"])?;
    Ok(())
}

/// Loads the xlb object inside `sw` and attaches [`PROG_PASS`] to `ports`
/// (the peers of hosts whose XDP programs use XDP_TX or redirect).
pub(crate) fn attach_pass(sw: &Namespace, ports: &[String]) -> Result<Ebpf> {
    let _inside = sw.enter()?;
    let mut ebpf = load_default().context("loading the xlb XDP object")?;
    let prog: &mut Xdp = ebpf
        .program_mut(PROG_PASS)
        .with_context(|| format!("no program {PROG_PASS} in the xlb object"))?
        .try_into()?;
    load_xdp(prog)?;
    for port in ports {
        prog.attach(port, XdpMode::default())
            .with_context(|| format!("attaching {PROG_PASS} to {port}"))?;
    }
    Ok(ebpf)
}
