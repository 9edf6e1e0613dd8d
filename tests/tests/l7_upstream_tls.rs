//! TLS towards backends (lab, curl from the client namespace to a
//! cleartext frontend; in-process HTTPS backends in the backend
//! namespaces with certificates from test CAs made here with rcgen):
//!
//! - `upstream_tls_verified_refused_and_insecure`: servers with a
//!   certificate for their IP from the test CA are reached over TLS
//!   (`tls_ca`), with ALPN http/1.1 or h2 as the pool's `proto` says (the
//!   server reports what it negotiated, and counts its handshakes); a
//!   server whose certificate comes from another CA is refused (502 and a
//!   log line) unless `tls_verify = false`, or is verified by its own CA
//!   and `tls_server_name`; the system roots (the default) refuse the
//!   test CA. A reload that leaves a backend's TLS settings alone keeps
//!   its pooled server connections (no new handshake).
//! - `missing_or_bad_ca_fails_check`: `xlb check` exits 1 with
//!   `FILE:LINE:COL: ...` (no lab needed).

use std::time::Duration;

use xlb_lab::{
    Lab, TempDir,
    http_backend::HttpBackend,
    l7::{
        ROUNDROBIN, TestCa, VIP, curl, frontend_toml, head_toml_with, pool_toml, start_servers,
        web_servers,
    },
    topology::L4Topology,
    xlb_daemon::xlb_check,
};

/// A roundrobin `[[backend]]` named `name` with the `extra` keys over the
/// lab's `webK` on port 8443 for each `K` in `ks`.
fn pool(name: &str, extra: &str, ks: impl IntoIterator<Item = usize>) -> String {
    pool_toml(
        name,
        &format!("{ROUNDROBIN}{extra}"),
        &web_servers(ks, 8443),
    )
}

#[test]
fn upstream_tls_verified_refused_and_insecure() {
    let topo = L4Topology::build(Lab::new("l7uptls").unwrap(), 3).unwrap();
    let dir = TempDir::new("l7uptls").unwrap();
    let addrs = topo.backend_addrs();
    // web1, web2: certificates for their IP from the test CA. web3: one
    // from another CA, for its IP and web.xlb.test.
    let ca = TestCa::new("xlb upstream CA").unwrap();
    let other = TestCa::new("some other CA").unwrap();
    dir.write("ca.pem", ca.pem()).unwrap();
    dir.write("other-ca.pem", other.pem()).unwrap();
    for k in 1..=3 {
        let ip = addrs[k - 1].to_string();
        let stem = format!("web{k}");
        if k == 3 {
            other.issue_to(&dir, &stem, &[&ip, "web.xlb.test"]).unwrap();
        } else {
            ca.issue_to(&dir, &stem, &[&ip]).unwrap();
        }
    }
    let web = start_servers(&topo, 1..=3, 8443, |ns, name, addr| {
        let cert = dir.path().join(format!("{name}.pem"));
        let key = dir.path().join(format!("{name}.key"));
        HttpBackend::start_tls(ns, name, addr, &cert, &key)
    })
    .unwrap();
    let ca_key = "tls = true\ntls_ca = \"ca.pem\"\n";
    // One L7 thread: one server connection pool, so a request after the
    // reload finds the connection the one before it left.
    let mut text = head_toml_with(&dir, "l7uptls", "l7_threads = 1\n");
    text += &pool("good", ca_key, 1..=2);
    text += &pool("good-h2", &format!("proto = \"h2\"\n{ca_key}"), 1..=2);
    text += &pool("bad", ca_key, [3]);
    text += &pool("insecure", "tls = true\ntls_verify = false\n", [3]);
    text += &pool(
        "named",
        "tls = true\ntls_ca = \"other-ca.pem\"\ntls_server_name = \"web.xlb.test\"\n",
        [3],
    );
    text += &pool("system", "tls = true\n", [1]);
    for (i, b) in ["good", "good-h2", "bad", "insecure", "named", "system"]
        .iter()
        .enumerate()
    {
        text += &frontend_toml(b, 8080 + i as u16, b, "");
    }
    let cfg = dir.write_config(&text).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);
    let t = Duration::from_secs(5);
    let get = |port: u16, path: &str| {
        let url = format!("http://{VIP}:{port}{path}");
        curl(topo.client(), &[&url], t).unwrap()
    };

    // Verified against tls_ca, by IP; HTTP/1.1 by ALPN, in turn.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let out = get(8080, "/headers");
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "{out:?}\n{}",
            daemon.stderr()
        );
        assert_eq!(out.header("x-tls"), Some("http/1.1"), "{out:?}");
        assert!(out.text().contains("version: HTTP/1.1"), "{}", out.text());
        seen.push(out.header("x-backend").unwrap_or("?").to_string());
    }
    assert_eq!(seen, ["web1", "web2", "web1", "web2"]);
    // HTTP/2 over TLS (ALPN h2) with proto = "h2".
    for _ in 0..2 {
        let out = get(8081, "/headers");
        assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
        assert_eq!(out.header("x-tls"), Some("h2"), "{out:?}");
        assert!(out.text().contains("version: HTTP/2.0"), "{}", out.text());
    }
    assert!(web[0].tls_handshakes() >= 1 && web[1].tls_handshakes() >= 1);
    assert_eq!(web[2].tls_handshakes(), 0);

    // Another CA: refused with 502 and a log line, no handshake done.
    let out = get(8082, "/");
    assert_eq!(out.status, 502, "{out:?}");
    assert!(out.text().contains("TLS handshake"), "{}", out.text());
    let log = daemon.stderr();
    let web3 = format!("{}:8443", addrs[2]);
    assert!(
        log.lines()
            .any(|l| l.contains("TLS handshake with") && l.contains(&web3)),
        "no log line for the refused server:\n{log}"
    );
    assert_eq!(web[2].tls_handshakes(), 0);

    // tls_verify = false: accepted (and logged as insecure at start).
    let out = get(8083, "/headers");
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    assert_eq!(out.header("x-backend"), Some("web3"));
    assert_eq!(out.header("x-tls"), Some("http/1.1"));
    assert!(
        log.contains("tls_verify = false"),
        "no insecure warning:\n{log}"
    );
    // Its own CA and the name on its certificate.
    let out = get(8084, "/");
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    assert_eq!(out.header("x-backend"), Some("web3"));
    assert!(web[2].tls_handshakes() >= 2);

    // The system roots do not know the test CA.
    let out = get(8085, "/");
    assert_eq!(out.status, 502, "{out:?}");

    // A reload with the same settings: the pooled connection to web3
    // (tls_server_name's) is used again, no handshake.
    let handshakes = web[2].tls_handshakes();
    daemon.reload(t * 2).unwrap_or_else(|e| panic!("{e:#}"));
    let out = get(8084, "/");
    assert_eq!((out.exit, out.status), (0, 200), "{out:?}");
    assert_eq!(
        web[2].tls_handshakes(),
        handshakes,
        "a new TLS connection after a reload that changed nothing"
    );
    drop(daemon);
}

