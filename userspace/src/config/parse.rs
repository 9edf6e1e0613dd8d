//! TOML -> [`Config`] with `FILE:LINE:COL: message` errors.
//!
//! Two stages:
//!
//! 1. serde + toml into the `Raw*` structs (`raw.rs`). Every struct denies unknown
//!    keys, and every value that a later check may complain about is wrapped
//!    in [`toml::Spanned`] so its byte position survives. Optional and
//!    required keys alike are `Option`s here, so that a missing key is our
//!    own error (pointing at the table header) rather than serde's.
//! 2. Conversion to the plain types plus the semantic checks (addresses,
//!    references between sections, duplicates, ranges, mode combinations).
//!    All problems found are collected; the one earliest in the file is
//!    returned, so the user fixes errors top to bottom. One module per
//!    section (`global.rs`, `xdp.rs`, `backends.rs`, `l4.rs`,
//!    `frontends.rs`); shared value checks in `values.rs`, positions and
//!    error collection in `errors.rs`.
//!
//! Relative `tls` `cert`/`key` paths are resolved against the directory of
//! the config file and must exist; the resolved path is what `Config` holds.

use std::path::Path;

use super::{
    Config,
    backends::convert_backends,
    errors::{ConfigError, Cx},
    frontends::convert_frontends,
    global::convert_global,
    l4::convert_l4,
    raw::RawConfig,
    xdp::convert_xdp,
};

/// Checks that need more than the config text, run by [`load_with`] and
/// [`parse_with`] at the position of the value they judge. The config
/// module knows no TLS library; the L7 tier supplies them
/// (`xlb::l7::config_checks`).
#[derive(Default, Clone, Copy)]
pub struct Checks {
    /// Called with an existing cert and key file of a frontend's `tls`;
    /// an `Err` (e.g. the key does not match the certificate) is reported
    /// at the `key` value.
    pub tls: Option<TlsCheck>,
    /// Called with an existing `tls_ca` file of a backend; an `Err` (no
    /// usable PEM certificate) is reported at the `tls_ca` value.
    pub ca: Option<CaCheck>,
}

/// Judges a certificate file and its key file; `Err` is the message.
pub type TlsCheck = fn(cert: &Path, key: &Path) -> Result<(), String>;

/// Judges a CA certificate file; `Err` is the message.
pub type CaCheck = fn(ca: &Path) -> Result<(), String>;

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &Checks::default())
}

/// [`load`] plus `checks`.
pub fn load_with(path: &Path, checks: &Checks) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 1,
        col: 1,
        message: format!("cannot read: {e}"),
    })?;
    parse_with(&text, &file, checks)
}

/// Parse and validate a config. `file` names the file in errors; it is
/// also the base for relative TLS paths.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_with(text, file, &Checks::default())
}

/// [`parse`] plus `checks`.
pub fn parse_with(text: &str, file: &str, checks: &Checks) -> Result<Config, ConfigError> {
    let mut cx = Cx::new(text, file);
    cx.checks = *checks;
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = toml_message(e.message(), text, span.start);
            return Err(cx.error(span, message));
        }
    };
    let config = convert(&mut cx, raw);
    match cx.first_error() {
        Some(e) => Err(e),
        None => Ok(config),
    }
}

