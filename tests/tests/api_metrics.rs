//! Prometheus metrics end to end: `[global] metrics` on 127.0.0.1:9100 in
//! the lb namespace. After known traffic, `/metrics` must count the L7
//! requests by frontend, backend and status code (200 from a live pool,
//! 502 from a pool whose only server refuses connections), show the L4
//! VIP's packets and bytes, the servers' state, the XDP path counters
//! and no dropped access log line; every line must be well-formed.
//! `/stats` lists the servers.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use xlb_lab::{
    L4Topology, Lab, TempDir,
    api::{check_exposition, sample},
    l4traffic::{run_batch, server_names, socket_addrs, spawn_backends, stop_xlb},
    l7::{
        NO_ACCESS_LOG, ROUNDROBIN, VIP, curl, frontend_toml, head_toml_with, l4_toml, pool_toml,
        web_servers,
    },
};

const TEST: &str = "apimetrics";
const OK_REQUESTS: usize = 12;
const BAD_REQUESTS: usize = 3;
const FLOWS: u16 = 20;

/// Metrics on 127.0.0.1:9100; pool `web` (roundrobin, web1 and web2)
/// behind the L4 VIP `web-l4` (port 80) and the frontend `web-l7` (8080);
/// pool `dead`, whose one server refuses connections, behind the
/// frontend `broken` (8081).
fn config_text(dir: &TempDir) -> String {
    format!(
        "{}{}{}{}{}{}",
        head_toml_with(dir, TEST, "metrics = \"127.0.0.1:9100\"\n"),
        pool_toml("web", ROUNDROBIN, &web_servers(1..=2, 8080)),
        pool_toml("dead", "retries = 0\n", &[("nobody", "198.18.1.12:9999")]),
        l4_toml("web-l4", 80, "web"),
        frontend_toml("web-l7", 8080, "web", NO_ACCESS_LOG),
        frontend_toml("broken", 8081, "dead", NO_ACCESS_LOG),
    )
}

