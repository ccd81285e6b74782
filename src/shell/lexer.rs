//! The expansion engine: one pass over a word, in the shape of BuildKit's
//! `shellWord` (`processStopOn` / `processDollar` / quote handlers), so that
//! its corner cases (error precedence, word-splitting quirks) carry over.

use std::collections::BTreeSet;

use super::error::Error;
use super::pattern;
use super::{Env, Lexer};

const MISSING_BRACE: &str = "syntax error: missing '}'";

/// Nesting limit for `${…}` inside `${…}`: recursion must not be able to
/// overflow the stack on hostile input. Real Dockerfiles nest a few levels.
const MAX_DEPTH: usize = 128;

/// Collects words for `process_words`: whitespace splits only when it is
/// unquoted literal text or comes from an unquoted expansion.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            // An empty quoted string ("") keeps `in_word` but never becomes
            // a word, as in BuildKit.
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

pub(crate) struct Word<'a> {
    src: &'a str,
    pos: usize,
    lexer: Lexer,
    env: &'a dyn Env,
    depth: usize,
    pub(crate) matched: BTreeSet<String>,
    pub(crate) unmatched: BTreeSet<String>,
}

impl<'a> Word<'a> {
    pub(crate) fn new(src: &'a str, lexer: Lexer, env: &'a dyn Env) -> Self {
        Word {
            src,
            pos: 0,
            lexer,
            env,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        }
    }

    /// Processes the whole word: the joined value and the split words.
    pub(crate) fn process(&mut self) -> Result<(String, Vec<String>), Error> {
        let mut words = Words::default();
        let value = self.process_stop_on(None, self.lexer.raw_escapes, Some(&mut words))?;
        Ok((value, words.finish()))
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_eof(&self) -> bool {
        self.pos >= self.src.len()
    }

    /// Looks a name up, recording it as matched or unmatched. Positional and
    /// special parameters are never set in a Dockerfile.
    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = if is_special_param_name(name) {
            None
        } else {
            self.env.lookup(name).map(str::to_string)
        };
        let set = if value.is_some() {
            &mut self.matched
        } else {
            &mut self.unmatched
        };
        if !set.contains(name) {
            set.insert(name.to_string());
        }
        value
    }

