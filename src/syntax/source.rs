//! Byte offsets to line/column positions, physical lines, and logical lines that
//! remember where each of their pieces came from.

use std::cell::Cell;

use super::ast::{Position, Span};
use super::error::Error;

/// The longest physical line BuildKit's line scanner accepts (its buffer is 64 KiB
/// and must also hold the newline).
pub(crate) const MAX_LINE_BYTES: usize = 65_535;

const BOM: &str = "\u{feff}";

/// Line starts of the whole text, for turning byte offsets into positions.
pub(crate) struct SourceMap<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    /// Per line: whether it is pure ASCII, so columns are a subtraction (keeps
    /// position lookups cheap on 64 KiB lines with thousands of arguments).
    line_is_ascii: Vec<bool>,
    bom_len: usize,
    /// The last non-ASCII lookup `(offset, column)`: arguments are looked up left
    /// to right, so counting on from there keeps long lines linear.
    last_lookup: Cell<(usize, usize)>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let bom_len = if text.starts_with(BOM) { BOM.len() } else { 0 };
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        let line_is_ascii = line_starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = line_starts.get(i + 1).copied().unwrap_or(text.len());
                text.as_bytes()
                    .get(start..end)
                    .is_some_and(|line| line.is_ascii())
            })
            .collect();
        SourceMap {
            text,
            line_starts,
            line_is_ascii,
            bom_len,
            last_lookup: Cell::new((0, 1)),
        }
    }

    pub(crate) fn text(&self) -> &'a str {
        self.text
    }

    pub(crate) fn bom_len(&self) -> usize {
        self.bom_len
    }

    /// The position of a byte offset. Offsets past the end or inside a character are
    /// moved back to the nearest character boundary, so any offset is safe.
    pub(crate) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_index = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let mut column_start = self.line_starts.get(line_index).copied().unwrap_or(0);
        // The BOM is invisible: the first real character of the file is column 1.
        if line_index == 0 {
            column_start = column_start.max(self.bom_len);
        }
        let column = if offset <= column_start {
            1
        } else if self.line_is_ascii.get(line_index).copied().unwrap_or(false) {
            offset - column_start + 1
        } else {
            let (last_offset, last_column) = self.last_lookup.get();
            let (from, base) = if (column_start..=offset).contains(&last_offset) {
                (last_offset, last_column)
            } else {
                (column_start, 1)
            };
            let column = self
                .text
                .get(from..offset)
                .map_or(0, |between| between.chars().count())
                + base;
            self.last_lookup.set((offset, column));
            column
        };
        Position {
            offset,
            line: line_index + 1,
            column,
        }
    }

    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        Span::new(self.position(start), self.position(end.max(start)))
    }
}

/// One physical line: `start..content_end` is its text without the line ending and
/// without the BOM; `end` is just past its `\n` (or the end of the file).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhysicalLine {
    pub(crate) start: usize,
    pub(crate) content_end: usize,
    pub(crate) end: usize,
}

impl PhysicalLine {
    pub(crate) fn content<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.start..self.content_end).unwrap_or("")
    }

    /// The line with its line ending, as heredoc bodies keep it.
    pub(crate) fn raw<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.start..self.end).unwrap_or("")
    }
}

/// Splits the text like Go's line scanner: at `\n`, a last line without newline only
/// when it is not empty, every trailing `\r`/`\n` stripped from the content.
pub(crate) fn physical_lines(map: &SourceMap<'_>) -> Result<Vec<PhysicalLine>, Error> {
    let text = map.text();
    let mut lines = Vec::new();
    let mut raw_start = 0;
    while raw_start < text.len() {
        let newline = text[raw_start..].find('\n').map(|i| raw_start + i);
        let raw_end = newline.unwrap_or(text.len());
        if raw_end - raw_start > MAX_LINE_BYTES {
            return Err(Error::new(
                format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}"),
                map.span(raw_start, raw_end),
            ));
        }
        let start = if raw_start == 0 {
            map.bom_len()
        } else {
            raw_start
        };
        let content_end =
            start.max(raw_start + text[raw_start..raw_end].trim_end_matches('\r').len());
        let end = newline.map_or(text.len(), |nl| nl + 1);
        lines.push(PhysicalLine {
            start,
            content_end,
            end,
        });
        raw_start = end;
    }
    Ok(lines)
}

