//! `[[frontend]]`: the L7 listeners, their TLS certificates and limits.

use std::{collections::HashMap, net::SocketAddr, path::Path};

use super::{
    AccessLog, CertKey, ForwardedHeaders, Frontend, L4Vip, Protocol, SyslogTarget, Tls,
    defaults::*,
    errors::Cx,
    rate_limit::convert_rate_limit,
    raw::{RawConfig, S},
    rules::convert_rules,
    values::{address, duration_ms, int, required, tls_file, unique, valid_name},
};

pub(super) fn convert_frontends(cx: &mut Cx, raw: &RawConfig, l4: &[L4Vip]) -> Vec<Frontend> {
    let base = Path::new(cx.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let backend_names: Vec<&str> = raw
        .backend
        .iter()
        .filter_map(|b| b.get_ref().name.as_ref().map(|n| n.get_ref().as_str()))
        .collect();
    let mut names = HashMap::new();
    let mut binds = HashMap::new();
    let mut out = Vec::new();
    for table in &raw.frontend {
        let f = table.get_ref();
        let section = "[[frontend]]";
        let name = match required(cx, f.name.as_ref(), "name", section, &table.span()) {
            Some(n) if valid_name(cx, n, "frontend") => {
                let s = n.get_ref().clone();
                unique(cx, &mut names, s.clone(), n.span(), || {
                    format!("[[frontend]] name \"{s}\"")
                });
                s
            }
            _ => String::new(),
        };
        let http3 = f.http3.as_ref().is_some_and(|h| *h.get_ref());
        let bind_raw = required(cx, f.bind.as_ref(), "bind", section, &table.span());
        let bind = bind_raw.and_then(|a| address(cx, a, "frontend bind"));
        if let (Some(addr), Some(b)) = (bind, bind_raw) {
            unique(cx, &mut binds, addr, b.span(), || {
                format!("frontend bind {addr}")
            });
            for v in l4.iter().filter(|v| v.vip == addr) {
                if v.protocol == Protocol::Tcp || http3 {
                    let p = if v.protocol == Protocol::Tcp {
                        "tcp"
                    } else {
                        "udp (http3)"
                    };
                    cx.push(
                        b.span(),
                        format!(
                            "frontend bind {addr} is also [[l4]] \"{}\" VIP ({p}); the XDP tier \
                             would forward its packets before the L7 listener sees them",
                            v.name
                        ),
                    );
                }
            }
        }
        let default_backend = match required(
            cx,
            f.default_backend.as_ref(),
            "default_backend",
            section,
            &table.span(),
        ) {
            Some(b) => {
                if !backend_names.contains(&b.get_ref().as_str()) {
                    cx.push(
                        b.span(),
                        format!(
                            "unknown backend \"{}\" in [[frontend]] \"{name}\" default_backend",
                            b.get_ref()
                        ),
                    );
                }
                b.get_ref().clone()
            }
            None => String::new(),
        };
        let tls = f.tls.as_ref().and_then(|t| {
            let section = "frontend tls";
            let tr = t.get_ref();
            let cert = required(cx, tr.cert.as_ref(), "cert", section, &t.span());
            let key = required(cx, tr.key.as_ref(), "key", section, &t.span());
            let mut sni = Vec::new();
            for e in tr.sni.iter().flatten() {
                let section = "frontend tls sni entry";
                let c = required(cx, e.get_ref().cert.as_ref(), "cert", section, &e.span());
                let k = required(cx, e.get_ref().key.as_ref(), "key", section, &e.span());
                if let (Some(c), Some(k)) = (c, k) {
                    if let Some(pair) = cert_key(cx, c, k, &base) {
                        sni.push(pair);
                    }
                }
            }
            let pair = cert_key(cx, cert?, key?, &base)?;
            Some(Tls {
                cert: pair.cert,
                key: pair.key,
                sni,
            })
        });
        let h2c = f.h2c.as_ref().is_some_and(|h| *h.get_ref());
        if let (Some(h), true) = (&f.h2c, h2c && f.tls.is_some()) {
            cx.push(
                h.span(),
                format!(
                    "h2c = true is for cleartext listeners; [[frontend]] \"{name}\" has tls, \
                     where HTTP/2 is negotiated by ALPN"
                ),
            );
        }
        let compression_min_bytes = int(
            cx,
            f.compression_min_bytes.as_ref(),
            "compression_min_bytes",
            0,
            i64::MAX,
            DEFAULT_COMPRESSION_MIN_BYTES as i64,
        ) as u64;
        let header_timeout_ms = duration_ms(
            cx,
            f.header_timeout_ms.as_ref(),
            "header_timeout_ms",
            DEFAULT_HEADER_TIMEOUT_MS,
        );
        let idle_timeout_ms = duration_ms(
            cx,
            f.idle_timeout_ms.as_ref(),
            "idle_timeout_ms",
            DEFAULT_IDLE_TIMEOUT_MS,
        );
        let max_header_bytes = int(
            cx,
            f.max_header_bytes.as_ref(),
            "max_header_bytes",
            MIN_MAX_HEADER_BYTES as i64,
            MAX_MAX_HEADER_BYTES as i64,
            DEFAULT_MAX_HEADER_BYTES as i64,
        ) as usize;
        let max_headers = int(
            cx,
            f.max_headers.as_ref(),
            "max_headers",
            1,
            10_000,
            DEFAULT_MAX_HEADERS as i64,
        ) as usize;
        let access_log = match &f.access_log {
            None => AccessLog::Stderr,
            Some(a) => access_log(cx, a, &base),
        };
        if let Some(h) = &f.http3 {
            if *h.get_ref() && f.tls.is_none() {
                cx.push(
                    h.span(),
                    format!("http3 = true needs tls in [[frontend]] \"{name}\" (QUIC is always encrypted)"),
                );
            }
        }
        let http3_0rtt = f.http3_0rtt.as_ref().is_some_and(|z| *z.get_ref());
        if let (Some(z), true) = (&f.http3_0rtt, http3_0rtt && !http3) {
            cx.push(
                z.span(),
                format!(
                    "http3_0rtt = true needs http3 = true in [[frontend]] \"{name}\" \
                     (0-RTT is only taken over HTTP/3; TLS over TCP never accepts early data)"
                ),
            );
        }
        let mut compression = Vec::new();
        if let Some(list) = &f.compression {
            for c in list.get_ref() {
                let s = c.get_ref();
                if !COMPRESSION.contains(&s.as_str()) {
                    cx.push(
                        c.span(),
                        format!(
                            "unknown compression \"{s}\": expected \"gzip\", \"br\" or \"brotli\""
                        ),
                    );
                } else if compression.contains(s) {
                    cx.push(c.span(), format!("duplicate compression \"{s}\""));
                } else {
                    compression.push(s.clone());
                }
            }
        }
        let forwarded_headers = match &f.forwarded_headers {
            None => ForwardedHeaders::default(),
            Some(list) => forwarded_headers(cx, list.get_ref()),
        };
        let rate_limit = f
            .rate_limit
            .as_ref()
            .and_then(|r| convert_rate_limit(cx, r));
        let rules = convert_rules(cx, &f.rule, &name, &backend_names);
        if let Some(bind) = bind {
            out.push(Frontend {
                name,
                bind,
                default_backend,
                tls,
                compression,
                http3,
                http3_0rtt,
                h2c,
                compression_min_bytes,
                header_timeout_ms,
                idle_timeout_ms,
                max_header_bytes,
                max_headers,
                access_log,
                connect: f.connect.as_ref().is_some_and(|c| *c.get_ref()),
                forwarded_headers,
                rate_limit,
                rules,
                accept_proxy: f.accept_proxy.as_ref().is_some_and(|a| *a.get_ref()),
            });
        }
    }
    out
}

/// `forwarded_headers`: any of `x-forwarded-for`, `x-forwarded-proto` and
/// `forwarded` (in any case), each at most once; `[]` adds none.
fn forwarded_headers(cx: &mut Cx, list: &[S<String>]) -> ForwardedHeaders {
    let mut set = ForwardedHeaders::NONE;
    for h in list {
        let s = h.get_ref();
        let flag = match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => &mut set.x_forwarded_for,
            "x-forwarded-proto" => &mut set.x_forwarded_proto,
            "forwarded" => &mut set.forwarded,
            _ => {
                cx.push(
                    h.span(),
                    format!(
                        "unknown forwarded_headers entry \"{s}\": expected \"x-forwarded-for\", \
                         \"x-forwarded-proto\" or \"forwarded\""
                    ),
                );
                continue;
            }
        };
        if *flag {
            cx.push(
                h.span(),
                format!("duplicate forwarded_headers entry \"{s}\""),
            );
        }
        *flag = true;
    }
    set
}

