//! Links and L3 setup inside lab namespaces: veth pairs, bridges,
//! addresses, routes, sysctls, static neighbors. Everything is created
//! directly inside a namespace (`ip -n`), never in the root namespace, and
//! addresses must come from the lab ranges.

use std::net::IpAddr;

use anyhow::{Context, Result, bail};

use crate::netns::Namespace;

/// Fails unless `addr` is in 198.18.0.0/15 or 2001:db8::/32.
pub fn check_lab_addr(addr: IpAddr) -> Result<()> {
    let ok = match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            o[0] == 198 && (o[1] & 0xfe) == 18
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    };
    if !ok {
        bail!("{addr} is outside the lab ranges 198.18.0.0/15 and 2001:db8::/32");
    }
    Ok(())
}

/// Parses `ADDR/LEN` (or a bare `ADDR`) and checks it is a lab address.
fn lab_cidr(cidr: &str) -> Result<IpAddr> {
    let addr = cidr.split('/').next().unwrap_or_default();
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("bad address {cidr:?}"))?;
    check_lab_addr(addr)?;
    Ok(addr)
}

/// One end of a veth pair: the namespace, the interface name and an
/// optional fixed MAC address.
#[derive(Clone, Copy, Debug)]
pub struct VethEnd<'a> {
    pub ns: &'a Namespace,
    pub name: &'a str,
    pub mac: Option<&'a str>,
}

impl<'a> VethEnd<'a> {
    pub fn new(ns: &'a Namespace, name: &'a str) -> Self {
        VethEnd {
            ns,
            name,
            mac: None,
        }
    }

    /// A fixed MAC address such as `"02:00:00:00:00:01"`.
    pub fn mac(mut self, mac: &'a str) -> Self {
        self.mac = Some(mac);
        self
    }
}

/// Creates a veth pair from `a` to `b` (each end made directly in its
/// namespace; nothing touches the root namespace) and brings both ends up.
pub fn veth(a: VethEnd<'_>, b: VethEnd<'_>) -> Result<()> {
    let mut args = vec!["link", "add", a.name];
    if let Some(mac) = a.mac {
        args.extend(["address", mac]);
    }
    args.extend(["type", "veth", "peer", "name", b.name]);
    if let Some(mac) = b.mac {
        args.extend(["address", mac]);
    }
    args.extend(["netns", b.ns.name()]);
    a.ns.ip(&args).with_context(|| {
        format!(
            "veth {}:{} <-> {}:{}",
            a.ns.name(),
            a.name,
            b.ns.name(),
            b.name
        )
    })?;
    a.ns.link_up(a.name)?;
    b.ns.link_up(b.name)?;
    Ok(())
}

impl Namespace {
    /// `ip link set DEV up`.
    pub fn link_up(&self, dev: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "up"])?;
        Ok(())
    }

    /// Creates bridge `name` (STP off, no forward delay) and brings it up.
    pub fn add_bridge(&self, name: &str) -> Result<()> {
        self.ip(&[
            "link",
            "add",
            name,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        self.link_up(name)
    }

    /// Enslaves `dev` to `bridge`.
    pub fn enslave(&self, dev: &str, bridge: &str) -> Result<()> {
        self.ip(&["link", "set", dev, "master", bridge])?;
        Ok(())
    }

    /// Adds `cidr` (e.g. `198.18.0.2/24`, `2001:db8::2/64`) to `dev`. IPv6
    /// addresses skip duplicate address detection so they work at once.
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        let addr = lab_cidr(cidr)?;
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if addr.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args)?;
        Ok(())
    }

    /// Adds a route to `dest` (`default` or a lab CIDR) via gateway `via`.
    pub fn add_route(&self, dest: &str, via: &str) -> Result<()> {
        if dest != "default" {
            lab_cidr(dest)?;
        }
        let gw = lab_cidr(via)?;
        let family = if gw.is_ipv6() { "-6" } else { "-4" };
        self.ip(&[family, "route", "add", dest, "via", via])?;
        Ok(())
    }

    /// Adds a directly connected route to `dest` (a lab CIDR) on `dev`.
    pub fn add_dev_route(&self, dest: &str, dev: &str) -> Result<()> {
        lab_cidr(dest)?;
        self.ip(&["route", "add", dest, "dev", dev])?;
        Ok(())
    }

    /// `sysctl -w KEY=VALUE` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")])?;
        Ok(())
    }

    /// A permanent neighbor entry: `addr` is at `mac` on `dev`.
    pub fn add_neighbor(&self, dev: &str, addr: &str, mac: &str) -> Result<()> {
        lab_cidr(addr)?;
        self.ip(&[
            "neigh",
            "replace",
            addr,
            "lladdr",
            mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// The MAC address of `dev`.
    pub fn mac_of(&self, dev: &str) -> Result<String> {
        let out = self.ip(&["-br", "link", "show", "dev", dev])?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .with_context(|| format!("no MAC in {text:?}"))
    }
}
