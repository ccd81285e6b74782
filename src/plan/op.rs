//! The ops of the build graph: a *definition* (everything that goes into the
//! cache key, serialised deterministically) kept apart from *metadata* (how the
//! op is shown and where it came from).
//!
//! Inputs are the graph's incoming edges, numbered by their weight; a definition
//! refers to an input by that number (`input: 1`), never by node id, so that
//! the same definition over the same inputs is the same op.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::syntax::Span;

/// One node of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub definition: Definition,
    pub metadata: Metadata,
}

/// What an op does: the part of it that makes its cache key (with the keys of
/// its inputs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Definition {
    Source(Source),
    Exec(Exec),
    File(FileOp),
}

impl Definition {
    /// The canonical bytes of the definition (JSON with fixed field order and
    /// sorted maps). The solver hashes these with the keys of the inputs.
    /// Proxy variables are not part of it (see [`Exec::proxy_env`]).
    pub fn cache_definition(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A short kind name for dumps and progress.
    pub fn kind(&self) -> &'static str {
        match self {
            Definition::Source(Source::Image { .. }) => "image",
            Definition::Source(Source::Scratch) => "scratch",
            Definition::Source(Source::Context { .. }) => "context",
            Definition::Source(Source::Url { .. }) => "url",
            Definition::Source(Source::Git { .. }) => "git",
            Definition::Exec(_) => "exec",
            Definition::File(FileOp::Copy(_)) => "copy",
            Definition::File(FileOp::Mkdir(_)) => "mkdir",
        }
    }
}

/// Where a filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Source {
    /// A registry image, pinned by digest. The key is the manifest digest.
    Image {
        /// As the resolver normalised it (`docker.io/library/alpine:3.20`).
        reference: String,
        manifest_digest: String,
        platform: String,
    },
    /// The empty filesystem.
    Scratch,
    /// Files of the local build context. The solver selects the files that
    /// match `include` (every file when empty) minus `exclude` and the
    /// `.dockerignore` rules, and keys the op by their content digest.
    Context {
        name: String,
        include: Vec<String>,
        exclude: Vec<String>,
    },
    /// One file downloaded over HTTP(S) (`ADD https://…`), stored as `filename`.
    Url {
        url: String,
        checksum: Option<String>,
        filename: String,
    },
    /// A git repository (`ADD https://…/repo.git#ref:dir`, `ADD git@…`). The solver keys
    /// it by the commit `reference` resolves to, not by these fields.
    Git {
        /// The URL git fetches (without `#…` or `?…`).
        remote: String,
        /// A branch, tag, full ref or commit; the default branch when empty.
        reference: String,
        /// The repository directory whose contents are the source; the root when empty.
        subdir: String,
        /// `--checksum`: the commit, or a prefix of it, `reference` must resolve to.
        checksum: Option<String>,
        /// `--keep-git-dir`: the result has a `.git` (only without `subdir`).
        keep_git_dir: bool,
        /// Submodules are checked out too (the default).
        submodules: bool,
    },
}

/// A RUN step. Input 0 is the root filesystem; mounts name their own inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exec {
    /// The full argv (SHELL + command for the shell form).
    pub argv: Vec<String>,
    /// `KEY=value`, in definition order: the image's Env, then ARG and ENV as
    /// declared (ENV wins over ARG of the same name).
    pub env: Vec<String>,
    /// As written (`name`, `uid:gid`); empty means root. The solver resolves
    /// names against the rootfs `/etc/passwd` and `/etc/group`.
    pub user: String,
    /// Absolute working directory; the solver creates it if missing.
    pub workdir: String,
    pub hostname: String,
    /// The stage's platform (`FROM --platform`, else the target platform): what
    /// the binaries run as (emulated when it is not the host's).
    pub platform: String,
    /// `default`, `none` or `host`.
    pub network: String,
    /// `sandbox` or `insecure`.
    pub security: String,
    pub mounts: Vec<ExecMount>,
    /// Heredoc scripts to make visible read-only at `path` (under `/dev/pipes/`)
    /// for the duration of the step; never part of the layer.
    pub files: Vec<HeredocFile>,
    /// What went into the key, by origin, so a cache miss can be explained:
    /// `command`, `user`, `workdir`, `env:NAME`, `arg:NAME`, `network`, `mount:N`.
    pub explain: BTreeMap<String, String>,
    /// HTTP_PROXY and friends given as build args but not declared with ARG: set
    /// in the step's environment, left out of the key and the history.
    #[serde(skip)]
    pub proxy_env: BTreeMap<String, String>,
}

