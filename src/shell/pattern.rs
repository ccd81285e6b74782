//! Shell glob patterns for `${A#p}`, `${A%p}` and `${A/p/r}`.
//!
//! BuildKit turns the pattern into a Go regexp (`*` → `.*`/`.*?`, `?` → `.`)
//! and uses leftmost-first matching. For these patterns that is the same as
//! "shortest" (lazy) or "longest" (greedy) match from the leftmost start, so we
//! simulate the pattern as a small NFA instead of pulling in a regex engine.
//! Like Go's `.`, the wildcards never match `\n`.

/// One element of a parsed pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tok {
    /// `*`: any run of characters.
    Star,
    /// `?`: any single character.
    Any,
    /// A literal character (plain or escaped).
    Lit(char),
}

/// Parses a glob. `escape` escapes `*`, `?` and itself; before `}` or `/` it is
/// dropped (those had to be escaped inside `${…}`); any other escape is an
/// error, as in BuildKit.
pub(crate) fn parse(pattern: &str, escape: char) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let tok = match c {
            '*' => Tok::Star,
            '?' => Tok::Any,
            c if c == escape => match chars.peek().copied() {
                Some('}' | '/') => continue,
                Some(n) if n == '*' || n == '?' || n == escape => {
                    chars.next();
                    Tok::Lit(n)
                }
                Some(n) => return Err(format!("invalid escape '{escape}{n}'")),
                None => return Err(format!("invalid escape '{escape}' at end of pattern")),
            },
            c => Tok::Lit(c),
        };
        toks.push(tok);
    }
    Ok(toks)
}

fn accepts(tok: Tok, c: char) -> bool {
    match tok {
        Tok::Star | Tok::Any => c != '\n',
        Tok::Lit(l) => l == c,
    }
}

/// Follows `*` tokens without consuming input (they may match nothing).
fn close(toks: &[Tok], states: &mut [bool]) {
    for j in 0..toks.len() {
        if states[j] && toks[j] == Tok::Star {
            states[j + 1] = true;
        }
    }
}

/// Matches `toks` against `text[start..]` anchored at `start`; returns the
/// shortest or longest end (char index) of a match, if any.
pub(crate) fn match_at(toks: &[Tok], text: &[char], start: usize, longest: bool) -> Option<usize> {
    let m = toks.len();
    let mut cur = vec![false; m + 1];
    let mut next = vec![false; m + 1];
    cur[0] = true;
    close(toks, &mut cur);
    let mut best = None;
    let mut i = start;
    loop {
        if cur[m] {
            best = Some(i);
            if !longest {
                return best;
            }
        }
        let Some(&c) = text.get(i) else {
            return best;
        };
        next.iter_mut().for_each(|s| *s = false);
        let mut alive = false;
        for j in 0..m {
            if cur[j] && accepts(toks[j], c) {
                let to = if toks[j] == Tok::Star { j } else { j + 1 };
                next[to] = true;
                alive = true;
            }
        }
        if !alive {
            return best;
        }
        close(toks, &mut next);
        std::mem::swap(&mut cur, &mut next);
        i += 1;
    }
}

/// `${A#p}` / `${A##p}`: removes the shortest / longest matching prefix.
pub(crate) fn trim_prefix(toks: &[Tok], value: &str, longest: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    match match_at(toks, &text, 0, longest) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_string(),
    }
}

/// `${A%p}` / `${A%%p}`: removes the shortest / longest matching suffix, by
/// matching the reversed pattern against the reversed value (as BuildKit does).
pub(crate) fn trim_suffix(toks: &[Tok], value: &str, longest: bool) -> String {
    let rev_toks: Vec<Tok> = toks.iter().rev().copied().collect();
    let rev_text: Vec<char> = value.chars().rev().collect();
    match match_at(&rev_toks, &rev_text, 0, longest) {
        Some(len) => {
            let keep = rev_text.len() - len;
            value.chars().take(keep).collect()
        }
        None => value.to_string(),
    }
}

