//! What `xlb check` relies on: every example config parses; every file in
//! `tests/bad-configs/` fails with `FILE:LINE:COL: message` at the exact
//! position of the offending key or value; defaults follow the contract;
//! mangled configs never panic.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use xlb::config::{
    Balance, CheckKind, Config, Forward, ForwardedHeaders, Protocol, ProxyVersion, RateLimit,
    RateLimitPer, Steering, XdpMode, load, parse,
};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn examples_dir() -> PathBuf {
    manifest_dir().join("../examples")
}

fn bad_dir() -> PathBuf {
    manifest_dir().join("tests/bad-configs")
}

/// (file, line, col, message substring)
const BAD: &[(&str, usize, usize, &str)] = &[
    ("unknown-key.toml", 9, 3, "unknown key `wieght`"),
    ("unknown-section.toml", 4, 3, "unknown key `listener`"),
    (
        "wrong-type.toml",
        9,
        12,
        "invalid type: string \"heavy\", expected an integer",
    ),
    ("syntax-error.toml", 2, 32, "invalid basic string"),
    (
        "bad-address.toml",
        12,
        7,
        "bad address \"198.18.0.100\" for l4 vip",
    ),
    (
        "bad-metrics.toml",
        2,
        11,
        "bad address \"localhost:9100\" for metrics",
    ),
    ("port-zero.toml", 12, 7, "port 0 is not allowed"),
    (
        "unknown-backend.toml",
        13,
        11,
        "unknown backend \"wbe\" in [[l4]] \"web-l4\"",
    ),
    (
        "unknown-default-backend.toml",
        13,
        19,
        "unknown backend \"api\" in [[frontend]]",
    ),
    (
        "duplicate-vip.toml",
        17,
        7,
        "duplicate VIP 198.18.0.100:80/tcp (first defined on line 12)",
    ),
    ("duplicate-backend.toml", 11, 8, "duplicate backend \"web\""),
    (
        "duplicate-server.toml",
        10,
        10,
        "duplicate server \"web1\" in backend \"web\"",
    ),
    (
        "duplicate-l4-name.toml",
        16,
        8,
        "duplicate [[l4]] name \"web-l4\"",
    ),
    (
        "duplicate-frontend-name.toml",
        16,
        8,
        "duplicate [[frontend]] name \"web-l7\"",
    ),
    ("missing-interface.toml", 4, 1, "missing interface"),
    ("missing-name.toml", 10, 1, "missing name in [[l4]]"),
    (
        "l4-without-xdp.toml",
        4,
        1,
        "at least one [[xdp]] interface",
    ),
    (
        "family-mismatch.toml",
        11,
        13,
        "cannot translate between address families",
    ),
    (
        "steering-tcp.toml",
        14,
        12,
        "steering \"syslog\" is for UDP",
    ),
    ("bad-enum.toml", 14, 11, "unknown forward \"tunnel\""),
    ("bad-balance.toml", 3, 11, "unknown balance \"weighted\""),
    ("rise-zero.toml", 3, 34, "rise must be at least 1"),
    ("fall-zero.toml", 6, 10, "fall must be at least 1"),
    (
        "weight-too-big.toml",
        9,
        12,
        "weight must be between 0 and 1000",
    ),
    (
        "maglev-not-prime.toml",
        3,
        15,
        "maglev_size must be a prime",
    ),
    ("http3-without-tls.toml", 14, 9, "http3 = true needs tls"),
    (
        "http3-0rtt-without-http3.toml",
        15,
        14,
        "http3_0rtt = true needs http3 = true in [[frontend]] \"web-l7\"",
    ),
    (
        "bind-on-vip.toml",
        17,
        8,
        "is also [[l4]] \"web-l4\" VIP (tcp)",
    ),
    (
        "bad-compression.toml",
        14,
        24,
        "unknown compression \"zstd\"",
    ),
    (
        "bad-forwarded-headers.toml",
        14,
        41,
        "unknown forwarded_headers entry \"x-real-ip\"",
    ),
    (
        "duplicate-forwarded-header.toml",
        14,
        54,
        "duplicate forwarded_headers entry \"x-forwarded-for\"",
    ),
    ("bad-server-name.toml", 10, 10, "contains '/'"),
    (
        "dsr-source-prefix.toml",
        2,
        17,
        "must be an IPv4 prefix A.B.C.D/N with N in 8..=24",
    ),
    (
        "dsr-source-v6.toml",
        2,
        17,
        "must be an IPv6 prefix ADDR/112",
    ),
    (
        "quic-sid-len.toml",
        17,
        16,
        "quic_sid_len must be between 1 and 4",
    ),
    (
        "bad-send-proxy.toml",
        3,
        14,
        "unknown send_proxy \"v3\": expected one of \"v1\", \"v2\"",
    ),
    (
        "dsr-v6-vip-v4-server.toml",
        10,
        1,
        "an IPv6 VIP needs IPv6 servers for DSR",
    ),
];

