//! `[[frontend.rule]]`: content switching (`host`, `path_prefix` ->
//! `backend`) and path rewriting (`replace_path`), checked here so that
//! the L7 tier only compiles what is known to be valid.

use std::net::Ipv6Addr;

use regex::Regex;

use super::{
    errors::Cx,
    raw::{RawReplacePath, RawRule, S},
    values::required,
};

/// One rule of a frontend; the first whose conditions all hold applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The request's host, lower case, without a trailing dot; a leading
    /// `*.` matches any name ending in the rest (with its dot).
    pub host: Option<String>,
    /// The path starts with this (byte-wise).
    pub path_prefix: Option<String>,
    /// Where matching requests go instead of `default_backend`.
    pub backend: Option<String>,
    pub replace_path: Option<ReplacePath>,
}

/// `replace_path = { regex = "...", with = "..." }`: a path the regex
/// matches becomes `with`, its `$N` / `${name}` replaced by the groups.
#[derive(Debug, Clone)]
pub struct ReplacePath {
    pub regex: Regex,
    /// Starts with `/`; every group it names exists in `regex`.
    pub with: String,
}

impl PartialEq for ReplacePath {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str() && self.with == other.with
    }
}

/// The rules of `[[frontend]] "frontend"`, in order; problems are reported
/// at the value (or the rule's table when an action is missing).
pub(super) fn convert_rules(
    cx: &mut Cx,
    raw: &[S<RawRule>],
    frontend: &str,
    backend_names: &[&str],
) -> Vec<Rule> {
    let mut out = Vec::with_capacity(raw.len());
    for table in raw {
        let r = table.get_ref();
        if r.backend.is_none() && r.replace_path.is_none() {
            cx.push(
                table.span(),
                format!(
                    "[[frontend.rule]] of [[frontend]] \"{frontend}\" does nothing: \
                     give it a backend or a replace_path"
                ),
            );
        }
        let host = r.host.as_ref().and_then(|h| host(cx, h));
        let path_prefix = r.path_prefix.as_ref().and_then(|p| {
            if p.get_ref().starts_with('/') {
                Some(p.get_ref().clone())
            } else {
                cx.push(
                    p.span(),
                    format!(
                        "path_prefix \"{}\" must start with \"/\" (a request path always does)",
                        p.get_ref()
                    ),
                );
                None
            }
        });
        let backend = r.backend.as_ref().map(|b| {
            if !backend_names.contains(&b.get_ref().as_str()) {
                cx.push(
                    b.span(),
                    format!(
                        "unknown backend \"{}\" in a [[frontend.rule]] of [[frontend]] \"{frontend}\"",
                        b.get_ref()
                    ),
                );
            }
            b.get_ref().clone()
        });
        let replace_path = r.replace_path.as_ref().and_then(|t| replace_path(cx, t));
        out.push(Rule {
            host,
            path_prefix,
            backend,
            replace_path,
        });
    }
    out
}

/// A host name (letters, digits, `-`, `_`, `.`), optionally `*.` then a
/// name, or a bracketed IPv6 address; lower-cased, trailing dot dropped.
fn host(cx: &mut Cx, value: &S<String>) -> Option<String> {
    let given = value.get_ref();
    let lower = given.to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    let name = host.strip_prefix("*.").unwrap_or(host);
    let problem = if host.is_empty() {
        Some("is empty".to_string())
    } else if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok());
        (!ok).then(|| "is not a bracketed IPv6 address".to_string())
    } else if host.contains(':') {
        Some("has a port: rules compare the host without the request's port".to_string())
    } else if name.is_empty() || name.starts_with('.') || name.contains("..") {
        Some("has an empty label".to_string())
    } else {
        name.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
            .map(|c| {
                format!(
                    "contains {c:?}: a host is letters, digits, - _ . (with an optional \
                     leading \"*.\")"
                )
            })
    };
    match problem {
        Some(p) => {
            cx.push(value.span(), format!("rule host \"{given}\" {p}"));
            None
        }
        None => Some(host.to_string()),
    }
}

