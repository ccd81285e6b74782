//! What can make a build fail.

use std::path::PathBuf;

use crate::syntax::Span;

/// Why [`super::Build::run`] failed. Every variant keeps its cause; [`BuildError::span`]
/// says where in the Dockerfile, when that is known, so a caller can show an excerpt.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// `--platform` names another OS than the host's.
    #[error(
        "--platform {wanted}: kiln builds images for this machine's OS only (this machine is \
         {host})"
    )]
    UnsupportedPlatform { wanted: String, host: String },
    /// The Dockerfile could not be planned (a bad expansion, an unknown stage, a base image
    /// that cannot be resolved or pulled).
    #[error(transparent)]
    Plan(Box<crate::plan::Error>),
    /// A step failed or the build was cancelled. `step_log` is the file holding the
    /// failing step's whole output, when the build record was saved.
    /// `failed_step` is the failing RUN kept for `kiln debug` (in the build record once
    /// that is saved).
    #[error("{source}")]
    Solve {
        #[source]
        source: Box<crate::solve::SolveError>,
        step_log: Option<PathBuf>,
        failed_step: Option<PathBuf>,
    },
    /// No build record has this id (empty: there are no records).
    #[error("{}", if query.is_empty() { "no build has been recorded".to_string() } else { format!("no build record {query}") })]
    NoBuildRecord { query: String },
    #[error("{count} build records start with {query}: give more of the id")]
    AmbiguousBuildRecord { query: String, count: usize },
    /// The record has no kept failed step to reopen.
    #[error("build {id} {reason}")]
    NoFailedStep { id: String, reason: String },
    /// Reopening a kept failed step.
    #[error(transparent)]
    Debug(Box<crate::solve::SolveError>),
    #[error("build context: {0}")]
    Context(#[from] crate::source::Error),
    /// The check options (`# check=`, `BUILDKIT_DOCKERFILE_CHECK`) do not parse.
    #[error("{0}")]
    Check(#[from] crate::plan::lint::Error),
    #[error("cache index: {0}")]
    Cache(#[from] crate::cache::CacheError),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("exporting the image: {0}")]
    Export(#[from] crate::export::ExportError),
    #[error("{what} {}: {source}", path.display())]
    Record {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the build record: {0}")]
    RecordEncode(#[source] serde_json::Error),
    #[error("a build task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// An option of the request that cannot be carried out as written (`--cache-to …`).
    #[error("{message}")]
    Usage { message: String },
    /// The registry client the caches need could not be set up (its TLS configuration).
    #[error("setting up the registry client: {0}")]
    RegistryClient(#[source] crate::registry::RegistryError),
    /// A blob an imported cache or a base image named could not be fetched.
    #[error("fetching layers the image needs: {source}")]
    CacheImport {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing a cache (`--cache-to`) failed; the image was stored before.
    #[error("exporting the cache to {target}: {source}")]
    CacheExport {
        target: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An `--output` spec, or a combination of outputs, that cannot work (a usage error).
    /// `spec` is empty when the outputs together are the problem.
    #[error("{}", output_message(.spec, .reason))]
    Output { spec: String, reason: String },
    /// A push of the image failed (the local result, if any, is stored).
    #[error("pushing {reference}: {source}")]
    Push {
        reference: String,
        #[source]
        source: Box<crate::image::ImageError>,
    },
    /// Writing an archive, directory or tar output failed.
    #[error("{output}: {source}")]
    OutputWrite {
        output: String,
        #[source]
        source: Box<crate::image::ImageError>,
    },
}

fn output_message(spec: &str, reason: &str) -> String {
    match spec {
        "" => format!("outputs: {reason}"),
        spec => format!("--output {spec}: {reason}"),
    }
}

impl From<crate::plan::Error> for BuildError {
    fn from(error: crate::plan::Error) -> BuildError {
        BuildError::Plan(Box::new(error))
    }
}

impl BuildError {
    pub(crate) fn record_io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| BuildError::Record { what, path, source }
    }

    /// Where in the Dockerfile the failure is, when known.
    pub fn span(&self) -> Option<Span> {
        match self {
            BuildError::Plan(error) => Some(error.span()),
            BuildError::Solve { source, .. } => source.span(),
            _ => None,
        }
    }

    /// The build was stopped by its cancel signal (Ctrl-C), not by a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, BuildError::Solve { source, .. }
            if matches!(**source, crate::solve::SolveError::Cancelled))
    }

    /// A Dockerfile or output spec the user must fix (exit status 2 on the command line), as
    /// opposed to a failure of the build. A base image that cannot be pulled is a failure.
    pub fn is_usage(&self) -> bool {
        match self {
            BuildError::Plan(error) => !matches!(**error, crate::plan::Error::Resolve { .. }),
            BuildError::Usage { .. } => true,
            BuildError::Output { .. } => true,
            BuildError::Check(_) => true,
            _ => false,
        }
    }
}
