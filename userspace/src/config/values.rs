//! Value checks shared by the sections: enums, required keys, names,
//! duplicates, addresses, integers, DSR prefixes, TLS files. Each reports
//! its problem at the value's span and returns something usable.

use std::{
    collections::HashMap,
    net::SocketAddr,
    ops::Range,
    path::{Path, PathBuf},
};

use super::{defaults::MAX_DURATION_MS, errors::Cx, raw::S};

pub(super) fn enum_value<T: Copy>(
    cx: &mut Cx,
    value: Option<&S<String>>,
    key: &str,
    table: &[(&str, T)],
    default: T,
) -> T {
    let Some(v) = value else { return default };
    if let Some((_, t)) = table.iter().find(|(n, _)| *n == v.get_ref().as_str()) {
        return *t;
    }
    let names: Vec<String> = table.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    cx.push(
        v.span(),
        format!(
            "unknown {key} \"{}\": expected one of {}",
            v.get_ref(),
            names.join(", ")
        ),
    );
    default
}

/// A required key: reports `missing KEY in [[SECTION]]` at the table header.
pub(super) fn required<'r, T>(
    cx: &mut Cx,
    value: Option<&'r S<T>>,
    key: &str,
    section: &str,
    table: &Range<usize>,
) -> Option<&'r S<T>> {
    if value.is_none() {
        cx.push(table.clone(), format!("missing {key} in {section}"));
    }
    value
}

/// Names end up in `BACKEND/SERVER` API arguments, CSV and metric labels.
pub(super) fn valid_name(cx: &mut Cx, name: &S<String>, what: &str) -> bool {
    let n = name.get_ref();
    if n.is_empty() {
        cx.push(name.span(), format!("{what} name must not be empty"));
        return false;
    }
    if let Some(c) = n
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:".contains(*c)))
    {
        cx.push(
            name.span(),
            format!("{what} name \"{n}\" contains {c:?}: use letters, digits and - _ . : only"),
        );
        return false;
    }
    true
}

/// Remember `name` and report a duplicate at its second use.
pub(super) fn unique<K: std::hash::Hash + Eq>(
    cx: &mut Cx,
    seen: &mut HashMap<K, Range<usize>>,
    key: K,
    span: Range<usize>,
    what: impl FnOnce() -> String,
) {
    if let Some(first) = seen.get(&key) {
        let line = cx.line_of(first);
        cx.push(
            span,
            format!("duplicate {} (first defined on line {line})", what()),
        );
    } else {
        seen.insert(key, span);
    }
}

pub(super) fn address(cx: &mut Cx, value: &S<String>, what: &str) -> Option<SocketAddr> {
    let s = value.get_ref();
    match s.trim().parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            cx.push(
                value.span(),
                format!("{what} \"{s}\": port 0 is not allowed"),
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            cx.push(
                value.span(),
                format!(
                    "bad address \"{s}\" for {what}: expected IP:PORT \
                     (e.g. 198.18.0.100:80 or [2001:db8::1]:80)"
                ),
            );
            None
        }
    }
}

pub(super) fn int(
    cx: &mut Cx,
    value: Option<&S<i64>>,
    what: &str,
    min: i64,
    max: i64,
    default: i64,
) -> i64 {
    let Some(v) = value else { return default };
    let n = *v.get_ref();
    if n < min || n > max {
        let message = if n < min && min == 1 {
            format!("{what} must be at least 1 (got {n})")
        } else {
            format!("{what} must be between {min} and {max} (got {n})")
        };
        cx.push(v.span(), message);
        return default;
    }
    n
}

/// A duration in milliseconds, from 1 ms to [`MAX_DURATION_MS`].
pub(super) fn duration_ms(cx: &mut Cx, value: Option<&S<i64>>, what: &str, default: u64) -> u64 {
    int(cx, value, what, 1, MAX_DURATION_MS as i64, default as i64) as u64
}

/// `A.B.C.D/N` with N in 8..=24: the DSR source prefix (at least 8 host
/// bits so flows spread).
pub(super) fn prefix_v4(cx: &mut Cx, v: &S<String>) -> Option<(std::net::Ipv4Addr, u8)> {
    let parsed = v.get_ref().split_once('/').and_then(|(a, n)| {
        let a: std::net::Ipv4Addr = a.parse().ok()?;
        let n: u8 = n.parse().ok()?;
        (8..=24).contains(&n).then_some((a, n))
    });
    if parsed.is_none() {
        cx.push(
            v.span(),
            format!(
                "dsr_source_v4 \"{}\" must be an IPv4 prefix A.B.C.D/N with N in 8..=24",
                v.get_ref()
            ),
        );
    }
    parsed
}

/// `ADDR/112`: the DSR IPv6 source prefix (the last 16 bits vary).
pub(super) fn prefix_v6(cx: &mut Cx, v: &S<String>) -> Option<std::net::Ipv6Addr> {
    let parsed = v
        .get_ref()
        .split_once('/')
        .and_then(|(a, n)| (n == "112").then(|| a.parse().ok()).flatten());
    if parsed.is_none() {
        cx.push(
            v.span(),
            format!(
                "dsr_source_v6 \"{}\" must be an IPv6 prefix ADDR/112",
                v.get_ref()
            ),
        );
    }
    parsed
}

pub(super) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

pub(super) fn text_value(value: Option<&S<String>>, default: &str) -> String {
    value.map_or_else(|| default.to_string(), |v| v.get_ref().clone())
}

/// Resolve a TLS file against the config's directory; it must exist.
pub(super) fn tls_file(cx: &mut Cx, value: &S<String>, base: &Path, what: &str) -> PathBuf {
    let given = Path::new(value.get_ref());
    let path = if given.is_absolute() {
        given.to_path_buf()
    } else {
        base.join(given)
    };
    if let Err(e) = std::fs::metadata(&path) {
        cx.push(
            value.span(),
            format!("tls {what} \"{}\": {e}", path.display()),
        );
    } else if !path.is_file() {
        cx.push(
            value.span(),
            format!("tls {what} \"{}\" is not a file", path.display()),
        );
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65537) && is_prime(1_000_003) && is_prime(13) && is_prime(2));
        assert!(!is_prime(65536) && !is_prime(1) && !is_prime(0) && !is_prime(1_000_001));
    }
}
