//! The kernel tier from user space: the embedded eBPF object, loading and
//! attaching it, Maglev tables, and the only writer of the shared maps.

pub mod addr;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod model;
pub mod object;
pub mod stats;