/// Rejects bytes that are not UTF-8, pointing at the first bad byte.
pub(crate) fn decode(source: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(source).map_err(|err| {
        let valid = &source[..err.valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The valid prefix decodes, so counting its characters is safe.
        let column = std::str::from_utf8(&valid[line_start..])
            .map_or(0, |prefix| prefix.chars().count())
            + 1;
        let at = Position {
            offset: err.valid_up_to(),
            line,
            column,
        };
        Error::new(
            format!("invalid UTF-8 at line {line}, column {column}"),
            Span::new(at, at),
        )
    })
}

/// A logical line: physical lines joined after removing continuation escapes. Each
/// piece remembers its source offset so that spans point back into the file.
#[derive(Debug, Default)]
pub(crate) struct LogicalLine {
    pub(crate) text: String,
    /// `(offset in text, offset in source)` of each non-empty piece.
    pieces: Vec<(usize, usize)>,
    /// Where an empty logical line is, for spans of nothing.
    anchor: usize,
}

impl LogicalLine {
    pub(crate) fn new(anchor: usize) -> Self {
        LogicalLine {
            anchor,
            ..Default::default()
        }
    }

    pub(crate) fn push(&mut self, source_offset: usize, piece: &str) {
        if !piece.is_empty() {
            self.pieces.push((self.text.len(), source_offset));
            self.text.push_str(piece);
        }
    }

    /// Source offset of a logical offset (the start of the piece holding it).
    pub(crate) fn source_offset(&self, logical: usize) -> usize {
        let logical = logical.min(self.text.len());
        let index = self.pieces.partition_point(|&(at, _)| at <= logical);
        match index.checked_sub(1).and_then(|i| self.pieces.get(i)) {
            Some(&(at, source)) => source + (logical - at),
            None => self.anchor,
        }
    }

    /// The span of `start..end` of the logical text: from the first character to just
    /// after the last one, even when a continuation lies between them.
    pub(crate) fn span(&self, map: &SourceMap<'_>, start: usize, end: usize) -> Span {
        let start_pos = map.position(self.source_offset(start));
        let last_char = self
            .text
            .get(..end.min(self.text.len()))
            .and_then(|prefix| prefix.char_indices().next_back())
            .filter(|&(at, _)| at >= start);
        match last_char {
            Some((at, ch)) => Span::new(
                start_pos,
                map.position(self.source_offset(at) + ch.len_utf8()),
            ),
            None => Span::new(start_pos, start_pos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters_and_skip_the_bom() {
        let text = "\u{feff}ab\nçd\n";
        let map = SourceMap::new(text);
        assert_eq!(map.position(3).column, 1);
        assert_eq!(map.position(4).column, 2);
        let second = text.find('ç').unwrap();
        assert_eq!(map.position(second + 2).line, 2);
        assert_eq!(map.position(second + 2).column, 2);
        // Inside a character or past the end never panics.
        assert_eq!(map.position(second + 1).offset, second);
        assert_eq!(map.position(999).offset, text.len());
    }

    #[test]
    fn cached_columns_match_fresh_counts_in_any_order() {
        let text = "é a é b é\nx é y";
        let map = SourceMap::new(text);
        let offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &offset in offsets
            .iter()
            .rev()
            .chain(offsets.iter())
            .chain(offsets.iter().step_by(3))
        {
            let fresh = SourceMap::new(text).position(offset);
            assert_eq!(map.position(offset), fresh, "offset {offset}");
        }
    }

    #[test]
    fn logical_spans_cross_continuations() {
        let text = "RUN a\\\n  b\n";
        let map = SourceMap::new(text);
        let mut line = LogicalLine::new(0);
        line.push(0, "RUN a");
        line.push(7, "  b");
        let span = line.span(&map, 4, 8);
        assert_eq!((span.start.line, span.start.column), (1, 5));
        assert_eq!((span.end.line, span.end.column), (2, 4));
    }

    #[test]
    fn invalid_utf8_points_at_the_bad_byte() {
        let err = decode(b"FROM a\nRUN \xff").unwrap_err();
        assert_eq!(err.span().start.line, 2);
        assert_eq!(err.span().start.column, 5);
    }
}
