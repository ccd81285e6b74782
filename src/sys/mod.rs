//! The only module that makes raw syscalls: thin, safe wrappers over `rustix`,
//! `nix` and `libc` for files (device nodes, whiteouts, xattrs, calls relative to an
//! open directory), mounts, namespaces, processes, capabilities, seccomp and cgroups. Everything
//! above `sys` stays safe Rust and testable without root.
#![allow(unsafe_code)]

pub mod binfmt;
pub mod cgroup;
pub mod dir;
pub mod error;
pub mod fifo;
pub mod fileop;
pub mod fs;
pub mod inspect;
pub mod mount;
pub mod namespace;
pub mod netlink;
pub mod process;
pub mod rootdir;
pub mod seccomp;
pub mod userns;

pub use error::{Result, SysError};
pub use fs::{
    NodeKind, create_whiteout, is_root, is_whiteout, lchown, lgetxattr, llistxattr, lock_file,
    lremovexattr, lsetxattr, mknod, set_times_nofollow,
};
