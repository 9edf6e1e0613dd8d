//! `CONNECT` tunnelling (lab, curl from the client namespace):
//!
//! - `connect_tunnels_to_pool_servers_only`: with `connect = true` a
//!   `CONNECT` to one of the pool's server addresses is answered 200 and
//!   tunnelled (curl `--proxytunnel` then talks HTTP to that server
//!   through it, several requests on the tunnel); a target outside the
//!   pool gets 403; a frontend without `connect` answers 405.

use std::time::Duration;

use xlb_lab::l7::{
    VIP, curl, curl_many, frontend_toml, head_toml, http_lab, pool_toml, web_servers,
};

#[test]
fn connect_tunnels_to_pool_servers_only() {
    let (topo, _web, dir) = http_lab("l7conn", 2).unwrap();
    let addrs = topo.backend_addrs();
    let mut text = head_toml(&dir, "l7conn");
    text += &pool_toml("web", "", &web_servers(1..=2, 8080));
    text += &frontend_toml("tunnel", 8080, "web", "connect = true\n");
    text += &frontend_toml("plain", 8081, "web", "");
    let cfg = dir.write_config(&text).unwrap();
    let daemon = topo.lb().start_xlb(&cfg);
    let t = Duration::from_secs(5);
    let proxy = format!("http://{VIP}:8080");
    let w = "\nconnect=%{http_connect}";

    // Tunnelled to each server: the answer comes from the one named.
    for k in 1..=2 {
        let url = format!("http://{}:8080/headers", addrs[k - 1]);
        let out = curl(topo.client(), &tunnel_args(&proxy, w, &url), t).unwrap();
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "{out:?}\n{}",
            daemon.stderr()
        );
        assert!(out.stdout.contains("connect=200"), "{out:?}");
        assert_eq!(out.header("x-backend"), Some(format!("web{k}").as_str()));
        // The server saw the client's request itself (no X-Forwarded-*:
        // bytes went through untouched).
        let body = out.text();
        assert!(!body.contains("x-forwarded-for"), "{body}");
    }
    // Several requests on one tunnel (one CONNECT).
    let url = format!("http://{}:8080/", addrs[0]);
    let many = curl_many(
        topo.client(),
        &[
            "--noproxy",
            "",
            "--proxytunnel",
            "-x",
            &proxy,
            "-w",
            "connects=%{num_connects}\n",
            &url,
            &url,
            &url,
        ],
    )
    .unwrap();
    assert_eq!(many.names, ["web1", "web1", "web1"], "{}", many.out);
    assert_eq!(many.connects, 1, "{}", many.out);

    // A target outside the pool: 403.
    for target in [format!("{}:9999", addrs[0]), "198.18.0.2:22".to_string()] {
        let url = format!("http://{target}/");
        let out = curl(topo.client(), &tunnel_args(&proxy, w, &url), t).unwrap();
        assert_ne!(out.exit, 0, "{out:?}");
        assert!(out.stdout.contains("connect=403"), "{target}: {out:?}");
    }
    let log = daemon.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("403") && l.contains("is not a server of backend web")),
        "{log}"
    );

    // A frontend without `connect = true`: 405.
    let plain = format!("http://{VIP}:8081");
    let url = format!("http://{}:8080/", addrs[0]);
    let out = curl(topo.client(), &tunnel_args(&plain, w, &url), t).unwrap();
    assert_ne!(out.exit, 0, "{out:?}");
    assert!(out.stdout.contains("connect=405"), "{out:?}");
    // Ordinary requests there still work.
    let out = curl(topo.client(), &[&format!("http://{VIP}:8081/")], t).unwrap();
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
}

/// curl arguments for a request through a CONNECT tunnel. (The curl
/// helpers pass `--noproxy *`; `--noproxy ""` after it turns the proxy
/// back on.)
fn tunnel_args<'a>(proxy: &'a str, write_out: &'a str, url: &'a str) -> [&'a str; 8] {
    [
        "--noproxy",
        "",
        "--proxytunnel",
        "-x",
        proxy,
        "-w",
        write_out,
        url,
    ]
}
