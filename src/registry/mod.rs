//! OCI distribution client: resolve manifests, pull and push blobs, authenticate.
//!
//! # Why our own client and not `oci-client`
//!
//! `oci-client` 0.18 was read (its `src/client.rs`) and rejected because for kiln it:
//! - treats a `202` from a cross-repository mount as an error and leaves the upload session
//!   open, so "not mounted, push instead" cannot be told apart from a failure;
//! - has no retries (5xx/429/connection errors surface directly);
//! - has one global `accept_invalid_certificates` switch and `HttpsExcept` means *plain HTTP*
//!   for listed hosts, so Docker's "insecure = HTTPS with any cert, then HTTP" is not expressible;
//! - streams downloads only into an `AsyncWrite` with no progress hook, and takes its own
//!   `Reference` type that normalises names itself (that is the `oci` module's job here);
//! - reads no `~/.docker/config.json` / credential helpers and drops the registry's error JSON
//!   into generic variants.
//!
//! What we need is a few hundred lines over `reqwest` (rustls with the *ring* provider, so no
//! aws-lc-sys C build), so we own it: streaming into sync or async sinks with a progress
//! callback and digest verification on the fly, monolithic streamed uploads from a file
//! (never buffering a layer), HEAD-before-push, mounts, bearer/basic auth with a token cache,
//! retries with backoff, and errors that name registry, repository, operation, status and the
//! registry's error code.
//!
//! System roots come from `rustls-native-certs` rather than `webpki-roots`: Docker uses the
//! host's trust store, so registries behind a private CA installed on the host keep working.
//!
//! Digests, media types and platforms are `oci`'s. [`RegistryRef`] is the registry's view
//! of an `oci::Reference` (registry, repository, tag, digest); this module never parses or
//! normalises image references.

mod auth;
mod client;
mod error;
mod index;
mod operations;
mod scheme;
mod tls;

use crate::oci::{Digest, Reference};

pub use auth::{
    Anonymous, Challenge, CredentialSource, Credentials, DockerConfig, StaticCredentials,
    config_dir, parse_challenge,
};
pub use client::{BlobSource, Client, ClientConfig, RetryPolicy, http_client};
pub use error::{RegistryError, RemoteErrors, Result};
pub use index::{IndexEntry, select_platform};
pub use scheme::{
    DOCKER_HUB, DOCKER_HUB_API, DOCKER_HUB_AUTH_KEY, Scheme, api_host, auth_key, insecure_from_env,
    is_loopback, key_to_hostname, parse_insecure_list, scheme_for,
};

/// An already-normalised image reference (the `oci` module does the parsing).
///
/// `registry` is as written in references (`docker.io`, `localhost:5000`); the client maps
/// `docker.io` to its API host itself. `repository` is the full path (`library/busybox`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistryRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RegistryRef {
    /// A reference to a repository without tag or digest (for blob operations).
    pub fn repo(registry: impl Into<String>, repository: impl Into<String>) -> RegistryRef {
        RegistryRef {
            registry: registry.into(),
            repository: repository.into(),
            tag: None,
            digest: None,
        }
    }

    /// The same repository with a tag.
    pub fn with_tag(mut self, tag: impl Into<String>) -> RegistryRef {
        self.tag = Some(tag.into());
        self
    }

    /// The same repository with a digest.
    pub fn with_digest(mut self, digest: Digest) -> RegistryRef {
        self.digest = Some(digest);
        self
    }
}

impl std::fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A manifest (or index) fetched from a registry, verified against its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The digest of `bytes` (in the algorithm of the digest asked for, else sha256).
    pub digest: Digest,
    /// From `Content-Type`, else the document's `mediaType` field.
    pub media_type: String,
    /// The exact bytes served (digests are over these, never re-serialise them).
    pub bytes: Vec<u8>,
}

impl From<&Reference> for RegistryRef {
    /// The registry's view of a normalised reference (tag and digest kept as given).
    fn from(r: &Reference) -> RegistryRef {
        RegistryRef {
            registry: r.registry().to_string(),
            repository: r.repository().to_string(),
            tag: r.tag().map(str::to_string),
            digest: r.digest().cloned(),
        }
    }
}
