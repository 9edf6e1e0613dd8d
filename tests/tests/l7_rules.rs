//! `[[frontend.rule]]` end to end: one frontend with default backend
//! `web` (web1) and rules to `api` (web2), curl from the client namespace.
//!
//! - `rules_route_rewrite_log_and_count`: `/api/...` reaches web2 with the
//!   path rewritten (query kept); a `Host` under `*.api.example` reaches
//!   web2 unchanged, over HTTP/1.1 and HTTP/2 (`:authority`); a request
//!   matching no rule reaches web1 unchanged. The access log names the
//!   routed backend with the request line as the client sent it, and
//!   `xlb_http_requests_total` counts each request under its backend.
//!   `CONNECT` is routed by its target's host: a tunnel to a server of
//!   the rule's backend only.
//!   A reload without the rules sends everything to `web` again.

use std::{
    thread,
    time::{Duration, Instant},
};

use xlb_lab::{
    TempDir, XlbDaemon,
    api::sample,
    l7::{
        AccessLine, VIP, access_lines, curl, frontend_toml, head_toml_with, http_lab, pool_toml,
        web_servers,
    },
};

const TAG: &str = "l7rules";

const RULES: &str = r#"h2c = true
connect = true
[[frontend.rule]]
path_prefix = "/api/"
backend = "api"
replace_path = { regex = "^/api/(.*)$", with = "/v2/$1" }
[[frontend.rule]]
host = "*.api.example"
backend = "api"
[[frontend.rule]]
host = "198.18.1.12"
backend = "api"
"#;

/// Metrics on 127.0.0.1:9100 (in the lb namespace); pool `web` (web1),
/// pool `api` (web2); frontend `edge` on 8080 with `rules`.
fn config_text(dir: &TempDir, rules: &str) -> String {
    format!(
        "{}{}{}{}",
        head_toml_with(dir, TAG, "metrics = \"127.0.0.1:9100\"\n"),
        pool_toml("web", "", &web_servers([1], 8080)),
        pool_toml("api", "", &web_servers([2], 8080)),
        frontend_toml("edge", 8080, "web", rules),
    )
}

/// The access log lines from `mark` on, once `n` have been written.
fn wait_lines(daemon: &XlbDaemon, mark: usize, n: usize) -> Vec<AccessLine> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = access_lines(daemon, mark);
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn rules_route_rewrite_log_and_count() {
    let (topo, _web, dir) = http_lab(TAG, 2).unwrap_or_else(|e| panic!("{e:#}"));
    let cfg = dir.write_config(&config_text(&dir, RULES)).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);
    let mark = daemon.stderr_lines().len();
    let t = Duration::from_secs(5);
    // (server, target it received) of a GET of `path` with `args`.
    let get = |path: &str, args: &[&str]| {
        let url = format!("http://{VIP}:8080{path}");
        let mut all = args.to_vec();
        all.push(&url);
        let r = curl(topo.client(), &all, t).unwrap();
        assert_eq!((r.exit, r.status), (0, 200), "{path} {args:?}: {r:?}");
        let server = r.header("x-backend").unwrap_or("?").to_string();
        (server, r.text().trim_end().to_string())
    };

    // By path: to api, rewritten, the query kept.
    assert_eq!(
        get("/api/echo-path/x?q=1&r", &[]),
        ("web2".into(), "/v2/echo-path/x?q=1&r".into())
    );
    // By host (port and case ignored): to api, not rewritten.
    let host = ["-H", "Host: V1.api.example:8080"];
    assert_eq!(
        get("/echo-path/y", &host),
        ("web2".into(), "/echo-path/y".into())
    );
    // HTTP/2: the host is the :authority.
    let h2 = ["--http2-prior-knowledge", "-H", "Host: v2.api.example"];
    assert_eq!(
        get("/echo-path/h2", &h2),
        ("web2".into(), "/echo-path/h2".into())
    );
    // No rule matches (the wildcard needs a label before its suffix; the
    // prefix is case-sensitive): the default backend, unchanged.
    assert_eq!(
        get("/echo-path/z", &["-H", "Host: api.example"]),
        ("web1".into(), "/echo-path/z".into())
    );
    assert_eq!(
        get("/API/echo-path/w", &[]),
        ("web1".into(), "/API/echo-path/w".into())
    );

    // CONNECT's host is its target: web2 is a server of `api` only, so
    // only the routed backend lets the tunnel through (else 403).
    let proxy = format!("http://{VIP}:8080");
    for (k, server) in [(2, "web2"), (1, "web1")] {
        let url = format!("http://198.18.1.1{k}:8080/echo-path/c");
        let args = ["--noproxy", "", "--proxytunnel", "-x", &proxy, &url];
        let r = curl(topo.client(), &args, t).unwrap();
        assert_eq!((r.exit, r.status), (0, 200), "{r:?}\n{}", daemon.stderr());
        assert_eq!(r.header("x-backend"), Some(server), "{r:?}");
    }

    // The access log: the routed backend, the request as the client sent it.
    let lines = wait_lines(&daemon, mark, 7);
    let seen: Vec<(String, String, String)> = lines
        .iter()
        .map(|l| (l.backend.clone(), l.server.clone(), l.request.clone()))
        .collect();
    let want = [
        ("api", "web2", "GET /api/echo-path/x?q=1&r HTTP/1.1"),
        ("api", "web2", "GET /echo-path/y HTTP/1.1"),
        ("api", "web2", "GET /echo-path/h2 HTTP/2.0"),
        ("web", "web1", "GET /echo-path/z HTTP/1.1"),
        ("web", "web1", "GET /API/echo-path/w HTTP/1.1"),
        ("api", "web2", "CONNECT 198.18.1.12:8080 HTTP/1.1"),
        ("web", "web1", "CONNECT 198.18.1.11:8080 HTTP/1.1"),
    ]
    .map(|(b, s, r)| (b.to_string(), s.to_string(), r.to_string()));
    assert_eq!(seen, want, "{}", daemon.stderr());

    // The metrics: each request under its routed backend.
    let scrape = curl(topo.lb(), &["http://127.0.0.1:9100/metrics"], t).unwrap();
    let text = scrape.text();
    let requests = |backend: &str| {
        sample(
            &text,
            "xlb_http_requests_total",
            &[("frontend", "edge"), ("backend", backend), ("code", "200")],
        )
    };
    assert_eq!(requests("api"), Some(4.0), "{text}");
    assert_eq!(requests("web"), Some(3.0), "{text}");

    // Reload without the rules: the same requests go to web, unchanged.
    let plain = config_text(&dir, "h2c = true\n");
    std::fs::write(&cfg, plain).unwrap();
    daemon.reload(Duration::from_secs(10)).unwrap();
    assert_eq!(
        get("/api/echo-path/x", &[]),
        ("web1".into(), "/api/echo-path/x".into())
    );
    assert_eq!(
        get("/echo-path/y", &host),
        ("web1".into(), "/echo-path/y".into())
    );
}
