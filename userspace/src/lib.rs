//! The `xlb` daemon as a library: the binary in `main.rs` is a thin CLI over
//! these modules, and the lab and tests use them directly.

pub mod api;
pub mod cli_stats;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod decap;
pub mod health;
pub mod l7;
pub mod registry;
