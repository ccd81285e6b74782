//! Go's `path/filepath.Match` (Unix flavour), reimplemented so that `.dockerignore` syntax
//! checks and COPY wildcards behave exactly as in BuildKit.

/// The pattern is malformed (Go's `filepath.ErrBadPattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPattern;

/// Whether `pattern` contains a character that makes it a glob rather than a literal name.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '\\'])
}

/// `filepath.Match(pattern, name)`: `*` and `?` never match `/`; `[...]` classes with ranges
/// and `^` negation; `\` escapes. Like Go, it checks the rest of the pattern for syntax errors
/// even after the name has stopped matching, except after a trailing `*`.
pub fn go_match(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let mut pattern = pattern;
    let mut name = name;
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing `*` matches the rest of the name unless it has a separator.
            return Ok(!name.contains('/'));
        }
        let (matched_rest, err) = match match_chunk(chunk, name) {
            Ok(r) => (r, None),
            Err(e) => (None, Some(e)),
        };
        if let Some(t) = matched_rest
            && (t.is_empty() || !pattern.is_empty())
        {
            name = t;
            continue;
        }
        if let Some(e) = err {
            return Err(e);
        }
        if star {
            // Let the star eat one more character at a time, never a separator.
            for (i, c) in name.char_indices() {
                if c == '/' {
                    break;
                }
                let after = &name[i + c.len_utf8()..];
                match match_chunk(chunk, after) {
                    Ok(Some(t)) => {
                        if pattern.is_empty() && !t.is_empty() {
                            continue;
                        }
                        name = t;
                        continue 'pattern;
                    }
                    Ok(None) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        // No match: still report a syntax error anywhere in the remaining pattern.
        while !pattern.is_empty() {
            let (_, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            match_chunk(chunk, "")?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off leading stars and the chunk up to the next star outside a class.
fn scan_chunk(pattern: &str) -> (bool, &str, &str) {
    let bytes = pattern.as_bytes();
    let mut start = 0;
    while start < bytes.len() && bytes[start] == b'*' {
        start += 1;
    }
    let star = start > 0;
    let mut in_range = false;
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            // A trailing `\` is left for match_chunk to reject.
            b'\\' if i + 1 < bytes.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[start..i], &pattern[i..])
}

/// Matches `chunk` (no stars) at the start of `s`; `Ok(Some(rest))` on a match. Keeps parsing
/// after a mismatch so that a malformed chunk is always reported.
fn match_chunk<'a>(chunk: &str, s: &'a str) -> Result<Option<&'a str>, BadPattern> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some(first) = chunk.chars().next() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match first {
            '[' => {
                let mut r = None;
                if !failed {
                    let c = s.chars().next().unwrap_or('\u{fffd}');
                    s = &s[c.len_utf8().min(s.len())..];
                    r = Some(c);
                }
                chunk = &chunk[1..];
                let negated = chunk.starts_with('^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.starts_with(']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = get_escaped(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.starts_with('-') {
                        let (h, rest) = get_escaped(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if r.is_some_and(|r| lo <= r && r <= hi) {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    let c = s.chars().next().unwrap_or('/');
                    if c == '/' {
                        failed = true;
                    }
                    s = &s[c.len_utf8().min(s.len())..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if first == '\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(BadPattern);
                    }
                }
                // Go compares bytes; on valid UTF-8 comparing whole characters is the same.
                let literal = chunk.chars().next().unwrap_or('\u{fffd}');
                if !failed {
                    if !s.starts_with(literal) {
                        failed = true;
                    }
                    s = skip_char(s);
                }
                chunk = skip_char(chunk);
            }
        }
    }
    Ok(if failed { None } else { Some(s) })
}

fn skip_char(s: &str) -> &str {
    let len = s.chars().next().map_or(0, char::len_utf8);
    &s[len..]
}

/// One possibly escaped character of a class; errors as Go's `getEsc` does.
fn get_escaped(chunk: &str) -> Result<(char, &str), BadPattern> {
    let mut chunk = chunk;
    if chunk.is_empty() || chunk.starts_with('-') || chunk.starts_with(']') {
        return Err(BadPattern);
    }
    if let Some(rest) = chunk.strip_prefix('\\') {
        chunk = rest;
        if chunk.is_empty() {
            return Err(BadPattern);
        }
    }
    let c = chunk.chars().next().ok_or(BadPattern)?;
    let rest = &chunk[c.len_utf8()..];
    if rest.is_empty() {
        return Err(BadPattern);
    }
    Ok((c, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_basics() {
        assert_eq!(go_match("*.txt", "a.txt"), Ok(true));
        assert_eq!(go_match("*.txt", "d/a.txt"), Ok(false));
        assert_eq!(go_match("[ab].txt", "b.txt"), Ok(true));
        assert_eq!(go_match("a[", "x"), Err(BadPattern));
        assert_eq!(go_match("a\\", "a"), Err(BadPattern));
        assert_eq!(go_match("é?", "éü"), Ok(true));
    }
}
