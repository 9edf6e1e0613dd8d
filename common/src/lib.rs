//! Types, constants and pure algorithms shared by the XDP programs and the
//! `xlb` daemon. Everything that crosses the kernel/user boundary lives here
//! so the two sides can never disagree on a layout or a number.
#![no_std]

pub mod csum;
pub mod decap;
pub mod hash;
pub mod maps;
pub mod stats;
pub mod types;

pub use decap::*;
pub use maps::*;
pub use stats::*;
pub use types::*;
