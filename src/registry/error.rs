//! The one error type of the registry module.

use std::fmt;

use crate::oci::DigestError;

/// Result alias for the registry module.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Error codes and messages from a registry's `{"errors":[{"code","message"}]}` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteErrors(pub Vec<(String, String)>);

impl RemoteErrors {
    /// The first error code, if the body had one (e.g. `MANIFEST_UNKNOWN`).
    pub fn code(&self) -> Option<&str> {
        self.0.first().map(|(c, _)| c.as_str())
    }
}

impl fmt::Display for RemoteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (code, msg)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            match (code.is_empty(), msg.is_empty()) {
                (false, false) => write!(f, "{code}: {msg}")?,
                (false, true) => f.write_str(code)?,
                _ => f.write_str(msg)?,
            }
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to a registry or reading credentials.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected HTTP status.
    #[error("{operation} {repository} on {registry}: HTTP {status}{}", http_detail(.errors, .body))]
    Http {
        registry: String,
        repository: String,
        operation: &'static str,
        status: u16,
        /// Parsed registry error JSON (may be empty).
        errors: RemoteErrors,
        /// Start of a non-JSON body, for registries/proxies that return HTML or text.
        body: String,
    },
    /// The request never got a response (DNS, connect, TLS, reset), after retries.
    #[error("{operation} {repository} on {registry}: {source}")]
    Transport {
        registry: String,
        repository: String,
        operation: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The server's answer was not what the protocol says (bad JSON, missing header, …).
    #[error("{operation} {repository} on {registry}: invalid response: {reason}")]
    InvalidResponse {
        registry: String,
        repository: String,
        operation: &'static str,
        reason: String,
    },
    /// Getting a token or credentials for the registry failed.
    #[error("authenticating to {registry}: {message}")]
    Auth { registry: String, message: String },
    /// Content did not hash to the expected digest.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// Content length differed from the descriptor's size.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    /// The index entry chosen for a platform names no valid digest.
    #[error("index entry: {0}")]
    InvalidDigest(#[from] DigestError),
    /// An index had no manifest for the wanted platform.
    #[error("no manifest for platform {wanted} in the index; available: {}", list_or_none(.available))]
    NoMatchingPlatform {
        wanted: String,
        available: Vec<String>,
    },
    /// The document is not an image index / manifest list.
    #[error("not an image index: {0}")]
    NotAnIndex(String),
    /// A request body could not be sent again after a failure (streams are one-shot).
    #[error(
        "{operation} {repository} on {registry}: upload failed and the body stream cannot be replayed: {reason}"
    )]
    NotReplayable {
        registry: String,
        repository: String,
        operation: &'static str,
        reason: String,
    },
    /// A docker-credential-* helper failed.
    #[error("credential helper docker-credential-{helper} {action}: {message}")]
    CredentialHelper {
        helper: String,
        action: &'static str,
        message: String,
    },
    /// The Docker config file could not be read, parsed or written.
    #[error("docker config {path}: {message}")]
    Config { path: String, message: String },
    /// Local I/O (reading an upload source, writing a sink).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// HTTP status, when the error came from a registry response.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// First registry error code (e.g. `BLOB_UNKNOWN`), when there was one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Http { errors, .. } => errors.code(),
            _ => None,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RegistryError::Io {
            context: context.into(),
            source,
        }
    }
}

fn http_detail(errors: &RemoteErrors, body: &str) -> String {
    if !errors.0.is_empty() {
        format!(": {errors}")
    } else if !body.is_empty() {
        format!(": {body}")
    } else {
        String::new()
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Parse a registry error body. Never fails: anything unparsable gives an empty list.
pub(crate) fn parse_remote_errors(body: &[u8]) -> RemoteErrors {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => RemoteErrors(b.errors.into_iter().map(|i| (i.code, i.message)).collect()),
        Err(_) => RemoteErrors::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_json_and_tolerates_garbage() {
        let e = parse_remote_errors(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#,
        );
        assert_eq!(e.code(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(e.to_string(), "MANIFEST_UNKNOWN: manifest unknown");
        assert!(parse_remote_errors(b"<html>").0.is_empty());
        assert!(parse_remote_errors(b"").0.is_empty());
    }

    #[test]
    fn http_error_text_names_everything() {
        let e = RegistryError::Http {
            registry: "r.example".into(),
            repository: "a/b".into(),
            operation: "get manifest",
            status: 404,
            errors: parse_remote_errors(br#"{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}"#),
            body: String::new(),
        };
        assert_eq!(
            e.to_string(),
            "get manifest a/b on r.example: HTTP 404: NAME_UNKNOWN: x"
        );
    }
}
