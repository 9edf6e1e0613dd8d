//! L7 features end to end in the lab (in-process HTTP backends, curl):
//!
//! - `compression`: gzip and brotli by `Accept-Encoding`; the body decodes
//!   to the original bytes (gzip by flate2, brotli by curl); streamed
//!   bodies too; an image, an already-encoded body and a body under the
//!   minimum are left alone.
//! - `headers_websocket_and_access_log_file`: hop-by-hop headers removed
//!   and `X-Forwarded-*`/`Forwarded` added as the backend sees them (only
//!   `X-Forwarded-For` from a frontend with `forwarded_headers =
//!   ["X-Forwarded-For"]`); a WebSocket echo through xlb; the access log in a file, one line per
//!   request in the documented format.
//! - `access_log_file_reopened_on_reload`: logrotate's way (move the file,
//!   then reload) starts a new file at the path; a refused reload does not.

use std::{io::Read, time::Duration};

use xlb_lab::{
    TempDir,
    http_backend::{gzip, noise, text_body},
    l7::{
        AccessLine, TestCa, VIP, access_log_file, block_on_in, connect_vip, curl, curl_ok,
        frontend_at_toml, frontend_toml, head_toml, http_lab, http1_get, pool_toml, web_servers,
        web1_config, websocket_echo,
    },
};

