//! Word-level scanners that work on one logical line: the ENV/LABEL/ARG word
//! splitter, flag extraction, and the plain whitespace split of FROM/EXPOSE.

/// A word and the byte range of the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// BuildKit's separator for keywords and FROM/EXPOSE arguments: only these ASCII
/// characters split, other Unicode spaces do not.
pub(crate) fn is_ascii_separator(ch: char) -> bool {
    matches!(ch, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits ENV/LABEL/ARG arguments into words. Quotes and escapes stay in the words;
/// they only stop whitespace from splitting. See `grammar/dockerfile.ebnf`.
pub fn parse_words(rest: &str, escape: char) -> Vec<String> {
    name_value_words(rest, escape)
        .into_iter()
        .map(|word| word.text)
        .collect()
}

/// [`parse_words`] with the source range of every word.
pub(crate) fn name_value_words(rest: &str, escape: char) -> Vec<Word> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    // A quoted word is kept even when it is empty (`''`).
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = rest.char_indices();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(Word {
                            text: std::mem::take(&mut word),
                            start,
                            end: pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    // Unquoted escape: keep both characters; drop a final lone escape.
                    if let Some((_, escaped)) = chars.next() {
                        word.push(ch);
                        word.push(escaped);
                    }
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape && quote != '\'' {
                    match chars.next() {
                        Some((_, escaped)) => {
                            word.push(ch);
                            word.push(escaped);
                        }
                        None => phase = Phase::Word,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(Word {
            text: word,
            start,
            end: rest.len(),
        });
    }
    words
}

/// Leading `--flag` words of the text after the keyword, and the offset where the
/// arguments begin. Quotes are removed and escapes resolved inside flag words.
pub(crate) fn extract_flags(text: &str, escape: char) -> (Vec<Word>, usize) {
    let mut flags = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut chars = text.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            let starts_flag = ch == '-' && chars.peek().is_some_and(|&(_, next)| next == '-');
            if !starts_flag {
                return (flags, pos);
            }
            phase = Phase::Word;
            start = pos;
        }
        match phase {
            Phase::Spaces => {}
            Phase::Word => {
                if ch.is_whitespace() {
                    // A bare `--` ends the flags and is not one itself.
                    if word == "--" {
                        return (flags, pos);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(Word {
                            text: std::mem::take(&mut word),
                            start,
                            end: pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                } else if ch == escape {
                    if let Some((_, escaped)) = chars.next() {
                        word.push(escaped);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else if ch == escape {
                    match chars.next() {
                        Some((_, escaped)) => word.push(escaped),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(Word {
            text: word,
            start,
            end: text.len(),
        });
    }
    (flags, text.len())
}

/// Splits on runs of ASCII separators like Go's `regexp.Split(s, -1)`: empty text
/// gives no fields.
pub(crate) fn split_ascii_whitespace(text: &str) -> Vec<Word> {
    let mut fields = Vec::new();
    if text.is_empty() {
        return fields;
    }
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if is_ascii_separator(ch) {
            fields.push(Word {
                text: text[start..pos].to_string(),
                start,
                end: pos,
            });
            let mut next = pos + ch.len_utf8();
            while let Some(&(at, sep)) = chars.peek() {
                if !is_ascii_separator(sep) {
                    break;
                }
                next = at + sep.len_utf8();
                chars.next();
            }
            start = next;
        }
    }
    fields.push(Word {
        text: text[start..].to_string(),
        start,
        end: text.len(),
    });
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(words: Vec<Word>) -> Vec<String> {
        words.into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words("foo\\ bar", '\\'), ["foo\\ bar"]);
        assert_eq!(parse_words("a='x y' b", '\\'), ["a='x y'", "b"]);
        assert_eq!(parse_words("''", '\\'), ["''"]);
        assert_eq!(parse_words("a\\", '\\'), ["a"]);
        assert_eq!(parse_words("\"a\\", '\\'), ["\"a"]);
        assert!(parse_words("   ", '\\').is_empty());
    }

    #[test]
    fn flags_stop_at_first_non_flag_and_at_double_dash() {
        let (flags, at) = extract_flags("--a=1 --b \"x y\"", '\\');
        assert_eq!(texts(flags), ["--a=1", "--b"]);
        assert_eq!(at, 10);
        let (flags, at) = extract_flags("--doit -- [ ]", '\\');
        assert_eq!(texts(flags), ["--doit"]);
        assert_eq!(&"--doit -- [ ]"[at..], " [ ]");
        let (flags, _) = extract_flags("--x=\"a b\"c\\", '\\');
        assert_eq!(texts(flags), ["--x=a bc"]);
        let (flags, at) = extract_flags("-", '\\');
        assert!(flags.is_empty());
        assert_eq!(at, 0);
        let (flags, at) = extract_flags("--", '\\');
        assert!(flags.is_empty());
        assert_eq!(at, 2);
    }

    #[test]
    fn ascii_split_ignores_other_spaces() {
        assert_eq!(
            texts(split_ascii_whitespace("a \t b\u{a0}c")),
            ["a", "b\u{a0}c"]
        );
        assert!(split_ascii_whitespace("").is_empty());
    }
}
