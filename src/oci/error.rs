//! The errors of the `oci` vocabulary. Each value type parses with its own error, so that a
//! caller can tell a bad digest from a bad name or platform (the store, for one, wraps
//! both); they live here together.

use super::digest::Algorithm;
use super::reference::NAME_MAX_LEN;

/// Why a string is not a digest we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected <algorithm>:<hex>")]
    MissingAlgorithm(String),
    #[error(
        "unsupported digest algorithm {algorithm:?} in {digest:?} (sha256 and sha512 are supported)"
    )]
    UnsupportedAlgorithm { digest: String, algorithm: String },
    #[error("invalid digest {digest:?}: {algorithm} needs {expected} lowercase hex characters")]
    BadHex {
        digest: String,
        algorithm: Algorithm,
        expected: usize,
    },
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error(
        "invalid repository name ({0}), cannot specify 64-byte hexadecimal strings (use an image id lookup instead)"
    )]
    BareIdentifier(String),
    #[error(
        "invalid reference format: repository name ({repository}) must be lowercase in {reference:?}"
    )]
    UppercaseRepository {
        reference: String,
        repository: String,
    },
    #[error(
        "invalid reference format: bad tag {tag:?} in {reference:?} (tags match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})"
    )]
    BadTag { reference: String, tag: String },
    #[error("invalid reference format: bad digest in {reference:?}: {source}")]
    BadDigest {
        reference: String,
        source: DigestError,
    },
    #[error("invalid reference format: bad registry host {domain:?} in {reference:?}")]
    BadDomain { reference: String, domain: String },
    #[error(
        "invalid reference format: bad repository path component {component:?} in {reference:?}"
    )]
    BadPathComponent {
        reference: String,
        component: String,
    },
    #[error(
        "invalid reference format: repository name longer than {NAME_MAX_LEN} characters in {0:?}"
    )]
    NameTooLong(String),
}

/// Why a platform string is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {0:?}: expected os/arch[/variant], got an empty component")]
    EmptyComponent(String),
    #[error("invalid platform {0:?}: expected os/arch[/variant], got more than three components")]
    TooManyComponents(String),
    #[error("invalid platform {0:?}: expected os/arch[/variant], got no architecture")]
    MissingArchitecture(String),
}
