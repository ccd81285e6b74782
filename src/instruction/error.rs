use crate::syntax::Span;

/// Why a syntax node is not a valid instruction. Each error points at the text that
/// is wrong: the keyword, one flag, or one argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("unknown instruction: {keyword}{}", did_you_mean(.suggestion))]
    UnknownInstruction {
        keyword: String,
        suggestion: Option<String>,
        span: Span,
    },
    #[error("unknown flag: --{flag}{}", did_you_mean_flag(.suggestion))]
    UnknownFlag {
        flag: String,
        suggestion: Option<String>,
        span: Span,
    },
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag { flag: String, span: Span },
    #[error("missing a value on flag: --{flag}")]
    MissingFlagValue { flag: String, span: Span },
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    NotABoolean {
        flag: String,
        value: String,
        span: Span,
    },
    #[error("{message}")]
    InvalidFlagValue { message: String, span: Span },
    #[error("{message}")]
    InvalidMount { message: String, span: Span },
    #[error("{message}")]
    Arguments { message: String, span: Span },
    #[error(
        "no build stage in current context: {keyword} must come after a FROM (only ARG may come before the first FROM)"
    )]
    NoStage { keyword: String, span: Span },
    #[error("dockerfile contains no stages to build")]
    NoStages { span: Span },
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

fn did_you_mean_flag(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean --{s}?)"))
        .unwrap_or_default()
}

impl Error {
    /// Where in the Dockerfile the problem is.
    pub fn span(&self) -> Span {
        match self {
            Error::UnknownInstruction { span, .. }
            | Error::UnknownFlag { span, .. }
            | Error::DuplicateFlag { span, .. }
            | Error::MissingFlagValue { span, .. }
            | Error::NotABoolean { span, .. }
            | Error::InvalidFlagValue { span, .. }
            | Error::InvalidMount { span, .. }
            | Error::Arguments { span, .. }
            | Error::NoStage { span, .. }
            | Error::NoStages { span } => *span,
        }
    }

    pub(crate) fn arguments(message: impl Into<String>, span: Span) -> Self {
        Error::Arguments {
            message: message.into(),
            span,
        }
    }

    pub(crate) fn flag_value(message: impl Into<String>, span: Span) -> Self {
        Error::InvalidFlagValue {
            message: message.into(),
            span,
        }
    }
}

/// A value that is not valid (a `--mount` specification, a `--chmod` mode, a duration, a
/// checksum, …); the message says why, and the caller adds where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<InvalidValue> for String {
    fn from(value: InvalidValue) -> String {
        value.0
    }
}
