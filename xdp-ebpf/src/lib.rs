#![no_std]
//! Empty: the crate is a binary (the eBPF object). The library target only
//! lets user space list it as a build dependency so cargo tracks changes.
