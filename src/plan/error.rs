use crate::syntax::Span;

/// Why an [`ImageResolver`](super::ImageResolver) could not give an image: its own error
/// (the planner cannot name the store's or the registry's), shown as is.
pub type ResolveError = Box<dyn std::error::Error + Send + Sync>;

/// Why a build could not be planned. Every variant carries the span of the
/// Dockerfile text at fault, so the CLI and solver can show an excerpt.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A word could not be expanded (`${A:?msg}`, a missing `}`, a bad modifier).
    #[error("failed to process {word:?}: {message}")]
    Expansion {
        word: String,
        message: String,
        span: Span,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}", did_you_mean(.suggestion))]
    UnknownTarget {
        target: String,
        suggestion: Option<String>,
        span: Span,
    },
    /// A stage, image or index reference that cannot be used here.
    #[error("{message}")]
    Reference { message: String, span: Span },
    /// The base image (or an image in `--from`) could not be resolved.
    #[error("{reference}: {source}")]
    Resolve {
        reference: String,
        source: ResolveError,
        span: Span,
    },
    /// An ONBUILD trigger of a base image is not a valid instruction.
    #[error("ONBUILD trigger {trigger:?}: {message}")]
    Onbuild {
        trigger: String,
        message: String,
        span: Span,
    },
    /// A value that is only known after expansion is invalid (port, signal,
    /// platform, mount, chmod, checksum, path…).
    #[error("{message}")]
    Invalid { message: String, span: Span },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

impl Error {
    /// Where in the Dockerfile the problem is.
    pub fn span(&self) -> Span {
        match self {
            Error::Expansion { span, .. }
            | Error::UnknownTarget { span, .. }
            | Error::Reference { span, .. }
            | Error::Resolve { span, .. }
            | Error::Onbuild { span, .. }
            | Error::Invalid { span, .. } => *span,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>, span: Span) -> Self {
        Error::Invalid {
            message: message.into(),
            span,
        }
    }
}
