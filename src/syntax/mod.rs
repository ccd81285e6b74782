//! Dockerfile text to a lossless, spanned syntax tree (layer L1: pure, no I/O).
//!
//! The parser functions are named after the rules of `grammar/dockerfile.ebnf`.

pub mod ast;

pub use ast::*;
