//! `xlb-lab`: the network-namespace test lab.
//!
//! A [`Lab`] owns every namespace (`xlb-<test>-<role>`) and child process it
//! creates and removes them on drop, also while a panic unwinds. Nothing is
//! ever added to the root namespace: veth pairs are created directly inside
//! the lab namespaces and addresses are checked against the lab ranges
//! (198.18.0.0/15, 2001:db8::/32).
//!
//! - [`lab`]: the owner ([`Lab`]), root check, sweep of stale namespaces.
//! - [`netns`]: [`Namespace`]: run/spawn commands inside, enter it on the
//!   current thread ([`NetnsGuard`]).
//! - [`link`]: veth pairs, bridges, addresses, routes, sysctls, neighbors.
//! - [`process`]: [`Process`], a child killed (whole process group) on drop.
//! - [`backend`]: the `lab-backend` test server binary and how to start it.
//! - [`checksum`]: internet checksums of the XDP fixtures' frames, and
//!   [`checksum::verify_checksums`], which checks them all in a frame.
//! - [`topology`]: [`L4Topology`], the standard single-arm L4 lab.
//! - [`ecmp`]: [`ecmp::EcmpTopology`], several lb nodes behind an ECMP
//!   router.
//! - [`fuzz`]: the seeded generator, byte mutations and case runner of
//!   the mutation fuzzes (`xdp_fuzz`, `parsers_fuzz`).
//! - [`tempdir`]: [`TempDir`], a per-test directory removed on drop.
//! - [`l4traffic`]: L4 configs, TCP/HTTP from fixed source ports, counters.
//! - [`xlb_daemon`]: [`XlbDaemon`], `xlb run` inside a lab namespace.

pub mod api;
pub mod backend;
pub mod checksum;
pub mod ecmp;
pub mod fuzz;
pub mod grpc;
pub mod h3_client;
pub mod http_backend;
pub mod l4traffic;
pub mod l7;
pub mod lab;
pub mod link;
pub mod netns;
pub mod process;
pub mod proxy_server;
pub mod tempdir;
pub mod topology;
pub mod xlb_daemon;

pub use backend::lab_backend_path;
pub use lab::{Lab, check_root, sweep};
pub use link::{VethEnd, check_lab_addr, veth};
pub use netns::{Namespace, NetnsGuard};
pub use process::Process;
pub use tempdir::TempDir;
pub use topology::L4Topology;
pub use xlb_daemon::{XlbDaemon, xlb_path};
