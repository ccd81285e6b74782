//! The file and instruction rules of `grammar/dockerfile.ebnf`: physical lines to
//! logical lines, directives, comments, continuations, and each instruction's
//! keyword, flags, arguments and heredocs.

use nom::{IResult, Parser, bytes::complete::take_till, character::complete::space0};

use crate::gocompat::{go_lowercase, go_quote};

use super::ast::{Arg, Comment, Directive, Dockerfile, Flag, Heredoc, Node, Span, Warning};
use super::directive::{escape_char, match_directive, repeated_directive};
use super::error::Error;
use super::heredoc::locate_heredocs;
use super::json::{JsonForm, NOT_STRINGS_MESSAGE, json_array};
use super::source::{LogicalLine, PhysicalLine, SourceMap, decode, physical_lines};
use super::words::{extract_flags, is_ascii_separator, name_value_words, split_ascii_whitespace};

/// ONBUILD may wrap ONBUILD syntactically; the instruction layer forbids it. The
/// limit keeps recursion (and the drop of nested boxes) shallow on hostile input.
const MAX_ONBUILD_DEPTH: usize = 8;

/// Parses a whole Dockerfile.
pub fn parse(source: &[u8]) -> Result<Dockerfile, Error> {
    let text = decode(source)?;
    let map = SourceMap::new(text);
    let lines = physical_lines(&map)?;
    let mut parser = FileParser {
        map: &map,
        lines: &lines,
        next: 0,
        escape: '\\',
        file: Dockerfile {
            escape: '\\',
            had_bom: map.bom_len() > 0,
            ..Dockerfile::default()
        },
    };
    parser.dockerfile()?;
    let mut file = parser.file;
    if file.instructions.is_empty() {
        let end = map.position(text.len());
        return Err(Error::new(
            "file with no instructions",
            Span::new(map.position(0), end),
        ));
    }
    file.escape = parser.escape;
    Ok(file)
}

struct FileParser<'a> {
    map: &'a SourceMap<'a>,
    lines: &'a [PhysicalLine],
    /// Index of the next physical line to read.
    next: usize,
    escape: char,
    file: Dockerfile,
}

