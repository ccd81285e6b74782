//! Small filesystem helpers: durable atomic writes and unique names.

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::{IoContext, Result};

/// A name unlikely to collide across threads and processes (callers still create with
/// `create_new` and retry): random per-process keys mixed with pid, time and a counter.
pub fn random_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// A new random id of 64 hex digits, as Docker makes container and network ids: never
/// all digits in its short form (it could be read as a number).
pub fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let path = Path::new("/dev/urandom");
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .io_context("read", path)?;
    let mut id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if id[..12].bytes().all(|b| b.is_ascii_digit()) {
        id.replace_range(0..1, "a");
    }
    Ok(id)
}

/// fsyncs a directory so that a rename or create inside it survives a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .io_context("fsync directory", dir)
}

/// Replaces `path` with `content`: temp file in the same directory, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{file_name}.tmp-{}", random_name()));
    let result = (|| {
        let mut file = File::create_new(&temp).io_context("create", &temp)?;
        file.write_all(content).io_context("write", &temp)?;
        file.sync_all().io_context("fsync", &temp)?;
        fs::rename(&temp, path).io_context("rename into place", path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
