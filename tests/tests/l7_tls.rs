//! TLS offload and HTTP/2 end to end (lab, curl from the client namespace,
//! in-process HTTP backends in the backend namespaces):
//!
//! - `tls_sni_alpn_and_h2`: two certificates chosen by SNI, verified by curl
//!   against a test CA made here (rcgen); TLS 1.2 and 1.3; ALPN h2 and
//!   http/1.1; HTTP/2 over TLS and prior-knowledge h2c; roundrobin in turn
//!   over one HTTP/2 connection; `X-Forwarded-*`/`Forwarded` as the
//!   backend sees them.
//! - `bad_or_mismatched_key_fails_check`: `xlb check` exits 1 with
//!   `FILE:LINE:COL: ...` naming the problem (no lab needed).

use std::{path::Path, process::Command, time::Duration};

use xlb_lab::{
    TempDir,
    http_backend::text_body,
    l7::{
        CurlMany, ROUNDROBIN, SNI_TLS, VIP, curl, curl_many, frontend_toml, head_toml, http_lab,
        pool_toml, sni_certs, web_servers,
    },
    xlb_daemon::{xlb_check, xlb_path},
};

/// curl options that reach the VIP's TLS frontend by name (`resolve` is
/// `HOST:8443:VIP`) and verify it against the test CA (`ca`, a path).
fn tls_opts<'a>(ca: &'a str, resolve: &'a str) -> [&'a str; 4] {
    ["--cacert", ca, "--resolve", resolve]
}

fn version_and_body(out: &xlb_lab::l7::CurlResult) -> (String, String) {
    let version = out
        .stdout
        .rsplit_once("version=")
        .map_or("?", |(_, v)| v.trim());
    (version.to_string(), out.text())
}

#[test]
fn tls_sni_alpn_and_h2() {
    let (topo, _web, dir) = http_lab("l7tls", 3).unwrap();
    // a.xlb.test by default, b.xlb.test by SNI.
    let _ca = sni_certs(&dir).unwrap();
    let text = format!(
        "{}{}{}{}",
        head_toml(&dir, "l7tls"),
        pool_toml("web", ROUNDROBIN, &web_servers(1..=3, 8080)),
        frontend_toml("tls", 8443, "web", SNI_TLS),
        frontend_toml("h2c", 8080, "web", "h2c = true\n"),
    );
    let cfg = dir.write_config(&text).unwrap();
    let check = Command::new(xlb_path().unwrap())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(check.status.success(), "xlb check: {check:?}");
    let daemon = topo.lb().start_xlb(&cfg);
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let t = Duration::from_secs(5);
    let w = "\nversion=%{http_version}";
    let tls_curl = |resolve: &str, rest: &[&str]| {
        let args = [&tls_opts(ca, resolve)[..], rest].concat();
        curl(topo.client(), &args, t).unwrap()
    };

    // SNI a.xlb.test (the default cert) and b.xlb.test (the sni entry), each
    // verified by curl against the test CA; HTTP/2 via ALPN.
    for host in ["a.xlb.test", "b.xlb.test", "x.b.xlb.test"] {
        let resolve = format!("{host}:8443:{VIP}");
        let url = format!("https://{host}:8443/headers");
        let out = tls_curl(&resolve, &["--http2", "-w", w, &url]);
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "{host}: {}\n{}",
            out.stderr,
            daemon.stderr()
        );
        let (version, body) = version_and_body(&out);
        eprintln!("{host}: HTTP/{version}; backend saw:\n{body}");
        assert_eq!(version, "2", "{host}: ALPN did not give h2");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
        assert!(body.contains("x-forwarded-for: 198.18.0.2"), "{body}");
        assert!(
            body.contains(&format!(
                "forwarded: for=198.18.0.2;proto=https;host=\"{host}:8443\""
            )),
            "{body}"
        );
        assert!(
            body.contains("version: HTTP/1.1"),
            "backend speaks h1: {body}"
        );
    }

    // Without the right certificate curl refuses: the SNI choice is real.
    let out = tls_curl(
        &format!("c.xlb.test:8443:{VIP}"),
        &["https://c.xlb.test:8443/"],
    );
    assert_eq!(out.exit, 60, "c.xlb.test got a verified cert? {out:?}");

    // TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
    let resolve = format!("a.xlb.test:8443:{VIP}");
    for (min, max) in [("--tlsv1.2", "1.2"), ("--tlsv1.3", "1.3")] {
        let versions = [min, "--tls-max", max, "--http1.1", "-w", w];
        let out = tls_curl(
            &resolve,
            &[&versions[..], &["https://a.xlb.test:8443/"]].concat(),
        );
        assert_eq!(
            (out.exit, out.status),
            (0, 200),
            "TLS {max}: {}",
            out.stderr
        );
        let (version, body) = version_and_body(&out);
        assert_eq!(version, "1.1", "TLS {max}");
        assert!(body.starts_with("web"), "{body}");
    }

    // Roundrobin in turn over one HTTP/2 connection (TLS).
    let url = "https://a.xlb.test:8443/";
    let w_connects = "connects=%{num_connects} version=%{http_version}\\n";
    let args = [
        &tls_opts(ca, &resolve)[..],
        &["--http2", "-w", w_connects],
        &[url; 6],
    ]
    .concat();
    let CurlMany {
        out,
        names,
        connects,
    } = curl_many(topo.client(), &args).unwrap();
    eprintln!("h2 roundrobin: {names:?}, {connects} connection(s)");
    assert_eq!(names.len(), 6, "{out}");
    assert_eq!(connects, 1, "{out}");
    assert_eq!(out.matches("version=2").count(), 6, "{out}");
    for i in 0..6 {
        assert_eq!(names[i], names[i % 3], "{names:?}");
    }
    assert_ne!(names[0], names[1]);
    assert_ne!(names[1], names[2]);

    // h2c with prior knowledge, and HTTP/1.1 on the same listener.
    let url = format!("http://{VIP}:8080/headers");
    for (flag, want) in [("--http2-prior-knowledge", "2"), ("--http1.1", "1.1")] {
        let out = curl(topo.client(), &[flag, "-w", w, &url], t).unwrap();
        assert_eq!((out.exit, out.status), (0, 200), "{flag}: {}", out.stderr);
        let (version, body) = version_and_body(&out);
        assert_eq!(version, want, "{flag}");
        assert!(body.contains("x-forwarded-proto: http\n"), "{body}");
    }

    // A large HTTP/2 response to a client that reads slowly, over h2c and
    // over TLS: the socket fills, and what xlb holds for it (the cork that
    // batches HTTP/2 writes) must still arrive whole and in order.
    let size = 2 << 20;
    let want = text_body(size);
    let slow = ["--limit-rate", "4M"];
    let resolve = format!("a.xlb.test:8443:{VIP}");
    let big_tls = format!("https://a.xlb.test:8443/text/{size}");
    let big_h2c = format!("http://{VIP}:8080/text/{size}");
    let fetches = [
        (
            "h2c",
            curl(
                topo.client(),
                &[&slow[..], &["--http2-prior-knowledge", &big_h2c]].concat(),
                t,
            )
            .unwrap(),
        ),
        (
            "TLS",
            tls_curl(&resolve, &[&slow[..], &["--http2", &big_tls]].concat()),
        ),
    ];
    for (how, out) in fetches {
        assert_eq!((out.exit, out.status), (0, 200), "{how}: {}", out.stderr);
        assert_eq!(out.body.len(), size, "{how}: length");
        assert!(out.body == want, "{how}: bytes differ from the server's");
    }
    drop(daemon);
}

