//! A frontend's `[[frontend.rule]]`s at request time: the first rule whose
//! `host` and `path_prefix` match picks the request's backend (a
//! [`Route`]) and may rewrite its path (`replace_path`). The config side
//! (`config/rules.rs`) has already checked names, regexes and `with`.
//!
//! A frontend without rules never gets here: the proxy checks
//! [`Rules::is_empty`] and keeps [`Route::DEFAULT`].

use std::{collections::HashMap, sync::Arc};

use anyhow::Context as _;
use http::{HeaderMap, Uri, header, uri::PathAndQuery};
use tracing::debug;

use super::proxy::Backend;
use crate::{
    api::{HttpMetrics, RouteMetrics},
    config,
};

/// Which backend serves a request: the frontend's `default_backend`, or
/// the one of the rule that matched it. Small and `Copy`, so the access
/// log entry carries it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Route(u32);

impl Route {
    pub const DEFAULT: Route = Route(0);
}

/// A rule's backend, with the metrics its requests are counted on.
pub struct Target {
    pub backend: Arc<Backend>,
    pub metrics: RouteMetrics,
}

/// The rules of one frontend, in order.
#[derive(Default)]
pub struct Rules {
    list: Box<[Rule]>,
}

struct Rule {
    host: Option<Host>,
    path_prefix: Option<Box<str>>,
    target: Option<Target>,
    rewrite: Option<config::ReplacePath>,
}

/// A `host` condition, lower case.
enum Host {
    Exact(Box<str>),
    /// `*.example.com` as `.example.com`: a longer name ending in it.
    Suffix(Box<str>),
}

impl Rules {
    /// The rules of frontend `frontend` with their backends looked up in
    /// `backends` and their metrics in `metrics`.
    pub fn build(
        rules: &[config::Rule],
        frontend: &str,
        backends: &HashMap<&str, Arc<Backend>>,
        metrics: &HttpMetrics,
    ) -> anyhow::Result<Rules> {
        let list = rules
            .iter()
            .map(|r| {
                let target = r
                    .backend
                    .as_deref()
                    .map(|name| {
                        let backend = backends.get(name).cloned().with_context(|| {
                            format!("frontend {frontend}: rule to unknown backend {name}")
                        })?;
                        let metrics = metrics.route(frontend, name);
                        anyhow::Ok(Target { backend, metrics })
                    })
                    .transpose()?;
                let host = r.host.as_deref().map(|h| match h.strip_prefix('*') {
                    Some(suffix) => Host::Suffix(suffix.into()),
                    None => Host::Exact(h.into()),
                });
                Ok(Rule {
                    host,
                    path_prefix: r.path_prefix.as_deref().map(Into::into),
                    target,
                    rewrite: r.replace_path.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Rules { list })
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The backend of `route`'s rule; `None` for [`Route::DEFAULT`].
    #[inline]
    pub fn target(&self, route: Route) -> Option<&Target> {
        let i = route.0.checked_sub(1)? as usize;
        self.list.get(i)?.target.as_ref()
    }

    /// Applies the first rule that matches a request (its URI and
    /// headers): rewrites the path of `uri` if the rule says so (origin
    /// paths only: not a `CONNECT` authority or `*`), and returns the
    /// route of the request's backend.
    pub fn apply(&self, uri: &mut Uri, headers: &HeaderMap) -> Route {
        let host = request_host(uri, headers);
        let path = uri.path();
        let Some(i) = self.list.iter().position(|r| r.matches(host, path)) else {
            return Route::DEFAULT;
        };
        let rule = &self.list[i];
        if let Some(rewrite) = &rule.rewrite {
            if path.starts_with('/') {
                if let Some(new) = rewritten(uri, rewrite) {
                    *uri = new;
                }
            }
        }
        if rule.target.is_some() {
            Route(i as u32 + 1)
        } else {
            Route::DEFAULT
        }
    }
}

impl Rule {
    fn matches(&self, host: Option<&[u8]>, path: &str) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(Host::Exact(want)), Some(h)) => h.eq_ignore_ascii_case(want.as_bytes()),
            (Some(Host::Suffix(suffix)), Some(h)) => {
                h.len() > suffix.len()
                    && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
            }
        };
        host_ok
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.as_bytes().starts_with(p.as_bytes()))
    }
}

/// The host a request is for, without port and trailing dot: the URI's
/// authority (HTTP/2 and HTTP/3 `:authority`, an absolute-form HTTP/1.1
/// target), else the `Host` header.
fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a [u8]> {
    let host = match uri.authority() {
        Some(a) => a.host().as_bytes(),
        None => without_port(headers.get(header::HOST)?.as_bytes()),
    };
    Some(host.strip_suffix(b".").unwrap_or(host))
}

