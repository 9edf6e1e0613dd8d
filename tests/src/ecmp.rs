//! The ECMP lab: several xlb nodes behind one router that spreads the VIP
//! over them with an equal-cost multipath route, as a data centre fabric
//! would.
//!
//! ```text
//!   client 198.18.0.2/24 eth0 ── eth0 router 198.18.0.1/24
//!                                     router 198.18.1.1/24 eth1 ── r0 ┐
//!   lbN      198.18.1.(1+N)/24  eth0 ── lN ┤ br0 (namespace sw)
//!   backendK 198.18.1.(10+K)/24 eth0 ── bK ┘
//!
//!   router: VIP 198.18.2.100/32 via every lb (ECMP over the 5-tuple),
//!           ip_forward=1
//!   lbs:    no VIP (XDP on eth0 is the only way through), ip_forward=1
//!   backends: default via the router, so DSR replies skip the lbs
//! ```
//!
//! The VIP lies outside the client's subnet, so the client sends it to the
//! router, which alone decides the node of each packet
//! ([`EcmpTopology::route_vip`] changes that mid-test). Every bridge port
//! carries a pass-through XDP program, so XDP_TX from the lbs' `eth0`
//! works.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context, Result, bail};
use aya::Ebpf;

use crate::{
    lab::Lab,
    link::{VethEnd, veth},
    netns::Namespace,
    process::Process,
    topology::{BRIDGE, attach_pass, backend_addr, bridged_host, software_checksums},
};

/// The L4 VIP: behind the router, on no host but the DSR backends' `lo`.
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 100);
/// The client's address.
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The router on the client's link (the client's gateway).
pub const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The router on the fabric (the backends' gateway).
pub const ROUTER_FABRIC_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The router's fabric interface.
const ROUTER_FABRIC_IFACE: &str = "eth1";
/// The interface of each lb (where xlb attaches) and of each backend.
pub const HOST_IFACE: &str = "eth0";
/// Most lb nodes the addressing plan allows (198.18.1.2 to .9).
pub const MAX_LBS: usize = 8;
/// Most backends of this lab.
pub const MAX_BACKENDS: usize = 20;

/// The router's ECMP hash input: source and destination address, protocol,
/// source and destination port.
const HASH_FIELDS: &str = "0x0037";
/// The router's ECMP hash seed (fixed: reproducible spreads).
const HASH_SEED: &str = "1";

/// Address of lb node `n` (1-based): 198.18.1.(1+n).
pub fn lb_addr(n: usize) -> Ipv4Addr {
    assert!((1..=MAX_LBS).contains(&n), "lb index {n}");
    Ipv4Addr::new(198, 18, 1, 1 + n as u8)
}

/// Where the router sends packets for the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VipRoute {
    /// One nexthop per lb, chosen per flow by the L4 hash.
    Ecmp,
    /// Everything via lb node `n` (1-based).
    Only(usize),
}

/// The built lab. Drop order: the XDP handle, then the namespaces
/// (processes first, see [`Lab`]).
pub struct EcmpTopology {
    // Keeps the pass-through programs attached; dropped first.
    _xdp: Ebpf,
    client: Namespace,
    router: Namespace,
    lbs: Vec<Namespace>,
    backends: Vec<Namespace>,
    lab: Lab,
}