/// `access_log`: `stderr`, `off`, `syslog` (`/dev/log`), `syslog:IP:PORT`
/// (UDP), or a file path (relative to the config file's directory).
fn access_log(cx: &mut Cx, a: &S<String>, base: &Path) -> AccessLog {
    match a.get_ref().as_str() {
        "stderr" => AccessLog::Stderr,
        "off" => AccessLog::Off,
        "syslog" => AccessLog::Syslog(SyslogTarget::Local),
        "" => {
            cx.push(
                a.span(),
                "access_log must be \"stderr\", \"off\", \"syslog\", \"syslog:IP:PORT\" or a file path",
            );
            AccessLog::Off
        }
        s => match s.strip_prefix("syslog:") {
            Some(dest) => match dest.parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => AccessLog::Syslog(SyslogTarget::Udp(addr)),
                Ok(_) => {
                    cx.push(
                        a.span(),
                        format!("access_log \"{s}\": port 0 is not a syslog server"),
                    );
                    AccessLog::Off
                }
                Err(_) => {
                    cx.push(
                        a.span(),
                        format!(
                            "access_log \"{s}\": expected syslog:IP:PORT or syslog:[IPv6]:PORT \
                             (an address, not a host name)"
                        ),
                    );
                    AccessLog::Off
                }
            },
            None => {
                let p = Path::new(s);
                AccessLog::File(if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                })
            }
        },
    }
}

