//! Go's standard-library behaviour that BuildKit's output and semantics depend on:
//! `path.Clean`, `strings.ToLower`, `strconv.Quote`, and the `%q`/`%v` and
//! `time.Duration` formatting of image history texts. One home, so no module borrows
//! these from a sibling.
//!
//! L0: imports nothing of kiln.

/// Go's `path.Clean`: lexical, `/`-separated.
pub fn go_path_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `strings.ToLower`: per character, without Rust's context rules (final sigma)
/// and with Go's single-character result for U+0130.
pub fn go_lowercase(text: &str) -> String {
    text.chars()
        .map(|ch| match ch {
            '\u{130}' => 'i',
            _ => {
                let mut lower = ch.to_lowercase();
                match (lower.next(), lower.next()) {
                    (Some(single), None) => single,
                    _ => ch,
                }
            }
        })
        .collect()
}

/// Go's `strconv.Quote` of a UTF-8 string.
pub fn go_quote(text: &str) -> String {
    go_quote_bytes(text.as_bytes())
}

/// Go's `strconv.Quote` of arbitrary bytes: invalid UTF-8 bytes become `\xNN`.
pub fn go_quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for ch in chunk.valid().chars() {
            push_quoted_char(&mut out, ch);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out.push('"');
    out
}

fn push_quoted_char(out: &mut String, ch: char) {
    match ch {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\u{b}' => out.push_str("\\v"),
        '\u{c}' => out.push_str("\\f"),
        '\r' => out.push_str("\\r"),
        _ if is_go_printable(ch) => out.push(ch),
        _ if (ch as u32) < 0x20 || ch == '\u{7f}' => {
            out.push_str(&format!("\\x{:02x}", ch as u32));
        }
        _ if (ch as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", ch as u32)),
        _ => out.push_str(&format!("\\U{:08x}", ch as u32)),
    }
}

/// Format characters (Unicode category Cf), which Go does not print.
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Go's `unicode.IsPrint`: letters, marks, numbers, punctuation, symbols and ASCII
/// space. Without Unicode category tables in std this rejects controls, format
/// characters, separators other than U+0020, private use, noncharacters and the
/// unassigned planes; unassigned code points inside planes 0–3 count as printable.
fn is_go_printable(ch: char) -> bool {
    let code = ch as u32;
    if ch == ' ' {
        return true;
    }
    if ch.is_control() || ch.is_whitespace() {
        return false;
    }
    if FORMAT_CHARS
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&code))
    {
        return false;
    }
    let private_use = (0xE000..=0xF8FF).contains(&code) || code >= 0xF0000;
    let noncharacter = (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE;
    // Planes 4 to 13 are unassigned; plane 14 holds only tags (above) and variation
    // selectors.
    let unassigned_plane = (0x40000..=0xDFFFF).contains(&code)
        || ((0xE0000..=0xEFFFF).contains(&code) && !(0xE0100..=0xE01EF).contains(&code));
    !(private_use || noncharacter || unassigned_plane)
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| go_quote(item)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of an integer: a quoted rune (`'\x03'`, `'A'`).
pub fn go_quote_rune(value: u32) -> String {
    let Some(ch) = char::from_u32(value) else {
        return "'\u{FFFD}'".to_string();
    };
    let body = match ch {
        '\x07' => "\\a".to_string(),
        '\x08' => "\\b".to_string(),
        '\x0c' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\x0b' => "\\v".to_string(),
        '\'' => "\\'".to_string(),
        '\\' => "\\\\".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c if c.is_control() => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{body}'")
}

/// Go's `time.Duration.String` of a number of nanoseconds.
pub fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", with_fraction(nanos, scale));
    }
    let seconds = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000;
    let (hours, minutes, secs) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    let secs = with_fraction(secs * 1_000_000_000 + fraction, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / scale` with the remainder as decimals, trailing zeros removed.
fn with_fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let fraction = format!("{rest:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_paths_like_go() {
        assert_eq!(go_path_clean("/a/b/../c/./d/"), "/a/c/d");
        assert_eq!(go_path_clean("/.."), "/");
        for (input, want) in [
            ("", "."),
            ("a//b/./c/", "a/b/c"),
            ("/../a", "/a"),
            ("../../a", "../../a"),
            ("a/../..", ".."),
            ("/", "/"),
            ("**/", "**"),
        ] {
            assert_eq!(go_path_clean(input), want, "{input}");
        }
    }

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\0\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(
            go_quote("\u{7}\u{8}\t\n\u{b}\u{c}\r"),
            r#""\a\b\t\n\v\f\r""#
        );
        assert_eq!(go_quote("\u{a0}\u{85}\u{2028}"), r#""\u00a0\u0085\u2028""#);
        assert_eq!(go_quote("♥☃é 한"), "\"♥☃é 한\"");
        assert_eq!(go_quote("\u{feff}\u{10ffff}"), r#""\ufeff\U0010ffff""#);
        assert_eq!(go_quote("\u{1F600}"), "\"\u{1F600}\"");
        assert_eq!(go_quote_bytes(b"a\xffb\xc3"), r#""a\xffb\xc3""#);
    }

    #[test]
    fn lowercases_like_go() {
        assert_eq!(go_lowercase("RuN"), "run");
        assert_eq!(go_lowercase("ΣΑΣ"), "σασ");
        assert_eq!(go_lowercase("\u{130}"), "i");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500), "1.5µs");
    }

    #[test]
    fn go_runes() {
        assert_eq!(go_quote_rune(3), "'\\x03'");
        assert_eq!(go_quote_rune(0), "'\\x00'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(10), "'\\n'");
    }
}
