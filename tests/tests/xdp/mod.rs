//! Device under test for packet fixtures: the real XDP object, loaded in a
//! namespace of its own whose routes and neighbours are fixed, so
//! `bpf_fib_lookup` answers deterministically and outputs are exact bytes.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::{
    Ebpf,
    programs::{ProgramError, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use xlb::{
    config::{
        BackendPool, Balance, CheckKind, Config, Forward, Global, HealthCheck, L4Vip, Protocol,
        Server, Steering, XdpInterface, XdpMode,
    },
    dataplane::{
        loader,
        maps::Maps,
        object::{PROG_L4, load_xdp},
        stats::StatsReader,
    },
    registry::Registry,
};
use xlb_common::Stat;
use xlb_lab::{Lab, NetnsGuard, checksum::verify_checksums};

/// Frame builders and checksum checks of the IPv6, DSR and ICMP fixtures
/// (`packets.rs`, kept apart from the helpers in this file).
pub mod packets;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 100);
pub const VIP_PORT: u16 = 80;
pub const BACKEND_PORT: u16 = 8080;
/// A small prime keeps ring writes fast; the algorithm is the same.
pub const RING_SIZE: u32 = 1009;

pub fn backend_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 10 + i as u8)
}

pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);

pub fn backend_ip6(i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10 + i as u16)
}

/// `config(backends)` with one more VIP pair on IPv6 (VIP6:80 tcp and
/// udp, VIP ids 2 and 3) over IPv6 servers `b6-1`.. in backend "pool6".
pub fn config_dual(backends: usize) -> Config {
    let mut c = config(backends);
    let mut pool6 = c.backend[0].clone();
    pool6.name = "pool6".into();
    pool6.server = (1..=backends)
        .map(|i| server(format!("b6-{i}"), backend_ip6(i).into()))
        .collect();
    c.backend.push(pool6);
    for (name, protocol) in [("tcp6", Protocol::Tcp), ("udp6", Protocol::Udp)] {
        let mut v = c.l4[0].clone();
        v.name = name.into();
        v.vip = SocketAddr::new(VIP6.into(), VIP_PORT);
        v.protocol = protocol;
        v.backend = "pool6".into();
        c.l4.push(v);
    }
    c
}

pub fn backend_mac(i: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0x01, 0x10 + i as u8]
}

/// Server `name` on `ip`:[`BACKEND_PORT`], weight 100.
fn server(name: String, ip: IpAddr) -> Server {
    Server {
        name,
        address: SocketAddr::new(ip, BACKEND_PORT),
        weight: 100,
        quic_server_id: None,
    }
}

/// A config with one TCP and one UDP VIP over `backends` servers.
pub fn config(backends: usize) -> Config {
    let server = (1..=backends)
        .map(|i| server(format!("b{i}"), backend_ip(i).into()))
        .collect();
    let vip = |name: &str, protocol| L4Vip {
        name: name.into(),
        vip: SocketAddr::new(VIP.into(), VIP_PORT),
        protocol,
        backend: "pool".into(),
        forward: Forward::Nat,
        steering: Steering::Flow,
        udp_idle_timeout_ms: 30_000,
        quic_sid_offset: 1,
        quic_sid_len: 2,
    };
    Config {
        global: Global {
            api_socket: "/run/xlb/fixtures.sock".into(),
            metrics: None,
            bpf_pin_path: "/sys/fs/bpf/xlb-fixtures".into(),
            maglev_size: RING_SIZE,
            dsr_source_v4: (Ipv4Addr::new(198, 19, 0, 0), 16),
            dsr_source_v6: "2001:db8:ffff::".parse().unwrap(),
            flood_new_flows_per_sec: 0,
            l7_threads: 0,
        },
        xdp: vec![XdpInterface {
            interface: "eth0".into(),
            mode: XdpMode::Skb,
        }],
        backend: vec![BackendPool {
            name: "pool".into(),
            balance: Balance::Maglev,
            health: HealthCheck {
                check: CheckKind::None,
                path: "/".into(),
                interval_ms: 1000,
                timeout_ms: 500,
                rise: 2,
                fall: 2,
            },
            server,
            l7: Default::default(),
        }],
        l4: vec![vip("tcp", Protocol::Tcp), vip("udp", Protocol::Udp)],
        frontend: vec![],
    }
}

pub struct Dut {
    pub ebpf: Ebpf,
    pub maps: Maps,
    stats: StatsReader,
    pub registry: Registry,
    pub config: Config,
    eth0: u32,
    _inside: NetnsGuard,
    _lab: Lab,
}

