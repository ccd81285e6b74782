//! The re-linking of an incremental COPY on worker threads.
//!
//! When a COPY reuses an earlier layer ([`super::Reuse`]), its work is mostly one `fstatat`
//! and one `linkat` per unchanged file, kernel work in the target directories. The walk of
//! the source stays on the copy's thread, in order; each file that may be linked is handed,
//! with its open directories, to the worker of its target directory (directories are dealt
//! round-robin), which links it or, when the earlier file differs, copies it. A directory's
//! owner, mode and times are then set by that same worker after its entries, as the
//! sequential copy does (a link made afterwards would change its mtime). Setting them on a
//! directory touches no other one, so directories need no order among themselves. The
//! first error in walk order wins.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use super::Report;
use super::copy::{Handles, copy_contents, set_info, set_times};
use super::error::{Error, Result};
use super::user::Owner;
use crate::sys::dir::{Dir, FileStat};

/// Jobs are handed over in batches of this many, or fewer at the end of a directory.
const BATCH: usize = 64;
/// Batches waiting for a worker at most: then the walk waits, so that the directories
/// queued jobs keep open stay few.
const QUEUED_BATCHES: usize = 4;

/// Where the file of the reused layer is.
pub(super) enum Earlier<'d> {
    /// Entry `name` of `dir`, to be linked as the same name in `target`.
    At {
        dir: &'d Dir,
        target: &'d Dir,
        name: &'d OsStr,
    },
    Path(PathBuf),
}

/// Hard-links `target` to the `earlier` file when it has exactly the `owner`, `mode`,
/// size and mtime a copy of the source `meta` would get, and no other path of this copy
/// is linked to it yet (`linked`, by inode). Returns whether it did.
pub(super) fn link_earlier(
    earlier: &Earlier<'_>,
    meta: &FileStat,
    owner: Owner,
    mode: Option<u32>,
    target: &Path,
    linked: &Mutex<HashSet<(u64, u64)>>,
) -> bool {
    let old = match earlier {
        Earlier::At { dir, name, .. } => dir.stat(name),
        Earlier::Path(path) => fs::symlink_metadata(path).map(|meta| FileStat::from(&meta)),
    };
    let Ok(old) = old else {
        return false;
    };
    let same = old.is_file()
        && old.size == meta.size
        && Some(old.permissions) == mode
        && (old.uid, old.gid) == (owner.uid, owner.gid)
        && old.mtime == meta.mtime;
    // Each earlier inode is linked once: two paths that were hard links of each other
    // then need not be now.
    if !same
        || !linked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((old.dev, old.ino))
    {
        return false;
    }
    match earlier {
        Earlier::At { dir, target, name } => dir.link(name, target, name).is_ok(),
        Earlier::Path(path) => fs::hard_link(path, target).is_ok(),
    }
}

/// What a worker does.
pub(super) enum Job {
    /// Link entry `name` of `dirs` from the earlier layer, else copy it from `src` to
    /// `target` and give it `owner`, `mode`, the xattrs and times of `src`.
    File {
        dirs: Arc<Handles>,
        name: OsString,
        src: PathBuf,
        target: PathBuf,
        meta: FileStat,
        owner: Owner,
        mode: Option<u32>,
    },
    /// The directory `target` has all its entries: give it its final metadata.
    Directory {
        src: PathBuf,
        target: PathBuf,
        meta: FileStat,
        finish: Finish,
    },
}

/// The metadata a directory gets once its entries are written.
#[derive(Debug, Clone, Copy)]
pub(super) enum Finish {
    /// Owner, mode, xattrs and times of the source.
    Info(Owner, Option<u32>),
    /// Only the source's times (a directory that existed).
    Times,
}

/// The copy's side: queues of jobs for each worker.
pub(super) struct Workers {
    senders: Vec<SyncSender<Vec<(u64, Job)>>>,
    pending: Vec<Vec<(u64, Job)>>,
    next: usize,
    /// Jobs queued so far: the walk-order number of the next one.
    queued: u64,
    /// Set by a worker that failed: the walk may stop.
    failed: Arc<AtomicBool>,
}

impl Workers {
    /// The worker for the entries of a new target directory.
    pub(super) fn assign(&mut self) -> usize {
        let worker = self.next;
        self.next = (self.next + 1) % self.senders.len();
        worker
    }

    /// Queues `job` for `worker`; `end` hands over what is queued for it (the end of a
    /// directory).
    pub(super) fn queue(&mut self, worker: usize, job: Job, end: bool) {
        self.pending[worker].push((self.queued, job));
        self.queued += 1;
        if end || self.pending[worker].len() >= BATCH {
            self.flush(worker);
        }
    }

    /// Hands over what is queued for `worker`.
    pub(super) fn flush(&mut self, worker: usize) {
        if self.pending[worker].is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending[worker]);
        // A worker only hangs up by panicking, which the join reports.
        let _ = self.senders[worker].send(batch);
    }

    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }
}

