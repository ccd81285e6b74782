//! Dockerfile text to a lossless, spanned syntax tree (layer L1: pure, no I/O).
//!
//! The parser functions are named after the rules of `grammar/dockerfile.ebnf`.

pub mod ast;
mod directive;
mod dump;
mod error;
mod heredoc;
mod json;
mod parser;
mod source;
mod words;

pub use ast::*;
pub use directive::{detect_syntax, parse_directive, scan_directives};
pub use dump::{dump, dump_node};
pub use error::Error;
pub use heredoc::{HeredocWord, chomp, heredocs_from_line, parse_heredoc_word};
pub use parser::parse;
pub use words::parse_words;