impl Dut {
    pub fn new(test: &str, config: Config) -> Dut {
        let lab = Lab::new(test).expect("lab");
        let ns = lab.namespace("dut").expect("namespace");
        let mut script = vec![
            format!(
                "ip link add eth0 address {} type veth peer name peer0",
                mac(LB_MAC)
            ),
            "ip link set eth0 up".into(),
            "ip link set peer0 up".into(),
            "ip addr add 198.18.0.1/24 dev eth0".into(),
            "ip addr add 198.18.1.1/24 dev eth0".into(),
            "ip addr add 2001:db8::1/64 dev eth0 nodad".into(),
            "ip addr add 2001:db8:1::1/64 dev eth0 nodad".into(),
            format!(
                "ip neigh add {CLIENT} lladdr {} dev eth0 nud permanent",
                mac(CLIENT_MAC)
            ),
            format!(
                "ip neigh add {CLIENT6} lladdr {} dev eth0 nud permanent",
                mac(CLIENT_MAC)
            ),
            "sysctl -qw net.ipv4.conf.all.forwarding=1".into(),
            "sysctl -qw net.ipv6.conf.all.forwarding=1".into(),
        ];
        for i in 1..=8 {
            for ip in [backend_ip(i).to_string(), backend_ip6(i).to_string()] {
                script.push(format!(
                    "ip neigh add {ip} lladdr {} dev eth0 nud permanent",
                    mac(backend_mac(i))
                ));
            }
        }
        for line in &script {
            let args: Vec<&str> = line.split_whitespace().collect();
            let out = ns.run(&args).expect("run in namespace");
            assert!(out.status.success(), "{line}: {out:?}");
        }
        let inside = ns.enter().expect("enter namespace");
        let eth0 = ifindex("eth0");
        let registry = Registry::from_config(&config).expect("registry");
        let mut ebpf = loader::load(config.global.maglev_size).expect("load object");
        let mut maps = Maps::take(&mut ebpf, config.global.maglev_size).expect("maps");
        maps.sync(&config, &registry).expect("sync");
        let stats = StatsReader::take(&mut ebpf).expect("counter maps");
        let prog: &mut Xdp = ebpf.program_mut(PROG_L4).unwrap().try_into().unwrap();
        load_xdp(prog).expect("verifier accepts xlb_l4");
        Dut {
            ebpf,
            maps,
            stats,
            registry,
            config,
            eth0,
            _inside: inside,
            _lab: lab,
        }
    }

    /// Run one packet through the L4 program as if received on eth0;
    /// returns the action and the packet as the program left it.
    pub fn run(&self, packet: &[u8]) -> (u32, Vec<u8>) {
        let (result, out) = self
            .test_run(PROG_L4, packet, 1)
            .expect("BPF_PROG_TEST_RUN");
        (result.return_value, out)
    }

    /// BPF_PROG_TEST_RUN of `program` on `packet`, `repeat` times, as if
    /// received on eth0: the kernel's result and the packet as the program
    /// left it.
    pub fn test_run(
        &self,
        program: &str,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(TestRunResult, Vec<u8>), ProgramError> {
        let prog: &Xdp = self.ebpf.program(program).unwrap().try_into().unwrap();
        let mut out = vec![0u8; packet.len() + 256];
        let ctx_bytes = self.ctx_in(packet.len());
        let result = prog.test_run(TestRunOptions {
            data_in: Some(packet),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx_bytes),
            repeat,
            ..Default::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result, out))
    }

    /// A `struct xdp_md` (data, data_end, data_meta, ingress_ifindex,
    /// rx_queue_index, egress_ifindex) saying the frame arrived on eth0.
    fn ctx_in(&self, frame_len: usize) -> Vec<u8> {
        let ctx: [u32; 6] = [0, frame_len as u32, 0, self.eth0, 0, 0];
        ctx.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    pub fn stats(&self) -> &StatsReader {
        &self.stats
    }

    /// A global counter of the data path.
    pub fn stat(&self, s: Stat) -> u64 {
        self.stats.stat(s).expect("stat counter")
    }

    /// Push the registry's current state to the maps (after a change).
    pub fn sync(&mut self) {
        self.maps.sync(&self.config, &self.registry).expect("sync");
    }

    /// Runs each case in turn: its action, its output to the byte, and
    /// every checksum of the output ([`verify_checksums`]).
    pub fn run_cases(&self, cases: impl IntoIterator<Item = Case>) {
        for case in cases {
            let (action, out) = self.run(&case.input);
            assert_eq!(action, case.action, "{}: action", case.name);
            assert_eq!(hex(&out), hex(case.expected()), "{}: bytes", case.name);
            verify_checksums(&out, case.name);
        }
    }
}

/// One fixture: a frame in, the action it must meet and the frame that
/// must come out.
pub struct Case {
    pub name: &'static str,
    pub input: Vec<u8>,
    pub action: u32,
    /// None: the frame must come out unchanged.
    pub output: Option<Vec<u8>>,
}

impl Case {
    /// `input` must leave by XDP_TX as `output`.
    pub fn tx(name: &'static str, input: Vec<u8>, output: Vec<u8>) -> Case {
        Case {
            name,
            input,
            action: XDP_TX,
            output: Some(output),
        }
    }

