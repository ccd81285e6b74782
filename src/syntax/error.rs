//! The one error type of the syntax layer.

use super::ast::Span;

/// A parse failure, with the span of the offending text so a caller can print an
/// excerpt with a caret under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    message: String,
    span: Span,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>, span: Span) -> Self {
        Error {
            message: message.into(),
            span,
        }
    }

    /// Where the problem is. Errors from the helpers that take a bare string (not a
    /// whole file) carry a default span.
    pub fn span(&self) -> Span {
        self.span
    }

    /// The message without any location.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn with_span(mut self, span: Span) -> Self {
        self.span = span;
        self
    }
}
