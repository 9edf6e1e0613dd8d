//! `rate_limit` on frontends (lab, curl from the client namespace, which
//! gets a second and a third address on its interface):
//!
//! - `rate_limit_per_client_and_per_frontend`: with
//!   `rate_limit = { requests_per_sec = 1, burst = 5 }`, 10 quick
//!   requests on one keep-alive connection get 5 (6 when a second passed)
//!   answers 200 and the rest 429 with `Retry-After: 1`, each 429 in the
//!   access log and the metrics; another client address still gets 200
//!   (its own budget); HTTP/2 requests on one connection (TLS) and
//!   HTTP/3 requests on one QUIC connection count alike.
//!   With `per = "frontend"` the second address is refused too once the
//!   first one used the shared burst. A reload restarts the budgets.

use std::time::{Duration, Instant};

use xlb_lab::{
    Namespace,
    api::sample,
    h3_client,
    l7::{
        SNI_TLS, VIP, access_lines, block_on_in, curl, curl_many, frontend_toml, head_toml_with,
        http_lab, pool_toml, sni_certs, web_servers,
    },
};

const TEST: &str = "l7ratelimit";
/// The client's own address; the next two are added for the test.
const FIRST: &str = "198.18.0.2";
const SECOND: &str = "198.18.0.3";
const THIRD: &str = "198.18.0.4";
/// The TLS frontend's port (TCP and, for HTTP/3, UDP).
const TLS_PORT: u16 = 8443;

/// One answer of a [`burst`]: status and `Retry-After` (empty if none).
#[derive(Debug, PartialEq)]
struct Answer {
    code: u16,
    retry_after: String,
}

/// `n` GETs of `url` in one curl run (one keep-alive connection), from
/// `from` (an address of the client) when given, with `extra` curl flags.
fn burst(ns: &Namespace, from: Option<&str>, extra: &[&str], url: &str, n: usize) -> Vec<Answer> {
    let mut args: Vec<&str> = vec![
        "-w",
        "connects=%{num_connects} code=%{http_code} retry=%header{retry-after}\n",
    ];
    if let Some(from) = from {
        args.extend(["--interface", from]);
    }
    args.extend_from_slice(extra);
    args.extend(std::iter::repeat_n(url, n));
    let many = curl_many(ns, &args).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(many.connects, 1, "one connection for all: {}", many.out);
    let answers: Vec<Answer> = many
        .out
        .lines()
        .filter_map(|l| l.strip_prefix("connects="))
        .map(|l| {
            let code = l.split(" code=").nth(1).and_then(|c| c.get(..3));
            let retry = l.split(" retry=").nth(1).unwrap_or("");
            Answer {
                code: code.and_then(|c| c.parse().ok()).unwrap_or(0),
                retry_after: retry.trim().to_string(),
            }
        })
        .collect();
    assert_eq!(answers.len(), n, "{}", many.out);
    answers
}

/// `n` HTTP/3 GETs of `/`, one after the other on one QUIC connection
/// from [`FIRST`] to the TLS frontend (the lab's curl has no HTTP/3).
async fn h3_burst(ca_pem: &str, n: usize) -> anyhow::Result<Vec<Answer>> {
    let endpoint = h3_client::endpoint(ca_pem, format!("{FIRST}:0").parse()?, false)?;
    let vip = format!("{VIP}:{TLS_PORT}").parse()?;
    let requests = async {
        let conn = endpoint.connect(vip, "a.xlb.test")?.await?;
        let mut send = h3_client::h3_on(conn).await?;
        let mut answers = Vec::new();
        for _ in 0..n {
            let req = http::Request::get(format!("https://a.xlb.test:{TLS_PORT}/")).body(())?;
            let mut stream = send.send_request(req).await?;
            stream.finish().await?;
            let resp = stream.recv_response().await?;
            while stream.recv_data().await?.is_some() {}
            let retry_after = resp.headers().get("retry-after");
            answers.push(Answer {
                code: resp.status().as_u16(),
                retry_after: retry_after
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
            });
        }
        anyhow::Ok(answers)
    };
    tokio::time::timeout(Duration::from_secs(10), requests).await?
}