#[test]
fn missing_or_bad_ca_fails_check() {
    let dir = TempDir::new("l7upca").unwrap();
    let ca = TestCa::new("xlb upstream CA").unwrap();
    dir.write("ca.pem", ca.pem()).unwrap();
    dir.write("garbage.pem", "not a certificate\n").unwrap();
    let cfg_with = |name: &str, keys: &str| {
        let text = format!(
            "[[backend]]\nname = \"web\"\ntls = true\n{keys}\n\n[[frontend]]\nname = \"f\"\n\
             bind = \"127.0.0.1:8080\"\ndefault_backend = \"web\"\n"
        );
        dir.write(name, text).unwrap()
    };
    let good = cfg_with("good.toml", "tls_ca = \"ca.pem\"");
    let (ok, err) = xlb_check(&good);
    assert!(ok, "{err}");

    let cfg = cfg_with("missing.toml", "tls_ca = \"nope.pem\"");
    let (ok, err) = xlb_check(&cfg);
    eprintln!("missing: {err}");
    assert!(!ok);
    assert!(
        err.starts_with(&format!("{}:4:10:", cfg.display())),
        "{err}"
    );
    assert!(err.contains("nope.pem"), "{err}");

    let cfg = cfg_with("garbage.toml", "tls_ca = \"garbage.pem\"");
    let (ok, err) = xlb_check(&cfg);
    eprintln!("garbage: {err}");
    assert!(!ok);
    assert!(err.starts_with(&format!("{}:4:", cfg.display())), "{err}");
    assert!(err.contains("no CERTIFICATE"), "{err}");

    let cfg = dir
        .write(
            "no-tls.toml",
            "[[backend]]\nname = \"web\"\ntls_verify = false\n",
        )
        .unwrap();
    let (ok, err) = xlb_check(&cfg);
    assert!(!ok);
    assert!(err.contains("tls_verify needs tls = true"), "{err}");
}