    /// `input` must meet `action` and come out unchanged.
    pub fn kept(name: &'static str, input: Vec<u8>, action: u32) -> Case {
        Case {
            name,
            input,
            action,
            output: None,
        }
    }

    /// The frame that must come out.
    pub fn expected(&self) -> &[u8] {
        self.output.as_deref().unwrap_or(&self.input)
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(index, 0, "no interface {name}");
    index
}

/// Frame builders (etherparse computes every checksum from scratch, so an
/// expected packet is an independent check of the data path's incremental
/// updates).
pub mod frame {
    use std::net::Ipv4Addr;

    use etherparse::PacketBuilder;

    use super::{BACKEND_PORT, CLIENT, CLIENT_MAC, LB_MAC, VIP, VIP_PORT, backend_ip, backend_mac};

    #[derive(Clone)]
    pub struct Tcp {
        pub src_mac: [u8; 6],
        pub dst_mac: [u8; 6],
        pub src: Ipv4Addr,
        pub sport: u16,
        pub dst: Ipv4Addr,
        pub dport: u16,
        pub syn: bool,
        pub payload: Vec<u8>,
    }

    impl Tcp {
        pub fn build(&self) -> Vec<u8> {
            let b = PacketBuilder::ethernet2(self.src_mac, self.dst_mac)
                .ipv4(self.src.octets(), self.dst.octets(), 64)
                .tcp(self.sport, self.dport, 0x1234_5678, 64240);
            let b = if self.syn { b.syn() } else { b.ack(1).psh() };
            let mut out = Vec::with_capacity(b.size(self.payload.len()));
            b.write(&mut out, &self.payload).unwrap();
            out
        }

        /// The segment as the LB must send it to backend `i` (NAT: LB ->
        /// backend MAC, destination backend `i`:[`BACKEND_PORT`]).
        pub fn nat_to_backend(mut self, i: usize) -> Tcp {
            self.src_mac = LB_MAC;
            self.dst_mac = backend_mac(i);
            self.dst = backend_ip(i);
            self.dport = BACKEND_PORT;
            self
        }

        /// The reply as the LB must send it back to the client (LB ->
        /// client MAC, source VIP:[`VIP_PORT`]).
        pub fn nat_to_client(mut self) -> Tcp {
            self.src_mac = LB_MAC;
            self.dst_mac = CLIENT_MAC;
            self.src = VIP;
            self.sport = VIP_PORT;
            self
        }
    }

    /// Client -> VIP TCP segment (SYN, or ACK+PSH) of flow `sport`.
    pub fn client_tcp(sport: u16, syn: bool, payload: &[u8]) -> Tcp {
        Tcp {
            src_mac: CLIENT_MAC,
            dst_mac: LB_MAC,
            src: CLIENT,
            sport,
            dst: VIP,
            dport: VIP_PORT,
            syn,
            payload: payload.to_vec(),
        }
    }

    /// An HTTP response head (ACK+PSH) from backend `i`:[`BACKEND_PORT`]
    /// to the client's port `dport`, as it reaches the LB.
    pub fn backend_reply(i: usize, dport: u16) -> Tcp {
        Tcp {
            src_mac: backend_mac(i),
            dst_mac: LB_MAC,
            src: backend_ip(i),
            sport: BACKEND_PORT,
            dst: CLIENT,
            dport,
            syn: false,
            payload: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        }
    }

    /// A TCP SYN over IPv6 (v1 passes IPv6 untouched).
    pub fn ipv6_tcp(src_mac: [u8; 6], dst_mac: [u8; 6]) -> Vec<u8> {
        let src: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8::100".parse().unwrap();
        let b = PacketBuilder::ethernet2(src_mac, dst_mac)
            .ipv6(src.octets(), dst.octets(), 64)
            .tcp(40000, 80, 1, 64240)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    /// The same IPv4 frame with 4 bytes of IP options (NOP NOP NOP EOL);
    /// the IP header checksum is recomputed from scratch.
    pub fn with_ip_options(frame: &[u8]) -> Vec<u8> {
        let (mut ip, rest) = etherparse::Ipv4Header::from_slice(&frame[14..]).unwrap();
        ip.options = etherparse::Ipv4Options::try_from(&[1u8, 1, 1, 0][..]).unwrap();
        ip.total_len += 4;
        ip.header_checksum = ip.calc_header_checksum();
        let mut out = frame[..14].to_vec();
        ip.write(&mut out).unwrap();
        out.extend_from_slice(rest);
        out
    }
}

pub use xlb_lab::fuzz::hex;