#[test]
fn bad_or_mismatched_key_fails_check() {
    let dir = TempDir::new("l7badkey").unwrap();
    let _ca = sni_certs(&dir).unwrap();
    dir.write("garbage.key", "not a key\n").unwrap();
    let cfg_with = |name: &str, tls: &str| {
        let text = format!(
            "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\nbind = \"127.0.0.1:8443\"\n\
             default_backend = \"web\"\ntls = {tls}\n"
        );
        dir.write(name, text).unwrap()
    };
    let good = cfg_with("good.toml", "{ cert = \"a.pem\", key = \"a.key\" }");
    let (ok, err) = xlb_check(&good);
    assert!(ok, "{err}");

    // A rejected config: `xlb check`'s stderr.
    let rejected = |label: &str, cfg: &Path| {
        let (ok, err) = xlb_check(cfg);
        eprintln!("{label}: {err}");
        assert!(!ok);
        err
    };

    let cfg = cfg_with("mismatch.toml", "{ cert = \"a.pem\", key = \"b.key\" }");
    let err = rejected("mismatch", &cfg);
    let prefix = format!("{}:8:", cfg.display());
    assert!(err.starts_with(&prefix), "{err}");
    assert!(err.contains("does not match the certificate"), "{err}");
    assert!(err.contains("b.key") && err.contains("a.pem"), "{err}");

    let cfg = cfg_with(
        "garbage.toml",
        "{ cert = \"a.pem\", key = \"garbage.key\" }",
    );
    let err = rejected("garbage", &cfg);
    assert!(err.contains("no PEM private key found"), "{err}");

    let cfg = cfg_with(
        "sni-mismatch.toml",
        "{ cert = \"a.pem\", key = \"a.key\", sni = [{ cert = \"b.pem\", key = \"a.key\" }] }",
    );
    let err = rejected("sni mismatch", &cfg);
    assert!(
        err.contains("does not match the certificate") && err.contains("b.pem"),
        "{err}"
    );
}
