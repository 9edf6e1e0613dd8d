//! Self-tests of the lab harness. Each test uses its own lab name so they can
//! run in parallel.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::fs::MetadataExt,
    path::Path,
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use xlb_lab::{L4Topology, Lab, Namespace};

const BACKEND: &str = env!("CARGO_BIN_EXE_lab-backend");

fn sh(cmd: &[&str]) -> String {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `xlb-<test>-*` namespaces that exist now.
fn lab_namespaces(test: &str) -> Vec<String> {
    let prefix = format!("xlb-{test}-");
    sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Lab addresses (198.18/15, 2001:db8) configured in the root namespace.
fn root_lab_addrs() -> BTreeSet<String> {
    sh(&["ip", "-o", "addr", "show"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
        .filter(|a| {
            a.starts_with("198.18.") || a.starts_with("198.19.") || a.starts_with("2001:db8:")
        })
        .collect()
}

fn root_links() -> BTreeSet<String> {
    sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap().to_owned())
        .collect()
}

fn netns_id_of_thread() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn pid_alive(pid: u32) -> bool {
    // Also false for a zombie (state Z): it no longer runs.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn l4_topology_routes_and_cleans_up() {
    let addrs_before = root_lab_addrs();
    let links_before = root_links();

    let topo = L4Topology::build(Lab::new("selftest").unwrap(), 3).unwrap();
    assert_eq!(
        lab_namespaces("selftest"),
        [
            "xlb-selftest-backend1",
            "xlb-selftest-backend2",
            "xlb-selftest-backend3",
            "xlb-selftest-client",
            "xlb-selftest-lb",
            "xlb-selftest-sw"
        ]
    );
    assert_eq!(topo.vip().to_string(), "198.18.0.100");
    assert_eq!(topo.lb_iface(), "eth0");
    assert_eq!(
        topo.backend_addrs()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>(),
        ["198.18.1.11", "198.18.1.12", "198.18.1.13"]
    );

    // Nothing of the lab is visible in the root namespace while it is up.
    assert_eq!(
        root_lab_addrs(),
        addrs_before,
        "root namespace gained lab addresses"
    );
    let new_links: Vec<_> = root_links().difference(&links_before).cloned().collect();
    assert!(
        new_links.is_empty(),
        "root namespace gained links {new_links:?}"
    );

    // Every bridge port carries the pass-through XDP program.
    for port in ["c0", "lb0", "b1", "b2", "b3"] {
        let out = topo.sw().ip(&["link", "show", "dev", port]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("prog/xdp"),
            "{port} has no XDP program: {text}"
        );
        assert!(text.contains("master br0"), "{port} not in br0: {text}");
    }
    // The lb's addressing and sysctls.
    let lb_addrs =
        String::from_utf8(topo.lb().ip(&["-o", "addr", "show"]).unwrap().stdout).unwrap();
    for a in ["198.18.0.1/24", "198.18.1.1/24", "198.18.0.100/32"] {
        assert!(lb_addrs.contains(a), "lb lacks {a}: {lb_addrs}");
    }
    let fwd = topo
        .lb()
        .run(&["sysctl", "-n", "net.ipv4.ip_forward"])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");

    let _backends = topo.spawn_backends(8080).unwrap();
    // Client -> lb on the client subnet (no ping here: a TCP round trip).
    let _lb_server = topo
        .lb()
        .spawn_backend_with(
            Path::new(BACKEND),
            "lb",
            "198.18.0.1:8080".parse().unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(
        topo.client().curl("http://198.18.0.1:8080/").unwrap(),
        "lb\n"
    );
    // The lb reaches every backend on the backend subnet.
    for k in 1..=3 {
        let url = format!("http://198.18.1.{}:8080/", 10 + k);
        assert_eq!(topo.lb().curl(&url).unwrap(), format!("backend{k}\n"));
    }
    // The client reaches backends through the lb acting as a plain router,
    // and the backend sees the client's own address (no NAT).
    assert_eq!(
        topo.client().curl("http://198.18.1.11:8080/").unwrap(),
        "backend1\n"
    );
    assert_eq!(
        topo.client()
            .curl("http://198.18.1.13:8080/healthz")
            .unwrap(),
        "backend3\n"
    );
    let ss = topo
        .client()
        .with(|| {
            let mut s = TcpStream::connect_timeout(
                &"198.18.1.12:8080".parse().unwrap(),
                Duration::from_secs(5),
            )
            .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut buf = [0u8; 512];
            let n = s.read(&mut buf).unwrap();
            let local = s.local_addr().unwrap();
            (String::from_utf8_lossy(&buf[..n]).into_owned(), local)
        })
        .unwrap();
    assert!(ss.0.ends_with("\r\n\r\nbackend2\n"), "{}", ss.0);
    assert_eq!(ss.1.ip().to_string(), "198.18.0.2");
    // Without xlb the VIP is only a local address of the lb: nothing listens.
    assert!(topo.client().curl("http://198.18.0.100:8080/").is_err());

    drop(topo);
    assert!(
        lab_namespaces("selftest").is_empty(),
        "{:?}",
        lab_namespaces("selftest")
    );
    assert_eq!(root_lab_addrs(), addrs_before);
    let new_links: Vec<_> = root_links().difference(&links_before).cloned().collect();
    assert!(
        new_links.is_empty(),
        "root namespace gained links {new_links:?}"
    );
}

#[test]
fn panic_still_removes_everything() {
    let (tx, rx) = mpsc::channel();
    let joined = std::thread::spawn(move || {
        let lab = Lab::new("selftestpanic").unwrap();
        let a = lab.namespace("a").unwrap();
        let b = lab.namespace("b").unwrap();
        xlb_lab::veth(
            xlb_lab::VethEnd::new(&a, "eth0"),
            xlb_lab::VethEnd::new(&b, "eth0"),
        )
        .unwrap();
        let p = a.spawn(&["sleep", "300"]).unwrap();
        // A process started by the lab but not through a guard, too.
        let stray = b.output(
            &["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
            Duration::from_secs(5),
        );
        let stray: u32 = String::from_utf8_lossy(&stray.unwrap().stdout)
            .trim()
            .parse()
            .unwrap();
        tx.send((p.pid(), stray, lab_namespaces("selftestpanic")))
            .unwrap();
        std::mem::forget(p); // not even the guard's drop: the lab must kill it
        panic!("deliberate panic while holding a lab");
    })
    .join();
    assert!(joined.is_err(), "the thread should have panicked");
    let (pid, stray, during) = rx.recv().unwrap();
    assert_eq!(during, ["xlb-selftestpanic-a", "xlb-selftestpanic-b"]);
    assert!(lab_namespaces("selftestpanic").is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    while (pid_alive(pid) || pid_alive(stray)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(pid), "process {pid} survived the lab");
    assert!(!pid_alive(stray), "stray process {stray} survived the lab");
}

#[test]
fn catch_unwind_still_removes_everything() {
    let r = std::panic::catch_unwind(|| {
        let lab = Lab::new("selftestunwind").unwrap();
        let _ns = lab.namespace("x").unwrap();
        assert_eq!(lab_namespaces("selftestunwind"), ["xlb-selftestunwind-x"]);
        panic!("deliberate");
    });
    assert!(r.is_err());
    assert!(lab_namespaces("selftestunwind").is_empty());
}

#[test]
fn enter_moves_only_the_current_thread() {
    let lab = Lab::new("selftestenter").unwrap();
    let ns = lab.namespace("n").unwrap();
    ns.add_addr("lo", "198.18.9.1/32").unwrap();
    let ns_inode = std::fs::metadata(format!("/run/netns/{}", ns.name()))
        .unwrap()
        .ino();

    let before = netns_id_of_thread();
    // A thread that exists already is not moved by enter(); it reports its
    // namespace on request.
    let (ask, asked) = mpsc::channel::<()>();
    let (answer, answers) = mpsc::channel();
    let other = std::thread::spawn(move || {
        while asked.recv().is_ok() {
            answer.send(netns_id_of_thread()).unwrap();
        }
    });
    {
        let _g = ns.enter().unwrap();
        let inside = netns_id_of_thread();
        assert_ne!(inside, before);
        assert_eq!(inside, format!("net:[{ns_inode}]"));
        // Sockets made now live in the namespace: its address is local here.
        TcpListener::bind("198.18.9.1:0").unwrap();
        ask.send(()).unwrap();
        assert_eq!(answers.recv().unwrap(), before, "another thread moved");
        // A thread spawned while inside inherits the namespace.
        let child = std::thread::spawn(netns_id_of_thread).join().unwrap();
        assert_eq!(child, inside);
    }
    drop(ask);
    other.join().unwrap();
    assert_eq!(netns_id_of_thread(), before);
    assert!(
        TcpListener::bind("198.18.9.1:0").is_err(),
        "root has the lab address"
    );

    let inside = ns.with(netns_id_of_thread).unwrap();
    assert_eq!(inside, format!("net:[{ns_inode}]"));
    assert_eq!(netns_id_of_thread(), before);
}

#[test]
fn stale_namespaces_of_the_same_test_are_swept() {
    let _ = Command::new("ip")
        .args(["netns", "delete", "xlb-selftestsweepx-keep"])
        .output();
    sh(&["ip", "netns", "add", "xlb-selftestsweep-stale"]);
    sh(&["ip", "netns", "add", "xlb-selftestsweepx-keep"]);
    // A process left running in the stale namespace (as after a crash).
    let mut stray = Command::new("ip")
        .args(["netns", "exec", "xlb-selftestsweep-stale", "sleep", "300"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let lab = Lab::new("selftestsweep").unwrap();
    assert!(lab_namespaces("selftestsweep").is_empty());
    // The stray process was killed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = stray.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.is_some(), "stray process not killed");
    // Another test's namespace is left alone.
    assert_eq!(
        lab_namespaces("selftestsweepx"),
        ["xlb-selftestsweepx-keep"]
    );
    drop(lab);
    xlb_lab::sweep("selftestsweepx").unwrap();
    assert!(lab_namespaces("selftestsweepx").is_empty());
}

#[test]
fn lab_addresses_only() {
    let lab = Lab::new("selftestaddr").unwrap();
    let ns = lab.namespace("n").unwrap();
    assert!(ns.add_addr("lo", "10.0.0.1/24").is_err());
    assert!(ns.add_addr("lo", "2001:db9::1/64").is_err());
    assert!(ns.add_route("default", "192.168.1.1").is_err());
    ns.add_addr("lo", "198.19.255.1/32").unwrap();
    ns.add_addr("lo", "2001:db8::1/128").unwrap();
    assert!(Lab::new("bad-name").is_err());
    assert!(lab.namespace("bad/role").is_err());
}

fn http(s: &mut BufReader<TcpStream>, req: &str) -> (String, String) {
    s.get_mut().write_all(req.as_bytes()).unwrap();
    let mut head = String::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        s.read_line(&mut line).unwrap();
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; if req.starts_with("HEAD") { 0 } else { len }];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn lab_backend_http_keepalive_and_udp() {
    let lab = Lab::new("selftestbackend").unwrap();
    let ns: Namespace = lab.namespace("b").unwrap();
    ns.add_addr("lo", "198.18.7.1/32").unwrap();
    let tcp: SocketAddr = "198.18.7.1:8080".parse().unwrap();
    let udp: SocketAddr = "198.18.7.1:5140".parse().unwrap();
    let mut proc = ns
        .spawn_backend_with(Path::new(BACKEND), "web7", tcp, Some(udp))
        .unwrap();
    assert_eq!(
        proc.stdout_lines(),
        [
            "listening on 198.18.7.1:8080",
            "listening on udp 198.18.7.1:5140"
        ]
    );

    ns.with(|| {
        let conn = TcpStream::connect_timeout(&tcp, Duration::from_secs(5)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut conn = BufReader::new(conn);
        // Many requests on one connection.
        for path in ["/", "/healthz", "/a/b?c=d"] {
            let (head, body) = http(
                &mut conn,
                &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
            );
            assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
            assert!(head.contains("Content-Type: text/plain\r\n"), "{head}");
            assert_eq!(body, "web7\n");
        }
        let (head, body) = http(
            &mut conn,
            "POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "web7\n");
        let (head, body) = http(
            &mut conn,
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        );
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, "web7\n");
        let (head, _) = http(&mut conn, "HEAD / HTTP/1.1\r\n\r\n");
        assert!(head.contains("Content-Length: 5\r\n"), "{head}");
        // Connection: close is answered, then the server closes.
        let (head, body) = http(&mut conn, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(head.contains("Connection: close\r\n"), "{head}");
        assert_eq!(body, "web7\n");
        let mut rest = Vec::new();
        assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);

        // HTTP/1.0 without keep-alive closes too.
        let conn = TcpStream::connect_timeout(&tcp, Duration::from_secs(5)).unwrap();
        let mut conn = BufReader::new(conn);
        let (_, body) = http(&mut conn, "GET / HTTP/1.0\r\n\r\n");
        assert_eq!(body, "web7\n");
        assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);

        let sock = UdpSocket::bind("198.18.7.1:0").unwrap();
        for i in 0..5 {
            sock.send_to(format!("<13>msg {i}\n").as_bytes(), udp)
                .unwrap();
        }
    })
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    while proc.stdout_lines().len() < 7 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = proc.stdout_lines();
    assert_eq!(
        &lines[2..],
        [
            "<13>msg 0",
            "<13>msg 1",
            "<13>msg 2",
            "<13>msg 3",
            "<13>msg 4"
        ]
    );
    assert!(proc.is_running());
    let pid = proc.pid();
    drop(proc);
    assert!(!pid_alive(pid));
}

#[test]
fn lab_backend_found_next_to_the_test_binary() {
    let p = xlb_lab::lab_backend_path().unwrap();
    assert_eq!(
        p.canonicalize().unwrap(),
        Path::new(BACKEND).canonicalize().unwrap()
    );
}

#[test]
fn same_test_name_takes_turns() {
    let first = Lab::new("selftestlock").unwrap();
    first.namespace("a").unwrap();
    let (tx, rx) = mpsc::channel();
    let second = std::thread::spawn(move || {
        let lab = Lab::new("selftestlock").unwrap();
        // The first lab is gone completely before the second one starts.
        tx.send((Instant::now(), lab_namespaces("selftestlock")))
            .unwrap();
        lab.namespace("b").unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rx.try_recv().is_err(),
        "second lab started while the first lives"
    );
    assert_eq!(lab_namespaces("selftestlock"), ["xlb-selftestlock-a"]);
    let dropped = Instant::now();
    drop(first);
    let (started, seen) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(started >= dropped);
    assert!(seen.is_empty(), "{seen:?}");
    second.join().unwrap();
    assert!(lab_namespaces("selftestlock").is_empty());
}
