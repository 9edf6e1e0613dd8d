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
//!   Over HTTP/3 (frontend `edge3`, the same rules) a request is routed
//!   by path (rewritten) and by `:authority`; WebSocket upgrades
//!   (HTTP/1.1) by `Host`, and over HTTP/2 (RFC 8441) by `:authority`,
//!   and both by path (rewritten to the server's `/ws`) reach the rule's
//!   server and echo, one matching no rule the default;
//!   the access log names each routed backend.
//!   A reload without the rules sends everything to `web` again.

use std::{
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xlb_lab::{
    TempDir, XlbDaemon,
    api::sample,
    h3_client,
    l7::{
        AccessLine, SNI_TLS, VIP, access_lines, curl, frontend_toml, head_toml_with, http_lab,
        pool_toml, sni_certs, web_servers,
    },
};

const TAG: &str = "l7rules";

/// The rule tables of both frontends.
const RULE_TABLES: &str = r#"[[frontend.rule]]
path_prefix = "/api/"
backend = "api"
replace_path = { regex = "^/api/(.*)$", with = "/v2/$1" }
[[frontend.rule]]
host = "*.api.example"
backend = "api"
[[frontend.rule]]
host = "198.18.1.12"
backend = "api"
[[frontend.rule]]
path_prefix = "/live/"
backend = "api"
replace_path = { regex = "^/live/.*$", with = "/ws" }
"#;

/// `edge`'s keys before its rules.
const EDGE_KEYS: &str = "h2c = true\nconnect = true\n";

const H3_PORT: u16 = 8443;

/// Metrics on 127.0.0.1:9100 (in the lb namespace); pool `web` (web1),
/// pool `api` (web2); frontend `edge` on 8080 with `rules`, frontend
/// `edge3` (TLS, HTTP/3) on 8443 with [`RULE_TABLES`].
fn config_text(dir: &TempDir, rules: &str) -> String {
    format!(
        "{}{}{}{}{}",
        head_toml_with(dir, TAG, "metrics = \"127.0.0.1:9100\"\n"),
        pool_toml("web", "", &web_servers([1], 8080)),
        pool_toml("api", "", &web_servers([2], 8080)),
        frontend_toml("edge", 8080, "web", rules),
        frontend_toml(
            "edge3",
            H3_PORT,
            "web",
            &format!("{SNI_TLS}http3 = true\n{RULE_TABLES}")
        ),
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
    let ca = sni_certs(&dir).unwrap();
    let rules = format!("{EDGE_KEYS}{RULE_TABLES}");
    let cfg = dir.write_config(&config_text(&dir, &rules)).unwrap();
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

    // HTTP/3 (edge3) and WebSocket upgrades (edge) are routed too.
    let mark = daemon.stderr_lines().len();
    let ca_pem = ca.pem().to_string();
    let (h3, ws, ws2) = xlb_lab::l7::block_on_in(topo.client(), || async {
        anyhow::Ok((
            h3_gets(&ca_pem).await?,
            websockets().await?,
            websockets_over_h2().await?,
        ))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
    assert_eq!(ws2, ["over h2"; 3]);
    assert_eq!(
        h3,
        [
            ("web2", "/v2/echo-path/h3?q=3"),
            ("web2", "/echo-path/h3"),
            ("web1", "/echo-path/h3"),
        ]
        .map(|(s, t)| (s.to_string(), t.to_string()))
    );
    // Each upgrade answered by its backend's server, and echoing.
    assert_eq!(
        ws,
        ["web2", "web2", "web1"].map(|s| (s.to_string(), vec!["ping".to_string()]))
    );
    let lines = wait_lines(&daemon, mark, 9);
    assert_eq!(lines.len(), 9, "{lines:?}\n{}", daemon.stderr());
    // WebSocket over HTTP/2 (extended CONNECT on `edge`, h2c): by
    // `:authority`, by path (rewritten to `/ws`), by no rule.
    let h2_ws: Vec<[&str; 3]> = lines[6..]
        .iter()
        .map(|l| [l.frontend.as_str(), l.backend.as_str(), l.server.as_str()])
        .collect();
    assert_eq!(
        h2_ws,
        [
            ["edge", "api", "web2"],
            ["edge", "api", "web2"],
            ["edge", "web", "web1"]
        ],
        "{}",
        daemon.stderr()
    );
    let lines = &lines[..6];
    let seen: Vec<(String, String, String, String)> = lines
        .iter()
        .map(|l| {
            let f = [&l.frontend, &l.backend, &l.server, &l.request];
            f.map(|s| s.to_string()).into()
        })
        .collect();
    let want = [
        ("edge3", "api", "web2", "GET /api/echo-path/h3?q=3 HTTP/3.0"),
        ("edge3", "api", "web2", "GET /echo-path/h3 HTTP/3.0"),
        ("edge3", "web", "web1", "GET /echo-path/h3 HTTP/3.0"),
        ("edge", "api", "web2", "GET /ws HTTP/1.1"),
        ("edge", "api", "web2", "GET /live/feed HTTP/1.1"),
        ("edge", "web", "web1", "GET /ws HTTP/1.1"),
    ]
    .map(|(f, b, s, r)| (f.to_string(), b.to_string(), s.to_string(), r.to_string()));
    assert_eq!(seen, want, "{}", daemon.stderr());

    // Reload without the rules: the same requests go to web, unchanged.
    let plain = config_text(&dir, "h2c = true\n").replace(RULE_TABLES, "");
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

/// Three GETs on one HTTP/3 connection to `edge3`: by path, by host
/// (`:authority`), by no rule. The server and target of each.
async fn h3_gets(ca_pem: &str) -> Result<Vec<(String, String)>> {
    let t = Duration::from_secs(5);
    let endpoint = h3_client::endpoint(ca_pem, "0.0.0.0:0".parse()?, false)?;
    let vip: std::net::SocketAddr = format!("{VIP}:{H3_PORT}").parse()?;
    let conn = tokio::time::timeout(t, endpoint.connect(vip, "a.xlb.test")?)
        .await
        .context("QUIC handshake timed out")??;
    let mut send = h3_client::h3_on(conn).await?;
    let mut out = Vec::new();
    for url in [
        "https://a.xlb.test/api/echo-path/h3?q=3",
        "https://v3.api.example/echo-path/h3",
        "https://a.xlb.test/echo-path/h3",
    ] {
        let req = http::Request::get(url).body(())?;
        let (resp, body, _) = h3_client::exchange(&mut send, req, b"", t).await?;
        anyhow::ensure!(resp.status() == 200, "{url}: {}", resp.status());
        let server = resp.headers().get("x-backend").context("no x-backend")?;
        let target = String::from_utf8(body)?.trim_end().to_string();
        out.push((server.to_str()?.to_string(), target));
    }
    Ok(out)
}

/// WebSockets over HTTP/2 (RFC 8441) to `edge`: by `:authority`, by path
/// (rewritten to `/ws`), by no rule. What each echoed.
async fn websockets_over_h2() -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (authority, path) in [("ws.api.example", "/ws"), (VIP, "/live/feed"), (VIP, "/ws")] {
        let (_, _, reply) = xlb_lab::l7::h2_websocket_echo(8080, authority, path)
            .await
            .with_context(|| format!("{authority}{path}"))?;
        out.push(reply);
    }
    Ok(out)
}

/// WebSocket upgrades (HTTP/1.1) to `edge`: by host, by path (rewritten
/// to `/ws`), by no rule. The server that answered each `101` and what
/// its WebSocket echoed.
async fn websockets() -> Result<Vec<(String, Vec<String>)>> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut out = Vec::new();
    for (path, host) in [("/ws", "ws.api.example"), ("/live/feed", VIP), ("/ws", VIP)] {
        let mut req = format!("ws://{VIP}:8080{path}").into_client_request()?;
        req.headers_mut().insert("host", host.parse()?);
        let stream = tokio::net::TcpStream::connect((VIP, 8080)).await?;
        let (mut ws, resp) = tokio_tungstenite::client_async(req, stream).await?;
        anyhow::ensure!(resp.status() == 101, "{path} {host}: {resp:?}");
        let server = resp.headers().get("x-backend").context("no x-backend")?;
        ws.send(Message::text("ping")).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .context("no echo within 5 s")?
            .context("closed")??;
        out.push((
            server.to_str()?.to_string(),
            vec![reply.into_text()?.to_string()],
        ));
        ws.close(None).await?;
    }
    Ok(out)
}
