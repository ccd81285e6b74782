//! Whether the kernel runs a binary format: a tiny program is handed to it and run.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};

use super::error::{Result, SysError};

/// How often a run that found the program busy is tried again.
const BUSY_RETRIES: u32 = 20;

/// Whether `program` (a complete executable) runs here and exits 0; `false` when the
/// kernel refuses its format. It runs from an anonymous memory file, so no directory has
/// to allow execution.
pub fn runs(program: &[u8]) -> Result<bool> {
    let writable = rustix::fs::memfd_create("kiln-probe", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(|e| SysError::call("memfd_create", e))?;
    let mut writable = File::from(writable);
    writable
        .write_all(program)
        .map_err(|e| SysError::call("write", e))?;
    // A file open for writing cannot be executed (ETXTBSY): run a read-only descriptor.
    let writable_path = format!("/proc/self/fd/{}", writable.as_raw_fd());
    let readable = rustix::fs::open(
        writable_path.as_str(),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::path("open", &writable_path, e))?;
    drop(writable);
    let path = format!("/proc/self/fd/{}", readable.as_raw_fd());
    let mut tries = 0;
    loop {
        let status = Command::new(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(status) => return Ok(status.success()),
            Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => return Ok(false),
            // A child another thread forked meanwhile holds the writable descriptor until
            // it execs.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < BUSY_RETRIES => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(SysError::path("exec", path, e)),
        }
    }
}