/// A file written for a RUN heredoc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeredocFile {
    pub path: String,
    pub content: String,
    pub mode: u32,
}

/// A resolved `RUN --mount`.
///
/// Serialised (into the step's key) in the flat form of its first version, one field per
/// mount option whatever the kind (see its `Serialize` impl), so the keys of steps
/// cached before stay valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecMount {
    /// Absolute path inside the step (relative targets are joined to WORKDIR); empty for
    /// a secret given only as `env=`.
    pub target: String,
    /// `source=`: the path within the input of a bind or cache mount. The other kinds do
    /// not read it (a secret's id already came from it), but it is part of the key.
    pub source: Option<String>,
    /// `ro`/`rw`, for bind and cache mounts; secret and ssh mounts are always read-only.
    pub read_only: bool,
    pub kind: MountKind,
}

/// What a mount is, with the options of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// The op's input `input` (a stage, an image or the build context) at `source`.
    Bind {
        input: usize,
        /// `id=`: accepted on every kind, as in BuildKit, and unused by this one; part
        /// of the key as written.
        id: Option<String>,
    },
    /// A directory that persists across builds, named by `id`, seeded from `input` when
    /// `from=` was given.
    Cache {
        id: String,
        sharing: CacheSharing,
        input: Option<usize>,
        owner: MountOwner,
    },
    /// An empty in-memory filesystem.
    Tmpfs {
        /// Bytes; unlimited when `None`.
        size: Option<u64>,
        /// `id=`, unused by this kind (see [`MountKind::Bind`]).
        id: Option<String>,
    },
    /// The `--secret` named `id`, as a file at the target and/or the variable `env`.
    Secret {
        id: String,
        env: Option<String>,
        /// Fail when the secret is not given (else the mount is skipped).
        required: bool,
        owner: MountOwner,
    },
    /// The `--ssh` agent socket named `id`, with `SSH_AUTH_SOCK` pointing at it.
    Ssh {
        id: String,
        /// Fail when the agent is not given (else the mount is skipped).
        required: bool,
        owner: MountOwner,
    },
}

impl MountKind {
    /// The `type=` name.
    pub fn name(&self) -> &'static str {
        match self {
            MountKind::Bind { .. } => "bind",
            MountKind::Cache { .. } => "cache",
            MountKind::Tmpfs { .. } => "tmpfs",
            MountKind::Secret { .. } => "secret",
            MountKind::Ssh { .. } => "ssh",
        }
    }
}

/// `mode=`, `uid=` and `gid=` of a cache directory, secret file or agent socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountOwner {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// How steps running at once share a cache mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheSharing {
    /// Everyone uses the one directory at once.
    #[default]
    Shared,
    /// A step gets a directory no running step holds (a new one if need be).
    Private,
    /// One step at a time; the others wait.
    Locked,
}

impl CacheSharing {
    /// The `sharing=` name.
    pub fn name(self) -> &'static str {
        match self {
            CacheSharing::Shared => "shared",
            CacheSharing::Private => "private",
            CacheSharing::Locked => "locked",
        }
    }
}

/// The serialised form of an [`ExecMount`]: every option of every kind, in this order,
/// `null`/`false` where the kind has none. Changing it changes every RUN key with a mount.
#[derive(Serialize)]
struct ExecMountKey<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    target: &'a str,
    input: Option<usize>,
    source: Option<&'a str>,
    read_only: bool,
    id: Option<&'a str>,
    sharing: Option<&'static str>,
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    required: bool,
    env: Option<&'a str>,
}

