//! `[[l4]]`: the VIPs the XDP tier forwards.

use std::{collections::HashMap, net::SocketAddr};

use super::{
    BackendPool, Forward, L4Vip, Protocol, Steering,
    defaults::*,
    errors::Cx,
    raw::RawConfig,
    values::{address, enum_value, int, required, unique, valid_name},
};

pub(super) fn convert_l4(cx: &mut Cx, raw: &RawConfig, backends: &[BackendPool]) -> Vec<L4Vip> {
    if raw.xdp.is_empty() {
        if let Some(first) = raw.l4.first() {
            cx.push(
                first.span(),
                "[[l4]] VIPs need at least one [[xdp]] interface to run on; add [[xdp]] interface = \"...\"",
            );
        }
    }
    let mut names = HashMap::new();
    let mut vips = HashMap::new();
    let mut out = Vec::new();
    for table in &raw.l4 {
        let v = table.get_ref();
        let section = "[[l4]]";
        let name = match required(cx, v.name.as_ref(), "name", section, &table.span()) {
            Some(n) if valid_name(cx, n, "l4") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("[[l4]] name \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let vip = required(cx, v.vip.as_ref(), "vip", section, &table.span())
            .and_then(|a| address(cx, a, "l4 vip"));
        if let (Some(addr), Some(span)) = (vip, v.vip.as_ref().map(|s| s.span())) {
            if addr.ip().is_unspecified() || addr.ip().is_multicast() {
                cx.push(
                    span,
                    format!("l4 vip {addr} must be a unicast address of this host"),
                );
            }
        }
        let protocol = enum_value(
            cx,
            v.protocol.as_ref(),
            "protocol",
            &[("tcp", Protocol::Tcp), ("udp", Protocol::Udp)],
            Protocol::Tcp,
        );
        let forward = enum_value(
            cx,
            v.forward.as_ref(),
            "forward",
            &[("nat", Forward::Nat), ("dsr", Forward::Dsr)],
            Forward::Nat,
        );
        let steering = enum_value(
            cx,
            v.steering.as_ref(),
            "steering",
            &[
                ("flow", Steering::Flow),
                ("syslog", Steering::Syslog),
                ("quic", Steering::Quic),
            ],
            Steering::Flow,
        );
        if let Some(s) = &v.steering {
            if protocol == Protocol::Tcp && steering != Steering::Flow {
                cx.push(
                    s.span(),
                    format!(
                        "steering \"{}\" is for UDP; [[l4]] \"{name}\" has protocol \"tcp\"",
                        s.get_ref()
                    ),
                );
            }
        }
        if let (Some(addr), Some(span)) = (vip, v.vip.as_ref().map(|s| s.span())) {
            unique(
                cx,
                &mut vips,
                (addr, protocol == Protocol::Tcp),
                span,
                || {
                    let p = if protocol == Protocol::Tcp {
                        "tcp"
                    } else {
                        "udp"
                    };
                    format!("VIP {addr}/{p}")
                },
            );
        }
        let backend = match required(cx, v.backend.as_ref(), "backend", section, &table.span()) {
            Some(b) => {
                let bname = b.get_ref();
                match backends.iter().find(|p| &p.name == bname) {
                    None => cx.push(
                        b.span(),
                        format!("unknown backend \"{bname}\" in [[l4]] \"{name}\""),
                    ),
                    Some(pool) => {
                        if let (Some(addr), Forward::Nat) = (vip, forward) {
                            check_nat_families(cx, raw, pool, addr, &name);
                        }
                    }
                }
                bname.clone()
            }
            None => String::new(),
        };
        let udp_idle_timeout_ms = int(
            cx,
            v.udp_idle_timeout_ms.as_ref(),
            "udp_idle_timeout_ms",
            0,
            MAX_DURATION_MS as i64,
            DEFAULT_UDP_IDLE_TIMEOUT_MS,
        ) as u32;
        let quic_sid_offset =
            int(cx, v.quic_sid_offset.as_ref(), "quic_sid_offset", 0, 19, 1) as u8;
        let quic_sid_len = int(cx, v.quic_sid_len.as_ref(), "quic_sid_len", 1, 4, 2) as u8;
        if let (Some(addr), Forward::Dsr) = (vip, forward) {
            if addr.is_ipv6() {
                if let Some(pool) = backends.iter().find(|p| p.name == backend) {
                    if pool.server.iter().any(|s| s.address.is_ipv4()) {
                        cx.push(
                            table.span(),
                            format!(
                                "[[l4]] \"{name}\": an IPv6 VIP needs IPv6 servers for DSR \
                                 (IPv6-in-IPv4 is not supported)"
                            ),
                        );
                    }
                }
            }
        }
        if let Some(vip) = vip {
            out.push(L4Vip {
                name,
                vip,
                protocol,
                backend,
                forward,
                steering,
                udp_idle_timeout_ms,
                quic_sid_offset,
                quic_sid_len,
            });
        }
    }
    out
}

/// NAT rewrites addresses in place: it cannot turn an IPv4 packet into an
/// IPv6 one. DSR encapsulates and can (4in6, like Katran).
fn check_nat_families(cx: &mut Cx, raw: &RawConfig, pool: &BackendPool, vip: SocketAddr, l4: &str) {
    let Some(raw_pool) = raw.backend.iter().find(|b| {
        b.get_ref()
            .name
            .as_ref()
            .is_some_and(|n| n.get_ref() == &pool.name)
    }) else {
        return;
    };
    for rs in &raw_pool.get_ref().server {
        let s = rs.get_ref();
        let (Some(a), Some(n)) = (s.address.as_ref(), s.name.as_ref()) else {
            continue;
        };
        let Some(server) = pool.server.iter().find(|x| &x.name == n.get_ref()) else {
            continue;
        };
        if server.address.is_ipv4() != vip.is_ipv4() {
            let fam = |a: &SocketAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
            cx.push(
                a.span(),
                format!(
                    "server \"{}/{}\" is {} but [[l4]] \"{l4}\" VIP {vip} is {}: forward = \"nat\" \
                     cannot translate between address families (use forward = \"dsr\")",
                    pool.name,
                    server.name,
                    fam(&server.address),
                    fam(&vip)
                ),
            );
        }
    }
}
