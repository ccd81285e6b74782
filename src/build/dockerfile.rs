//! The front end of a build: Dockerfile bytes to stages, with every problem found.

use crate::instruction::{self, Stages};
use crate::plan;
use crate::syntax::{self, Dockerfile, Span};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a Dockerfile, with the text it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub span: Span,
    pub message: String,
}

impl Diagnostic {
    fn error(span: Span, message: String) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            span,
            message,
        }
    }

    /// A problem planning found.
    pub(super) fn from_plan(error: &plan::Error) -> Diagnostic {
        Diagnostic::error(error.span(), error.to_string())
    }

    fn warning(span: Span, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            span,
            message: message.to_string(),
        }
    }
}

/// A Dockerfile that parsed into stages. Its warnings are the findings of
/// [`ParsedDockerfile::lint`].
#[derive(Debug, Clone)]
pub struct ParsedDockerfile {
    pub stages: Stages,
    /// The escape character in force (`# escape=`).
    pub escape: char,
    /// The syntax tree the stages came from (directives, comments, keyword casing).
    pub syntax: Dockerfile,
}

impl ParsedDockerfile {
    /// Parses and validates `bytes`. On failure, every finding in the order found: the
    /// parser's warnings, then the errors (all of them, not just the first).
    pub fn parse(bytes: &[u8]) -> Result<ParsedDockerfile, Vec<Diagnostic>> {
        let file = syntax::parse(bytes)
            .map_err(|error| vec![Diagnostic::error(error.span(), error.to_string())])?;
        let mut warnings: Vec<Diagnostic> = file
            .warnings
            .iter()
            .map(|w| Diagnostic::warning(w.span, &w.message))
            .collect();
        let stages = match instruction::parse(&file) {
            Ok(stages) => stages,
            Err(errors) => {
                warnings.extend(
                    errors
                        .iter()
                        .map(|e| Diagnostic::error(e.span(), e.to_string())),
                );
                return Err(warnings);
            }
        };
        Ok(ParsedDockerfile {
            stages,
            escape: file.escape,
            syntax: file,
        })
    }
}