/// toml/serde phrase things in serde's words; the contract speaks of keys.
/// Some TOML syntax errors come with no words at all (a value missing at
/// the end of the file, a control character in a comment): those say what
/// is at the error's position, `at`.
fn toml_message(message: &str, text: &str, at: usize) -> String {
    let message = message.trim();
    if message.is_empty() {
        return match text.get(at..).map(|rest| rest.chars().next()) {
            Some(None) => "invalid TOML: unexpected end of file".into(),
            Some(Some(c)) => format!("invalid TOML at {c:?}"),
            None => "invalid TOML".into(),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field") {
        format!("unknown key{rest}")
    } else {
        message
            .replace("expected i64", "expected an integer")
            .replace("expected a boolean", "expected true or false")
    }
}

fn convert(cx: &mut Cx, raw: RawConfig) -> Config {
    let global = convert_global(cx, raw.global.as_ref());
    let xdp = convert_xdp(cx, &raw.xdp);
    let backend = convert_backends(cx, &raw.backend);
    let l4 = convert_l4(cx, &raw, &backend);
    let frontend = convert_frontends(cx, &raw, &l4);
    Config {
        global,
        xdp,
        backend,
        l4,
        frontend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        AccessLog, BackendL7, ForwardedHeaders, SyslogTarget, UpstreamProto, UpstreamTls,
    };

    const L7: &str = "[[backend]]\nname = \"web\"\n\n[[frontend]]\nname = \"f\"\n\
                      bind = \"127.0.0.1:8080\"\ndefault_backend = \"web\"\n";

    /// Found by the lab's parsers_fuzz: TOML syntax errors toml gives no
    /// message for still get one.
    #[test]
    fn wordless_toml_errors_get_a_message() {
        for (text, want) in [
            (
                "[[backend]]\nname = ",
                "2:8: invalid TOML: unexpected end of file",
            ),
            ("# a comment \u{12}\n", "1:13: invalid TOML at '\\u{12}'"),
        ] {
            let e = parse(text, "f.toml").unwrap_err();
            assert_eq!(e.to_string(), format!("f.toml:{want}"), "{text:?}");
        }
    }

    #[test]
    fn l7_defaults() {
        let c = parse(L7, "/etc/xlb/l7.toml").unwrap();
        assert_eq!(c.backend[0].l7, BackendL7::default());
        assert_eq!(c.backend[0].l7.retries, 2);
        assert_eq!(c.backend[0].l7.proto, UpstreamProto::H1);
        let f = &c.frontend[0];
        assert!(!f.h2c);
        // The README's documented defaults, as numbers.
        let l7 = &c.backend[0].l7;
        assert_eq!(
            (l7.connect_timeout_ms, l7.response_timeout_ms),
            (3000, 30000)
        );
        assert_eq!(f.compression_min_bytes, 1024);
        assert_eq!(f.header_timeout_ms, 10_000);
        assert_eq!(f.idle_timeout_ms, 60_000);
        assert_eq!(f.max_header_bytes, 32_768);
        assert_eq!(f.max_headers, 100);
        assert_eq!(f.access_log, AccessLog::Stderr);
    }

    #[test]
    fn forwarded_headers_key() {
        let with = |list: &str| {
            L7.replace(
                "default_backend = \"web\"\n",
                &format!("default_backend = \"web\"\nforwarded_headers = {list}\n"),
            )
        };
        let set = |list: &str| {
            parse(&with(list), "/etc/xlb/l7.toml")
                .unwrap_or_else(|e| panic!("{e}"))
                .frontend[0]
                .forwarded_headers
        };
        // Absent: all three, as before the key.
        let c = parse(L7, "/etc/xlb/l7.toml").unwrap();
        assert_eq!(c.frontend[0].forwarded_headers, ForwardedHeaders::ALL);
        assert_eq!(
            set(r#"["forwarded", "X-Forwarded-Proto", "x-forwarded-for"]"#),
            ForwardedHeaders::ALL
        );
        assert_eq!(set("[]"), ForwardedHeaders::NONE);
        assert_eq!(
            set(r#"["X-Forwarded-For"]"#),
            ForwardedHeaders {
                x_forwarded_for: true,
                ..ForwardedHeaders::NONE
            }
        );
        assert_eq!(
            set(r#"["forwarded"]"#),
            ForwardedHeaders {
                forwarded: true,
                ..ForwardedHeaders::NONE
            }
        );
        // Unknown names and repeats (in any case) point at the entry.
        let e = parse(&with(r#"["x-forwarded-for", "via"]"#), "t.toml").unwrap_err();
        assert_eq!((e.line, e.col), (8, 41), "{e}");
        assert!(
            e.message
                .contains("unknown forwarded_headers entry \"via\""),
            "{e}"
        );
        let e = parse(&with(r#"["Forwarded", "forwarded"]"#), "t.toml").unwrap_err();
        assert_eq!((e.line, e.col), (8, 35), "{e}");
        assert!(
            e.message.contains("duplicate forwarded_headers entry"),
            "{e}"
        );
        // Not a list of strings: serde's type error.
        assert!(parse(&with(r#""x-forwarded-for""#), "t.toml").is_err());
    }

    #[test]
    fn upstream_tls_and_connect_keys() {
        let c = parse(L7, "/etc/xlb/l7.toml").unwrap();
        assert_eq!(c.backend[0].l7.tls, None);
        assert!(!c.frontend[0].connect);
        let text = L7
            .replace(
                "name = \"web\"\n",
                "name = \"web\"\ntls = true\ntls_ca = \"ca.pem\"\ntls_server_name = \"web.example\"\n",
            )
            .replace(
                "default_backend = \"web\"\n",
                "default_backend = \"web\"\nconnect = true\n",
            );
        let dir = std::env::temp_dir().join(format!("xlb-parse-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), "x").unwrap();
        let file = dir.join("xlb.toml");
        let c = parse(&text, file.to_str().unwrap()).unwrap();
        assert!(c.frontend[0].connect);
        assert_eq!(
            c.backend[0].l7.tls,
            Some(UpstreamTls {
                ca: Some(dir.join("ca.pem")),
                server_name: Some("web.example".into()),
                verify: true,
            })
        );
        fn refuse(_ca: &Path) -> Result<(), String> {
            Err("no CERTIFICATE block found".into())
        }
        let checks = Checks {
            tls: None,
            ca: Some(refuse),
        };
        let e = parse_with(&text, file.to_str().unwrap(), &checks).unwrap_err();
        assert_eq!((e.line, e.col), (4, 10), "{e}");
        assert!(e.message.contains("no CERTIFICATE"), "{e}");
        let e = parse(&text.replace("ca.pem", "gone.pem"), file.to_str().unwrap()).unwrap_err();
        assert_eq!((e.line, e.col), (4, 10), "{e}");
        assert!(
            e.message.contains("tls ca") && e.message.contains("gone.pem"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();

        let insecure = L7.replace(
            "name = \"web\"\n",
            "name = \"web\"\ntls = true\ntls_verify = false\n",
        );
        let tls = parse(&insecure, "f").unwrap().backend[0]
            .l7
            .tls
            .clone()
            .unwrap();
        assert!(!tls.verify && tls.ca.is_none() && tls.server_name.is_none());
        let e = parse(
            &L7.replace("name = \"web\"\n", "name = \"web\"\ntls_verify = false\n"),
            "f",
        )
        .unwrap_err();
        assert!(e.message.contains("tls_verify needs tls = true"), "{e}");
        let e = parse(
            &L7.replace(
                "name = \"web\"\n",
                "name = \"web\"\ntls = true\ntls_server_name = \"a b\"\n",
            ),
            "f",
        )
        .unwrap_err();
        assert!(e.message.contains("not a DNS name"), "{e}");
    }

    #[test]
    fn l7_keys_and_their_errors() {
        let text = L7
            .replace(
                "name = \"web\"\n",
                "name = \"web\"\nproto = \"h2\"\nretries = 0\nconnect_timeout_ms = 5\nresponse_timeout_ms = 6\n",
            )
            .replace(
                "default_backend = \"web\"\n",
                "default_backend = \"web\"\nh2c = true\naccess_log = \"logs/a.log\"\nmax_headers = 7\n",
            );
        let c = parse(&text, "/etc/xlb/l7.toml").unwrap();
        let b = &c.backend[0].l7;
        assert_eq!(
            (
                b.proto,
                b.retries,
                b.connect_timeout_ms,
                b.response_timeout_ms
            ),
            (UpstreamProto::H2, 0, 5, 6)
        );
        let f = &c.frontend[0];
        assert!(f.h2c);
        assert_eq!(f.max_headers, 7);
        assert_eq!(f.access_log, AccessLog::File("/etc/xlb/logs/a.log".into()));
        assert_eq!(
            parse(
                &L7.replace("access_log", "x").replace(
                    "default_backend = \"web\"\n",
                    "default_backend = \"web\"\naccess_log = \"off\"\n"
                ),
                "f"
            )
            .unwrap()
            .frontend[0]
                .access_log,
            AccessLog::Off
        );

        for (bad, want) in [
            ("proto = \"h3\"", "unknown proto \"h3\""),
            ("retries = 11", "retries must be between 0 and 10"),
            (
                "connect_timeout_ms = 0",
                "connect_timeout_ms must be at least 1",
            ),
        ] {
            let text = L7.replace("name = \"web\"\n", &format!("name = \"web\"\n{bad}\n"));
            let e = parse(&text, "f").unwrap_err();
            assert_eq!(e.line, 3, "{e}");
            assert!(e.message.contains(want), "{e}");
        }
        for (bad, want) in [
            (
                "max_header_bytes = 100",
                "max_header_bytes must be between 8192",
            ),
            (
                "header_timeout_ms = 0",
                "header_timeout_ms must be at least 1",
            ),
            ("access_log = \"\"", "access_log must be"),
        ] {
            let text = format!("{L7}{bad}\n");
            let e = parse(&text, "f").unwrap_err();
            assert_eq!(e.line, 8, "{e}");
            assert!(e.message.contains(want), "{e}");
        }
    }

    #[test]
    fn access_log_syslog() {
        let log = |v: &str| parse(&format!("{L7}access_log = \"{v}\"\n"), "/etc/xlb/l7.toml");
        assert_eq!(
            log("syslog").unwrap().frontend[0].access_log,
            AccessLog::Syslog(SyslogTarget::Local)
        );
        assert_eq!(
            log("syslog:198.18.1.11:5514").unwrap().frontend[0].access_log,
            AccessLog::Syslog(SyslogTarget::Udp("198.18.1.11:5514".parse().unwrap()))
        );
        assert_eq!(
            log("syslog:[2001:db8::1]:514").unwrap().frontend[0].access_log,
            AccessLog::Syslog(SyslogTarget::Udp("[2001:db8::1]:514".parse().unwrap()))
        );
        // Not a syslog target: a file named like one.
        assert_eq!(
            log("./syslog").unwrap().frontend[0].access_log,
            AccessLog::File("/etc/xlb/./syslog".into())
        );
        for (bad, want) in [
            ("syslog:", "expected syslog:IP:PORT or syslog:[IPv6]:PORT"),
            ("syslog:logs.example:514", "not a host name"),
            ("syslog:198.18.1.11", "expected syslog:IP:PORT"),
            ("syslog:2001:db8::1:514", "syslog:[IPv6]:PORT"),
            ("syslog:198.18.1.11:0", "port 0"),
            ("syslog:198.18.1.11:70000", "expected syslog:IP:PORT"),
        ] {
            let e = log(bad).unwrap_err();
            assert_eq!((e.line, e.col), (8, 14), "{bad}: {e}");
            assert!(e.message.contains(want), "{bad}: {e}");
            assert!(e.to_string().starts_with("/etc/xlb/l7.toml:8:14: "), "{e}");
        }
    }

    #[test]
    fn tls_check_hook_reports_at_the_key() {
        let dir = std::env::temp_dir().join(format!("xlb-parse-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.pem", "a.key", "b.pem", "b.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let file = dir.join("xlb.toml");
        let text = format!(
            "{L7}tls = {{ cert = \"a.pem\", key = \"a.key\", sni = [{{ cert = \"b.pem\", key = \"b.key\" }}] }}\n"
        );
        fn only_a(_cert: &Path, key: &Path) -> Result<(), String> {
            if key.ends_with("a.key") {
                Ok(())
            } else {
                Err(format!("{} is bad", key.display()))
            }
        }
        let checks = Checks {
            tls: Some(only_a),
            ca: None,
        };
        let e = parse_with(&text, file.to_str().unwrap(), &checks).unwrap_err();
        assert_eq!((e.line, e.col), (8, 71), "{e}");
        assert!(e.message.ends_with("b.key is bad"), "{e}");
        // Without the hook the files only need to exist.
        let c = parse(&text, file.to_str().unwrap()).unwrap();
        let tls = c.frontend[0].tls.as_ref().unwrap();
        assert_eq!(tls.sni[0].cert, dir.join("b.pem"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