    /// Reads up to `stop` (consumed) or the end of input. `raw_escapes` keeps
    /// escape characters in the result (needed for patterns).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut Words>,
    ) -> Result<String, Error> {
        let start = self.pos;
        let mut result = String::new();
        let quotes = !self.lexer.skip_process_quotes;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.next();
                return Ok(result);
            }
            match c {
                '$' => {
                    let s = self.process_dollar()?;
                    if let Some(w) = words.as_deref_mut() {
                        w.add_string(&s);
                    }
                    result.push_str(&s);
                }
                '\'' | '"' if quotes => {
                    let s = if c == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    if let Some(w) = words.as_deref_mut() {
                        w.add_raw_string(&s);
                    }
                    result.push_str(&s);
                }
                _ => {
                    self.next();
                    if c == self.lexer.escape {
                        if raw_escapes {
                            if let Some(w) = words.as_deref_mut() {
                                w.add_raw_char(c);
                            }
                            result.push(c);
                        }
                        // A trailing escape is dropped.
                        let Some(e) = self.next() else { break };
                        if let Some(w) = words.as_deref_mut() {
                            w.add_raw_char(e);
                        }
                        result.push(e);
                    } else {
                        if let Some(w) = words.as_deref_mut() {
                            w.add_char(c);
                        }
                        result.push(c);
                    }
                }
            }
        }
        match stop {
            Some(s) => Err(Error::new(
                format!("unexpected end of statement while looking for matching {s}"),
                start,
            )),
            None => Ok(result),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, Error> {
        let start = self.pos;
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(Error::new(
                        "unexpected end of statement while looking for matching single-quote",
                        start,
                    ));
                }
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, Error> {
        let start = self.pos;
        let mut result = String::new();
        let open = self.next();
        if self.lexer.raw_quotes {
            result.extend(open);
        }
        loop {
            let Some(c) = self.peek() else {
                return Err(Error::new(
                    "unexpected end of statement while looking for matching double-quote",
                    start,
                ));
            };
            match c {
                '"' => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                '$' => {
                    let s = self.process_dollar()?;
                    result.push_str(&s);
                }
                _ => {
                    self.next();
                    let mut out = c;
                    if c == self.lexer.escape {
                        match self.peek() {
                            // Dropped; the missing quote is reported next.
                            None => continue,
                            // Only these can be escaped; other escapes stay as-is.
                            Some(n) if n == '"' || n == '$' || n == self.lexer.escape => {
                                self.next();
                                out = n;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(out);
                }
            }
        }
    }

    /// Reads a parameter name: a run of digits, one special character, or
    /// letters/digits/underscores.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && is_digit(c) {
                while let Some(d) = self.peek().filter(|d| is_digit(*d)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(c) {
                self.next();
                name.push(c);
                return name;
            }
            if !(c.is_alphabetic() || is_digit(c) || c == '_') {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn process_dollar(&mut self) -> Result<String, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::new("too many nested variable expansions", self.pos));
        }
        self.depth += 1;
        let result = self.process_dollar_inner();
        self.depth -= 1;
        result
    }

    fn process_dollar_inner(&mut self) -> Result<String, Error> {
        let start = self.pos;
        self.next(); // '$'

        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }

        self.next(); // '{'
        match self.peek() {
            None => return Err(Error::new(MISSING_BRACE, start)),
            Some('{' | '}' | ':') => {
                return Err(Error::new("syntax error: bad substitution", start));
            }
            Some(_) => {}
        }
        let name = self.process_name();
        let mod_pos = self.pos;
        let Some(first) = self.next() else {
            return Err(Error::new(MISSING_BRACE, start));
        };
        let unsupported = |chs: &str| {
            Error::new(
                format!("unsupported modifier ({chs}) in substitution"),
                mod_pos,
            )
        };

        match first {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            '/' => self.process_replace(start, &name),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = first == ':';
                let mut chs = first.to_string();
                let ch = if null_is_unset {
                    let Some(c) = self.next() else {
                        return Err(Error::new(MISSING_BRACE, start));
                    };
                    chs.push(c);
                    c
                } else {
                    first
                };
                let raw = ch == '#' || ch == '%';
                if null_is_unset && raw {
                    return Err(unsupported(&chs));
                }
                let word = self.stop_on_brace(start, raw)?;
                let value = self.get_env(&name);
                if value.is_none() && self.lexer.skip_unset_env {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = value.as_deref().is_none_or(str::is_empty);
                let unset = value.is_none() || (null_is_unset && empty);
                match ch {
                    '-' => Ok(if unset {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(self.required(start, &name, &word, "unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(self.required(start, &name, &word, "empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let value = value.unwrap_or_default();
                        // A doubled modifier (## / %%) is checked after expansion,
                        // as BuildKit does.
                        let (pat, longest) = match word.strip_prefix(ch) {
                            Some(p) => (p, true),
                            None => (word.as_str(), false),
                        };
                        let toks = self.compile(start, pat)?;
                        Ok(if ch == '#' {
                            pattern::trim_prefix(&toks, &value, longest)
                        } else {
                            pattern::trim_suffix(&toks, &value, longest)
                        })
                    }
                    _ => Err(unsupported(&chs)),
                }
            }
            _ => Err(unsupported(&first.to_string())),
        }
    }

    /// `${name/pat/repl}` and `${name//pat/repl}`, after the first `/`.
    fn process_replace(&mut self, start: usize, name: &str) -> Result<String, Error> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pat = self.process_stop_on(Some('/'), true, None).map_err(|e| {
            if self.at_eof() {
                Error::new("syntax error: missing '/' in ${}", start)
            } else {
                e
            }
        })?;
        let replacement = self.stop_on_brace(start, true)?;
        let value = self.get_env(name).unwrap_or_default();
        let toks = self.compile(start, &pat)?;
        Ok(if all {
            pattern::replace_all(&toks, &value, &replacement)
        } else {
            pattern::replace_first(&toks, &value, &replacement)
        })
    }

    /// The modifier's word up to `}`; any failure that ran to the end of the
    /// input is reported as the missing `}` of the enclosing expression.
    fn stop_on_brace(&mut self, start: usize, raw: bool) -> Result<String, Error> {
        self.process_stop_on(Some('}'), raw, None).map_err(|e| {
            if self.at_eof() {
                Error::new(MISSING_BRACE, start)
            } else {
                e
            }
        })
    }

    fn compile(&self, start: usize, pat: &str) -> Result<Vec<pattern::Tok>, Error> {
        pattern::parse(pat, self.lexer.escape).map_err(|e| {
            Error::new(
                format!("invalid pattern ({pat}) in substitution: {e}"),
                start,
            )
        })
    }

    fn required(&self, start: usize, name: &str, word: &str, what: &str) -> Error {
        let message = if word.is_empty() {
            format!("is not allowed to be {what}")
        } else {
            word.to_string()
        };
        Error::new(format!("{name}: {message}"), start)
    }
}

/// Approximates Go's `unicode.IsDigit`: only `0`-`9` within Latin-1.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (u32::from(c) > 0xFF && c.is_numeric() && !c.is_alphabetic())
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// `$0`–`$9…`, `$@`, `$*`, `$#`, `$?`, `$-`, `$$`, `$!`.
fn is_special_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if is_digit(c) => chars.all(is_digit),
        Some(c) if is_special_param(c) => chars.next().is_none(),
        _ => false,
    }
}