/// Leftmost match at or after `from`: (start, end) in char indices, longest
/// for that start (BuildKit compiles the `/` form's pattern greedily).
///
/// One pass: each NFA state keeps the smallest start that reaches it. A state's
/// future does not depend on its start, so a larger start in the same state can
/// never win and is dropped. This keeps the search linear in the text.
fn find(toks: &[Tok], text: &[char], from: usize) -> Option<(usize, usize)> {
    const DEAD: usize = usize::MAX;
    let m = toks.len();
    let mut cur = vec![DEAD; m + 1];
    let mut next = vec![DEAD; m + 1];
    let mut best: Option<(usize, usize)> = None;
    let mut i = from;
    loop {
        // Start a new attempt here until some match is known.
        if best.is_none() && cur[0] == DEAD {
            cur[0] = i;
        }
        for j in 0..m {
            if toks[j] == Tok::Star && cur[j] < cur[j + 1] {
                cur[j + 1] = cur[j];
            }
        }
        if cur[m] != DEAD && best.is_none_or(|(s, _)| cur[m] <= s) {
            best = Some((cur[m], i));
        }
        if let Some((s, _)) = best {
            // Only attempts at least as far left as the best can still win.
            cur.iter_mut().filter(|x| **x > s).for_each(|x| *x = DEAD);
            if cur.iter().all(|x| *x == DEAD) {
                return best;
            }
        }
        let Some(&c) = text.get(i) else {
            return best;
        };
        next.iter_mut().for_each(|x| *x = DEAD);
        for j in 0..m {
            if cur[j] != DEAD && accepts(toks[j], c) {
                let to = if toks[j] == Tok::Star { j } else { j + 1 };
                next[to] = next[to].min(cur[j]);
            }
        }
        std::mem::swap(&mut cur, &mut next);
        i += 1;
    }
}

/// Reference for `find`: try each start in turn (used by tests).
#[cfg(test)]
fn find_naive(toks: &[Tok], text: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=text.len()).find_map(|s| match_at(toks, text, s, true).map(|e| (s, e)))
}

/// `${A/p/r}`: BuildKit splices the replacement in literally.
pub(crate) fn replace_first(toks: &[Tok], value: &str, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    match find(toks, &text, 0) {
        Some((a, b)) => {
            let mut out: String = text[..a].iter().collect();
            out.push_str(replacement);
            out.extend(&text[b..]);
            out
        }
        None => value.to_string(),
    }
}

/// `${A//p/r}`: mirrors Go's `Regexp.ReplaceAllString`, including its rules for
/// empty matches and its `$` template syntax in the replacement.
pub(crate) fn replace_all(toks: &[Tok], value: &str, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut search = 0;
    let mut last_end = 0;
    while search <= text.len() {
        let Some((a, b)) = find(toks, &text, search) else {
            break;
        };
        out.extend(&text[last_end..a]);
        // No replacement for an empty match right after the previous match.
        if b > last_end || a == 0 {
            let matched: String = text[a..b].iter().collect();
            expand_template(&mut out, replacement, &matched);
        }
        last_end = b;
        search = if search + 1 > b { search + 1 } else { b };
    }
    out.extend(&text[last_end.min(text.len())..]);
    out
}

