//! The `show` answers (and the `/stats` page, which reuses `show stat`):
//! formatted from a registry snapshot and, when the data path is loaded,
//! its per-CPU counters read at that moment.

use std::{fmt::Write as _, path::Path, time::Duration};

use xlb_common::{BACKEND_DOWN, BACKEND_DRAIN, BACKEND_MAINT, BACKEND_UP};

use super::control::admin_name;
use crate::{dataplane::stats::StatsReader, l7::balance::Load, registry::ServerEntry};

/// `BACKEND_*` as the API and metrics name it.
pub fn status_name(state: u8) -> &'static str {
    match state {
        BACKEND_UP => "UP",
        BACKEND_DOWN => "DOWN",
        BACKEND_DRAIN => "DRAIN",
        BACKEND_MAINT => "MAINT",
        _ => "UNKNOWN",
    }
}

/// What `show info` reports.
pub struct Info<'a> {
    pub config_path: &'a Path,
    pub uptime: Duration,
    pub backends: usize,
    pub vips: usize,
    pub frontends: usize,
    pub servers: &'a [ServerEntry],
    /// The client connections (TCP and QUIC) open on each L7 thread.
    pub l7_conns: &'a [usize],
}

pub fn info(i: &Info) -> String {
    let up = i.servers.iter().filter(|s| s.is_live()).count();
    let conns: Vec<String> = i.l7_conns.iter().map(|n| n.to_string()).collect();
    format!(
        "Name: xlb\nVersion: {}\nPid: {}\nUptime_sec: {}\nConfig: {}\nBackends: {}\nServers: {}\nServers_up: {up}\nVips: {}\nFrontends: {}\nL7_thread_conns: {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        i.uptime.as_secs(),
        i.config_path.display(),
        i.backends,
        i.servers.len(),
        i.vips,
        i.frontends,
        conns.join(" "),
    )
}

/// The columns of `show stat`, in order.
pub const STAT_COLUMNS: &[&str] = &[
    "backend",
    "server",
    "status",
    "weight",
    "address",
    "id",
    "admin",
    "check",
    "l4_packets",
    "l4_bytes",
    "l7_current",
    "l7_total",
];

/// One row per server; the counters are empty when they cannot be read.
pub fn stat_rows(
    servers: &[ServerEntry],
    stats: Option<&StatsReader>,
    l7: &Load,
) -> Vec<Vec<String>> {
    servers
        .iter()
        .map(|s| {
            let counters = stats.and_then(|r| r.backend(s.id).ok());
            vec![
                s.backend.clone(),
                s.name.clone(),
                status_name(s.state()).to_string(),
                s.weight.to_string(),
                s.address.to_string(),
                s.id.to_string(),
                admin_name(s.admin).to_string(),
                if s.healthy { "ok" } else { "failed" }.to_string(),
                counters.map_or(String::new(), |c| c.packets.to_string()),
                counters.map_or(String::new(), |c| c.bytes.to_string()),
                l7.get(s.id).to_string(),
                l7.total(s.id).to_string(),
            ]
        })
        .collect()
}

/// CSV with a `# ` header line. Names have no commas (the config and the
/// API allow letters, digits and `-_.:` only), IPv6 addresses are bracketed.
pub fn stat(servers: &[ServerEntry], stats: Option<&StatsReader>, l7: &Load) -> String {
    let mut out = format!("# {}", STAT_COLUMNS.join(","));
    for row in stat_rows(servers, stats, l7) {
        out.push('\n');
        out.push_str(&row.join(","));
    }
    out
}

/// The same rows as aligned plain text, for people (`/stats`).
pub fn stat_table(servers: &[ServerEntry], stats: Option<&StatsReader>, l7: &Load) -> String {
    let mut rows = vec![STAT_COLUMNS.iter().map(|c| c.to_string()).collect()];
    rows.extend(stat_rows(servers, stats, l7));
    let widths: Vec<usize> = (0..STAT_COLUMNS.len())
        .map(|i| {
            rows.iter()
                .map(|r: &Vec<String>| r[i].len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        for (cell, w) in row.iter().zip(&widths) {
            let _ = write!(out, "{cell:<w$}  ");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

/// One line per server, space-separated (HAProxy's `show servers state`
/// idea, with xlb's fields).
pub fn servers_state(servers: &[ServerEntry]) -> String {
    let mut out = String::from("# backend server id address status admin healthy weight");
    for s in servers {
        let _ = write!(
            out,
            "\n{} {} {} {} {} {} {} {}",
            s.backend,
            s.name,
            s.id,
            s.address,
            status_name(s.state()),
            admin_name(s.admin),
            u8::from(s.healthy),
            s.weight
        );
    }
    out
}
