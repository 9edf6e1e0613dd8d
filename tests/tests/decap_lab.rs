//! `xlb decap` with real traffic: in the L4 lab, backend1 runs
//! `xlb decap --interface eth0 --vip 198.18.0.100` and has the VIP on `lo`;
//! the lb sends a hand-built IPIP frame (outer lb -> backend1, inner
//! client -> VIP, UDP) on its eth0 through a raw socket, and a UDP listener
//! on VIP:5140 in backend1 must receive the inner datagram. Also: a second
//! `xlb decap` on the same interface and one on a missing interface fail
//! with a clear message, and SIGTERM detaches and logs the counters.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use etherparse::{EtherType, Ethernet2Header, IpNumber, Ipv4Header, PacketBuilder};
use xlb_lab::{
    L4Topology, Lab,
    l4traffic::{decap_cmd, hold_vip, spawn_decap, stderr_text, stop_decap},
    topology::backend_addr,
};

const UDP_PORT: u16 = 5140;
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CMD_TIMEOUT: Duration = Duration::from_secs(30);

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).expect("mac byte"))
        .collect();
    v.try_into().expect("6-byte mac")
}

/// Outer `outer_src` -> `outer_dst` (IPIP) around client:40000 -> VIP:5140.
fn ipip_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    client: Ipv4Addr,
    vip: Ipv4Addr,
    payload: &[u8],
) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ipv4(client.octets(), vip.octets(), 64)
        .udp(40000, UDP_PORT)
        .write(&mut inner, payload)
        .unwrap();
    let mut outer = Ipv4Header::new(
        inner.len() as u16,
        64,
        IpNumber::IPV4,
        outer_src.octets(),
        outer_dst.octets(),
    )
    .unwrap();
    outer.header_checksum = outer.calc_header_checksum();
    let mut frame = Ethernet2Header {
        source: src_mac,
        destination: dst_mac,
        ether_type: EtherType::IPV4,
    }
    .to_bytes()
    .to_vec();
    outer.write(&mut frame).unwrap();
    frame.extend_from_slice(&inner);
    frame
}

/// Sends `frame` as is out of `iface` (AF_PACKET) in the current thread's
/// namespace.
fn send_raw(iface: &str, frame: &[u8]) -> std::io::Result<()> {
    // Protocol 0: a send-only socket, it receives nothing.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).unwrap();
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    assert_eq!(n as usize, frame.len(), "short send");
    Ok(())
}

fn xdp_attached(ns: &xlb_lab::Namespace, dev: &str) -> bool {
    let out = ns.ip(&["link", "show", "dev", dev]).expect("ip link show");
    String::from_utf8_lossy(&out.stdout).contains("xdp")
}

#[test]
fn decap_delivers_the_inner_datagram_to_the_vip() {
    let topo = L4Topology::build(Lab::new("decaplab").expect("lab"), 1).expect("topology");
    let backend = topo.backend(1);
    let vip = topo.vip();
    // A DSR backend must not answer ARP for the VIP it holds on lo.
    hold_vip(backend, vip).unwrap();

    let listener = backend
        .with(|| UdpSocket::bind(SocketAddr::from((vip, UDP_PORT))))
        .unwrap()
        .expect("bind the vip in backend1");
    listener
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();

    let mut decap =
        spawn_decap(backend, "eth0", vip, READY_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(xdp_attached(backend, "eth0"), "xdp on backend1 eth0");

    // A second one on the same interface is refused, clearly; so is a
    // missing interface.
    for (iface, what, message) in [
        ("eth0", "second xlb decap", "already has an XDP program"),
        (
            "nosuch0",
            "missing interface",
            "interface nosuch0 does not exist",
        ),
    ] {
        let cmd = decap_cmd(iface, vip).expect("xlb binary");
        let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = backend.output(&cmd, CMD_TIMEOUT).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} must fail: {err}");
        assert!(err.contains(message), "{what}: {err}");
    }

    let backend_mac = parse_mac(&backend.mac_of("eth0").unwrap());
    let lb_mac = parse_mac(&topo.lb().mac_of(topo.lb_iface()).unwrap());
    let payload = b"<13>decap lab: hello over ipip";
    let frame = ipip_frame(
        lb_mac,
        backend_mac,
        Ipv4Addr::new(198, 18, 1, 1),
        backend_addr(1),
        topo.client_addr(),
        vip,
        payload,
    );

    // Bounded retries: the bridge may still be learning; each send is
    // decapsulated on arrival, so the counter is checked as ">= 1".
    let mut buf = [0u8; 1500];
    let mut received = None;
    for _ in 0..5 {
        topo.lb()
            .with(|| send_raw(topo.lb_iface(), &frame))
            .unwrap()
            .expect("send the ipip frame from the lb");
        match listener.recv_from(&mut buf) {
            Ok((n, from)) => {
                received = Some((buf[..n].to_vec(), from));
                break;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv on the vip: {e}"),
        }
    }
    let (data, from) = received.unwrap_or_else(|| {
        panic!(
            "no datagram reached {vip}:{UDP_PORT} in backend1; xlb decap stderr:\n{}",
            stderr_text(&decap)
        )
    });
    assert_eq!(data, payload, "inner payload");
    assert_eq!(
        from,
        SocketAddr::from((topo.client_addr(), 40000)),
        "the inner source (the client) is what the backend sees"
    );

    // SIGTERM: counters logged, program detached, clean exit.
    let ipip = stop_decap(&mut decap, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e:#}"));
    let deadline = Instant::now() + CMD_TIMEOUT;
    while decap.is_running() {
        assert!(
            Instant::now() < deadline,
            "xlb decap still runs after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = stderr_text(&decap);
    assert!(ipip >= 1, "decap_ipip={ipip}; stderr:\n{log}");
    assert!(
        !xdp_attached(backend, "eth0"),
        "xdp still on backend1 eth0 after SIGTERM"
    );
}
