//! What the integration tests share, each piece defined once: the skip-or-fail rule, the
//! kiln binary, the busybox base image, the loopback registry, loopback git servers, temporary roots that check
//! nothing is left behind, and a few small byte and file helpers.
//!
//! `tests/sandbox.rs` (a separate binary with its own `main`) includes this module too.

mod binary;
mod busybox;
pub mod git;
pub mod registry;
mod temp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::SystemTime;

use kiln::instruction::Stages;

pub use binary::{kiln, kiln_command, kiln_path, kiln_with_root};
pub use busybox::{Busybox, arm64_emulation, busybox, busybox_arm64, push_busybox_index};
pub use temp::{TempRoot, assert_no_mounts, temp_dir, temp_store};

pub const SKOPEO: &str = "/usr/bin/skopeo";
pub const UMOCI: &str = "/usr/bin/umoci";
pub const BUSYBOX: &str = "/bin/busybox";

// ---------------------------------------------------------------------------------------
// Skip or fail

/// Skips the calling test (printing why), or fails it when `CI` is set: CI runs everything.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI is set and this test cannot run: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

/// Whether the tool at `path` exists; otherwise [`skip`]s.
pub fn have(path: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    skip(&format!(
        "{path} is missing (.ci/run lists the packages the tests use)"
    ));
    false
}

/// Whether the tests run as root; otherwise [`skip`]s.
pub fn have_root() -> bool {
    if kiln::sys::is_root() {
        return true;
    }
    skip("needs root");
    false
}

/// Why privileged tests (root, overlay mounts, namespaces) cannot run here, if they cannot.
pub fn privileged_unavailable() -> Option<&'static str> {
    if !kiln::sys::is_root() {
        Some("needs root (namespaces, overlay mounts)")
    } else if !kiln::sys::fileop::overlay_supported() {
        Some("overlayfs is not available")
    } else if !Path::new("/proc/self/ns/pid").exists() {
        Some("namespaces are not available")
    } else {
        None
    }
}

/// Whether privileged tests can run here; otherwise [`skip`]s.
pub fn privileged() -> bool {
    match privileged_unavailable() {
        None => true,
        Some(reason) => {
            skip(reason);
            false
        }
    }
}

// ---------------------------------------------------------------------------------------
// Process-lifetime files

/// A directory that lives as long as the test process, for fixtures made once (the kiln
/// copy, the busybox image, registries' pushes): statics are never dropped, so a small `sh`
/// watchdog removes it when the process exits.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| process_temp_dir("kiln-test-fixtures-"))
}

/// A fresh directory removed by a watchdog when this process exits.
// The watchdog must outlive this process, so it is deliberately never waited for.
#[allow(clippy::zombie_processes)]
pub fn process_temp_dir(prefix: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .unwrap()
        .keep();
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; rm -rf "$2""#)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// Small helpers

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A finished command's stderr as text.
pub fn stderr(out: &Output) -> String {
    text(&out.stderr)
}

/// Lower-case hex SHA-256, computed independently of kiln's own digest code.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift; no rand dependency needed).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `data` gzip-compressed (fast level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Writes `content` to `root/rel`, creating the parent directories.
pub fn write_file(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// The names in directory `dir`, sorted.
pub fn entry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The stages of the Dockerfile `text`, which must parse without errors.
pub fn stages(text: &str) -> Stages {
    let file = kiln::syntax::parse(text.as_bytes()).expect("parses");
    kiln::instruction::parse(&file).unwrap_or_else(|errors| panic!("{text}\n{errors:#?}"))
}

/// Sets the modification time of `path` (a file or a directory).
pub fn set_mtime(path: &Path, mtime: SystemTime) {
    std::fs::File::open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

/// A store root of its own (`root/` in a fresh [`TempRoot`]) with busybox:latest loaded;
/// `None` (after saying why) when privileged tests cannot run here.
pub fn busybox_root() -> Option<(TempRoot, std::path::PathBuf)> {
    if !privileged() {
        return None;
    }
    let archive = busybox()?.oci_archive()?;
    let (dir, path) = temp_dir();
    let root = path.join("root");
    let out = kiln_with_root(&root)
        .args(["load", "-q", "-i"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((dir, root))
}