impl<'a> FileParser<'a> {
    fn text(&self) -> &'a str {
        self.map.text()
    }

    /// dockerfile = { directive-line } { blank-line | comment-line | instruction }
    fn dockerfile(&mut self) -> Result<(), Error> {
        let mut scanning_directives = true;
        let mut doc_comments: Vec<String> = Vec::new();
        while let Some(&line) = self.lines.get(self.next) {
            self.next += 1;
            let content = line.content(self.text());
            // The first physical line of an instruction loses its leading whitespace.
            let trimmed = content.trim_start();
            let trimmed_start = line.content_end - trimmed.len();
            if scanning_directives {
                // Scanning stops for good at the first line that is not a directive.
                match match_directive("#", trimmed) {
                    Some(found) => {
                        self.directive_line(found, trimmed_start, line.content_end)?;
                        continue;
                    }
                    None => scanning_directives = false,
                }
            }
            if trimmed.starts_with('#') {
                let comment = self.comment_line(trimmed_start, line.content_end);
                // An empty `#` line separates doc comments, as in BuildKit.
                if comment.is_empty() {
                    doc_comments.clear();
                } else {
                    doc_comments.push(comment);
                }
                continue;
            }
            if trimmed.is_empty() {
                doc_comments.clear();
                continue;
            }
            let mut node = self.instruction(trimmed, trimmed_start)?;
            node.doc_comments = std::mem::take(&mut doc_comments);
            self.file.instructions.push(node);
        }
        Ok(())
    }

    fn directive_line(
        &mut self,
        found: super::directive::LineDirective,
        start: usize,
        end: usize,
    ) -> Result<(), Error> {
        let span = self.map.span(start, end);
        if self.file.directives.iter().any(|d| d.name == found.name) {
            return Err(repeated_directive(&found.name, span));
        }
        if found.name == "escape" {
            let value_span = self
                .map
                .span(start + found.value_start, start + found.value_end);
            self.escape = escape_char(&found.value).ok_or_else(|| {
                Error::new(
                    format!(
                        "invalid escape token '{}' does not match ` or \\",
                        found.value
                    ),
                    value_span,
                )
            })?;
        }
        self.file.directives.push(Directive {
            name: found.name,
            value: found.value,
            span,
        });
        Ok(())
    }

    /// comment-line = {whitespace} "#" comment-text. Returns the trimmed text.
    fn comment_line(&mut self, hash_at: usize, end: usize) -> String {
        let body = self.text().get(hash_at + 1..end).unwrap_or("");
        let text = body.trim().to_string();
        self.file.comments.push(Comment {
            text: text.clone(),
            span: self.map.span(hash_at, end),
        });
        text
    }

    /// instruction = logical-line { heredoc-body }
    fn instruction(&mut self, first_line: &str, start: usize) -> Result<Node, Error> {
        let logical = self.logical_line(first_line, start);
        let mut last_line = self.next.saturating_sub(1);
        let line_text = logical.text.clone();
        let mut node = node_from_line(&logical, self.map, self.escape, 0, line_text.len(), 0)?;
        node.original = line_text.clone();

        if line_text.contains("<<") && heredoc_target(&mut node).is_some() {
            let found = locate_heredocs(&line_text)
                .map_err(|err| err.with_span(logical.span(self.map, 0, line_text.len())))?;
            let mut heredocs = Vec::with_capacity(found.len());
            for opener in found {
                let body_start = self
                    .lines
                    .get(self.next)
                    .map_or(self.text().len(), |l| l.start);
                let mut content = String::new();
                let mut terminated = false;
                while let Some(&body_line) = self.lines.get(self.next) {
                    self.next += 1;
                    last_line = self.next - 1;
                    let mut candidate = body_line.content(self.text());
                    if opener.word.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == opener.word.name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body_line.raw(self.text()));
                }
                if !terminated {
                    let word = line_text.get(opener.start..opener.end).unwrap_or("<<");
                    return Err(Error::new(
                        format!("unterminated heredoc {word}"),
                        logical.span(self.map, opener.start, opener.end),
                    ));
                }
                let body_end = self
                    .lines
                    .get(last_line)
                    .map_or(body_start, |l| l.content_end);
                heredocs.push(Heredoc {
                    name: opener.word.name,
                    file_descriptor: opener.word.file_descriptor,
                    expand: opener.word.expand,
                    chomp: opener.word.chomp,
                    content,
                    span: self.map.span(body_start, body_end),
                });
            }
            if let Some(target) = heredoc_target(&mut node) {
                target.heredocs = heredocs;
            }
        }

        // An empty last line (a blank line skipped at the end of a continuation)
        // has no character to end on: end after its newline so that
        // `Span::lines` still counts it.
        let end = self.lines.get(last_line).map_or(start, |line| {
            if line.content_end > line.start {
                line.content_end
            } else {
                line.end
            }
        });
        node.span = self.map.span(start, end);
        Ok(node)
    }

    /// logical-line = first-line { continuation-line | skipped-line }
    fn logical_line(&mut self, first_line: &str, start: usize) -> LogicalLine {
        let mut logical = LogicalLine::new(start);
        let (piece, mut continues) = trim_continuation(first_line, self.escape);
        logical.push(start, piece);
        let mut first_empty_line: Option<PhysicalLine> = None;
        while continues && let Some(&line) = self.lines.get(self.next) {
            self.next += 1;
            let content = line.content(self.text());
            let trimmed = content.trim_start();
            if trimmed.starts_with('#') {
                // Comment lines inside a continuation are skipped and do not warn.
                self.comment_line(line.content_end - trimmed.len(), line.content_end);
                continue;
            }
            if trimmed.is_empty() {
                first_empty_line.get_or_insert(line);
                continue;
            }
            let (piece, more) = trim_continuation(content, self.escape);
            logical.push(line.start, piece);
            continues = more;
        }
        if let Some(empty) = first_empty_line {
            self.file.warnings.push(Warning {
                message: format!("Empty continuation line found in: {}", logical.text),
                span: self.map.span(empty.start, empty.content_end),
            });
        }
        logical
    }
}

/// continuation = escape {" " | "\t"} end-of-line, where the escape is not itself
/// escaped (or is alone on the line). Returns the text without it, and whether the
/// next line continues this one.
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line, false);
    };
    if before.is_empty() {
        return ("", true);
    }
    if before.ends_with(escape) {
        return (line, false);
    }
    (before, true)
}

/// The node whose heredocs a line carries: RUN/COPY/ADD in shell form, directly or
/// wrapped by ONBUILD.
fn heredoc_target(node: &mut Node) -> Option<&mut Node> {
    let target = if node.keyword_lower() == "onbuild" {
        node.onbuild.as_deref_mut()?
    } else {
        node
    };
    let takes_heredocs = matches!(target.keyword_lower().as_str(), "run" | "copy" | "add");
    (takes_heredocs && !target.json).then_some(target)
}

/// keyword = 1*( any character but an ASCII separator )
fn keyword(input: &str) -> IResult<&str, &str> {
    take_till(is_ascii_separator).parse(input)
}