/// Both files of a certificate and its key, resolved; when both exist the
/// [`Checks::tls`] hook judges them (the error points at the key).
fn cert_key(cx: &mut Cx, cert: &S<String>, key: &S<String>, base: &Path) -> Option<CertKey> {
    let errors = cx.errors.len();
    let cert_path = tls_file(cx, cert, base, "cert");
    let key_path = tls_file(cx, key, base, "key");
    if cx.errors.len() == errors {
        if let Some(check) = cx.checks.tls {
            if let Err(e) = check(&cert_path, &key_path) {
                cx.push(key.span(), e);
                return None;
            }
        }
    }
    Some(CertKey {
        cert: cert_path,
        key: key_path,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;

    #[test]
    fn tls_files_resolve_against_the_config_dir() {
        let dir = std::env::temp_dir().join(format!("xlb-parse-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), "x").unwrap();
        std::fs::write(dir.join("key.pem"), "x").unwrap();
        let file = dir.join("xlb.toml");
        let text = "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                    bind = \"127.0.0.1:8443\"\ndefault_backend = \"web\"\n\
                    tls = { cert = \"cert.pem\", key = \"key.pem\" }\nhttp3 = true\n\
                    http3_0rtt = true\n";
        let c = parse(text, file.to_str().unwrap()).unwrap();
        let tls = c.frontend[0].tls.as_ref().unwrap();
        assert_eq!(tls.cert, dir.join("cert.pem"));
        assert_eq!(tls.key, dir.join("key.pem"));
        assert!(c.frontend[0].http3 && c.frontend[0].http3_0rtt);

        std::fs::remove_file(dir.join("key.pem")).unwrap();
        let e = parse(text, file.to_str().unwrap()).unwrap_err();
        assert_eq!((e.line, e.col), (8, 34), "{e}");
        assert!(e.message.contains("tls key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// XDP forwards an `[[l4]]` VIP's packets before the kernel sees them:
    /// an http3 frontend cannot share a UDP VIP's address and port, a
    /// TCP-only frontend can.
    #[test]
    fn http3_bind_must_not_be_a_udp_l4_vip() {
        let dir = std::env::temp_dir().join(format!("xlb-parse-h3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), "x").unwrap();
        std::fs::write(dir.join("key.pem"), "x").unwrap();
        let file = dir.join("xlb.toml");
        let text = |http3: bool| {
            format!(
                "[[xdp]]\ninterface = \"eth0\"\n\n[[backend]]\nname = \"web\"\n\n\
                 [[l4]]\nname = \"dns\"\nvip = \"198.18.0.100:8443\"\nprotocol = \"udp\"\n\
                 backend = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                 bind = \"198.18.0.100:8443\"\ndefault_backend = \"web\"\n\
                 tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\nhttp3 = {http3}\n"
            )
        };
        assert!(parse(&text(false), file.to_str().unwrap()).is_ok());
        let e = parse(&text(true), file.to_str().unwrap()).unwrap_err();
        assert!(e.message.contains("udp (http3)"), "{e}");
        assert!(e.message.contains("\"dns\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
