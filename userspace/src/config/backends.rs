//! `[[backend]]`: pools, their servers, health checks and the keys the
//! L7 tier uses to reach them.

use std::{collections::HashMap, path::Path};

use super::{
    BackendL7, BackendPool, Balance, CheckKind, HealthCheck, ProxyVersion, Server, UpstreamProto,
    UpstreamTls,
    defaults::*,
    errors::Cx,
    raw::{RawBackend, RawHealth, S},
    values::{
        address, duration_ms, enum_value, int, required, text_value, tls_file, unique, valid_name,
    },
};

fn convert_health(cx: &mut Cx, raw: Option<&S<RawHealth>>) -> HealthCheck {
    let h = raw.map(|h| h.get_ref());
    let check = enum_value(
        cx,
        h.and_then(|h| h.check.as_ref()),
        "health check",
        &[
            ("tcp", CheckKind::Tcp),
            ("http", CheckKind::Http),
            ("none", CheckKind::None),
        ],
        CheckKind::Tcp,
    );
    let path = h.and_then(|h| h.path.as_ref());
    if let Some(p) = path {
        if !p.get_ref().starts_with('/') || p.get_ref().contains(|c: char| c.is_whitespace()) {
            cx.push(
                p.span(),
                format!(
                    "health path \"{}\" must start with '/' and contain no spaces",
                    p.get_ref()
                ),
            );
        }
    }
    let interval_ms = duration_ms(
        cx,
        h.and_then(|h| h.interval_ms.as_ref()),
        "interval_ms",
        2000,
    );
    let timeout_ms = duration_ms(
        cx,
        h.and_then(|h| h.timeout_ms.as_ref()),
        "timeout_ms",
        1000,
    );
    let max = u32::MAX as i64;
    let rise = int(cx, h.and_then(|h| h.rise.as_ref()), "rise", 1, max, 2);
    let fall = int(cx, h.and_then(|h| h.fall.as_ref()), "fall", 1, max, 3);
    HealthCheck {
        check,
        path: text_value(path, "/"),
        interval_ms,
        timeout_ms,
        rise: rise as u32,
        fall: fall as u32,
    }
}

pub(super) fn convert_backends(cx: &mut Cx, raw: &[S<RawBackend>]) -> Vec<BackendPool> {
    let base = Path::new(cx.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut names = HashMap::new();
    let mut out = Vec::new();
    for table in raw {
        let b = table.get_ref();
        let name = match required(cx, b.name.as_ref(), "name", "[[backend]]", &table.span()) {
            Some(n) if valid_name(cx, n, "backend") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("backend \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let balance = enum_value(
            cx,
            b.balance.as_ref(),
            "balance",
            &[
                ("maglev", Balance::Maglev),
                ("roundrobin", Balance::RoundRobin),
                ("leastconn", Balance::LeastConn),
                ("random", Balance::Random),
                ("source", Balance::Source),
                ("uri", Balance::Uri),
            ],
            Balance::RoundRobin,
        );
        let health = convert_health(cx, b.health.as_ref());
        let mut server_names = HashMap::new();
        let mut server = Vec::new();
        for st in &b.server {
            let s = st.get_ref();
            let section = "[[backend.server]]";
            let sname = match required(cx, s.name.as_ref(), "name", section, &st.span()) {
                Some(n) if valid_name(cx, n, "server") => {
                    let v = n.get_ref().clone();
                    unique(cx, &mut server_names, v.clone(), n.span(), || {
                        format!("server \"{v}\" in backend \"{name}\"")
                    });
                    v
                }
                _ => String::new(),
            };
            let addr = required(cx, s.address.as_ref(), "address", section, &st.span())
                .and_then(|a| address(cx, a, "server address"));
            let weight = int(
                cx,
                s.weight.as_ref(),
                "weight",
                0,
                MAX_WEIGHT as i64,
                DEFAULT_WEIGHT as i64,
            );
            let quic_server_id = s
                .quic_server_id
                .as_ref()
                .map(|v| int(cx, Some(v), "quic_server_id", 0, u32::MAX as i64, 0) as u32);
            if let Some(address) = addr {
                server.push(Server {
                    name: sname,
                    address,
                    weight: weight as u32,
                    quic_server_id,
                });
            }
        }
        let l7 = convert_backend_l7(cx, b, &base);
        out.push(BackendPool {
            name,
            balance,
            health,
            server,
            l7,
        });
    }
    out
}

fn convert_backend_l7(cx: &mut Cx, b: &RawBackend, base: &Path) -> BackendL7 {
    let d = BackendL7::default();
    let proto = enum_value(
        cx,
        b.proto.as_ref(),
        "proto",
        &[("h1", UpstreamProto::H1), ("h2", UpstreamProto::H2)],
        d.proto,
    );
    let retries = int(
        cx,
        b.retries.as_ref(),
        "retries",
        0,
        MAX_RETRIES as i64,
        d.retries as i64,
    );
    let connect = duration_ms(
        cx,
        b.connect_timeout_ms.as_ref(),
        "connect_timeout_ms",
        d.connect_timeout_ms,
    );
    let response = duration_ms(
        cx,
        b.response_timeout_ms.as_ref(),
        "response_timeout_ms",
        d.response_timeout_ms,
    );
    BackendL7 {
        proto,
        retries: retries as u32,
        connect_timeout_ms: connect,
        response_timeout_ms: response,
        tls: convert_upstream_tls(cx, b, base),
        send_proxy: b.send_proxy.as_ref().map(|v| {
            let versions = [("v1", ProxyVersion::V1), ("v2", ProxyVersion::V2)];
            enum_value(cx, Some(v), "send_proxy", &versions, ProxyVersion::V2)
        }),
    }
}

/// `tls = true` and its `tls_ca`, `tls_server_name`, `tls_verify` keys
/// (which need it).
fn convert_upstream_tls(cx: &mut Cx, b: &RawBackend, base: &Path) -> Option<UpstreamTls> {
    let on = b.tls.as_ref().is_some_and(|t| *t.get_ref());
    if !on {
        let spans = [
            ("tls_ca", b.tls_ca.as_ref().map(|v| v.span())),
            (
                "tls_server_name",
                b.tls_server_name.as_ref().map(|v| v.span()),
            ),
            ("tls_verify", b.tls_verify.as_ref().map(|v| v.span())),
        ];
        for (key, span) in spans {
            if let Some(span) = span {
                cx.push(span, format!("{key} needs tls = true in the [[backend]]"));
            }
        }
        return None;
    }
    let ca = b.tls_ca.as_ref().map(|v| {
        let errors = cx.errors.len();
        let path = tls_file(cx, v, base, "ca");
        if cx.errors.len() == errors {
            if let Some(check) = cx.checks.ca {
                if let Err(e) = check(&path) {
                    cx.push(v.span(), e);
                }
            }
        }
        path
    });
    let server_name = b.tls_server_name.as_ref().map(|v| {
        let n = v.get_ref();
        let ok = !n.is_empty()
            && n.len() <= 253
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !ok {
            cx.push(
                v.span(),
                format!("tls_server_name \"{n}\" is not a DNS name or IP address"),
            );
        }
        n.clone()
    });
    let verify = b.tls_verify.as_ref().is_none_or(|v| *v.get_ref());
    Some(UpstreamTls {
        ca,
        server_name,
        verify,
    })
}