/// ascii-separators = 1*( " " | "\t" | "\v" | "\f" | "\r" )
fn separators(input: &str) -> IResult<&str, &str> {
    let (rest, run) = space0(input)?;
    let extra = rest.len() - rest.trim_start_matches(is_ascii_separator).len();
    Ok((&rest[extra..], &input[..run.len() + extra]))
}

/// instruction-line = keyword [ ascii-separators { flag } arguments ], on
/// `logical.text[start..end]`.
fn node_from_line(
    logical: &LogicalLine,
    map: &SourceMap<'_>,
    escape: char,
    start: usize,
    end: usize,
    depth: usize,
) -> Result<Node, Error> {
    let text = logical.text.get(start..end).unwrap_or("");
    let line_start = start + (text.len() - text.trim_start().len());
    let line = text.trim();
    let span = |from: usize, to: usize| logical.span(map, from, to);

    let (after_keyword, keyword_text) = keyword(line).unwrap_or((line, ""));
    let (rest, _) = separators(after_keyword).unwrap_or((after_keyword, ""));
    let rest_start = line_start + (line.len() - rest.len());

    let (flag_words, args_at) = extract_flags(rest, escape);
    let flags = flag_words
        .into_iter()
        .map(|word| Flag {
            text: word.text,
            span: span(rest_start + word.start, rest_start + word.end),
        })
        .collect();
    let args_raw = rest.get(args_at..).unwrap_or("");
    let args = args_raw.trim();
    let args_start = rest_start + args_at + (args_raw.len() - args_raw.trim_start().len());

    let mut node = Node {
        keyword: keyword_text.to_string(),
        keyword_span: span(line_start, line_start + keyword_text.len()),
        flags,
        args: Vec::new(),
        json: false,
        heredocs: Vec::new(),
        onbuild: None,
        original: line.to_string(),
        span: span(line_start, line_start + line.len()),
        doc_comments: Vec::new(),
    };
    let arguments = Arguments {
        logical,
        map,
        escape,
        text: args,
        start: args_start,
    };
    // Go lower-cases per character, so e.g. a Kelvin sign matches `k`.
    match go_lowercase(keyword_text).as_str() {
        "from" | "expose" => node.args = arguments.whitespace_separated(),
        "add" | "copy" | "volume" => {
            (node.args, node.json) = match arguments.json()? {
                Some(args) => (args, true),
                None => (arguments.whitespace_separated(), false),
            }
        }
        "run" | "cmd" | "entrypoint" | "shell" => {
            (node.args, node.json) = arguments.json_or_whole()?;
        }
        "healthcheck" => (node.args, node.json) = arguments.healthcheck()?,
        "maintainer" | "stopsignal" | "user" | "workdir" => node.args = arguments.whole(),
        "env" => node.args = arguments.name_values("ENV")?,
        "label" => node.args = arguments.name_values("LABEL")?,
        "arg" => node.args = arguments.words(),
        "onbuild" => {
            if !args.is_empty() {
                if depth >= MAX_ONBUILD_DEPTH {
                    return Err(Error::new(
                        format!("ONBUILD nested more than {MAX_ONBUILD_DEPTH} levels deep"),
                        span(args_start, args_start + args.len()),
                    ));
                }
                let mut inner = node_from_line(
                    logical,
                    map,
                    escape,
                    args_start,
                    args_start + args.len(),
                    depth + 1,
                )?;
                inner.original = args.to_string();
                node.onbuild = Some(Box::new(inner));
            }
        }
        // Unknown keywords are kept with one empty argument, like BuildKit; the
        // instruction layer reports them.
        _ => {
            node.args = vec![Arg {
                value: String::new(),
                span: span(args_start, args_start + args.len()),
            }]
        }
    }
    Ok(node)
}

/// The argument text of one instruction and where it starts in the logical line.
struct Arguments<'a> {
    logical: &'a LogicalLine,
    map: &'a SourceMap<'a>,
    escape: char,
    text: &'a str,
    start: usize,
}

