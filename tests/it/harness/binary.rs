//! The kiln binary the end-to-end tests run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::fixture_dir;

/// The kiln binary, copied once per process: cargo may replace `target/debug/kiln` while
/// the tests run. `cp` makes the copy so that the only descriptor ever open for writing on
/// it belongs to another process: a test thread forking meanwhile would carry ours into its
/// child, and running the copy would then fail with ETXTBSY.
fn kiln_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let copy = fixture_dir().join("kiln");
        let status = Command::new("cp")
            .arg(env!("CARGO_BIN_EXE_kiln"))
            .arg(&copy)
            .status()
            .unwrap();
        assert!(status.success(), "copying the kiln binary failed");
        copy
    })
}

/// The kiln binary's path, for a test that starts it through another program.
pub fn kiln_path() -> &'static Path {
    kiln_bin()
}

/// `kiln` with a hermetic environment: an empty Docker config (the host's credentials never
/// leak into tests), none of the caller's `KILN_*` or build variables, stdin empty.
pub fn kiln_command() -> Command {
    let mut command = Command::new(kiln_bin());
    command
        .env("DOCKER_CONFIG", docker_config())
        .env_remove("KILN_ROOT")
        .env_remove("KILN_INSECURE_REGISTRIES")
        .env_remove("KILN_BINFMT_DIR")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("BUILDKIT_PROGRESS")
        .stdin(Stdio::null());
    command
}

/// [`kiln_command`] on the store root `root`.
pub fn kiln_with_root(root: &Path) -> Command {
    let mut command = kiln_command();
    command.arg("--root").arg(root);
    command
}

/// Runs `kiln --root ROOT ARGS` to the end.
pub fn kiln(root: &Path, args: &[&str]) -> Output {
    kiln_with_root(root).args(args).output().unwrap()
}

/// A Docker config directory with no credentials.
fn docker_config() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fixture_dir().join("docker-config");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}
