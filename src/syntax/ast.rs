//! The lossless, spanned syntax tree of a Dockerfile.
//!
//! Nothing here is interpreted: flags are kept as written (after quote removal),
//! arguments follow BuildKit's per-keyword splitting rules, and variables are not
//! expanded. The `instruction` module gives these nodes their meaning.

/// A point in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Byte offset into the original bytes (BOM included).
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters of the line.
    pub column: usize,
}

/// A half-open range `[start, end)` of the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

impl Span {
    pub fn new(start: Position, end: Position) -> Self {
        Span { start, end }
    }

    /// First and last line covered by the span (the last line is the one holding the
    /// last character, so a span ending at the start of a line does not count it).
    pub fn lines(&self) -> (usize, usize) {
        let end_line = if self.end.column == 1 && self.end.line > self.start.line {
            self.end.line - 1
        } else {
            self.end.line
        };
        (self.start.line, end_line)
    }
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dockerfile {
    /// Parser directives from the top of the file, in order (`syntax`, `escape`, `check`).
    pub directives: Vec<Directive>,
    /// The escape character in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Every instruction, in source order.
    pub instructions: Vec<Node>,
    /// Every comment line (directives excluded), in source order, including those
    /// skipped inside line continuations.
    pub comments: Vec<Comment>,
    /// Problems that do not stop parsing (for example empty continuation lines).
    pub warnings: Vec<Warning>,
    /// Whether the file started with a UTF-8 byte order mark.
    pub had_bom: bool,
}

/// A parser directive such as `# escape=\``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name.
    pub name: String,
    /// Trimmed value.
    pub value: String,
    pub span: Span,
}

/// A comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The text after `#`, with surrounding whitespace trimmed.
    pub text: String,
    pub span: Span,
}

/// A non-fatal finding of the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    pub span: Span,
}

/// One instruction (one logical line plus any heredoc bodies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword exactly as written (`run`, `Run`, `RUN`, or an unknown word).
    pub keyword: String,
    pub keyword_span: Span,
    /// Leading `--flags`, in order.
    pub flags: Vec<Flag>,
    /// The arguments, split by BuildKit's rule for this keyword. Empty for ONBUILD,
    /// whose content is in `onbuild`.
    pub args: Vec<Arg>,
    /// Whether `args` came from a JSON array (exec form).
    pub json: bool,
    /// Heredocs opened on this instruction's line, in order.
    pub heredocs: Vec<Heredoc>,
    /// The instruction that ONBUILD wraps.
    pub onbuild: Option<Box<Node>>,
    /// The logical line after joining continuations (keyword included, heredoc
    /// bodies excluded), as BuildKit keeps it in `Node.Original`.
    pub original: String,
    /// From the keyword's first character to the end of the last physical line the
    /// instruction consumed (continuations, skipped comments, heredoc terminators).
    pub span: Span,
    /// The comment lines directly above the instruction, with no blank line between,
    /// oldest first (used as doc comments by `--call targets` and `outline`).
    pub doc_comments: Vec<String>,
}

impl Node {
    /// The keyword in lower case, as BuildKit's dump prints it (Go's per-character
    /// lower-casing, which is also how BuildKit picks the keyword's rule).
    pub fn keyword_lower(&self) -> String {
        crate::gocompat::go_lowercase(&self.keyword)
    }
}

/// A `--name[=value]` flag before the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The whole word after quote and escape removal, e.g. `--mount=type=cache,target=/x`.
    pub text: String,
    pub span: Span,
}

impl Flag {
    /// The name without the two leading dashes (`mount` for `--mount=…`; a third
    /// dash stays, so `---link` is the unknown flag `-link`, as in BuildKit).
    pub fn name(&self) -> &str {
        let body = self.body();
        body.split_once('=').map_or(body, |(name, _)| name)
    }

    /// The value after the first `=`, if any.
    pub fn value(&self) -> Option<&str> {
        self.body().split_once('=').map(|(_, value)| value)
    }

    fn body(&self) -> &str {
        self.text.strip_prefix("--").unwrap_or(&self.text)
    }
}

/// One argument value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arg {
    pub value: String,
    /// Where the argument is written. For JSON elements, the string literal; for
    /// text that spans a continuation, from its first to its last character.
    pub span: Span,
}

/// A here-document attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed (`EOF`).
    pub name: String,
    /// The file descriptor written before `<<` (0 when none).
    pub file_descriptor: u32,
    /// False when any part of the delimiter was quoted.
    pub expand: bool,
    /// True for `<<-`: leading tabs are to be removed (see [`chomp`](super::chomp)).
    pub chomp: bool,
    /// The body lines with their newlines, as written (not yet chomped).
    pub content: String,
    /// From the first body line to the end of the terminator line.
    pub span: Span,
}