impl Arguments<'_> {
    fn arg(&self, value: impl Into<String>, from: usize, to: usize) -> Arg {
        Arg {
            value: value.into(),
            span: self
                .logical
                .span(self.map, self.start + from, self.start + to),
        }
    }

    fn with_text<'b>(&self, text: &'b str, offset: usize) -> Arguments<'b>
    where
        Self: 'b,
    {
        Arguments {
            logical: self.logical,
            map: self.map,
            escape: self.escape,
            text,
            start: self.start + offset,
        }
    }

    /// FROM, EXPOSE: split on ASCII separators, nothing else.
    fn whitespace_separated(&self) -> Vec<Arg> {
        split_ascii_whitespace(self.text)
            .into_iter()
            .map(|word| self.arg(word.text, word.start, word.end))
            .collect()
    }

    /// MAINTAINER, STOPSIGNAL, USER, WORKDIR: the whole text, if any.
    fn whole(&self) -> Vec<Arg> {
        if self.text.is_empty() {
            Vec::new()
        } else {
            vec![self.arg(self.text, 0, self.text.len())]
        }
    }

    /// json-array = "[" [ json-string { "," json-string } ] "]"; `None` when the
    /// text is not one (shell form), an error when an element is not a string.
    fn json(&self) -> Result<Option<Vec<Arg>>, Error> {
        match json_array(self.text) {
            JsonForm::NotJson => Ok(None),
            JsonForm::Strings(items) => Ok(Some(
                items
                    .into_iter()
                    .map(|(value, from, to)| self.arg(value, from, to))
                    .collect(),
            )),
            JsonForm::NonString(from, to) => Err(Error::new(
                NOT_STRINGS_MESSAGE,
                self.logical
                    .span(self.map, self.start + from, self.start + to),
            )),
        }
    }

    /// RUN, CMD, ENTRYPOINT, SHELL: exec form, or the whole text as one argument.
    fn json_or_whole(&self) -> Result<(Vec<Arg>, bool), Error> {
        if self.text.is_empty() {
            return Ok((Vec::new(), false));
        }
        Ok(match self.json()? {
            Some(args) => (args, true),
            None => (self.whole(), false),
        })
    }

    /// HEALTHCHECK: the first word (CMD, NONE, …) then the CMD rule on the rest.
    fn healthcheck(&self) -> Result<(Vec<Arg>, bool), Error> {
        let kind_len = self
            .text
            .find(char::is_whitespace)
            .unwrap_or(self.text.len());
        if kind_len == 0 {
            return Ok((Vec::new(), false));
        }
        let after = &self.text[kind_len..];
        let command_at = kind_len + (after.len() - after.trim_start().len());
        let command = self.with_text(&self.text[command_at..], command_at);
        let (mut rest, json) = command.json_or_whole()?;
        let mut args = vec![self.arg(&self.text[..kind_len], 0, kind_len)];
        args.append(&mut rest);
        Ok((args, json))
    }

    /// ARG: one argument per word of the name/value word splitter.
    fn words(&self) -> Vec<Arg> {
        name_value_words(self.text, self.escape)
            .into_iter()
            .map(|word| self.arg(word.text, word.start, word.end))
            .collect()
    }

    /// ENV, LABEL: `key value` (legacy) gives key, value, ""; `k=v …` gives
    /// k, v, "=" per pair.
    fn name_values(&self, instruction: &str) -> Result<Vec<Arg>, Error> {
        let words = name_value_words(self.text, self.escape);
        let Some(first) = words.first() else {
            return Ok(Vec::new());
        };
        let whole_span = || {
            self.logical
                .span(self.map, self.start, self.start + self.text.len())
        };
        if !first.text.contains('=') {
            let parts = split_ascii_whitespace(self.text);
            let (Some(key), Some(value_start)) = (parts.first(), parts.get(1).map(|p| p.start))
            else {
                return Err(Error::new(
                    format!("{instruction} must have two arguments"),
                    whole_span(),
                ));
            };
            let end = self.text.len();
            return Ok(vec![
                self.arg(key.text.clone(), key.start, key.end),
                self.arg(&self.text[value_start..], value_start, end),
                self.arg("", end, end),
            ]);
        }
        let mut args = Vec::with_capacity(words.len() * 3);
        for word in words {
            let Some((key, value)) = word.text.split_once('=') else {
                return Err(Error::new(
                    format!(
                        "Syntax error - can't find = in {}. Must be of the form: name=value",
                        go_quote(&word.text)
                    ),
                    self.logical
                        .span(self.map, self.start + word.start, self.start + word.end),
                ));
            };
            let equals = word.start + key.len();
            args.push(self.arg(key, word.start, equals));
            args.push(self.arg(value, equals + 1, word.end));
            args.push(self.arg("=", equals, equals + 1));
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rules() {
        assert_eq!(trim_continuation("a \\  ", '\\'), ("a ", true));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", true));
        assert_eq!(trim_continuation("a`", '`'), ("a", true));
        assert_eq!(trim_continuation("a\\", '`'), ("a\\", false));
        assert_eq!(trim_continuation("", '\\'), ("", false));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for input in [
            "\\",
            "<<",
            "[",
            "# escape=",
            "RUN <<",
            "RUN [",
            "ONBUILD",
            "ENV",
            "\u{feff}",
            "RUN \\\n",
            "FROM a\nRUN <<E\n",
            "HEALTHCHECK\u{a0}",
            "LABEL =",
            "\r\n\r\n",
        ] {
            let _ = parse(input.as_bytes());
        }
    }
}
