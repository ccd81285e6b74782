//! BuildKit's `result` notation of a parsed file, with Go `strconv.Quote` quoting.

use super::ast::{Dockerfile, Node};

/// One `(keyword …)` line per instruction, each followed by `\n`.
pub fn dump(file: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &file.instructions {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

/// The inside of one node's parentheses.
pub fn dump_node(node: &Node) -> String {
    let mut out = go_lowercase(&node.keyword);
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(&f.text)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    if let Some(inner) = &node.onbuild {
        out.push_str(" (");
        out.push_str(&dump_node(inner));
        out.push(')');
    }
    for arg in &node.args {
        out.push(' ');
        out.push_str(&go_quote(&arg.value));
    }
    // BuildKit trims the node text, which only matters for an empty keyword.
    out.trim().to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
