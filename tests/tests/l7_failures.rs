//! Failure handling of the L7 tier, end to end in the lab:
//!
//! - `refused_server_is_skipped`: a server that refuses connections (and
//!   is not health checked) costs a retry, never a client error.
//! - `killed_server_under_load_loses_nothing`: SIGKILL a `lab-backend`
//!   while two clients loop (keep-alive and one connection per request):
//!   every request succeeds.
//! - `hung_server_gives_504`: no response within `response_timeout_ms` ->
//!   504 with a short body and a log line.
//! - `limits_and_client_timeouts`: a 100 KB header gets 431; a slowloris
//!   client is cut at `header_timeout_ms` while others are served; an idle
//!   keep-alive connection lives through gaps longer than the header
//!   timeout and is closed after `idle_timeout_ms`.

use std::{
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use xlb_lab::{
    L4Topology, Lab, Namespace, Process, TempDir, XlbDaemon,
    l4traffic::LAB_HEALTH,
    l7::{
        ROUNDROBIN, VIP, access_lines, connect_vip, curl, curl_ok, frontend_toml, head_toml,
        http_lab, http1_get, pool_toml, start_servers, web_servers,
    },
};

fn start(topo: &L4Topology, dir: &TempDir, text: String) -> XlbDaemon {
    let cfg = dir.write_config(&text).unwrap();
    topo.lb().start_xlb(&cfg)
}

#[test]
fn refused_server_is_skipped() {
    let (topo, _web, dir) = http_lab("l7refuse", 3).unwrap();
    // Nothing listens on web2's port 8081: connections are refused.
    let servers = [
        ("web1", "198.18.1.11:8080"),
        ("web2", "198.18.1.12:8081"),
        ("web3", "198.18.1.13:8080"),
    ];
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7refuse"),
        pool_toml("web", ROUNDROBIN, &servers),
        frontend_toml("fe", 8080, "web", ""),
    );
    let daemon = start(&topo, &dir, text);
    let mark = daemon.stderr_lines().len();
    let mut seen = Vec::new();
    for i in 0..30 {
        let body = curl_ok(topo.client(), &[&format!("http://{VIP}:8080/")])
            .unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        seen.push(body.trim().to_string());
    }
    eprintln!("answers: {seen:?}");
    assert!(seen.iter().all(|n| n == "web1" || n == "web3"), "{seen:?}");
    thread::sleep(Duration::from_millis(200));
    let lines = access_lines(&daemon, mark);
    let retried = lines.iter().filter(|l| l.retries == 1).count();
    eprintln!("{retried} of {} requests were retried", lines.len());
    assert_eq!(lines.len(), 30);
    assert!(lines.iter().all(|l| l.status == 200));
    // Roundrobin sends every third first attempt to web2.
    assert!(retried >= 8, "{lines:#?}");
    assert!(
        daemon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("web/web2") && l.contains("trying another server")),
        "no log line for the refused connection:\n{}",
        daemon.stderr()
    );
}

/// Requests in a loop until `stop`; returns (ok, failures).
fn request_loop(
    client: Namespace,
    port: u16,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<(usize, Vec<String>)> {
    thread::spawn(move || {
        let _inside = client.enter().unwrap();
        let addr: SocketAddr = format!("{VIP}:{port}").parse().unwrap();
        let (mut ok, mut failures) = (0, Vec::new());
        let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                    Ok(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let r = BufReader::new(s.try_clone().unwrap());
                        conn = Some((s, r));
                    }
                    Err(e) => {
                        failures.push(format!("connect: {e}"));
                        continue;
                    }
                }
            }
            let (s, r) = conn.as_mut().unwrap();
            match http1_get(s, r, VIP, "/") {
                Ok((200, body)) if body.starts_with(b"web") => ok += 1,
                Ok((status, body)) => failures.push(format!(
                    "status {status}: {}",
                    String::from_utf8_lossy(&body).trim()
                )),
                Err(e) => {
                    failures.push(format!("{e:#}"));
                    conn = None;
                }
            }
            if !keep_alive {
                conn = None;
            }
            thread::sleep(Duration::from_millis(5));
        }
        (ok, failures)
    })
}