fn count(answers: &[Answer], code: u16) -> usize {
    answers.iter().filter(|a| a.code == code).count()
}

#[test]
fn rate_limit_per_client_and_per_frontend() {
    let (topo, _web, dir) = http_lab(TEST, 1).unwrap();
    let ca_pem = sni_certs(&dir).unwrap().pem().to_string();
    let client = topo.client();
    for addr in [SECOND, THIRD] {
        client.add_addr("eth0", &format!("{addr}/24")).unwrap();
    }
    let mut text = head_toml_with(&dir, TEST, "metrics = \"127.0.0.1:9100\"\n");
    text += &pool_toml("web", "", &web_servers([1], 8080));
    let limit = "rate_limit = { requests_per_sec = 1, burst = 5 }\n";
    text += &frontend_toml("perclient", 8080, "web", limit);
    // The same limit over HTTP/2 and HTTP/3 (TLS: the lab's curl 7.88
    // fails the second request on a reused h2c connection, to any server).
    let tls = format!("{SNI_TLS}http3 = true\n{limit}");
    text += &frontend_toml("tls", TLS_PORT, "web", &tls);
    text += &frontend_toml(
        "shared",
        8081,
        "web",
        "rate_limit = { requests_per_sec = 1, burst = 5, per = \"frontend\" }\n",
    );
    let cfg = dir.write_config(&text).unwrap();
    let mut daemon = topo.lb().start_xlb(&cfg);
    let mark = daemon.stderr_lines().len();
    let per_client = format!("http://{VIP}:8080/");
    let shared = format!("http://{VIP}:8081/");

    // 10 requests on one connection: the burst of 5 (one more if a second
    // went by), the rest refused with Retry-After.
    let answers = burst(client, None, &[], &per_client, 10);
    eprintln!("per client, first address: {answers:?}");
    let ok = count(&answers, 200);
    assert!((5..=6).contains(&ok), "{answers:?}\n{}", daemon.stderr());
    assert_eq!(count(&answers, 429), 10 - ok, "{answers:?}");
    assert!(answers[..5].iter().all(|a| a.code == 200), "{answers:?}");
    for a in answers.iter().filter(|a| a.code == 429) {
        assert_eq!(a.retry_after, "1", "{answers:?}");
    }
    let refused = 10 - ok;

    // Another address of the same client host has its own budget.
    let second = curl(
        client,
        &["--interface", SECOND, &per_client],
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((second.exit, second.status), (0, 200), "{second:?}");

    // HTTP/2 requests (streams of one connection) count alike, and
    // HTTP/3 ones (of one QUIC connection, from another address).
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let resolve = format!("a.xlb.test:{TLS_PORT}:{VIP}");
    let tls = ["--cacert", ca, "--resolve", &resolve, "--http2"];
    let url = format!("https://a.xlb.test:{TLS_PORT}/");
    let h2 = burst(client, Some(THIRD), &tls, &url, 8);
    eprintln!("per client, HTTP/2 from {THIRD}: {h2:?}");
    let h3 = block_on_in(client, || h3_burst(&ca_pem, 8))
        .unwrap()
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.stderr()));
    eprintln!("per client, HTTP/3 from {FIRST}: {h3:?}");
    let mut tls_refused = 0;
    for answers in [&h2, &h3] {
        let ok = count(answers, 200);
        assert!((5..=6).contains(&ok), "{answers:?}");
        assert_eq!(count(answers, 429), 8 - ok, "{answers:?}");
        for a in answers.iter().filter(|a| a.code == 429) {
            assert_eq!(a.retry_after, "1", "{answers:?}");
        }
        tls_refused += 8 - ok;
    }

    // The 429 answer itself: a short text body naming the reason.
    let over = curl(
        client,
        &["--interface", FIRST, &per_client],
        Duration::from_secs(5),
    )
    .unwrap();
    if over.status == 429 {
        assert!(over.text().contains("rate limit exceeded"), "{over:?}");
        assert_eq!(over.header("retry-after"), Some("1"), "{over:?}");
    } else {
        // More than a second since its burst: one request came back.
        assert_eq!(over.status, 200, "{over:?}");
    }
    let refused = refused + usize::from(over.status == 429);

    // One budget for the whole frontend: once the first address used it,
    // the second is refused too. Asked within a second of the burst (no
    // request back yet); on a machine too slow for that, again after the
    // budget refilled.
    let mut shared_refused = 0;
    let mut used_up = None;
    for attempt in 0..3 {
        let start = Instant::now();
        let first = burst(client, None, &[], &shared, 6);
        let other = curl(
            client,
            &["--interface", SECOND, &shared],
            Duration::from_secs(5),
        )
        .unwrap();
        let elapsed = start.elapsed();
        eprintln!(
            "shared, attempt {attempt} ({elapsed:?}): {first:?}, then {}",
            other.status
        );
        shared_refused += count(&first, 429) + usize::from(other.status == 429);
        assert!(count(&first, 200) >= 5, "{first:?}");
        if elapsed < Duration::from_millis(900) {
            assert_eq!(count(&first, 200), 5, "{first:?}");
            assert_eq!(other.status, 429, "{other:?}");
            assert_eq!(other.header("retry-after"), Some("1"), "{other:?}");
            used_up = Some(start);
            break;
        }
        std::thread::sleep(Duration::from_secs(6));
    }
    let used_up = used_up.expect("no attempt finished within 900 ms");

    // Every 429 has its access log line (status 429, no server) and is
    // counted, apart from the answered requests' counters too.
    std::thread::sleep(Duration::from_millis(300));
    let lines = access_lines(&daemon, mark);
    let logged = |frontend: &str| {
        lines
            .iter()
            .filter(|l| l.frontend == frontend && l.status == 429)
            .inspect(|l| {
                assert_eq!(l.server, "-", "{l:?}");
                assert_eq!(l.error.as_deref(), Some("rate limit exceeded"), "{l:?}");
            })
            .count()
    };
    assert_eq!(logged("perclient"), refused, "{lines:#?}");
    assert_eq!(logged("shared"), shared_refused, "{lines:#?}");
    assert_eq!(logged("tls"), tls_refused, "{lines:#?}");
    for version in ["HTTP/2.0", "HTTP/3.0"] {
        let request = format!("GET / {version}");
        assert!(
            lines
                .iter()
                .any(|l| l.status == 429 && l.request == request),
            "{request}: {lines:#?}"
        );
    }
    let scrape = curl(
        topo.lb(),
        &["http://127.0.0.1:9100/metrics"],
        Duration::from_secs(5),
    )
    .unwrap();
    let text = scrape.text();
    for (frontend, n) in [
        ("perclient", refused),
        ("shared", shared_refused),
        ("tls", tls_refused),
    ] {
        assert_eq!(
            sample(
                &text,
                "xlb_http_rate_limited_total",
                &[("frontend", frontend)]
            ),
            Some(n as f64),
            "{frontend}: {text}"
        );
        assert_eq!(
            sample(
                &text,
                "xlb_http_requests_total",
                &[("frontend", frontend), ("backend", "web"), ("code", "429")]
            ),
            Some(n as f64),
            "{frontend}: {text}"
        );
    }

    // A reload builds new limiters: the shared budget used up above is
    // whole again at once (without the reload, one request per second
    // since it was used up would pass, fewer than 5 within 4.5 s).
    daemon.reload(Duration::from_secs(10)).unwrap();
    let after = burst(client, None, &[], &shared, 5);
    let elapsed = used_up.elapsed();
    eprintln!("shared, after the reload ({elapsed:?} after the burst): {after:?}");
    assert!(elapsed < Duration::from_millis(4500), "too slow to tell");
    assert_eq!(count(&after, 200), 5, "{after:?}");
}
