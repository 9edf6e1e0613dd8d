//! The raw, positioned form of the config file: what serde + toml
//! deserialize into. Every struct denies unknown keys; values a later
//! check may complain about keep their span. Required keys are `Option`s
//! too, so a missing key is our own error at the table header.

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) global: Option<S<RawGlobal>>,
    #[serde(default)]
    pub(super) xdp: Vec<S<RawXdp>>,
    #[serde(default)]
    pub(super) backend: Vec<S<RawBackend>>,
    #[serde(default)]
    pub(super) l4: Vec<S<RawL4>>,
    #[serde(default)]
    pub(super) frontend: Vec<S<RawFrontend>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub(super) api_socket: Option<S<String>>,
    pub(super) metrics: Option<S<String>>,
    pub(super) bpf_pin_path: Option<S<String>>,
    pub(super) maglev_size: Option<S<i64>>,
    pub(super) dsr_source_v4: Option<S<String>>,
    pub(super) dsr_source_v6: Option<S<String>>,
    pub(super) flood_new_flows_per_sec: Option<S<i64>>,
    pub(super) l7_threads: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXdp {
    pub(super) interface: Option<S<String>>,
    pub(super) mode: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub(super) name: Option<S<String>>,
    pub(super) balance: Option<S<String>>,
    pub(super) health: Option<S<RawHealth>>,
    #[serde(default)]
    pub(super) server: Vec<S<RawServer>>,
    pub(super) proto: Option<S<String>>,
    pub(super) retries: Option<S<i64>>,
    pub(super) connect_timeout_ms: Option<S<i64>>,
    pub(super) response_timeout_ms: Option<S<i64>>,
    pub(super) tls: Option<S<bool>>,
    pub(super) tls_ca: Option<S<String>>,
    pub(super) tls_server_name: Option<S<String>>,
    pub(super) tls_verify: Option<S<bool>>,
    pub(super) send_proxy: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) check: Option<S<String>>,
    pub(super) path: Option<S<String>>,
    pub(super) interval_ms: Option<S<i64>>,
    pub(super) timeout_ms: Option<S<i64>>,
    pub(super) rise: Option<S<i64>>,
    pub(super) fall: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) name: Option<S<String>>,
    pub(super) address: Option<S<String>>,
    pub(super) weight: Option<S<i64>>,
    pub(super) quic_server_id: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawL4 {
    pub(super) name: Option<S<String>>,
    pub(super) vip: Option<S<String>>,
    pub(super) protocol: Option<S<String>>,
    pub(super) backend: Option<S<String>>,
    pub(super) forward: Option<S<String>>,
    pub(super) steering: Option<S<String>>,
    pub(super) udp_idle_timeout_ms: Option<S<i64>>,
    pub(super) quic_sid_offset: Option<S<i64>>,
    pub(super) quic_sid_len: Option<S<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFrontend {
    pub(super) name: Option<S<String>>,
    pub(super) bind: Option<S<String>>,
    pub(super) default_backend: Option<S<String>>,
    pub(super) tls: Option<S<RawTls>>,
    pub(super) compression: Option<S<Vec<S<String>>>>,
    pub(super) http3: Option<S<bool>>,
    pub(super) http3_0rtt: Option<S<bool>>,
    pub(super) h2c: Option<S<bool>>,
    pub(super) compression_min_bytes: Option<S<i64>>,
    pub(super) header_timeout_ms: Option<S<i64>>,
    pub(super) idle_timeout_ms: Option<S<i64>>,
    pub(super) max_header_bytes: Option<S<i64>>,
    pub(super) max_headers: Option<S<i64>>,
    pub(super) access_log: Option<S<String>>,
    pub(super) connect: Option<S<bool>>,
    pub(super) forwarded_headers: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub(super) rule: Vec<S<RawRule>>,
    pub(super) rate_limit: Option<S<RawRateLimit>>,
    pub(super) accept_proxy: Option<S<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub(super) requests_per_sec: Option<S<i64>>,
    pub(super) burst: Option<S<i64>>,
    pub(super) per: Option<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: Option<S<String>>,
    pub(super) key: Option<S<String>>,
    pub(super) sni: Option<Vec<S<RawCertKey>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCertKey {
    pub(super) cert: Option<S<String>>,
    pub(super) key: Option<S<String>>,
}

/// `[[frontend.rule]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) host: Option<S<String>>,
    pub(super) path_prefix: Option<S<String>>,
    pub(super) backend: Option<S<String>>,
    pub(super) replace_path: Option<S<RawReplacePath>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplacePath {
    pub(super) regex: Option<S<String>>,
    pub(super) with: Option<S<String>>,
}
