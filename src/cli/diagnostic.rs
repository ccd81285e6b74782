//! Dockerfile problems rendered for people: file and line, the excerpt, a caret
//! under the column, and the message.

use std::fmt::Write;

pub use crate::build::Severity;
use crate::syntax::Span;

/// Lines of context shown above the first line of the span.
const CONTEXT_LINES: usize = 2;
/// Lines of a long span shown before eliding the rest.
const MAX_SPAN_LINES: usize = 6;

/// Renders one finding about `file` (its display name) whose text is `source`.
pub fn render(severity: Severity, file: &str, source: &str, span: Span, message: &str) -> String {
    let label = match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let (first, last) = span.lines();
    let first = first.max(1);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{label}: {file}:{first}:{}: {message}",
        span.start.column.max(1)
    );
    if first > lines.len() {
        return out;
    }
    let last = last.clamp(first, lines.len());
    let shown_last = last.min(first + MAX_SPAN_LINES - 1);
    let width = shown_last.to_string().len().max(3);
    let _ = writeln!(out, "{:-<20}", "");
    for number in first.saturating_sub(CONTEXT_LINES).max(1)..first {
        let _ = writeln!(out, " {number:>width$} |     {}", lines[number - 1]);
    }
    for number in first..=shown_last {
        let line = lines[number - 1];
        let _ = writeln!(out, " {number:>width$} | >>> {line}");
        if number == first {
            let _ = writeln!(
                out,
                " {:>width$} |     {}",
                "",
                caret_line(line, span, last == first)
            );
        }
    }
    if shown_last < last {
        let _ = writeln!(
            out,
            " {:>width$} | ... ({} more lines)",
            "",
            last - shown_last
        );
    }
    let _ = writeln!(out, "{:-<20}", "");
    out
}

/// Carets under the span's part of its first line. Tabs before the column are
/// kept so the carets line up however the terminal renders them.
fn caret_line(line: &str, span: Span, single_line: bool) -> String {
    let start = span.start.column.max(1) - 1;
    let chars: Vec<char> = line.chars().collect();
    let start = start.min(chars.len());
    let end = if single_line {
        (span.end.column.max(1) - 1).clamp(start + 1, chars.len().max(start + 1))
    } else {
        chars.len().max(start + 1)
    };
    let mut out: String = chars[..start]
        .iter()
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.extend(std::iter::repeat_n('^', end - start));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Position;

    fn span(line: usize, column: usize, end_column: usize) -> Span {
        Span::new(
            Position {
                offset: 0,
                line,
                column,
            },
            Position {
                offset: 0,
                line,
                column: end_column,
            },
        )
    }

    #[test]
    fn points_at_the_column() {
        let source = "FROM scratch\nRUN true\n\tFNTRYPOINT x\n";
        let text = render(
            Severity::Error,
            "Dockerfile",
            source,
            span(3, 2, 12),
            "unknown instruction",
        );
        assert!(
            text.starts_with("error: Dockerfile:3:2: unknown instruction\n"),
            "{text}"
        );
        assert!(text.contains("   3 | >>> \tFNTRYPOINT x\n"), "{text}");
        assert!(text.contains("     |     \t^^^^^^^^^^\n"), "{text}");
        assert!(text.contains("   2 |     RUN true\n"), "{text}");
    }

    #[test]
    fn survives_spans_past_the_end() {
        let text = render(Severity::Warning, "Dockerfile", "", span(9, 50, 60), "odd");
        assert!(text.starts_with("warning: Dockerfile:9:50: odd"));
        let text = render(Severity::Error, "Dockerfile", "RUN", span(1, 50, 60), "odd");
        assert!(text.contains('^'));
    }
}
