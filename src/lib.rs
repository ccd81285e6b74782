//! kiln: a daemonless Dockerfile build engine.
//!
//! A Dockerfile becomes an image through a pipeline of modules, each with one job, one
//! error type and a layer it may not climb out of (`tests/it/layers.rs` checks the imports;
//! `docs/architecture.md` tells the whole story):
//!
//! ```text
//! bytes ─► syntax ─► instruction ─► plan ─► solve ─► export ─► store
//!          (AST)     (typed, stages) (DAG)  (scheduler, cache, sandbox)
//! ```
//!
//! - **L0, the vocabulary**: [`oci`] (digests, media types, references, platforms),
//!   [`progress`] (the events every long operation reports), [`sys`] (the only raw
//!   syscalls and `unsafe`), [`gocompat`] (Go's `path.Clean` and quoting, as BuildKit
//!   uses them).
//! - **L1–L3, pure front end**: [`syntax`] (a lossless, spanned AST), [`shell`] (BuildKit's
//!   word expansion), [`instruction`] (typed instructions and stages), [`plan`] (the DAG of
//!   ops with their cache definitions); and [`registry`], the OCI distribution client.
//! - **L4, the machinery**: [`store`] (the OCI image layout on disk), [`snapshot`] (layers
//!   unpacked, overlay chains, layer diffs), [`source`] (the build context, `.dockerignore`,
//!   `ADD <url>`), [`sandbox`] (one process in namespaces), [`cache`] (the cache index and
//!   its explanations), [`fileop`] (COPY, ADD and WORKDIR).
//! - **L5, operations**: [`solve`] (the scheduler running a plan), [`export`] (a solved plan
//!   to an image), [`image`] (pull, push, save, load, …), [`container`] (`kiln run` and
//!   friends).
//! - **L6**: [`build`], the whole build lifecycle as one call; [`daemon`], the Docker
//!   Engine API over a socket (`kiln serve`), calling the same library as the CLI.
//! - **L7**: [`cli`], the command line: arguments in, library calls, rendering out.

// L0
pub mod gocompat;
pub mod oci;
pub mod progress;
pub mod sys;
// L1–L3
pub mod instruction;
pub mod plan;
pub mod registry;
pub mod shell;
pub mod syntax;
// L4
pub mod cache;
pub mod fileop;
pub mod network;
pub mod sandbox;
pub mod snapshot;
pub mod source;
pub mod store;
// L5
pub mod container;
pub mod export;
pub mod image;
pub mod solve;
// L6
pub mod build;
pub mod daemon;
// L7
pub mod cli;