#[test]
fn metrics_count_requests_packets_and_states() {
    let topo = L4Topology::build(Lab::new(TEST).unwrap(), 2).unwrap_or_else(|e| panic!("{e:#}"));
    let names = server_names("web", 2);
    let addrs = socket_addrs(topo.backend_addrs(), 8080);
    let _servers = spawn_backends(&topo, &names, &addrs).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = TempDir::new(TEST).unwrap();
    let cfg = dir.write_config(&config_text(&dir)).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);

    let timeout = Duration::from_secs(5);
    for _ in 0..OK_REQUESTS {
        let r = curl(topo.client(), &[&format!("http://{VIP}:8080/")], timeout).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
    }
    for _ in 0..BAD_REQUESTS {
        let r = curl(topo.client(), &[&format!("http://{VIP}:8081/")], timeout).unwrap();
        assert_eq!(r.status, 502, "{r:?}");
    }
    let vip = SocketAddr::new(IpAddr::V4(topo.vip()), 80);
    let src = IpAddr::V4(topo.client_addr());
    run_batch(topo.client(), src, 20000..20000 + FLOWS, vip, &names)
        .unwrap_or_else(|e| panic!("L4 batch: {e:#}\n{}", daemon.stderr()));

    let scrape = curl(topo.lb(), &["http://127.0.0.1:9100/metrics"], timeout).unwrap();
    assert_eq!(scrape.status, 200, "{scrape:?}\n{}", daemon.stderr());
    let text = scrape.text();
    eprintln!("{text}");
    let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(samples > 10, "only {samples} samples");

    let requests = |fe: &str, be: &str, code: &str| {
        sample(
            &text,
            "xlb_http_requests_total",
            &[("frontend", fe), ("backend", be), ("code", code)],
        )
    };
    assert_eq!(requests("web-l7", "web", "200"), Some(OK_REQUESTS as f64));
    assert_eq!(requests("broken", "dead", "502"), Some(BAD_REQUESTS as f64));
    assert_eq!(
        requests("web-l7", "web", "502"),
        None,
        "no 502 from the live pool"
    );
    let count = sample(
        &text,
        "xlb_http_request_duration_seconds_count",
        &[("frontend", "web-l7"), ("backend", "web")],
    );
    assert_eq!(count, Some(OK_REQUESTS as f64));
    let inf = sample(
        &text,
        "xlb_http_request_duration_seconds_bucket",
        &[("frontend", "web-l7"), ("le", "+Inf")],
    );
    assert_eq!(inf, Some(OK_REQUESTS as f64));
    // Every access log line was written (none found its queue full).
    assert_eq!(
        sample(&text, "xlb_access_log_dropped_total", &[]),
        Some(0.0)
    );
    // Per server: the pool's servers answered every good request between
    // them; the dead pool's one server got one attempt per bad request.
    let per_server = |backend: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("xlb_l7_server_requests_total{"))
            .filter(|l| l.contains(&format!("backend=\"{backend}\"")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(per_server("web"), OK_REQUESTS as f64, "{text}");
    assert_eq!(
        sample(
            &text,
            "xlb_l7_server_requests_total",
            &[("backend", "dead"), ("server", "nobody")]
        ),
        Some(BAD_REQUESTS as f64)
    );
    assert_eq!(
        sample(
            &text,
            "xlb_l7_server_in_flight",
            &[("backend", "dead"), ("server", "nobody")]
        ),
        Some(0.0)
    );

    let l4 = |name| sample(&text, name, &[("vip", "web-l4"), ("backend", "web")]);
    let packets = l4("xlb_l4_packets_total").expect("xlb_l4_packets_total for web-l4");
    let bytes = l4("xlb_l4_bytes_total").expect("xlb_l4_bytes_total for web-l4");
    // Each connection is at least SYN, ACK, request, FIN from the client.
    assert!(packets >= 4.0 * f64::from(FLOWS), "packets {packets}");
    assert!(
        bytes > packets * 40.0,
        "bytes {bytes} for {packets} packets"
    );
    // The same packets, counted per server they went to.
    let per_server = |name| -> f64 {
        ["web1", "web2"]
            .iter()
            .map(|s| {
                sample(&text, name, &[("backend", "web"), ("server", s)])
                    .unwrap_or_else(|| panic!("{name} for {s}"))
            })
            .sum()
    };
    let server_packets = per_server("xlb_l4_server_packets_total");
    let server_bytes = per_server("xlb_l4_server_bytes_total");
    assert!(
        server_packets >= 4.0 * f64::from(FLOWS),
        "server packets {server_packets}"
    );
    assert!(
        server_bytes > server_packets * 40.0,
        "server bytes {server_bytes} for {server_packets} packets"
    );
    for s in ["web1", "web2"] {
        let up = sample(
            &text,
            "xlb_backend_up",
            &[("backend", "web"), ("server", s)],
        );
        assert_eq!(up, Some(1.0), "{s}");
    }
    let flow_miss = sample(&text, "xlb_xdp_packets_total", &[("reason", "flow_miss")]);
    assert!(
        flow_miss.unwrap_or(0.0) >= f64::from(FLOWS),
        "flow_miss {flow_miss:?}"
    );
    assert!(
        sample(
            &text,
            "xlb_xdp_packets_total",
            &[("reason", "drop_malformed_ip")]
        )
        .is_some()
    );

    // A server in maint reads 0.
    let sock = dir.socket();
    xlb_lab::api::ctl_ok(&sock, "set server web/web2 state maint").unwrap();
    let text = curl(topo.lb(), &["http://127.0.0.1:9100/metrics"], timeout)
        .unwrap()
        .text();
    let up = sample(
        &text,
        "xlb_backend_up",
        &[("backend", "web"), ("server", "web2")],
    );
    assert_eq!(up, Some(0.0));

    let page = curl(topo.lb(), &["http://127.0.0.1:9100/stats"], timeout).unwrap();
    assert_eq!(page.status, 200);
    let page = page.text();
    eprintln!("{page}");
    assert!(page.contains("web1") && page.contains("MAINT"), "{page}");
    let missing = curl(topo.lb(), &["http://127.0.0.1:9100/nope"], timeout).unwrap();
    assert_eq!(missing.status, 404);

    stop_xlb(&mut daemon).unwrap_or_else(|e| panic!("{e:#}"));
}
