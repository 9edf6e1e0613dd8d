//! The runtime API and metrics.
//!
//! - [`command`]: the command language (parsing, `help`).
//! - [`server`]: the unix socket; hands parsed commands to the daemon loop.
//! - [`control`]: what `set`/`add`/`del server` do to the registry.
//! - [`show`]: `show info`, `show stat`, `show servers state`, `/stats`.
//! - [`client`]: `xlb ctl`.
//! - [`metrics`]: [`HttpMetrics`], the L7 tier's per-request metrics.
//! - [`collect`]: metrics read at scrape time (server states, XDP counters).
//! - [`http`]: the `/metrics` and `/stats` listener.
//!
//! Runtime changes go through the same path as health changes and
//! reloads: registry, then `Maps::sync` (kernel tier), then a new snapshot
//! on the watch channel the L7 tier follows. A reload makes the config
//! file the truth again: servers added with `add server` that are not in
//! the file are removed, weights go back to the file's; `drain`/`maint`
//! of servers that stay are kept.

pub mod client;
pub mod collect;
pub mod command;
pub mod control;
pub mod http;
pub mod metrics;
pub mod server;
pub mod show;

pub use metrics::{HttpMetrics, RouteMetrics};
