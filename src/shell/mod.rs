//! Shell-style word processing as BuildKit's Dockerfile front end does it: quote
//! removal, escapes, `$VAR`/`${VAR…}` expansion and word splitting (layer L1: pure).
//!
//! Supported forms: `$A ${A} ${A:-x} ${A-x} ${A:+x} ${A+x} ${A:?msg} ${A?msg}
//! ${A#p} ${A##p} ${A%p} ${A%%p} ${A/p/r} ${A//p/r}`. Patterns are globs with
//! `*`, `?` and escapes. One deliberate difference from BuildKit: inside
//! patterns the escape character is the lexer's; BuildKit always uses `\`
//! there, even when the Dockerfile's escape character is a backtick.

mod error;
mod lexer;
mod pattern;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

pub use error::Error;

/// Variable lookup for expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is unset.
    fn lookup(&self, name: &str) -> Option<&str>;
}

/// A `NAME=VALUE` list in definition order: the last entry for a name wins.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// A list whose names compare case-insensitively, as on Windows (where
/// `$pwd` finds `PWD`). The last matching entry wins.
#[derive(Debug, Clone, Copy)]
pub struct CaseInsensitiveEnv<'a>(pub &'a [(String, String)]);

impl Env for CaseInsensitiveEnv<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        let name = name.to_lowercase();
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.to_lowercase() == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The expanded word, quotes removed.
    pub value: String,
    /// Names looked up and found (even if empty).
    pub matched: BTreeSet<String>,
    /// Names looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// The Dockerfile word lexer. `Copy` and cheap: holds only options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with the given escape character (`\` or `` ` ``) and BuildKit's
    /// default options.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output (BuildKit `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit `RawEscapes`).
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Leave references to unset variables as written (BuildKit `SkipUnsetEnv`).
    pub fn skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit `SkipProcessQuotes`).
    pub fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Expands `word` as a single word, without splitting (BuildKit
    /// `ProcessWordWithMatches`).
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<Expansion, Error> {
        let mut w = lexer::Word::new(word, *self, env);
        let (value, _) = w.process()?;
        Ok(Expansion {
            value,
            matched: w.matched,
            unmatched: w.unmatched,
        })
    }

    /// Expands `word` and splits it into words on unquoted whitespace,
    /// including whitespace produced by unquoted expansions (BuildKit
    /// `ProcessWords`).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, Error> {
        let mut w = lexer::Word::new(word, *self, env);
        w.process().map(|(_, words)| words)
    }
}

#[cfg(test)]
mod tests;
