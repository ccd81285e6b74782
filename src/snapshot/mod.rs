//! Snapshots: unpacked layers under `snapshots-v1/<chain-id>/` (`fs/` + `meta.json`),
//! overlay chains of them (`overlay`), upper dirs settled against their lowers into the
//! layer BuildKit would write (`settle`) and layer diffs of upper dirs (`diff`).
//!
//! L4: may use `oci`, `sys` and `store`. Synchronous; async callers use `spawn_blocking`.

pub mod diff;
mod error;
pub mod overlay;
pub mod settle;
pub mod unpack;

use std::io;

pub use error::{DiffError, OverlayError, SnapshotError};
pub use unpack::{
    Snapshot, SnapshotMeta, UnpackStats, apply_tar, open_snapshot, unpack_layer, unpack_tar,
};

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;

trait IoContext<T> {
    fn io_context(self, action: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io_context(self, action: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| SnapshotError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}