/// `name:port` -> `name`, `[v6]:port` -> `[v6]`.
fn without_port(host: &[u8]) -> &[u8] {
    let end = if host.first() == Some(&b'[') {
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter().position(|&b| b == b':').unwrap_or(host.len())
    };
    &host[..end]
}

/// `uri` with its path replaced as `rewrite` says, the query kept; `None`
/// when the regex does not match (or the result is no valid URI, which
/// the config checks rule out).
fn rewritten(uri: &Uri, rewrite: &config::ReplacePath) -> Option<Uri> {
    let caps = rewrite.regex.captures(uri.path())?;
    let query = uri.query();
    let mut target = String::with_capacity(rewrite.with.len() + uri.path().len() + 16);
    caps.expand(&rewrite.with, &mut target);
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = match PathAndQuery::try_from(target) {
        Ok(p) => Some(p),
        Err(e) => {
            debug!("replace_path gave no valid path ({e}); the path is kept");
            return None;
        }
    };
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn replace(regex: &str, with: &str) -> config::ReplacePath {
        config::ReplacePath {
            regex: Regex::new(regex).unwrap(),
            with: with.into(),
        }
    }

    fn rule(host: Option<&str>, prefix: Option<&str>, rewrite: Option<(&str, &str)>) -> Rule {
        Rule {
            host: host.map(|h| match h.strip_prefix('*') {
                Some(s) => Host::Suffix(s.into()),
                None => Host::Exact(h.into()),
            }),
            path_prefix: prefix.map(Into::into),
            target: None,
            rewrite: rewrite.map(|(re, with)| replace(re, with)),
        }
    }

    fn headers(host: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = host {
            h.insert(header::HOST, v.parse().unwrap());
        }
        h
    }

    /// The index of the first rule matching `uri` with `Host: host`.
    fn first(rules: &[Rule], uri: &str, host: Option<&str>) -> Option<usize> {
        let uri: Uri = uri.parse().unwrap();
        let h = headers(host);
        let host = request_host(&uri, &h);
        rules.iter().position(|r| r.matches(host, uri.path()))
    }

    #[test]
    fn host_exact_ignores_case_port_and_trailing_dot() {
        let rules = [rule(Some("api.example.com"), None, None)];
        for host in [
            "api.example.com",
            "API.Example.COM",
            "api.example.com:8080",
            "api.example.com.",
            "api.example.com.:443",
        ] {
            assert_eq!(first(&rules, "/", Some(host)), Some(0), "{host}");
        }
        for host in ["example.com", "xapi.example.com", "api.example.com.evil"] {
            assert_eq!(first(&rules, "/", Some(host)), None, "{host}");
        }
        // No host at all: a host rule cannot match.
        assert_eq!(first(&rules, "/", None), None);
    }

    #[test]
    fn host_from_the_authority_first() {
        let rules = [rule(Some("api.example.com"), None, None)];
        // HTTP/2 and HTTP/3 (:authority), absolute-form HTTP/1.1.
        assert_eq!(
            first(&rules, "https://API.example.com:8443/x", Some("www")),
            Some(0)
        );
        assert_eq!(
            first(&rules, "https://www.example.com/x", Some("api.example.com")),
            None
        );
    }

    #[test]
    fn host_wildcard_needs_a_label_before_the_suffix() {
        let rules = [rule(Some("*.example.com"), None, None)];
        assert_eq!(first(&rules, "/", Some("a.example.com")), Some(0));
        assert_eq!(first(&rules, "/", Some("a.b.EXAMPLE.com:80")), Some(0));
        assert_eq!(first(&rules, "/", Some("example.com")), None);
        assert_eq!(first(&rules, "/", Some(".example.com")), None);
        assert_eq!(first(&rules, "/", Some("aexample.com")), None);
    }

    #[test]
    fn ipv6_host_keeps_its_brackets() {
        let rules = [rule(Some("[2001:db8::1]"), None, None)];
        assert_eq!(first(&rules, "/", Some("[2001:db8::1]:8080")), Some(0));
        assert_eq!(first(&rules, "/", Some("[2001:db8::1]")), Some(0));
        assert_eq!(first(&rules, "/", Some("[2001:db8::2]")), None);
    }

    #[test]
    fn prefix_is_bytewise_and_case_sensitive_and_ignores_the_query() {
        let rules = [rule(None, Some("/api/"), None)];
        assert_eq!(first(&rules, "/api/users?x=1", None), Some(0));
        assert_eq!(first(&rules, "/api/", None), Some(0));
        assert_eq!(first(&rules, "/api", None), None);
        assert_eq!(first(&rules, "/API/users", None), None);
        assert_eq!(first(&rules, "/x?/api/", None), None);
    }

    #[test]
    fn first_match_wins_and_unmatched_falls_through() {
        let rules = [
            rule(Some("api.example.com"), Some("/v1/"), None),
            rule(None, Some("/v1/"), None),
            rule(Some("api.example.com"), None, None),
        ];
        assert_eq!(first(&rules, "/v1/a", Some("api.example.com")), Some(0));
        assert_eq!(first(&rules, "/v1/a", Some("www.example.com")), Some(1));
        assert_eq!(first(&rules, "/v2/a", Some("api.example.com")), Some(2));
        assert_eq!(first(&rules, "/v2/a", Some("www.example.com")), None);
        // No condition: every request.
        assert_eq!(first(&[rule(None, None, None)], "*", None), Some(0));
    }

    fn apply(rules: Vec<Rule>, uri: &str, host: Option<&str>) -> (Route, String) {
        let rules = Rules { list: rules.into() };
        let mut uri: Uri = uri.parse().unwrap();
        let route = rules.apply(&mut uri, &headers(host));
        (route, uri.to_string())
    }

    #[test]
    fn rewrite_expands_groups_and_keeps_the_query() {
        let api = || rule(None, Some("/api/"), Some(("^/api/(.*)$", "/v2/$1")));
        assert_eq!(
            apply(vec![api()], "/api/a/b?x=1&y", None).1,
            "/v2/a/b?x=1&y"
        );
        assert_eq!(apply(vec![api()], "/api/", None).1, "/v2/");
        // HTTP/2: scheme and authority stay.
        assert_eq!(
            apply(vec![api()], "https://h.example/api/q?z", None).1,
            "https://h.example/v2/q?z"
        );
        // Named groups, and the whole match.
        let named = rule(None, None, Some(("^/u/(?P<id>[0-9]+)", "/users/${id}/x")));
        assert_eq!(apply(vec![named], "/u/42/rest", None).1, "/users/42/x");
        // The regex does not match: the path stays.
        let strict = rule(None, None, Some(("^/only$", "/other")));
        assert_eq!(apply(vec![strict], "/else?q", None).1, "/else?q");
    }

    #[test]
    fn only_the_first_matching_rule_rewrites_and_routes() {
        let rules = || {
            vec![
                rule(None, Some("/a/"), Some(("^/a/(.*)$", "/b/$1"))),
                rule(None, Some("/b/"), Some(("^/b/(.*)$", "/c/$1"))),
            ]
        };
        assert_eq!(apply(rules(), "/a/x", None).1, "/b/x");
        assert_eq!(apply(rules(), "/b/x", None).1, "/c/x");
        // A rule without a backend keeps the default route.
        assert_eq!(apply(rules(), "/a/x", None).0, Route::DEFAULT);
    }

    #[test]
    fn connect_authority_is_not_rewritten() {
        let every = rule(None, None, Some(("^(.*)$", "/x$1")));
        let (_, uri) = apply(vec![every], "198.18.1.11:8080", None);
        assert_eq!(uri, "198.18.1.11:8080");
    }

    #[test]
    fn default_route_has_no_target() {
        let rules = Rules::default();
        assert!(rules.is_empty());
        assert!(rules.target(Route::DEFAULT).is_none());
        assert!(rules.target(Route(7)).is_none());
    }

    /// Built from the config: each rule's route leads to its backend.
    #[test]
    fn built_rules_route_to_their_backends() {
        let backend = |name: &str| {
            Arc::new(Backend {
                name: name.into(),
                settings: config::BackendL7::default(),
                balancer: super::super::balance::Balancer::new(
                    name,
                    config::Balance::RoundRobin,
                    13,
                ),
                tls: None,
            })
        };
        let backends = HashMap::from([("web", backend("web")), ("api", backend("api"))]);
        let conf = |host: Option<&str>, prefix: Option<&str>, backend: Option<&str>| config::Rule {
            host: host.map(Into::into),
            path_prefix: prefix.map(Into::into),
            backend: backend.map(Into::into),
            replace_path: backend.is_none().then(|| replace("^/old/(.*)", "/new/$1")),
        };
        let rules = Rules::build(
            &[
                conf(Some("*.api.example"), None, Some("api")),
                conf(None, Some("/old/"), None),
                conf(None, Some("/static/"), Some("web")),
            ],
            "fe",
            &backends,
            &HttpMetrics::default(),
        )
        .unwrap();
        let route = |uri: &str, host: &str| {
            let mut uri: Uri = uri.parse().unwrap();
            let r = rules.apply(&mut uri, &headers(Some(host)));
            (
                rules.target(r).map(|t| t.backend.name.as_str()),
                uri.to_string(),
            )
        };
        assert_eq!(route("/x", "v1.API.example"), (Some("api"), "/x".into()));
        assert_eq!(route("/old/a?b", "www"), (None, "/new/a?b".into()));
        assert_eq!(route("/static/s", "www"), (Some("web"), "/static/s".into()));
        assert_eq!(route("/other", "api.example"), (None, "/other".into()));
        let missing = [conf(None, None, Some("gone"))];
        assert!(Rules::build(&missing, "fe", &backends, &HttpMetrics::default()).is_err());
    }
}