impl EcmpTopology {
    /// Builds the lab with `lbs` nodes (2..=[`MAX_LBS`]) and `backends`
    /// backends (1..=[`MAX_BACKENDS`]) in `lab`, which the topology then
    /// owns; the VIP route starts as [`VipRoute::Ecmp`]. On error
    /// everything made so far is removed.
    pub fn build(lab: Lab, lbs: usize, backends: usize) -> Result<EcmpTopology> {
        if !(2..=MAX_LBS).contains(&lbs) || !(1..=MAX_BACKENDS).contains(&backends) {
            bail!(
                "EcmpTopology needs 2..={MAX_LBS} lbs and 1..={MAX_BACKENDS} backends, \
                 got {lbs} and {backends}"
            );
        }
        let sw = lab.namespace("sw")?;
        sw.add_bridge(BRIDGE)?;

        let client = lab.namespace("client")?;
        let router = lab.namespace("router")?;
        veth(VethEnd::new(&client, "eth0"), VethEnd::new(&router, "eth0"))?;
        veth(
            VethEnd::new(&router, ROUTER_FABRIC_IFACE),
            VethEnd::new(&sw, "r0"),
        )?;
        sw.enslave("r0", BRIDGE)?;
        for (ns, dev) in [
            (&client, "eth0"),
            (&router, "eth0"),
            (&router, ROUTER_FABRIC_IFACE),
        ] {
            software_checksums(ns, dev)?;
        }
        let mut ports = vec!["r0".to_owned()];
        let mut hosts = |role: String, port: String| -> Result<Namespace> {
            let ns = bridged_host(&lab, &sw, &role, &port)?;
            ports.push(port);
            Ok(ns)
        };
        let lb_ns = (1..=lbs)
            .map(|n| hosts(format!("lb{n}"), format!("l{n}")))
            .collect::<Result<Vec<_>>>()?;
        let backend_ns = (1..=backends)
            .map(|k| hosts(format!("backend{k}"), format!("b{k}")))
            .collect::<Result<Vec<_>>>()?;

        client.add_addr("eth0", &format!("{CLIENT_ADDR}/24"))?;
        client.add_route("default", &ROUTER_CLIENT_ADDR.to_string())?;

        router.add_addr("eth0", &format!("{ROUTER_CLIENT_ADDR}/24"))?;
        router.add_addr(ROUTER_FABRIC_IFACE, &format!("{ROUTER_FABRIC_ADDR}/24"))?;
        router.sysctl("net.ipv4.ip_forward", "1")?;
        // Hash the 5-tuple, as a fabric router does: flows from one client
        // spread by their ports. Policy 1 would reuse the hash a packet
        // arrives with (its socket's random one, redrawn on a TCP timeout);
        // the custom policy always hashes the headers, with a fixed seed,
        // so a flow's node is the same on every run.
        router.sysctl("net.ipv4.fib_multipath_hash_policy", "3")?;
        router.sysctl("net.ipv4.fib_multipath_hash_fields", HASH_FIELDS)?;
        router.sysctl("net.ipv4.fib_multipath_hash_seed", HASH_SEED)?;

        for (i, ns) in lb_ns.iter().enumerate() {
            ns.add_addr(HOST_IFACE, &format!("{}/24", lb_addr(i + 1)))?;
            // XDP's route lookup (bpf_fib_lookup) answers only where the
            // kernel would forward.
            ns.sysctl("net.ipv4.ip_forward", "1")?;
            ns.sysctl("net.ipv4.conf.all.send_redirects", "0")?;
            ns.sysctl(&format!("net.ipv4.conf.{HOST_IFACE}.send_redirects"), "0")?;
        }
        for (i, ns) in backend_ns.iter().enumerate() {
            ns.add_addr(HOST_IFACE, &format!("{}/24", backend_addr(i + 1)))?;
            ns.add_route("default", &ROUTER_FABRIC_ADDR.to_string())?;
        }

        let xdp = attach_pass(&sw, &ports).context("pass-through XDP on the bridge ports")?;
        let topo = EcmpTopology {
            _xdp: xdp,
            client,
            router,
            lbs: lb_ns,
            backends: backend_ns,
            lab,
        };
        topo.route_vip(VipRoute::Ecmp)?;
        Ok(topo)
    }

    /// Replaces the router's route for the VIP. Packets already on their
    /// way are not affected; the next one of every flow follows the new
    /// route.
    pub fn route_vip(&self, route: VipRoute) -> Result<()> {
        let dest = format!("{VIP}/32");
        let mut args: Vec<String> = ["route", "replace", &dest].map(str::to_owned).to_vec();
        let hop = |n: usize| {
            ["via", &lb_addr(n).to_string(), "dev", ROUTER_FABRIC_IFACE].map(str::to_owned)
        };
        match route {
            VipRoute::Ecmp => {
                for n in 1..=self.lbs.len() {
                    args.push("nexthop".to_owned());
                    args.extend(hop(n));
                }
            }
            VipRoute::Only(n) => {
                if !(1..=self.lbs.len()).contains(&n) {
                    bail!("no lb node {n} (the lab has {})", self.lbs.len());
                }
                args.extend(hop(n));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.router
            .ip(&args)
            .with_context(|| format!("routing the VIP: {route:?}"))?;
        Ok(())
    }

    /// The lab (to add namespaces or read the test name).
    pub fn lab(&self) -> &Lab {
        &self.lab
    }

    pub fn client(&self) -> &Namespace {
        &self.client
    }

    pub fn router(&self) -> &Namespace {
        &self.router
    }

    /// Lb node `n`, 1-based.
    pub fn lb(&self, n: usize) -> &Namespace {
        &self.lbs[n - 1]
    }

    /// All lb nodes, `lb1` first.
    pub fn lbs(&self) -> &[Namespace] {
        &self.lbs
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

    /// Starts `lab-backend` named `names[K-1]` in backend K's namespace on
    /// `0.0.0.0:port` (DSR keeps the VIP as destination); the guards in
    /// order.
    pub fn spawn_backends(&self, names: &[String], port: u16) -> Result<Vec<Process>> {
        if names.len() != self.backends.len() {
            bail!("{} names for {} backends", names.len(), self.backends.len());
        }
        let any = SocketAddr::from(([0, 0, 0, 0], port));
        self.backends
            .iter()
            .zip(names)
            .map(|(ns, name)| ns.spawn_backend(name, any))
            .collect()
    }
}
