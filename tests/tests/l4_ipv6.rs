//! IPv6 TCP through the XDP NAT data path with real traffic: the dual-stack
//! L4 lab ([`L4Topology::build_dual`]), `xlb run` in the lb namespace with
//! one IPv6 VIP `[2001:db8::100]:80` NATed to three IPv6 `lab-backend`
//! servers `[2001:db8:1::11..13]:8080`. 150 connections from fixed client
//! source ports (the same flows, and Maglev verdicts, on every run) must
//! all succeed, spread over the three servers, and go through XDP: the
//! lb's kernel forwards (almost) none of their packets.

use std::net::{IpAddr, SocketAddr};

use xlb_lab::{
    L4Topology, Lab,
    l4traffic::{
        L4Config, VipCounters, assert_spread, run_batch, run_xlb, server_entries, server_names,
        snmp6, socket_addrs, spawn_backends, vip_counters,
    },
    topology::{CLIENT_ADDR6, VIP6},
};

const TEST: &str = "l4ipv6";
const VIP_PORT: u16 = 80;
const BACKEND_PORT: u16 = 8080;
const FLOWS: u16 = 150;
/// Each server's share of [`FLOWS`]: 50 ± 30%. Maglev over three equal
/// servers gives each a third of the hash space; for 150 independent flows
/// the count per server is binomial (n = 150, p = 1/3, sd ≈ 5.8), so
/// 35..=65 is about ±2.6 sd (the fixed ports make the outcome the same on
/// every run, this only bounds how lucky the chosen ports may be).
const SHARE: std::ops::RangeInclusive<usize> = 35..=65;
/// Kernel-forwarded IPv6 datagrams tolerated on the lb during the batch
/// (e.g. a first packet while a neighbour entry is still unresolved).
const MAX_KERNEL_FORWARDED: u64 = 10;

#[test]
fn ipv6_tcp_through_nat_spreads_and_bypasses_the_kernel() {
    let topo =
        L4Topology::build_dual(Lab::new(TEST).unwrap(), 3).unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", 3);
    let addrs = socket_addrs(topo.backend_addrs6(), BACKEND_PORT);
    let _backends = spawn_backends(&topo, &names, &addrs).unwrap_or_else(|e| panic!("{e:#}"));
    let vip = SocketAddr::new(IpAddr::V6(VIP6), VIP_PORT);
    let (_cfg, daemon) = run_xlb(&topo, TEST, |g| {
        L4Config::nat(
            &topo,
            "web6",
            "web6-l4",
            vip,
            server_entries(&names, &addrs),
        )
        .render(g)
    })
    .unwrap_or_else(|e| panic!("{e:#}"));

    let forw_before = snmp6(topo.lb(), "Ip6OutForwDatagrams").unwrap();
    let answers = run_batch(
        topo.client(),
        IpAddr::V6(CLIENT_ADDR6),
        20000..20000 + FLOWS,
        vip,
        &names,
    )
    .unwrap_or_else(|e| panic!("IPv6 batch: {e:#}\nxlb stderr:\n{}", daemon.stderr()));
    let forwarded = snmp6(topo.lb(), "Ip6OutForwDatagrams").unwrap() - forw_before;
    let stats = daemon.stats().unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("lb kernel Ip6OutForwDatagrams during the batch: {forwarded}");
    eprintln!("xlb stats:\n{stats}");

    assert_spread(&answers, &names, FLOWS, &SHARE, "IPv6 flows");
    let VipCounters {
        packets: vip_packets,
        flow_miss,
        nat_reverse,
    } = vip_counters(&stats, "web6-l4").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        flow_miss >= u64::from(FLOWS),
        "flow_miss = {flow_miss} after {FLOWS} new IPv6 flows: they did not all go through XDP"
    );
    assert!(
        vip_packets >= u64::from(FLOWS) * 4,
        "the IPv6 VIP counted {vip_packets} packets for {FLOWS} connections (>= 4 each expected)"
    );
    assert!(
        nat_reverse >= u64::from(FLOWS) * 3,
        "nat_reverse = {nat_reverse}: the replies of {FLOWS} IPv6 connections were not \
         reverse-translated in XDP (>= 3 each expected)"
    );
    assert!(
        forwarded <= MAX_KERNEL_FORWARDED,
        "the lb kernel forwarded {forwarded} IPv6 datagrams during {FLOWS} connections: \
         traffic bypassed XDP"
    );
}