#[test]
fn killed_server_under_load_loses_nothing() {
    let topo = L4Topology::build(Lab::new("l7kill").unwrap(), 3).unwrap();
    let mut web: Vec<Option<Process>> = start_servers(&topo, 1..=3, 8080, Namespace::spawn_backend)
        .unwrap()
        .into_iter()
        .map(Some)
        .collect();
    let dir = TempDir::new("l7kill").unwrap();
    let keys = format!("{ROUNDROBIN}health = {}\n", LAB_HEALTH.toml());
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7kill"),
        pool_toml("web", &keys, &web_servers(1..=3, 8080)),
        frontend_toml("fe", 8080, "web", ""),
    );
    let mut daemon = start(&topo, &dir, text);
    let mark = daemon.stderr_lines().len();
    let stop = Arc::new(AtomicBool::new(false));
    let loops = [
        request_loop(topo.client().clone(), 8080, true, stop.clone()),
        request_loop(topo.client().clone(), 8080, false, stop.clone()),
    ];
    thread::sleep(Duration::from_millis(1000));
    drop(web[1].take()); // SIGKILL web2
    let killed = Instant::now();
    daemon
        .wait_for_stderr(mark, Duration::from_secs(10), |l| {
            l.contains("server is DOWN") && l.contains("server=web/web2")
        })
        .unwrap();
    eprintln!("web2 DOWN {:?} after the kill", killed.elapsed());
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for (i, l) in loops.into_iter().enumerate() {
        let (ok, failures) = l.join().unwrap();
        eprintln!("loop {i}: {ok} ok, failures {failures:?}");
        assert!(failures.is_empty(), "loop {i} lost requests: {failures:?}");
        total += ok;
    }
    thread::sleep(Duration::from_millis(200));
    let lines = access_lines(&daemon, mark);
    let retried = lines.iter().filter(|l| l.retries > 0).count();
    eprintln!(
        "{total} requests, {retried} retried; {} log lines",
        lines.len()
    );
    assert!(total >= 100, "only {total} requests");
    assert!(lines.iter().all(|l| l.status == 200), "{lines:#?}");
}

#[test]
fn hung_server_gives_504() {
    let (topo, _web, dir) = http_lab("l7hang", 1).unwrap();
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7hang"),
        pool_toml(
            "web",
            "response_timeout_ms = 1000\n",
            &web_servers([1], 8080)
        ),
        frontend_toml("fe", 8080, "web", ""),
    );
    let daemon = start(&topo, &dir, text);
    let mark = daemon.stderr_lines().len();
    let started = Instant::now();
    let out = curl(
        topo.client(),
        &[&format!("http://{VIP}:8080/hang")],
        Duration::from_secs(10),
    )
    .unwrap();
    let took = started.elapsed();
    eprintln!("hang: {} after {took:?}: {}", out.status, out.text());
    assert_eq!(out.status, 504, "{out:?}");
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_millis(4000),
        "504 after {took:?}, timeout is 1000 ms"
    );
    assert!(
        out.text().starts_with("504 Gateway Timeout"),
        "{}",
        out.text()
    );
    assert!(out.body.len() < 200);
    // The server still answers other paths; the client connection too.
    assert_eq!(
        curl_ok(topo.client(), &[&format!("http://{VIP}:8080/")]).unwrap(),
        "web1\n"
    );
    thread::sleep(Duration::from_millis(200));
    let lines = access_lines(&daemon, mark);
    assert!(
        lines
            .iter()
            .any(|l| l.status == 504 && l.error.as_deref().is_some_and(|e| e.contains("timeout"))),
        "{lines:#?}"
    );
    assert!(
        daemon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("no response within 1000 ms")),
        "{}",
        daemon.stderr()
    );
}

/// Trickles a request head, a byte every 100 ms, to `port` (after one
/// complete request on the same connection with `after_a_request`):
/// the bytes sent and when the connection was cut, if it was.
fn slowloris(client: &Namespace, port: u16, after_a_request: bool) -> (usize, Option<Duration>) {
    let mut s = connect_vip(client, port, Duration::from_secs(10)).unwrap();
    if after_a_request {
        let mut r = BufReader::new(s.try_clone().unwrap());
        let (status, _) = http1_get(&mut s, &mut r, VIP, "/").unwrap();
        assert_eq!(status, 200);
    }
    let started = Instant::now();
    let mut sent = 0;
    let mut cut = None;
    let trickle = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for b in trickle {
        if s.write_all(&[*b]).is_err() {
            cut = Some(started.elapsed());
            break;
        }
        sent += 1;
        thread::sleep(Duration::from_millis(100));
        // A closed socket shows on read (EOF) before a write fails.
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            _ => {
                cut = Some(started.elapsed());
                break;
            }
        }
        s.set_nonblocking(false).unwrap();
    }
    (sent, cut)
}

