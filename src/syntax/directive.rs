//! Parser directives (`# syntax=…`, `# escape=…`, `# check=…`) and syntax detection.

use nom::{
    IResult, Parser,
    bytes::complete::{tag, take_while},
    character::complete::{char, satisfy},
    combinator::{recognize, rest},
};

use super::ast::{Directive, Span};
use super::error::Error;
use super::source::SourceMap;

/// The directive names BuildKit knows; any other name ends directive scanning.
const KNOWN_DIRECTIVES: [&str; 3] = ["syntax", "escape", "check"];

/// Go's `\s`.
fn is_go_space(ch: char) -> bool {
    matches!(ch, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// directive-name = letter { letter | digit }
fn directive_name(input: &str) -> IResult<&str, &str> {
    recognize((
        satisfy(|c| c.is_ascii_alphabetic()),
        take_while(|c: char| c.is_ascii_alphanumeric()),
    ))
    .parse(input)
}

/// directive-line = prefix {space} directive-name {space} "=" directive-value.
/// Returns the name as written and the value text after `=` (not yet trimmed).
fn directive_line<'a>(prefix: &str, input: &'a str) -> IResult<&'a str, (&'a str, &'a str)> {
    let (input, (_, _, name, _, _, value)) = (
        tag(prefix),
        take_while(is_go_space),
        directive_name,
        take_while(is_go_space),
        char('='),
        rest,
    )
        .parse(input)?;
    Ok((input, (name, value)))
}

/// The value of `\s*(.+?)\s*$`: trimmed, but a value of only spaces keeps its last
/// one (the regex needs at least one character). `None` when nothing follows `=`.
fn directive_value(after_equals: &str) -> Option<(usize, &str)> {
    let trimmed = after_equals.trim_start_matches(is_go_space);
    if trimmed.is_empty() {
        let last = after_equals.chars().next_back()?;
        let at = after_equals.len() - last.len_utf8();
        return Some((at, &after_equals[at..]));
    }
    let at = after_equals.len() - trimmed.len();
    Some((at, trimmed.trim_end_matches(is_go_space)))
}

/// A directive found on one line: lower-cased name, value, and the value's byte
/// range within the line.
pub(crate) struct LineDirective {
    pub(crate) name: String,
    pub(crate) value: String,
    pub(crate) value_start: usize,
    pub(crate) value_end: usize,
}

/// Matches one line against the directive pattern with the given comment prefix.
/// Unknown names are not directives.
pub(crate) fn match_directive(prefix: &str, line: &str) -> Option<LineDirective> {
    let (_, (name, after_equals)) = directive_line(prefix, line).ok()?;
    let (value_at, value) = directive_value(after_equals)?;
    let name = name.to_ascii_lowercase();
    if !KNOWN_DIRECTIVES.contains(&name.as_str()) {
        return None;
    }
    let value_start = line.len() - after_equals.len() + value_at;
    Some(LineDirective {
        name,
        value: value.to_string(),
        value_start,
        value_end: value_start + value.len(),
    })
}

/// Scans directives from the top of a text until the first line that is not one,
/// like BuildKit's `DirectiveParser.ParseAll`. Repeating a directive is an error.
pub fn scan_directives(source: &[u8]) -> Result<Vec<Directive>, Error> {
    let text = super::source::decode(source)?;
    let map = SourceMap::new(text);
    let mut directives: Vec<Directive> = Vec::new();
    let mut line_start = 0;
    for raw in text.split_inclusive('\n') {
        let line = raw.trim_end_matches('\n').trim_end_matches('\r');
        let Some(found) = match_directive("#", line) else {
            break;
        };
        let span = map.span(line_start, line_start + line.len());
        if directives.iter().any(|d| d.name == found.name) {
            return Err(repeated_directive(&found.name, span));
        }
        directives.push(Directive {
            name: found.name,
            value: found.value,
            span,
        });
        line_start += raw.len();
    }
    Ok(directives)
}

pub(crate) fn repeated_directive(name: &str, span: Span) -> Error {
    Error::new(
        format!("only one {name} parser directive can be used"),
        span,
    )
}

/// Finds the `syntax` directive the way BuildKit picks a frontend: in `#` form, then
/// `//` form, then as a key of a JSON object; a leading `#!` line is skipped and a
/// BOM removed. Returns `(reference, cmdline, line)`: the value up to the first
/// space, the whole value, and the 1-based line.
pub fn detect_syntax(source: &[u8]) -> Option<(String, String, usize)> {
    find_directive("syntax", source, true)
}

/// Like [`detect_syntax`] for any directive name, `#` form only (used for `check`).
pub fn parse_directive(name: &str, source: &[u8]) -> Option<(String, String, usize)> {
    find_directive(name, source, false)
}

fn find_directive(name: &str, source: &[u8], other_forms: bool) -> Option<(String, String, usize)> {
    let source = source.strip_prefix("\u{feff}".as_bytes()).unwrap_or(source);
    let text = std::str::from_utf8(source).ok()?;
    let (text, first_line) = match text.split_once('\n') {
        Some((first, after)) if first.starts_with("#!") => (after, 2),
        None if text.starts_with("#!") => ("", 2),
        _ => (text, 1),
    };
    let prefixes: &[&str] = if other_forms { &["#", "//"] } else { &["#"] };
    for prefix in prefixes {
        let mut seen: Vec<String> = Vec::new();
        for (index, raw) in text.split('\n').enumerate() {
            let line = raw.trim_end_matches('\r');
            let Some(found) = match_directive(prefix, line) else {
                break;
            };
            // A repeated directive stops the scan, as BuildKit's error does.
            if seen.contains(&found.name) {
                break;
            }
            if found.name == name {
                let reference = found.value.split(' ').next().unwrap_or("").to_string();
                return Some((reference, found.value, first_line + index));
            }
            seen.push(found.name);
        }
    }
    if other_forms
        && let Ok(serde_json::Value::Object(object)) =
            serde_json::from_str::<serde_json::Value>(text)
        && let Some(serde_json::Value::String(value)) = object.get(name)
    {
        let reference = value.split(' ').next().unwrap_or("").to_string();
        return Some((reference, value.clone(), first_line));
    }
    None
}

/// escape-value = "\" | "`"
pub(crate) fn escape_char(value: &str) -> Option<char> {
    match value {
        "\\" => Some('\\'),
        "`" => Some('`'),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_values() {
        let found = match_directive("#", "# EScape = ` ").unwrap();
        assert_eq!((found.name.as_str(), found.value.as_str()), ("escape", "`"));
        assert!(match_directive("#", "# escape=").is_none());
        assert_eq!(match_directive("#", "#escape=  ").unwrap().value, " ");
        assert!(match_directive("#", "# key = x").is_none());
        assert!(match_directive("#", "#=x").is_none());
        assert!(match_directive("//", "//syntax=a").is_some());
    }
}