/// Runs `walk` with `count` workers (none when `count` is 0 or they cannot be started)
/// and waits for them; once `cancel` is set, they skip what is left. Returns the first
/// error in walk order and what the workers wrote.
pub(super) fn run_with_workers(
    count: usize,
    linked: &Mutex<HashSet<(u64, u64)>>,
    cancel: Option<&AtomicBool>,
    walk: impl FnOnce(Option<Workers>) -> (Result<()>, Option<Workers>),
) -> (Result<()>, Report) {
    let failed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..count {
            let (sender, receiver) = sync_channel(QUEUED_BATCHES);
            let failed = Arc::clone(&failed);
            let spawned = std::thread::Builder::new()
                .name("kiln-relink".to_string())
                .spawn_scoped(scope, move || work(&receiver, linked, cancel, &failed));
            match spawned {
                Ok(thread) => {
                    senders.push(sender);
                    threads.push(thread);
                }
                Err(_) => break,
            }
        }
        let workers = (!senders.is_empty()).then(|| Workers {
            pending: senders.iter().map(|_| Vec::new()).collect(),
            senders,
            next: 0,
            queued: 0,
            failed,
        });
        let (walked, workers) = walk(workers);
        // Everything queued before the walk failed comes before its error.
        let walk_error_at = workers.as_ref().map_or(0, |w| w.queued);
        let mut first = walked.err().map(|e| (walk_error_at, e));
        if let Some(mut workers) = workers {
            for worker in 0..workers.senders.len() {
                workers.flush(worker);
            }
        }
        let mut report = Report::default();
        for thread in threads {
            let (wrote, error) = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            report.files += wrote.files;
            report.linked += wrote.linked;
            report.bytes += wrote.bytes;
            if let Some((at, e)) = error
                && first.as_ref().is_none_or(|(first_at, _)| at < *first_at)
            {
                first = Some((at, e));
            }
        }
        (first.map_or(Ok(()), |(_, e)| Err(e)), report)
    })
}

/// A worker: does its jobs in order until the copy hangs up; after an error (or once
/// cancelled), only drains them.
fn work(
    jobs: &Receiver<Vec<(u64, Job)>>,
    linked: &Mutex<HashSet<(u64, u64)>>,
    cancel: Option<&AtomicBool>,
    failed: &AtomicBool,
) -> (Report, Option<(u64, Error)>) {
    let mut report = Report::default();
    let mut error = None;
    for batch in jobs {
        for (at, job) in batch {
            if error.is_some() {
                continue;
            }
            let done = if cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                Err(Error::Cancelled)
            } else {
                do_job(job, linked, &mut report)
            };
            if let Err(e) = done {
                failed.store(true, Ordering::Relaxed);
                error = Some((at, e));
            }
        }
    }
    (report, error)
}

fn do_job(job: Job, linked: &Mutex<HashSet<(u64, u64)>>, report: &mut Report) -> Result<()> {
    match job {
        Job::File {
            dirs,
            name,
            src,
            target,
            meta,
            owner,
            mode,
        } => {
            let earlier = dirs.earlier.as_ref().map(|dir| Earlier::At {
                dir,
                target: &dirs.target,
                name: &name,
            });
            report.files += 1;
            if earlier.is_some_and(|e| link_earlier(&e, &meta, owner, mode, &target, linked)) {
                report.linked += 1;
                return Ok(());
            }
            report.bytes += copy_contents(&src, &target)?;
            set_info(&meta, &src, &target, owner, mode)
        }
        Job::Directory {
            src,
            target,
            meta,
            finish,
        } => match finish {
            Finish::Info(owner, mode) => set_info(&meta, &src, &target, owner, mode),
            Finish::Times => set_times(&meta, &target),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_in_walk_order_wins() {
        let linked = Mutex::new(HashSet::new());
        let missing = std::env::temp_dir().join(format!("kiln-linker-{}", std::process::id()));
        let (result, _) = run_with_workers(2, &linked, None, |workers| {
            let mut workers = workers.expect("workers start");
            let meta = FileStat::from(&fs::metadata(std::env::temp_dir()).unwrap());
            for i in 0..3 {
                let worker = workers.assign();
                let job = Job::Directory {
                    src: missing.join(format!("src-{i}")),
                    target: missing.join(format!("dir-{i}")),
                    meta,
                    finish: Finish::Times,
                };
                workers.queue(worker, job, true);
            }
            (Err(Error::Cancelled), Some(workers))
        });
        match result {
            Err(Error::Sys(e)) => assert!(e.to_string().contains("dir-0"), "{e}"),
            other => panic!("expected the error of dir-0, got {other:?}"),
        }
        let (result, _) =
            run_with_workers(2, &linked, None, |workers| (Err(Error::Cancelled), workers));
        assert!(matches!(result, Err(Error::Cancelled)));
    }

    #[test]
    fn cancelled_workers_skip_their_jobs() {
        let linked = Mutex::new(HashSet::new());
        let cancel = AtomicBool::new(true);
        let dir = tempfile::tempdir().unwrap();
        let meta = FileStat::from(&fs::metadata(dir.path()).unwrap());
        let (result, wrote) = run_with_workers(2, &linked, Some(&cancel), |workers| {
            let mut workers = workers.expect("workers start");
            let worker = workers.assign();
            let job = Job::Directory {
                src: dir.path().to_path_buf(),
                target: dir.path().to_path_buf(),
                meta,
                finish: Finish::Times,
            };
            workers.queue(worker, job, true);
            (Ok(()), Some(workers))
        });
        assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
        assert_eq!(wrote, Report::default());
    }
}
