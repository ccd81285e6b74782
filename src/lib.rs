//! kiln: a daemonless Dockerfile build engine.
//!
//! The pipeline runs `syntax` (bytes to a spanned AST) → `shell` (word expansion)
//! → `instruction` (typed instructions split into stages) → later stages. See
//! `docs/architecture.md` for the whole picture and the layering rules.

pub mod cache;
pub mod cli;
pub mod container;
pub mod export;
pub mod fileop;
pub mod gocompat;
pub mod image;
pub mod instruction;
pub mod oci;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod sandbox;
pub mod shell;
pub mod snapshot;
pub mod solve;
pub mod source;
pub mod store;
pub mod syntax;
pub mod sys;
