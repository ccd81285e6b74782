//! Heredoc words (`<<EOF`, `3<<-"EOF"`) and the small shell-word lexer they need.

use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_while},
    character::complete::{char, digit0},
    combinator::{opt, rest},
};

use super::ast::Span;
use super::error::Error;

/// What a heredoc word says, before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeredocWord {
    /// The delimiter with quotes removed.
    pub name: String,
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the terminator.
    pub chomp: bool,
}

/// A heredoc word found on an instruction line, with its byte range in that line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocatedHeredoc {
    pub(crate) word: HeredocWord,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Go's `\s` (ASCII only, no vertical tab).
fn is_go_space(ch: char) -> bool {
    matches!(ch, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// heredoc-word = fd-digits "<<" ["-"] {go-space} delimiter
fn heredoc_word(input: &str) -> IResult<&str, (&str, Option<char>, &str)> {
    let (input, (fd, _, chomp, _, delimiter)) = (
        digit0,
        tag("<<"),
        opt(char('-')),
        take_while(is_go_space),
        rest,
    )
        .parse(input)?;
    Ok((input, (fd, chomp, delimiter)))
}

/// Reads one already-split word as a heredoc opener. `Ok(None)` means it is not one
/// (no `<<`, no delimiter, a `<` in the delimiter, or more than one word); an
/// unbalanced quote in the delimiter is an error.
pub fn parse_heredoc_word(word: &str) -> Result<Option<HeredocWord>, Error> {
    let Ok((_, (fd, chomp, delimiter))) = heredoc_word(word) else {
        return Ok(None);
    };
    if delimiter.is_empty() || delimiter.contains('<') {
        return Ok(None);
    }
    let unquoted = shell_words(delimiter, false, false)
        .map_err(|message| Error::new(message, Span::default()))?;
    let [name] = unquoted.as_slice() else {
        return Ok(None);
    };
    let with_quotes = shell_words(delimiter, true, false)
        .map_err(|message| Error::new(message, Span::default()))?;
    // Quotes that survive only when kept raw were real quoting: no expansion.
    let quote_count = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = with_quotes
        .first()
        .is_some_and(|raw| quote_count(&raw.text) == quote_count(&name.text));
    Ok(Some(HeredocWord {
        name: name.text.clone(),
        // An fd too large for u32 means nothing; BuildKit ignores the parse error too.
        file_descriptor: fd.parse().unwrap_or(0),
        expand,
        chomp: chomp.is_some(),
    }))
}

/// The heredoc words of a whole instruction line, in order. `<<` or `<<-` written
/// apart from its delimiter (`<< EOF`) is read together with the next word.
pub fn heredocs_from_line(line: &str) -> Result<Vec<HeredocWord>, Error> {
    Ok(locate_heredocs(line)?
        .into_iter()
        .map(|found| found.word)
        .collect())
}

pub(crate) fn locate_heredocs(line: &str) -> Result<Vec<LocatedHeredoc>, Error> {
    // A line the lexer cannot split (unbalanced quote) has no heredocs.
    let Ok(words) = shell_words(line, true, true) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    let mut index = 0;
    while let Some(word) = words.get(index) {
        index += 1;
        let detached = word
            .text
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .strip_prefix("<<")
            .is_some_and(|after| after.is_empty() || after == "-");
        if detached && let Some(next) = words.get(index) {
            let joined = format!("{} {}", word.text, next.text);
            if let Some(heredoc) = parse_heredoc_word(&joined)? {
                index += 1;
                found.push(LocatedHeredoc {
                    word: heredoc,
                    start: word.start,
                    end: next.end,
                });
                continue;
            }
        }
        if let Some(heredoc) = parse_heredoc_word(&word.text)? {
            found.push(LocatedHeredoc {
                word: heredoc,
                start: word.start,
                end: word.end,
            });
        }
    }
    Ok(found)
}

/// Removes the leading tabs of every line (the `<<-` transformation).
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// A shell word with the byte range it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShellWord {
    pub(crate) text: String,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Splits text into shell words with the escape `\` and no variable expansion
/// (`$NAME` and `${...}` stay as written). `raw_quotes`/`raw_escapes` keep the
/// quote and escape characters in the words. Fails on an unbalanced quote or `${`.
pub(crate) fn shell_words(
    text: &str,
    raw_quotes: bool,
    raw_escapes: bool,
) -> Result<Vec<ShellWord>, String> {
    const ESCAPE: char = '\\';
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if ch.is_whitespace() {
            if in_word {
                words.push(ShellWord {
                    text: std::mem::take(&mut word),
                    start,
                    end: pos,
                });
                in_word = false;
            }
            continue;
        }
        if !in_word {
            in_word = true;
            start = pos;
        }
        match ch {
            '\'' => {
                if raw_quotes {
                    word.push(ch);
                }
                loop {
                    match chars.next() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching single-quote"
                                    .into(),
                            );
                        }
                        Some((_, '\'')) => break,
                        Some((_, inner)) => word.push(inner),
                    }
                }
                if raw_quotes {
                    word.push(ch);
                }
            }
            '"' => {
                if raw_quotes {
                    word.push(ch);
                }
                loop {
                    match chars.next() {
                        None => {
                            return Err(
                                "unexpected end of statement while looking for matching double-quote"
                                    .into(),
                            );
                        }
                        Some((_, '"')) => break,
                        Some((_, ESCAPE)) => {
                            if raw_escapes {
                                word.push(ESCAPE);
                            }
                            match chars.peek() {
                                None => {}
                                Some(&(_, next @ ('"' | '$' | ESCAPE))) => {
                                    chars.next();
                                    word.push(next);
                                }
                                // Other escapes inside double quotes stay as written.
                                Some(_) if !raw_escapes => word.push(ESCAPE),
                                Some(_) => {}
                            }
                        }
                        Some((_, '$')) => read_braced_variable(&mut chars, &mut word)?,
                        Some((_, inner)) => word.push(inner),
                    }
                }
                if raw_quotes {
                    word.push(ch);
                }
            }
            ESCAPE => {
                if raw_escapes {
                    word.push(ESCAPE);
                }
                if let Some((_, escaped)) = chars.next() {
                    word.push(escaped);
                }
            }
            '$' => read_braced_variable(&mut chars, &mut word)?,
            _ => word.push(ch),
        }
    }
    if in_word {
        words.push(ShellWord {
            text: word,
            start,
            end: text.len(),
        });
    }
    Ok(words)
}

/// After a `$`: copies `${...}` through its closing brace (it is one unit for word
/// splitting), or just the `$`.
fn read_braced_variable(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    word: &mut String,
) -> Result<(), String> {
    word.push('$');
    if chars.peek().is_some_and(|&(_, next)| next == '{') {
        for (_, ch) in chars.by_ref() {
            word.push(ch);
            if ch == '}' {
                return Ok(());
            }
        }
        return Err("missing '}'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_words() {
        let word = parse_heredoc_word("3<<-'E'O\\'F").unwrap().unwrap();
        assert_eq!(word.name, "EO'F");
        assert_eq!(word.file_descriptor, 3);
        assert!(word.chomp);
        assert!(!word.expand);
        assert_eq!(parse_heredoc_word("<<").unwrap(), None);
        assert_eq!(parse_heredoc_word("<<<EOF").unwrap(), None);
        assert_eq!(parse_heredoc_word("x<<EOF").unwrap(), None);
        assert!(parse_heredoc_word("<<'EOF").is_err());
        assert_eq!(
            parse_heredoc_word("99999999999<<A")
                .unwrap()
                .unwrap()
                .file_descriptor,
            0
        );
    }

    #[test]
    fn odd_lines_do_not_panic() {
        for line in [
            "<<", "<< ", "<<-", "\\", "RUN <<'", "RUN ${", "RUN \"\\", "3<<",
        ] {
            let _ = heredocs_from_line(line);
        }
    }

    #[test]
    fn chomp_strips_leading_tabs_only() {
        assert_eq!(chomp("\t\ta\n \tb\n\tc"), "a\n \tb\nc");
    }
}
