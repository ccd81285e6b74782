//! Snapshots.
pub mod diff;
pub mod overlay;
