//! The `xlb` daemon as a library: the binary in `main.rs` is a thin CLI over
//! these modules, and the lab and tests use them directly.

pub mod cli_stats;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod health;
pub mod registry;
