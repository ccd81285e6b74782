//! What each kind of op does once the scheduler starts it: the sources (`image`,
//! `context`, `url`, `git`) give a filesystem directly; the steps (`exec` for RUN, `file` for
//! COPY/ADD/WORKDIR) write a layer into a staging directory that the step commits.

pub(super) mod context;
pub(super) mod exec;
pub(super) mod file;
pub(super) mod git;
pub(super) mod image;
pub(super) mod url;