fn replace_path(cx: &mut Cx, table: &S<RawReplacePath>) -> Option<ReplacePath> {
    let t = table.get_ref();
    let section = "replace_path";
    let regex = required(cx, t.regex.as_ref(), "regex", section, &table.span());
    let with = required(cx, t.with.as_ref(), "with", section, &table.span());
    let regex = regex.and_then(|r| match Regex::new(r.get_ref()) {
        Ok(re) => Some(re),
        Err(e) => {
            cx.push(
                r.span(),
                format!("bad regex \"{}\": {}", r.get_ref(), regex_problem(&e)),
            );
            None
        }
    });
    let with = with?;
    if let Err(p) = check_with(with.get_ref(), regex.as_ref()) {
        cx.push(
            with.span(),
            format!("replace_path with \"{}\" {p}", with.get_ref()),
        );
        return None;
    }
    Some(ReplacePath {
        regex: regex?,
        with: with.get_ref().clone(),
    })
}

/// The regex crate's message is several lines (the pattern, a caret, the
/// error); the config error is one line, so only the error is kept.
fn regex_problem(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_string,
        )
}

/// What is wrong with a `with`: it must give a path (start with `/`, only
/// visible ASCII, no `?` or `#`: the query is kept as it came), and every
/// group it names must exist in `regex` (the regex crate would put
/// nothing there, silently).
fn check_with(with: &str, regex: Option<&Regex>) -> Result<(), String> {
    if !with.starts_with('/') {
        return Err("must start with \"/\" (it is the new path)".into());
    }
    if let Some(c) = with
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '?' || *c == '#')
    {
        return Err(format!(
            "contains {c:?}: the new path is visible ASCII without ? or # (the query is kept)"
        ));
    }
    let Some(regex) = regex else { return Ok(()) };
    for group in group_refs(with)? {
        let known = match group.parse::<usize>() {
            Ok(n) => n < regex.captures_len(),
            Err(_) => regex.capture_names().flatten().any(|n| n == group),
        };
        if !known {
            return Err(format!(
                "names group ${group}, which the regex does not have (write ${{1}}x, not $1x, \
                 when a letter follows)"
            ));
        }
    }
    Ok(())
}

/// The group names and numbers `with` refers to, read the way the regex
/// crate's `Captures::expand` reads them: `$$` is a `$`, `${name}`, or
/// `$name` with the longest run of letters, digits and `_`.
fn group_refs(with: &str) -> Result<Vec<&str>, String> {
    let mut refs = Vec::new();
    let mut rest = with;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let Some(end) = braced.find('}') else {
                return Err("has a \"${\" without its \"}\"".into());
            };
            refs.push(&braced[..end]);
            rest = &braced[end + 1..];
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if end == 0 {
                return Err("has a \"$\" that names no group (write $$ for a dollar sign)".into());
            }
            refs.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_refs_read_like_the_regex_crate() {
        assert_eq!(group_refs("/v2/$1").unwrap(), ["1"]);
        assert_eq!(group_refs("/${1}x/$name/$$/a").unwrap(), ["1", "name"]);
        assert_eq!(group_refs("/$1x").unwrap(), ["1x"]);
        assert!(group_refs("/a$").is_err());
        assert!(group_refs("/${1").is_err());
    }

    #[test]
    fn with_is_checked_against_the_regex() {
        let re = Regex::new("^/api/(?P<rest>.*)$").unwrap();
        assert!(check_with("/v2/$1", Some(&re)).is_ok());
        assert!(check_with("/v2/${rest}", Some(&re)).is_ok());
        assert!(check_with("/v2/$0", Some(&re)).is_ok());
        assert!(check_with("/v2/$2", Some(&re)).is_err());
        assert!(check_with("/v2/$1x", Some(&re)).is_err());
        assert!(check_with("v2/$1", Some(&re)).is_err());
        assert!(check_with("/v2?a=1", Some(&re)).is_err());
        assert!(check_with("/v 2", Some(&re)).is_err());
    }
}
