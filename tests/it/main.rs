//! The integration tests, one binary for the whole crate (one link step, fixtures made once
//! per run): a module per area, and [`harness`] with everything they share.
//!
//! `tests/sandbox.rs` stays a binary of its own: it doubles as the `__sandbox` child, so
//! it needs its own `main`. `cargo test --test it -- MODULE::` runs one area.

mod harness;

mod build;
mod build_progress;
mod cache;
mod cache_remote;
mod check;
mod cli;
mod completion;
mod container;
mod daemon;
mod daemon_clients;
mod daemon_more;
mod daemon_network;
mod debug;
mod differential;
mod emulation;
mod fileop;
mod git;
mod image;
mod instruction;
mod layers;
mod network;
mod output;
mod parity;
mod plan;
mod platforms;
mod progress;
mod registry;
mod rootless;
mod seccomp;
mod shell_conformance;
mod snapshot;
mod source_context;
mod source_date_epoch;
mod source_ignore;
mod store;
mod store_unpack;
mod syntax_conformance;