#[test]
fn bad_configs_fail_at_the_exact_position() {
    let mut failures = Vec::new();
    for &(name, line, col, needle) in BAD {
        let path = bad_dir().join(name);
        let shown = path.display().to_string();
        match load(&path) {
            Ok(_) => failures.push(format!("{name}: parsed OK")),
            Err(e) => {
                let text = e.to_string();
                let prefix = format!("{shown}:{line}:{col}: ");
                if !text.starts_with(&prefix) || !text.contains(needle) || text.contains('\n') {
                    failures.push(format!("{name}: want {line}:{col} `{needle}`, got: {text}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_bad_config_is_in_the_table() {
    let mut files: Vec<String> = std::fs::read_dir(bad_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    files.sort();
    let mut listed: Vec<String> = BAD.iter().map(|b| b.0.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

#[test]
fn examples_parse() {
    let mut n = 0;
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn lab_example_is_the_default_lab() {
    let c = load(&examples_dir().join("lab.toml")).unwrap();
    assert_eq!(c.global.api_socket, Path::new("/run/xlb/lab.sock"));
    assert_eq!(c.global.bpf_pin_path, Path::new("/sys/fs/bpf/xlb-lab"));
    assert_eq!(c.global.metrics, None);
    assert_eq!(c.global.maglev_size, 65537);
    assert_eq!(c.xdp.len(), 1);
    assert_eq!(
        (c.xdp[0].interface.as_str(), c.xdp[0].mode),
        ("eth0", XdpMode::Auto)
    );
    let web = c.backend("web").unwrap();
    assert_eq!(web.balance, Balance::Maglev);
    assert_eq!(web.health.check, CheckKind::Http);
    assert_eq!(web.health.path, "/healthz");
    assert_eq!((web.health.interval_ms, web.health.timeout_ms), (500, 250));
    assert_eq!((web.health.rise, web.health.fall), (2, 2));
    let servers: Vec<_> = web
        .server
        .iter()
        .map(|s| (s.name.as_str(), s.address, s.weight))
        .collect();
    assert_eq!(
        servers,
        [
            ("web1", addr("198.18.1.11:8080"), 100),
            ("web2", addr("198.18.1.12:8080"), 100),
            ("web3", addr("198.18.1.13:8080"), 100),
        ]
    );
    assert_eq!(c.l4.len(), 1);
    let v = &c.l4[0];
    assert_eq!(
        (v.name.as_str(), v.vip, v.backend.as_str()),
        ("web-l4", addr("198.18.0.100:80"), "web")
    );
    assert_eq!(
        (v.protocol, v.forward, v.steering),
        (Protocol::Tcp, Forward::Nat, Steering::Flow)
    );
    // The L7 tier on another port of the VIP, to the same pool.
    let fe: Vec<_> = c
        .frontend
        .iter()
        .map(|f| (f.name.as_str(), f.bind, f.default_backend.as_str(), f.h2c))
        .collect();
    assert_eq!(fe, [("web-l7", addr("198.18.0.100:8080"), "web", true)]);
    assert!(c.frontend[0].tls.is_none());
}

#[test]
fn full_example_uses_every_value() {
    let c = load(&examples_dir().join("full.toml")).unwrap();
    assert_eq!(c.global.metrics, Some(addr("127.0.0.1:9100")));
    let modes: Vec<_> = c.xdp.iter().map(|x| x.mode).collect();
    assert_eq!(modes, [XdpMode::Driver, XdpMode::Auto]);
    let balances: Vec<_> = c.backend.iter().map(|b| b.balance).collect();
    for b in [
        Balance::Maglev,
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::Random,
        Balance::Source,
        Balance::Uri,
    ] {
        assert!(balances.contains(&b), "{b:?}");
    }
    let checks: Vec<_> = c.backend.iter().map(|b| b.health.check).collect();
    for k in [CheckKind::Http, CheckKind::Tcp, CheckKind::None] {
        assert!(checks.contains(&k), "{k:?}");
    }
    let web6 = c.backend("web6").unwrap();
    assert_eq!(
        (web6.health.interval_ms, web6.health.rise, web6.health.fall),
        (3000, 3, 5)
    );
    assert_eq!(c.backend("web").unwrap().server[2].weight, 0);
    assert!(c.backend("spare").unwrap().server.is_empty());
    let l4: Vec<_> =
        c.l4.iter()
            .map(|v| (v.protocol, v.forward, v.steering))
            .collect();
    assert!(l4.contains(&(Protocol::Udp, Forward::Dsr, Steering::Syslog)));
    assert!(l4.contains(&(Protocol::Udp, Forward::Nat, Steering::Quic)));
    assert!(l4.contains(&(Protocol::Tcp, Forward::Dsr, Steering::Flow)));
    assert_eq!(c.frontend[0].compression, ["gzip", "br"]);
    assert_eq!(
        c.frontend[0].forwarded_headers,
        ForwardedHeaders {
            forwarded: false,
            ..ForwardedHeaders::ALL
        }
    );
    assert_eq!(c.frontend[1].forwarded_headers, ForwardedHeaders::ALL);
    assert_eq!(c.frontend[1].bind, addr("[2001:db8::100]:8080"));
    let limit = |per, requests_per_sec, burst| {
        Some(RateLimit {
            requests_per_sec,
            burst,
            per,
        })
    };
    assert_eq!(
        c.frontend[0].rate_limit,
        limit(RateLimitPer::Client, 100, 200)
    );
    assert_eq!(
        c.frontend[1].rate_limit,
        limit(RateLimitPer::Frontend, 5000, 5000)
    );
}

#[test]
fn defaults() {
    let text = r#"
[[xdp]]
interface = "eth0"

[[backend]]
name = "web"
  [[backend.server]]
  name = "web1"
  address = "198.18.1.11:8080"

[[l4]]
name = "v"
vip = "198.18.0.100:80"
backend = "web"

[[frontend]]
name = "f"
bind = "198.18.0.100:8080"
default_backend = "web"
"#;
    let c = parse(text, "defaults.toml").unwrap();
    assert_eq!(c.global.api_socket, Path::new("/run/xlb/xlb.sock"));
    assert_eq!(c.global.bpf_pin_path, Path::new("/sys/fs/bpf/xlb"));
    assert_eq!(c.global.metrics, None);
    assert_eq!(c.global.maglev_size, 65537);
    assert_eq!(c.xdp[0].mode, XdpMode::Auto);
    let b = &c.backend[0];
    assert_eq!(b.balance, Balance::RoundRobin);
    assert_eq!(b.health.check, CheckKind::Tcp);
    assert_eq!(b.health.path, "/");
    assert_eq!((b.health.interval_ms, b.health.timeout_ms), (2000, 1000));
    assert_eq!((b.health.rise, b.health.fall), (2, 3));
    assert_eq!(b.server[0].weight, 100);
    let v = &c.l4[0];
    assert_eq!(
        (v.protocol, v.forward, v.steering),
        (Protocol::Tcp, Forward::Nat, Steering::Flow)
    );
    let f = &c.frontend[0];
    assert!(f.compression.is_empty() && !f.http3 && f.tls.is_none());
    assert!(!f.http3_0rtt);
    assert_eq!(f.forwarded_headers, ForwardedHeaders::ALL);
    assert!(!f.accept_proxy);
    assert_eq!(b.l7.send_proxy, None);
    let proxied = parse(
        &text
            .replace("name = \"web\"\n", "name = \"web\"\nsend_proxy = \"v1\"\n")
            .replace(
                "default_backend = \"web\"\n",
                "default_backend = \"web\"\naccept_proxy = true\n",
            ),
        "proxied.toml",
    )
    .unwrap();
    assert!(proxied.frontend[0].accept_proxy);
    assert_eq!(proxied.backend[0].l7.send_proxy, Some(ProxyVersion::V1));

    // An empty file is a valid (idle) config.
    let empty = parse("", "empty.toml").unwrap();
    assert_eq!(empty.global, c.global);
    assert!(empty.xdp.is_empty() && empty.backend.is_empty());
}

#[test]
fn allowed_edge_cases() {
    let ok = |text: &str| parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
    // timeout >= interval is allowed (HAProxy does), as are weights 0 and 1000.
    ok(
        "[[backend]]\nname = \"b\"\nhealth = { interval_ms = 100, timeout_ms = 500 }\n\
        [[backend.server]]\nname = \"a\"\naddress = \"[2001:db8::1]:80\"\nweight = 0\n\
        [[backend.server]]\nname = \"c\"\naddress = \"198.18.1.1:80\"\nweight = 1000\n",
    );
    // The same address:port may be a TCP and a UDP VIP.
    ok("[[xdp]]\ninterface = \"lo\"\n[[backend]]\nname = \"b\"\n\
        [[l4]]\nname = \"t\"\nvip = \"198.18.0.1:53\"\nbackend = \"b\"\n\
        [[l4]]\nname = \"u\"\nvip = \"198.18.0.1:53\"\nprotocol = \"udp\"\nbackend = \"b\"\n");
    // A UDP VIP on a TCP frontend's address:port is fine without http3.
    ok("[[xdp]]\ninterface = \"lo\"\n[[backend]]\nname = \"b\"\n\
        [[l4]]\nname = \"u\"\nvip = \"198.18.0.1:443\"\nprotocol = \"udp\"\nbackend = \"b\"\n\
        [[frontend]]\nname = \"f\"\nbind = \"198.18.0.1:443\"\ndefault_backend = \"b\"\n");
    // maglev_size: any prime up to 1000003.
    for p in [13, 1009, 1_000_003] {
        assert_eq!(
            ok(&format!("[global]\nmaglev_size = {p}\n"))
                .global
                .maglev_size,
            p
        );
    }
}

#[test]
fn more_errors() {
    let err = |text: &str| parse(text, "t.toml").unwrap_err();
    let e = err("[global]\nmaglev_size = 1000033\n");
    assert_eq!((e.line, e.col), (2, 15), "{e}");
    let e = err(
        "[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"a\"\naddress = \"1.2.3.4:80\"\nweight = -1\n",
    );
    assert_eq!((e.line, e.col), (6, 10), "{e}");
    // IPv6 VIP with IPv4 server under NAT, too.
    let e = err(
        "[[xdp]]\ninterface = \"lo\"\n[[backend]]\nname = \"b\"\n[[backend.server]]\nname = \"a\"\n\
                 address = \"1.2.3.4:80\"\n[[l4]]\nname = \"v\"\nvip = \"[2001:db8::1]:80\"\nbackend = \"b\"\n",
    );
    assert_eq!((e.line, e.col), (7, 11), "{e}");
    assert!(
        e.message.contains("IPv4") && e.message.contains("IPv6"),
        "{e}"
    );
    // quic steering on TCP.
    let e = err("[[xdp]]\ninterface = \"lo\"\n[[backend]]\nname = \"b\"\n\
                 [[l4]]\nname = \"v\"\nvip = \"1.2.3.4:443\"\nbackend = \"b\"\nsteering = \"quic\"\n");
    assert_eq!((e.line, e.col), (9, 12), "{e}");
    // Missing TLS files.
    let e = err(
        "[[backend]]\nname = \"b\"\n[[frontend]]\nname = \"f\"\nbind = \"1.2.3.4:443\"\n\
                 default_backend = \"b\"\ntls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }\n",
    );
    assert_eq!((e.line, e.col), (7, 16), "{e}");
    assert!(e.message.contains("tls cert"), "{e}");
    // Several problems: the earliest one in the file is reported.
    let e = err("[[backend]]\nname = \"b\"\nbalance = \"x\"\n[[backend]]\nname = \"b\"\n");
    assert_eq!((e.line, e.col), (3, 11), "{e}");
    // Unknown key inside an inline table points at the key.
    let e = err("[[backend]]\nname = \"b\"\nhealth = { chek = \"tcp\" }\n");
    assert_eq!((e.line, e.col), (3, 12), "{e}");
    assert!(e.message.contains("chek"), "{e}");
    // accept_proxy is a boolean.
    let e = err(
        "[[backend]]\nname = \"b\"\n[[frontend]]\nname = \"f\"\nbind = \"1.2.3.4:80\"\n\
                 default_backend = \"b\"\naccept_proxy = \"v2\"\n",
    );
    assert_eq!((e.line, e.col), (7, 16), "{e}");
    // send_proxy takes a version, not a boolean.
    let e = err("[[backend]]\nname = \"b\"\nsend_proxy = true\n");
    assert_eq!((e.line, e.col), (3, 14), "{e}");
    // Duplicate interface.
    let e = err("[[xdp]]\ninterface = \"eth0\"\n[[xdp]]\ninterface = \"eth0\"\n");
    assert_eq!((e.line, e.col), (4, 13), "{e}");
}

/// `rate_limit` on a frontend: every bad value is reported at itself
/// (line 7, the column given), unknown keys at the key, a missing rate at
/// the table.
#[test]
fn rate_limit_errors_point_at_the_value() {
    let text = |value: &str| {
        format!(
            "[[backend]]\nname = \"b\"\n[[frontend]]\nname = \"f\"\n\
             bind = \"198.18.0.100:80\"\ndefault_backend = \"b\"\nrate_limit = {value}\n"
        )
    };
    let ok = parse(
        &text("{ requests_per_sec = 1000000000, burst = 1 }"),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let limit = ok.frontend[0].rate_limit.unwrap();
    assert_eq!((limit.requests_per_sec, limit.burst), (1_000_000_000, 1));
    for (value, col, want) in [
        (
            "{ requests_per_sec = 0 }",
            35,
            "rate_limit requests_per_sec must be at least 1 (got 0)",
        ),
        (
            "{ requests_per_sec = -5, burst = 10 }",
            35,
            "rate_limit requests_per_sec must be at least 1 (got -5)",
        ),
        (
            "{ requests_per_sec = 2.5 }",
            35,
            "invalid type: floating point `2.5`, expected an integer",
        ),
        (
            "{ requests_per_sec = 10, burst = 0 }",
            47,
            "rate_limit burst must be at least 1 (got 0)",
        ),
        (
            "{ requests_per_sec = 10, burst = 2000000000 }",
            47,
            "rate_limit burst must be between 1 and 1000000000 (got 2000000000)",
        ),
        (
            "{ requests_per_sec = 10, per = \"ip\" }",
            45,
            "unknown rate_limit per \"ip\": expected one of \"client\", \"frontend\"",
        ),
        (
            "{ requests_per_sec = 10, rps = 5 }",
            39,
            "unknown key `rps`",
        ),
        (
            "{ burst = 5 }",
            14,
            "missing requests_per_sec in frontend rate_limit",
        ),
        ("100", 14, "invalid type: integer `100`, expected struct"),
    ] {
        let e = parse(&text(value), "t.toml").unwrap_err();
        assert_eq!((e.line, e.col), (7, col), "{value}: {e}");
        assert!(e.message.contains(want), "{value}: {e}");
    }
}

/// Two pools and a frontend whose `[[frontend.rule]]` (line 9) gets the
/// given lines from line 10 on.
fn with_rule(lines: &str) -> String {
    format!(
        "[[backend]]\nname = \"web\"\n[[backend]]\nname = \"api\"\n[[frontend]]\nname = \"f\"\n\
         bind = \"198.18.0.100:8080\"\ndefault_backend = \"web\"\n[[frontend.rule]]\n{lines}"
    )
}

#[test]
fn frontend_rules() {
    let c = parse(
        &with_rule(
            "host = \"API.example.com.\"\npath_prefix = \"/api/\"\nbackend = \"api\"\n\
             replace_path = { regex = \"^/api/(.*)$\", with = \"/v2/$1\" }\n\
             [[frontend.rule]]\nhost = \"*.example.com\"\nbackend = \"api\"\n",
        ),
        "t.toml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rules = &c.frontend[0].rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].host.as_deref(), Some("api.example.com"));
    assert_eq!(rules[0].path_prefix.as_deref(), Some("/api/"));
    assert_eq!(rules[0].backend.as_deref(), Some("api"));
    let rp = rules[0].replace_path.as_ref().unwrap();
    assert_eq!(
        (rp.regex.as_str(), rp.with.as_str()),
        ("^/api/(.*)$", "/v2/$1")
    );
    assert_eq!(rules[1].host.as_deref(), Some("*.example.com"));
    assert!(rules[1].replace_path.is_none());
    // No rules: none.
    assert!(
        parse(
            &with_rule("backend = \"api\"\n").replace("[[frontend.rule]]\nbackend = \"api\"\n", ""),
            "t.toml"
        )
        .unwrap()
        .frontend[0]
            .rules
            .is_empty()
    );
}

/// Each rule error points at its value (line 10), or at the rule's
/// header (line 9) when the rule has no action, or at `replace_path`'s
/// table when a key of it is missing.
#[test]
fn frontend_rule_errors() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "host = \"a.example\"\n",
            None,
            "does nothing: give it a backend or a replace_path",
        ),
        (
            "backend = \"nope\"\n",
            Some("\"nope\""),
            "unknown backend \"nope\" in a [[frontend.rule]] of [[frontend]] \"f\"",
        ),
        (
            "host = \"\"\nbackend = \"api\"\n",
            Some("\"\""),
            "rule host \"\" is empty",
        ),
        (
            "host = \"api.example.com:8080\"\nbackend = \"api\"\n",
            Some("\"api"),
            "has a port",
        ),
        (
            "host = \"*\"\nbackend = \"api\"\n",
            Some("\"*\""),
            "contains '*'",
        ),
        (
            "host = \"*..example.com\"\nbackend = \"api\"\n",
            Some("\"*."),
            "has an empty label",
        ),
        (
            "host = \"a*.example.com\"\nbackend = \"api\"\n",
            Some("\"a*"),
            "contains '*'",
        ),
        (
            "host = \"[2001:db8::1\"\nbackend = \"api\"\n",
            Some("\"[2001"),
            "not a bracketed IPv6 address",
        ),
        (
            "path_prefix = \"api/\"\nbackend = \"api\"\n",
            Some("\"api/\""),
            "path_prefix \"api/\" must start with \"/\"",
        ),
        (
            "replace_path = { regex = \"^/(a\", with = \"/\" }\n",
            Some("\"^/(a\""),
            "bad regex \"^/(a\": unclosed group",
        ),
        (
            "replace_path = { regex = \"^/(a)\", with = \"b$1\" }\n",
            Some("\"b$1\""),
            "must start with \"/\"",
        ),
        (
            "replace_path = { regex = \"^/(a)\", with = \"/$2\" }\n",
            Some("\"/$2\""),
            "names group $2, which the regex does not have",
        ),
        (
            "replace_path = { regex = \"^/(a)\", with = \"/$1x\" }\n",
            Some("\"/$1x\""),
            "names group $1x",
        ),
        (
            "replace_path = { regex = \"^/(a)\", with = \"/b?c=1\" }\n",
            Some("\"/b?c=1\""),
            "contains '?'",
        ),
        (
            "replace_path = { regex = \"^/(a)\" }\n",
            Some("{"),
            "missing with in replace_path",
        ),
        (
            "hots = \"a.example\"\nbackend = \"api\"\n",
            Some("hots"),
            "unknown key `hots`",
        ),
    ];
    for &(lines, value, want) in cases {
        let text = with_rule(lines);
        let e = parse(&text, "t.toml").unwrap_err();
        let (line, col) = match value {
            None => (9, 1),
            Some(v) => (10, text.lines().nth(9).unwrap().find(v).unwrap() + 1),
        };
        assert_eq!((e.line, e.col), (line, col), "{lines}: {e}");
        assert!(e.message.contains(want), "{lines}: {e}");
        assert!(!e.message.contains('\n'), "{lines}: {e}");
    }
}

/// A tiny deterministic LCG (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Lcg, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for _ in 0..1 + rng.below(3) {
        if lines.is_empty() {
            break;
        }
        let i = rng.below(lines.len());
        match rng.below(4) {
            0 => {
                lines.remove(i);
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => {
                let mut chars: Vec<char> = lines[i].chars().collect();
                const JUNK: &[char] = &[
                    '"', '[', ']', '=', '{', '}', '#', ',', '.', ':', '0', 'x', ' ', '\t', 'é',
                    '\\',
                ];
                let c = JUNK[rng.below(JUNK.len())];
                if chars.is_empty() {
                    chars.push(c);
                } else {
                    let j = rng.below(chars.len());
                    chars[j] = c;
                }
                lines[i] = chars.into_iter().collect();
            }
            _ => {
                let j = rng.below(lines.len());
                lines.swap(i, j);
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

#[test]
fn mutated_configs_never_panic() {
    let mut rng = Lcg(0x5eed);
    let (mut ok, mut bad) = (0, 0);
    for name in ["lab.toml", "full.toml"] {
        let text = std::fs::read_to_string(examples_dir().join(name)).unwrap();
        for _ in 0..1500 {
            let m = mutate(&mut rng, &text);
            let lines = m.lines().count();
            match parse(&m, "m.toml") {
                Ok(c) => {
                    let _: Config = c;
                    ok += 1;
                }
                Err(e) => {
                    assert!(
                        e.line >= 1 && e.col >= 1 && e.line <= lines + 1,
                        "{e}\n---\n{m}"
                    );
                    assert!(e.to_string().starts_with("m.toml:"), "{e}");
                    bad += 1;
                }
            }
        }
    }
    // Both outcomes occur, so the mutations are neither all fatal nor all harmless.
    assert!(ok > 100 && bad > 100, "ok {ok}, bad {bad}");
}
