//! Where build inputs come from: the build context (`.dockerignore` matching with moby's
//! semantics in [`ignore`]; selecting COPY sources inside the context without ever leaving
//! it, and hashing the selection by content with a persistent stat cache, in [`context`])
//! files fetched over HTTP(S) for `ADD <url>` ([`http`]) and git repositories for `ADD`
//! from git, through the `git` binary ([`git`]).
//!
//! Everything but [`http`] and [`git`] is synchronous and may block on I/O; async callers use
//! `spawn_blocking`.

pub mod context;
mod error;
pub mod git;
pub mod glob;
pub mod http;
pub mod ignore;
mod statcache;

pub use context::{
    Context, ContextDigest, Entry, FileChanges, FileKind, Selection, SourceMatch, Stats,
};
pub use error::Error;
pub use ignore::{IgnoreFile, MatchInfo, MatchType, PatternInfo, PatternMatcher};
pub use statcache::{CacheStatus, StatCache};