fn config(dir: &TempDir, tag: &str, frontend_extra: &str) -> std::path::PathBuf {
    web1_config(dir, tag, &frontend_toml("fe", 8080, "web", frontend_extra))
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

#[test]
fn compression() {
    let (topo, _web, dir) = http_lab("l7gzip", 1).unwrap();
    let cfg = config(
        &dir,
        "l7gzip",
        "compression = [\"gzip\", \"br\"]\ncompression_min_bytes = 1000\n",
    );
    let _daemon = topo.lb().start_xlb(&cfg);
    let t = Duration::from_secs(10);
    let get = |path: &str, ae: Option<&str>, extra: &[&str]| {
        let url = format!("http://{VIP}:8080{path}");
        let mut args: Vec<String> = Vec::new();
        if let Some(ae) = ae {
            args.extend(["-H".into(), format!("Accept-Encoding: {ae}")]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(topo.client(), &args, t).unwrap();
        assert_eq!((out.exit, out.status), (0, 200), "{path}: {out:?}");
        out
    };

    // gzip, fixed length and streamed.
    for path in ["/text/200000", "/stream/200000"] {
        let out = get(path, Some("gzip, deflate"), &[]);
        eprintln!(
            "{path} gzip: {} bytes on the wire, headers {:?}",
            out.body.len(),
            out.headers
        );
        assert_eq!(out.header("content-encoding"), Some("gzip"), "{path}");
        assert_eq!(out.header("content-length"), None, "{path}");
        assert!(
            out.header("vary")
                .is_some_and(|v| v.contains("accept-encoding"))
        );
        assert!(
            out.body.len() < 200_000 / 4,
            "{path}: {} bytes",
            out.body.len()
        );
        assert_eq!(gunzip(&out.body), text_body(200_000), "{path}");
    }

    // brotli when preferred; curl decodes it (--compressed).
    let out = get("/text/100000", Some("gzip;q=0.5, br"), &[]);
    assert_eq!(out.header("content-encoding"), Some("br"));
    assert!(out.body.len() < 100_000 / 4);
    let out = get("/text/100000", None, &["--compressed"]);
    assert_eq!(out.body, text_body(100_000), "curl --compressed");
    assert!(out.header("content-encoding").is_some());

    // No Accept-Encoding: identity, with its length.
    let out = get("/text/5000", None, &[]);
    assert_eq!(out.header("content-encoding"), None);
    assert_eq!(out.header("content-length"), Some("5000"));
    assert_eq!(out.body, text_body(5000));

    // Left alone: an image, a body already encoded, one under the minimum.
    let out = get("/image/50000", Some("gzip, br"), &[]);
    assert_eq!(out.header("content-encoding"), None);
    assert_eq!(out.body, noise(50000));
    let out = get("/encoded", Some("gzip, br"), &[]);
    assert_eq!(out.header("content-encoding"), Some("gzip"));
    assert_eq!(out.body, gzip(&text_body(4000)), "double compression");
    let out = get("/text/500", Some("gzip, br"), &[]);
    assert_eq!(out.header("content-encoding"), None);
    assert_eq!(out.body, text_body(500));
}

#[test]
fn headers_websocket_and_access_log_file() {
    let (topo, _web, dir) = http_lab("l7hdr", 1).unwrap();
    let log = dir.path().join("access.log");
    // `fe` adds the three forwarding headers (no `forwarded_headers`: the
    // default), `xff` only X-Forwarded-For.
    let cfg = web1_config(
        &dir,
        "l7hdr",
        &format!(
            "{}{}",
            frontend_toml(
                "fe",
                8080,
                "web",
                &format!("access_log = \"{}\"\n", log.display())
            ),
            frontend_toml(
                "xff",
                8081,
                "web",
                "access_log = \"off\"\nforwarded_headers = [\"X-Forwarded-For\"]\n"
            ),
        ),
    );
    let daemon = topo.lb().start_xlb(&cfg);
    let t = Duration::from_secs(5);

    // Headers as the backend sees them.
    let out = curl(
        topo.client(),
        &[
            "-H",
            "Connection: keep-alive, X-Private",
            "-H",
            "X-Private: secret",
            "-H",
            "Keep-Alive: timeout=5",
            "-H",
            "Proxy-Authorization: Basic eDp5",
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            "-H",
            "X-Kept: yes",
            &format!("http://{VIP}:8080/headers"),
        ],
        t,
    )
    .unwrap();
    let seen = out.text();
    eprintln!("backend saw:\n{seen}");
    for gone in [
        "x-private:",
        "keep-alive:",
        "proxy-authorization:",
        "connection: keep-alive",
    ] {
        assert!(!seen.contains(gone), "{gone} reached the backend:\n{seen}");
    }
    assert!(seen.contains("x-kept: yes"));
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 198.18.0.2\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\n"), "{seen}");
    assert!(
        seen.contains("forwarded: for=198.18.0.2;proto=http;host=\"198.18.0.100:8080\"\n"),
        "{seen}"
    );
    assert!(seen.contains("host: 198.18.0.100:8080\n"), "{seen}");

    // `forwarded_headers = ["X-Forwarded-For"]`: the client appended to
    // X-Forwarded-For, neither X-Forwarded-Proto nor Forwarded added.
    let out = curl(
        topo.client(),
        &[
            "-H",
            "X-Forwarded-For: 203.0.113.7",
            &format!("http://{VIP}:8081/headers"),
        ],
        t,
    )
    .unwrap();
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    let seen = out.text();
    eprintln!("backend saw through xff:\n{seen}");
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.7, 198.18.0.2\n"),
        "{seen}"
    );
    for gone in ["x-forwarded-proto:", "forwarded:"] {
        assert!(
            !seen.lines().any(|l| l.starts_with(gone)),
            "{gone} reached the backend:\n{seen}"
        );
    }

    // WebSocket echo through xlb.
    let (_, echoed) = block_on_in(topo.client(), websocket_echo).unwrap();
    assert_eq!(echoed, ["hello", "through", "xlb"]);

    // Access log: a file, one parsable line per request.
    let lines = access_log_file(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].request, "GET /headers HTTP/1.1");
    assert_eq!((lines[0].status, lines[0].server.as_str()), (200, "web1"));
    assert!(lines[0].client.starts_with("198.18.0.2:"));
    assert_eq!(lines[0].frontend, "fe");
    assert!(lines[0].bytes > 100);
    for k in ["accept", "connect", "response", "total"] {
        assert!(lines[0].timing(k).is_some(), "{k} missing: {:?}", lines[0]);
    }
    assert_eq!(lines[1].request, "GET /ws HTTP/1.1");
    assert_eq!(lines[1].status, 101);
    // Not on stderr when a file is configured.
    assert!(
        daemon
            .stderr_lines()
            .iter()
            .all(|l| AccessLine::parse(l).is_none())
    );
}

/// The request targets of the access log file at `path`, sorted (lines of
/// different connections may be queued in either order).
fn logged_targets(path: &std::path::Path) -> Vec<String> {
    let mut targets: Vec<String> = access_log_file(path)
        .into_iter()
        .map(|l| l.request.split(' ').nth(1).unwrap_or("").to_string())
        .collect();
    targets.sort();
    targets
}

/// As logrotate does it: the access log file is moved away, then a reload
/// (the API's `reload`, or SIGHUP) opens a new file at the configured
/// path, and every connection writes there, one opened before the reload
/// too; the moved file gets nothing more. A refused reload changes
/// nothing: lines still go to the moved file and no new one is created.
#[test]
fn access_log_file_reopened_on_reload() {
    let (topo, _web, dir) = http_lab("l7logrot", 1).unwrap();
    let log = dir.path().join("access.log");
    let rotated = [1, 2].map(|k| dir.path().join(format!("access.log.{k}")));
    let extra = format!("access_log = \"{}\"\n", log.display());
    let cfg = config(&dir, "l7logrot", &extra);
    let mut daemon = topo.lb().start_xlb(&cfg);
    let get = |path: &str| {
        curl_ok(topo.client(), &[&format!("http://{VIP}:8080{path}")])
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let mut kept = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
    let mut kept_r = std::io::BufReader::new(kept.try_clone().unwrap());
    let mut kept_get = |path: &str| {
        let (status, _) = http1_get(&mut kept, &mut kept_r, VIP, path).unwrap();
        assert_eq!(status, 200);
    };
    get("/a");
    kept_get("/kept-a");
    assert_eq!(logged_targets(&log), ["/a", "/kept-a"]);

    std::fs::rename(&log, &rotated[0]).unwrap();
    // Refused by the L7 tier (after the file check): a second frontend
    // on an address the host does not have.
    web1_config(
        &dir,
        "l7logrot",
        &format!(
            "{}{}",
            frontend_toml("fe", 8080, "web", &extra),
            frontend_at_toml("nowhere", "203.0.113.9:8080", "web", &extra),
        ),
    );
    let e = daemon.reload(Duration::from_secs(10)).unwrap_err();
    assert!(
        format!("{e:#}").contains("frontend nowhere: binding"),
        "{e:#}"
    );
    get("/b");
    assert!(!log.exists(), "a refused reload created {}", log.display());
    assert_eq!(logged_targets(&rotated[0]), ["/a", "/b", "/kept-a"]);

    // The API's `reload`.
    config(&dir, "l7logrot", &extra);
    let answer = xlb_lab::api::ctl_ok(&dir.socket(), "reload").unwrap();
    assert_eq!(answer.trim(), "config reloaded");
    get("/c");
    kept_get("/kept-c");
    assert_eq!(logged_targets(&log), ["/c", "/kept-c"]);
    assert_eq!(logged_targets(&rotated[0]), ["/a", "/b", "/kept-a"]);

    // SIGHUP.
    std::fs::rename(&log, &rotated[1]).unwrap();
    daemon
        .reload(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    get("/d");
    kept_get("/kept-d");
    assert_eq!(logged_targets(&log), ["/d", "/kept-d"]);
    assert_eq!(logged_targets(&rotated[1]), ["/c", "/kept-c"]);
}

/// A SIGHUP reload: the listener stays bound, new connections follow the
/// new `default_backend`, an open keep-alive connection keeps the old
/// settings, a new frontend starts; a reload with a key that does not
/// match its certificate is rejected and the running config stays.
#[test]
fn reload_switches_frontends_without_dropping_connections() {
    let (topo, _web, dir) = http_lab("l7reload", 2).unwrap();
    let write = |fe: &str, extra: &str| {
        let text = format!(
            "{}{}{}{fe}{extra}",
            head_toml(&dir, "l7reload"),
            pool_toml("a", "", &web_servers([1], 8080)),
            pool_toml("b", "", &web_servers([2], 8080)),
        );
        dir.write_config(&text).unwrap()
    };
    let fe = |backend: &str| frontend_toml("fe", 8080, backend, "");
    let cfg = write(&fe("a"), "");
    let mut daemon = topo.lb().start_xlb(&cfg);
    let url = format!("http://{VIP}:8080/");
    let get = |url: &str| curl_ok(topo.client(), &[url]).unwrap();
    assert_eq!(get(&url), "web1\n");

    // A keep-alive connection opened before the reload.
    let mut kept = connect_vip(topo.client(), 8080, Duration::from_secs(5)).unwrap();
    let mut kept_r = std::io::BufReader::new(kept.try_clone().unwrap());
    let (_, body) = http1_get(&mut kept, &mut kept_r, VIP, "/").unwrap();
    assert_eq!(body, b"web1\n");

    write(&fe("b"), &frontend_toml("fe2", 8081, "a", ""));
    daemon
        .reload(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(get(&url), "web2\n", "new connections use the new backend");
    assert_eq!(
        get(&format!("http://{VIP}:8081/")),
        "web1\n",
        "new frontend"
    );
    let (_, body) = http1_get(&mut kept, &mut kept_r, VIP, "/").unwrap();
    assert_eq!(body, b"web1\n", "the open connection keeps its settings");

    // A bad key: rejected, the running config stays.
    let ca = TestCa::new("reload CA").unwrap();
    let (c, _) = ca.issue(&["x.test"]).unwrap();
    let (_, k) = ca.issue(&["y.test"]).unwrap();
    dir.write("c.pem", c).unwrap();
    dir.write("k.pem", k).unwrap();
    write(
        &fe("a"),
        &frontend_toml(
            "tls",
            8443,
            "a",
            "tls = { cert = \"c.pem\", key = \"k.pem\" }\n",
        ),
    );
    let e = daemon.reload(Duration::from_secs(10)).unwrap_err();
    eprintln!("bad reload: {e:#}");
    assert!(
        format!("{e:#}").contains("does not match the certificate"),
        "{e:#}"
    );
    assert_eq!(get(&url), "web2\n", "the running config stays");
}
