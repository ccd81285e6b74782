//! The single error type of the shell module.

/// A word could not be expanded.
///
/// `offset` is the byte offset in the input word of the construct at fault:
/// the opening quote of an unterminated string, the `$` of a `${…}` expression
/// (missing `}`, bad substitution, `?` failures, bad patterns), or the modifier
/// character itself for an unsupported modifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// Human-readable message, worded like BuildKit's (without its
    /// `failed to process "…"` prefix, which the caller may add).
    pub message: String,
    /// Byte offset within the input word.
    pub offset: usize,
}

impl Error {
    pub(crate) fn new(message: impl Into<String>, offset: usize) -> Self {
        Error {
            message: message.into(),
            offset,
        }
    }
}