/// Go's `Regexp.Expand` for a pattern without capture groups: `$$` is `$`,
/// `$0`/`${0}` is the whole match, any other valid reference is empty, and a
/// malformed `$` is kept.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        match extract_ref(rest) {
            Some((name, r)) => {
                if is_group_zero(name) {
                    out.push_str(matched);
                }
                rest = r;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Parses `name` or `{name}` after a `$`; returns the name and the rest.
fn extract_ref(s: &str) -> Option<(&str, &str)> {
    let (body, brace) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let len: usize = body
        .chars()
        .take_while(|c| c.is_alphabetic() || c.is_numeric() || *c == '_')
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let name = &body[..len];
    let rest = &body[len..];
    if brace {
        return rest.strip_prefix('}').map(|r| (name, r));
    }
    Some((name, rest))
}

fn is_group_zero(name: &str) -> bool {
    name == "0"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Tok> {
        parse(s, '\\').unwrap()
    }

    #[test]
    fn prefix_shortest_and_longest() {
        assert_eq!(trim_prefix(&p("*x"), "axbxc", false), "bxc");
        assert_eq!(trim_prefix(&p("*x"), "axbxc", true), "c");
        assert_eq!(trim_prefix(&p("*"), "abc", false), "abc");
        assert_eq!(trim_prefix(&p("*"), "abc", true), "");
        assert_eq!(trim_prefix(&p("b*"), "abc", true), "abc");
        assert_eq!(trim_prefix(&p(""), "abc", true), "abc");
    }

    #[test]
    fn suffix_shortest_and_longest() {
        assert_eq!(trim_suffix(&p("x*"), "axbxc", false), "axb");
        assert_eq!(trim_suffix(&p("x*"), "axbxc", true), "a");
        assert_eq!(trim_suffix(&p(".*"), "a.tar.gz", false), "a.tar");
        assert_eq!(trim_suffix(&p(".*"), "a.tar.gz", true), "a");
        assert_eq!(trim_suffix(&p("z*"), "abc", true), "abc");
    }

    #[test]
    fn question_mark_and_escapes() {
        assert_eq!(trim_prefix(&p("?"), "한국어", false), "국어");
        assert_eq!(trim_prefix(&p("?\\?"), "???y", false), "?y");
        assert_eq!(trim_prefix(&p("\\*"), "*a", false), "a");
        assert_eq!(trim_prefix(&p("\\*"), "xa", false), "xa");
        assert_eq!(trim_suffix(&p("\\**"), "xx**", true), "xx");
        assert_eq!(trim_prefix(&p("\\\\"), "\\x", false), "x");
        assert_eq!(
            p("a\\}\\/"),
            vec![Tok::Lit('a'), Tok::Lit('}'), Tok::Lit('/')]
        );
        assert!(parse("\\a", '\\').is_err());
        assert!(parse("a\\", '\\').is_err());
        // Under backtick escape, backslash is an ordinary character.
        assert_eq!(
            parse("`*\\", '`').unwrap(),
            vec![Tok::Lit('*'), Tok::Lit('\\')]
        );
    }

    #[test]
    fn wildcards_do_not_match_newline() {
        assert_eq!(trim_prefix(&p("*"), "a\nb", true), "\nb");
        assert_eq!(trim_prefix(&p("?"), "\nb", true), "\nb");
    }

    #[test]
    fn find_agrees_with_naive_search() {
        let pats = [
            "", "*", "a", "a*", "*a", "a*b", "?", "a?b*", "**b", "b*a*", "\\*a",
        ];
        let texts = [
            "", "a", "b", "ab", "ba", "aab", "abab", "bbaab", "a\nb", "x*ab",
        ];
        for pat in pats {
            let toks = p(pat);
            for text in texts {
                let t: Vec<char> = text.chars().collect();
                for from in 0..=t.len() {
                    assert_eq!(
                        find(&toks, &t, from),
                        find_naive(&toks, &t, from),
                        "{pat:?} {text:?} {from}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_values_stay_fast() {
        let value = "a".repeat(20_000);
        assert_eq!(replace_all(&p("a*b"), &value, "x"), value);
        assert_eq!(replace_all(&p("a"), &value[..100], ""), "");
    }

    #[test]
    fn replace_forms() {
        assert_eq!(replace_first(&p("o"), "foo", "0"), "f0o");
        assert_eq!(replace_all(&p("o"), "foo", "0"), "f00");
        assert_eq!(replace_all(&p(""), "ab", "-"), "-a-b-");
        assert_eq!(replace_first(&p(""), "ab", "-"), "-ab");
        assert_eq!(replace_all(&p("x*"), "axbxc", "Y"), "aY");
        assert_eq!(replace_all(&p("b"), "abc", "[$0$$]"), "a[b$]c");
        assert_eq!(replace_all(&p("b"), "abc", "$x$"), "a$c");
        assert_eq!(replace_first(&p("b"), "abc", "$0"), "a$0c");
    }
}