#[test]
fn limits_and_client_timeouts() {
    let (topo, _web, dir) = http_lab("l7limits", 1).unwrap();
    let limits = "header_timeout_ms = 1000\nidle_timeout_ms = 2500\nmax_header_bytes = 16384\nmax_headers = 50\n";
    let text = format!(
        "{}{}{}",
        head_toml(&dir, "l7limits"),
        pool_toml("web", "", &web_servers([1], 8080)),
        frontend_toml("fe", 8080, "web", limits),
    );
    // The same limits on a cleartext frontend that also takes HTTP/2 by
    // prior knowledge: its HTTP/1.1 clients keep the header timeout.
    let text = text + &frontend_toml("h2c", 8081, "web", &format!("{limits}h2c = true\n"));
    // And one with the default limits (100 headers: hyper's own number,
    // which xlb then leaves to hyper).
    let text = text + &frontend_toml("defaults", 8082, "web", "");
    let daemon = start(&topo, &dir, text);
    let url = format!("http://{VIP}:8080/");
    let t = Duration::from_secs(5);

    // 100 KB header -> 431; 60 headers (limit 50) -> 431; a normal one passes.
    let big = format!("X-Big: {}", "a".repeat(100 * 1024));
    let out = curl(topo.client(), &["-H", &big, &url], t).unwrap();
    eprintln!("100 KB header: {} {:?}", out.status, out.stderr);
    assert_eq!(out.status, 431, "{out:?}");
    let mut args: Vec<String> = (0..60)
        .flat_map(|i| ["-H".to_string(), format!("X-H{i}: v")])
        .collect();
    args.push(url.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(curl(topo.client(), &args, t).unwrap().status, 431);
    // The default limit (100): 90 header lines pass, 110 get 431.
    let defaults = format!("http://{VIP}:8082/");
    for (extra, status) in [(90, 200), (110, 431)] {
        let mut args: Vec<String> = (0..extra)
            .flat_map(|i| ["-H".to_string(), format!("X-H{i}: v")])
            .collect();
        args.push(defaults.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(topo.client(), &args, t).unwrap();
        assert_eq!(out.status, status, "{extra} extra headers: {out:?}");
    }
    let ok = format!("X-Ok: {}", "a".repeat(4096));
    assert_eq!(
        curl_ok(topo.client(), &["-H", &ok, &url]).unwrap(),
        "web1\n"
    );

    // Slowloris: one header byte every 100 ms; cut at the 1000 ms header
    // timeout while other clients are served. On the h2c frontend the
    // trickled head is the second request of a keep-alive connection.
    let slow: Vec<_> = [(8080, false), (8081, true)]
        .into_iter()
        .map(|(port, after_a_request)| {
            let client = topo.client().clone();
            thread::spawn(move || slowloris(&client, port, after_a_request))
        })
        .collect();
    for _ in 0..5 {
        assert_eq!(curl_ok(topo.client(), &[&url]).unwrap(), "web1\n");
        thread::sleep(Duration::from_millis(100));
    }
    for (port, slow) in [8080, 8081].into_iter().zip(slow) {
        let (sent, cut) = slow.join().unwrap();
        eprintln!("slowloris on :{port}: cut after {cut:?}, {sent} bytes sent");
        let cut = cut.unwrap_or_else(|| panic!(":{port}: the slowloris connection was never cut"));
        assert!(
            cut >= Duration::from_millis(900) && cut <= Duration::from_millis(3000),
            ":{port}: slowloris cut after {cut:?}; header timeout is 1000 ms"
        );
    }
    assert!(
        daemon
            .stderr_lines()
            .iter()
            .any(|l| l.contains("no complete request head within 1000 ms")),
        "{}",
        daemon.stderr()
    );

    // Keep-alive: gaps of 1500 ms (> header timeout, < idle timeout) are
    // fine; then 3500 ms idle closes the connection.
    let mut s = connect_vip(topo.client(), 8080, Duration::from_secs(10)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    for i in 0..3 {
        let (status, body) =
            http1_get(&mut s, &mut r, VIP, "/").unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!((status, &body[..]), (200, &b"web1\n"[..]));
        thread::sleep(Duration::from_millis(1500));
    }
    thread::sleep(Duration::from_millis(2000));
    let mut buf = [0u8; 64];
    let n = r.read(&mut buf).unwrap_or(0);
    assert_eq!(
        n, 0,
        "idle connection still open after 3500 ms (idle timeout 2500 ms)"
    );
}
