//! The only module that makes raw syscalls: thin, safe wrappers over `rustix`/`libc`
//! for mounts, namespaces, processes, capabilities and cgroups. Everything above
//! `sys` stays safe Rust and testable without root.
#![allow(unsafe_code)]

pub mod cgroup;
pub mod error;
pub mod inspect;
pub mod mount;
pub mod namespace;
pub mod process;

pub use error::SysError;
