//! Everything that can go wrong with progress events.

/// Everything that can go wrong with progress events.
#[derive(Debug, thiserror::Error)]
pub enum ProgressError {
    #[error("invalid progress event: {0}")]
    Decode(#[from] serde_json::Error),
}
