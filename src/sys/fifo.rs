//! The ends of a named pipe, opened without waiting for the other end: a container's
//! standard input, which the daemon's attach writes into.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

/// The read end of the fifo at `path`, opened at once (even with no writer yet), then made
/// blocking, as a process expects its standard input.
pub fn open_reader(path: &Path) -> io::Result<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let flags = rustix::fs::fcntl_getfl(&fd)?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
    Ok(fd)
}

/// A write end of the fifo at `path` that is never written: while it is open, a reader
/// never sees the end of the input. Fails (`ENXIO`) when nothing reads the fifo.
pub fn open_keeper(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_reader_sees_the_end_only_when_no_writer_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        crate::sys::mknod(&path, crate::sys::NodeKind::Fifo, 0o600, 0, 0).unwrap();
        assert!(open_keeper(&path).is_err(), "a keeper with no reader");
        let mut reader = std::fs::File::from(open_reader(&path).unwrap());
        let keeper = open_keeper(&path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut w| std::io::Write::write_all(&mut w, b"hello"))
            .unwrap();
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        drop(keeper);
        let mut rest = Vec::new();
        assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
    }
}