impl Serialize for ExecMount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut key = ExecMountKey {
            kind: self.kind.name(),
            target: &self.target,
            input: None,
            source: self.source.as_deref(),
            read_only: self.read_only,
            id: None,
            sharing: None,
            size: None,
            mode: None,
            uid: None,
            gid: None,
            required: false,
            env: None,
        };
        let owner = match &self.kind {
            MountKind::Bind { input, id } => {
                key.input = Some(*input);
                key.id = id.as_deref();
                None
            }
            MountKind::Cache {
                id,
                sharing,
                input,
                owner,
            } => {
                key.input = *input;
                key.id = Some(id);
                key.sharing = Some(sharing.name());
                Some(owner)
            }
            MountKind::Tmpfs { size, id } => {
                key.size = *size;
                key.id = id.as_deref();
                None
            }
            MountKind::Secret {
                id,
                env,
                required,
                owner,
            } => {
                key.id = Some(id);
                key.env = env.as_deref();
                key.required = *required;
                Some(owner)
            }
            MountKind::Ssh {
                id,
                required,
                owner,
            } => {
                key.id = Some(id);
                key.required = *required;
                Some(owner)
            }
        };
        if let Some(owner) = owner {
            (key.mode, key.uid, key.gid) = (owner.mode, owner.uid, owner.gid);
        }
        key.serialize(serializer)
    }
}

/// A filesystem change made by the builder itself. Input 0 is the destination
/// root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileOp {
    Copy(Copy),
    Mkdir(Mkdir),
}

/// COPY or ADD: every source is copied, in order, into `dest` on input 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub sources: Vec<CopySource>,
    /// Absolute, resolved against WORKDIR; a trailing `/` means "into this
    /// directory" and is kept.
    pub dest: String,
    /// `--chown` as expanded (`user`, `user:group`, `uid:gid`): the solver
    /// resolves names against the destination's `/etc/passwd` and `/etc/group`.
    pub chown: Option<String>,
    /// `--chmod` as expanded: octal (`0755`) or symbolic (`u+x`), see
    /// [`crate::instruction::Chmod`].
    pub chmod: Option<String>,
    /// `--link`: the layer is the copy onto an empty filesystem.
    pub link: bool,
    pub parents: bool,
    /// `--exclude` patterns, applied to every source.
    pub exclude: Vec<String>,
    pub create_dest_path: bool,
}

/// One source of a COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CopySource {
    /// A path or wildcard pattern in one of the op's inputs.
    Path {
        input: usize,
        /// Absolute within the input, cleaned; may hold wildcards.
        path: String,
        /// `--parents`: patterns below `path` whose parent directories are kept.
        include_patterns: Vec<String>,
        follow_symlinks: bool,
        /// A directory's contents are copied, not the directory itself.
        copy_dir_contents_only: bool,
        allow_wildcard: bool,
        allow_empty_wildcard: bool,
        /// ADD: a local tar archive is extracted instead of copied.
        unpack: bool,
    },
    /// A heredoc body, written as a file named `name` with `mode`.
    Inline {
        name: String,
        content: String,
        mode: u32,
    },
}

/// WORKDIR: create the directory (and its parents) owned by the current USER.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mkdir {
    pub path: String,
    /// The USER at that point (empty = root), resolved by the solver like chown.
    pub owner: String,
    pub mode: u32,
    pub make_parents: bool,
}

/// How an op is shown and where it came from; not part of its key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// BuildKit-style display name: `[build 2/5] RUN make`.
    pub name: String,
    /// The stage's display name (`build`, `stage-1`), when the op belongs to one.
    pub stage: Option<String>,
    /// The Dockerfile text the op comes from.
    pub span: Option<Span>,
    /// The stage is in `--no-cache-filter`: run even on a cache hit.
    pub ignore_cache: bool,
    /// The step comes from an ONBUILD trigger of the base.
    pub onbuild: bool,
}
