//! Mount wrappers. Mounts inside a container root go through file descriptors
//! (new mount API: `fsopen`/`fsmount`/`open_tree`/`move_mount`) onto targets that
//! were resolved with `openat2(RESOLVE_IN_ROOT)`, so a symlink planted in an image
//! can never redirect a mount (or a created mountpoint) onto the host.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
    OpenTreeFlags, UnmountFlags,
};

use super::error::{Result, SysError};

/// The kernel's limit on overlay lower layers.
pub const MAX_OVERLAY_LOWERS: usize = 500;

/// Longest option string the classic `mount(2)` accepts (one page, with the NUL).
const CLASSIC_OPTIONS_MAX: usize = 4095;

/// Per-mount attributes (the `MOUNT_ATTR_*` flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    pub readonly: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountAttrs {
    fn bits(self) -> MountAttrFlags {
        let mut flags = MountAttrFlags::empty();
        if self.readonly {
            flags |= MountAttrFlags::MOUNT_ATTR_RDONLY;
        }
        if self.nosuid {
            flags |= MountAttrFlags::MOUNT_ATTR_NOSUID;
        }
        if self.nodev {
            flags |= MountAttrFlags::MOUNT_ATTR_NODEV;
        }
        if self.noexec {
            flags |= MountAttrFlags::MOUNT_ATTR_NOEXEC;
        }
        flags
    }
}

/// What a missing path component should be created as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
}

/// Makes every mount of this mount namespace private, so nothing we mount
/// propagates back to the host (and nothing from the host to us).
pub fn make_rprivate() -> Result<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| SysError::path("mount --make-rprivate", "/", e))
}

/// Mounts an overlay of `lowers` (top first) on `target`. With `upper` =
/// `(upperdir, workdir)` it is writable; without, read-only (a single lower is
/// then a read-only bind, since overlay needs two lowers without an upper).
/// Uses `lowerdir+` per layer (kernel ≥ 6.8, up to 500 lowers) and falls back
/// to the classic `mount(2)` option string where that API is missing.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    if lowers.is_empty() {
        return Err(SysError::Invalid {
            call: "mount overlay",
            reason: "no lower layer".into(),
        });
    }
    if lowers.len() > MAX_OVERLAY_LOWERS {
        return Err(SysError::Invalid {
            call: "mount overlay",
            reason: format!(
                "{} lower layers, the kernel allows {MAX_OVERLAY_LOWERS}",
                lowers.len()
            ),
        });
    }
    if upper.is_none() && lowers.len() == 1 {
        let tree = open_tree_at(&lowers[0], false)?;
        set_attrs(
            tree.as_fd(),
            MountAttrs {
                readonly: true,
                ..MountAttrs::default()
            },
            false,
        )?;
        return attach(tree.as_fd(), Target::Path(target));
    }
    match overlay_new_api(lowers, upper) {
        Ok(mount) => attach(mount.as_fd(), Target::Path(target)),
        // ENOSYS: no fsopen; EINVAL from `lowerdir+`: a kernel older than 6.8.
        Err(Fallback::Classic) => mount_overlay_classic(lowers, upper, target),
        Err(Fallback::Fail(error)) => Err(error),
    }
}

/// No redirects made; `userxattr` (a user namespace) also refuses to follow any.
fn redirect_dir_option() -> &'static str {
    if super::userns::in_user_namespace() {
        "nofollow"
    } else {
        "off"
    }
}

enum Fallback {
    Classic,
    Fail(SysError),
}

fn overlay_new_api(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
) -> std::result::Result<OwnedFd, Fallback> {
    let fs = match rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(Errno::NOSYS) => return Err(Fallback::Classic),
        Err(e) => return Err(Fallback::Fail(SysError::call("fsopen overlay", e))),
    };
    for (index, lower) in lowers.iter().enumerate() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower.as_os_str()) {
            Ok(()) => {}
            Err(Errno::INVAL) if index == 0 => return Err(Fallback::Classic),
            Err(e) => {
                return Err(Fallback::Fail(SysError::path(
                    "fsconfig lowerdir+",
                    lower,
                    e,
                )));
            }
        }
    }
    if super::userns::in_user_namespace() {
        // Without root, overlay keeps its metadata in `user.overlay.*` xattrs.
        rustix::mount::fsconfig_set_flag(&fs, "userxattr")
            .map_err(|e| Fallback::Fail(SysError::call("fsconfig userxattr", e)))?;
    }
    let mut attrs = MountAttrs::default();
    if let Some((upper, work)) = upper {
        set_string(&fs, "upperdir", upper.as_os_str()).map_err(Fallback::Fail)?;
        set_string(&fs, "workdir", work.as_os_str()).map_err(Fallback::Fail)?;
        // Keep the upper dir a plain diff: no redirect xattrs, no metacopy-only
        // files, no index; what is in upper is exactly the layer.
        for (key, value) in [
            ("redirect_dir", redirect_dir_option()),
            ("index", "off"),
            ("metacopy", "off"),
        ] {
            set_string(&fs, key, OsStr::new(value)).map_err(Fallback::Fail)?;
        }
    } else {
        attrs.readonly = true;
    }
    rustix::mount::fsconfig_create(&fs)
        .map_err(|e| Fallback::Fail(SysError::call("fsconfig create overlay", e)))?;
    rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs.bits())
        .map_err(|e| Fallback::Fail(SysError::call("fsmount overlay", e)))
}

fn set_string(fs: &OwnedFd, key: &'static str, value: &OsStr) -> Result<()> {
    rustix::mount::fsconfig_set_string(fs, key, value).map_err(|e| SysError::Invalid {
        call: "fsconfig",
        reason: format!("{key}={}: {e}", value.to_string_lossy()),
    })
}

/// Classic `mount(2)` (the fallback of [`mount_overlay`], public for tests):
/// the whole option string must fit one page, so long chains are expressed
/// relative to their common directory (via `chdir`, which is process-wide:
/// call it single-threaded or with absolute paths everywhere else).
pub fn mount_overlay_classic(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<()> {
    let mut all: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    if let Some((u, w)) = upper {
        all.push(u);
        all.push(w);
    }
    for path in &all {
        let bytes = path.as_os_str().as_bytes();
        if bytes.iter().any(|b| matches!(b, b',' | b':' | b'\\')) {
            return Err(SysError::Invalid {
                call: "mount overlay",
                reason: format!("path {} has ',', ':' or '\\'", path.display()),
            });
        }
    }
    let options = |base: Option<&Path>| -> String {
        let show = |p: &Path| -> String {
            match base.and_then(|b| p.strip_prefix(b).ok()) {
                Some(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
                _ => p.to_string_lossy().into_owned(),
            }
        };
        let lower: Vec<String> = lowers.iter().map(|p| show(p)).collect();
        let mut s = format!("lowerdir={}", lower.join(":"));
        if super::userns::in_user_namespace() {
            s.push_str(",userxattr");
        }
        if let Some((u, w)) = upper {
            s.push_str(&format!(
                ",upperdir={},workdir={},redirect_dir={},index=off,metacopy=off",
                show(u),
                show(w),
                redirect_dir_option()
            ));
        }
        s
    };
    let flags = if upper.is_none() {
        rustix::mount::MountFlags::RDONLY
    } else {
        rustix::mount::MountFlags::empty()
    };
    let to_c = |s: String| {
        std::ffi::CString::new(s).map_err(|_| SysError::Invalid {
            call: "mount overlay",
            reason: "NUL byte in a layer path".into(),
        })
    };
    let absolute = options(None);
    if absolute.len() <= CLASSIC_OPTIONS_MAX {
        let absolute = to_c(absolute)?;
        return rustix::mount::mount("overlay", target, "overlay", flags, absolute.as_c_str())
            .map_err(|e| SysError::path("mount overlay", target, e));
    }
    let base = common_dir(&all).ok_or_else(|| SysError::Invalid {
        call: "mount overlay",
        reason: "layer paths share no directory to shorten them against".into(),
    })?;
    let relative = options(Some(&base));
    if relative.len() > CLASSIC_OPTIONS_MAX {
        return Err(SysError::Invalid {
            call: "mount overlay",
            reason: format!(
                "{} layers need {} bytes of options; mount(2) takes {CLASSIC_OPTIONS_MAX}",
                lowers.len(),
                relative.len()
            ),
        });
    }
    let target = std::path::absolute(target).map_err(|e| SysError::path("absolute", target, e))?;
    let back = rustix::fs::open(
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::path("open", ".", e))?;
    rustix::process::chdir(&base).map_err(|e| SysError::path("chdir", &base, e))?;
    let relative = to_c(relative)?;
    let mounted = rustix::mount::mount("overlay", &target, "overlay", flags, relative.as_c_str())
        .map_err(|e| SysError::path("mount overlay", &target, e));
    let restored = rustix::process::fchdir(&back).map_err(|e| SysError::call("fchdir back", e));
    mounted.and(restored)
}

fn common_dir(paths: &[&Path]) -> Option<PathBuf> {
    let first = paths.first()?.parent()?;
    let mut common: Vec<Component> = first.components().collect();
    for path in &paths[1..] {
        let parent: Vec<Component> = path.parent()?.components().collect();
        let same = common
            .iter()
            .zip(&parent)
            .take_while(|(a, b)| a == b)
            .count();
        common.truncate(same);
    }
    (common.len() > 1).then(|| common.iter().collect())
}

/// Where a mount goes: a trusted host path, or a descriptor from [`open_in_root`].
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Path(&'a Path),
    Fd(BorrowedFd<'a>),
}

fn attach(mount: BorrowedFd<'_>, target: Target<'_>) -> Result<()> {
    let result = match target {
        Target::Path(path) => rustix::mount::move_mount(
            mount,
            "",
            CWD,
            path,
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
        ),
        Target::Fd(fd) => rustix::mount::move_mount(
            mount,
            "",
            fd,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        ),
    };
    result.map_err(|e| SysError::call("move_mount", e))
}

/// Mounts a fresh filesystem (`proc`, `tmpfs`, `sysfs`, `devpts`, `mqueue`, …)
/// with string `options` on `target`.
pub fn mount_fs(
    fstype: &str,
    options: &[(&str, &str)],
    attrs: MountAttrs,
    target: Target<'_>,
) -> Result<()> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC).map_err(|e| {
        SysError::Invalid {
            call: "fsopen",
            reason: format!("{fstype}: {e}"),
        }
    })?;
    for (key, value) in options {
        // An empty value is a flag option (e.g. devpts `newinstance`).
        let set = if value.is_empty() {
            rustix::mount::fsconfig_set_flag(&fs, *key)
        } else {
            rustix::mount::fsconfig_set_string(&fs, *key, *value)
        };
        set.map_err(|e| SysError::Invalid {
            call: "fsconfig",
            reason: format!("{fstype} {key}={value}: {e}"),
        })?;
    }
    rustix::mount::fsconfig_create(&fs).map_err(|e| SysError::Invalid {
        call: "fsconfig create",
        reason: format!("{fstype}: {e}"),
    })?;
    let mount =
        rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs.bits()).map_err(|e| {
            SysError::Invalid {
                call: "fsmount",
                reason: format!("{fstype}: {e}"),
            }
        })?;
    attach(mount.as_fd(), target)
}

fn open_tree_at(source: &Path, recursive: bool) -> Result<OwnedFd> {
    open_tree_of(Target::Path(source), recursive)
}

fn open_tree_of(source: Target<'_>, recursive: bool) -> Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    match source {
        Target::Path(path) => rustix::mount::open_tree(CWD, path, flags)
            .map_err(|e| SysError::path("open_tree", path, e)),
        Target::Fd(fd) => rustix::mount::open_tree(fd, "", flags | OpenTreeFlags::AT_EMPTY_PATH)
            .map_err(|e| SysError::call("open_tree", e)),
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttrArg {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn set_attrs(tree: BorrowedFd<'_>, attrs: MountAttrs, recursive: bool) -> Result<()> {
    use std::os::fd::AsRawFd;
    let arg = MountAttrArg {
        attr_set: u64::from(attrs.bits().bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: `tree` is a live descriptor, the path is a NUL-terminated static
    // string, and `arg` is a properly sized `struct mount_attr` that outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &arg as *const MountAttrArg,
            std::mem::size_of::<MountAttrArg>(),
        )
    };
    if rc != 0 {
        return Err(SysError::call(
            "mount_setattr",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Bind-mounts `source` on `target`, optionally with its submounts and with
/// `attrs` applied (recursively for a recursive bind).
pub fn bind(
    source: Target<'_>,
    target: Target<'_>,
    recursive: bool,
    attrs: MountAttrs,
) -> Result<()> {
    let tree = open_tree_of(source, recursive)?;
    if attrs != MountAttrs::default() {
        set_attrs(tree.as_fd(), attrs, recursive)?;
    }
    attach(tree.as_fd(), target)
}

/// Unmounts `target`; `detach` = `MNT_DETACH` (lazy).
pub fn unmount(target: &Path, detach: bool) -> Result<()> {
    let flags = if detach {
        UnmountFlags::DETACH
    } else {
        UnmountFlags::empty()
    };
    rustix::mount::unmount(target, flags).map_err(|e| SysError::path("umount", target, e))
}

/// Makes `new_root` (a mount point) the root of this mount namespace and
/// detaches the old root, leaving the caller in `/`.
pub fn pivot_into(new_root: &Path) -> Result<()> {
    rustix::process::chdir(new_root).map_err(|e| SysError::path("chdir", new_root, e))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "."
    // then removes it without needing a put_old directory in the image.
    rustix::process::pivot_root(".", ".").map_err(|e| SysError::path("pivot_root", new_root, e))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| SysError::path("umount old root", new_root, e))?;
    rustix::process::chdir("/").map_err(|e| SysError::path("chdir", "/", e))
}

/// Opens a directory as a root for [`open_in_root`].
/// Whether the descriptor (an `O_PATH` one too) names a directory.
pub fn is_dir(fd: BorrowedFd<'_>) -> Result<bool> {
    let stat = rustix::fs::fstat(fd).map_err(|e| SysError::call("fstat", e))?;
    Ok(rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory)
}

pub fn open_root(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::path("open", path, e))
}

/// Resolves `path` inside `root` as if `root` were `/` (symlinks, `..` and
/// absolute links cannot leave it; `/proc` magic links are refused). Missing
/// components are created when `create` is given: directories on the way and
/// the last one as `create`; `on_create` sees each relative path just before it
/// is created. Returns an `O_PATH` descriptor usable as a mount [`Target::Fd`].
pub fn open_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    create: Option<NodeKind>,
    on_create: &mut dyn FnMut(&Path),
) -> Result<OwnedFd> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(SysError::Invalid {
                    call: "open_in_root",
                    reason: format!("{} has '..'", path.display()),
                });
            }
        }
    }
    let mut parent = rustix::io::dup(root).map_err(|e| SysError::call("dup", e))?;
    let mut prefix = PathBuf::new();
    for (index, name) in names.iter().enumerate() {
        let last = index + 1 == names.len();
        prefix.push(name);
        let opened = match rustix::fs::openat2(root, &prefix, flags, Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create.is_some() => {
                on_create(&prefix);
                let kind = if last {
                    create.unwrap_or(NodeKind::Dir)
                } else {
                    NodeKind::Dir
                };
                match kind {
                    NodeKind::Dir => {
                        rustix::fs::mkdirat(&parent, *name, Mode::from_raw_mode(0o755))
                            .map_err(|e| SysError::path("mkdir", &prefix, e))?
                    }
                    NodeKind::File => {
                        rustix::fs::openat(
                            &parent,
                            *name,
                            OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::WRONLY
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o644),
                        )
                        .map_err(|e| SysError::path("create", &prefix, e))?;
                    }
                }
                rustix::fs::openat2(root, &prefix, flags, Mode::empty(), resolve)
                    .map_err(|e| SysError::path("openat2", &prefix, e))?
            }
            Err(e) => return Err(SysError::path("openat2", &prefix, e)),
        };
        parent = opened;
    }
    Ok(parent)
}

/// Creates a character device node `path` (relative to `dir`) with `mode`.
pub fn mknod_char(
    dir: BorrowedFd<'_>,
    name: &Path,
    mode: u32,
    major: u32,
    minor: u32,
) -> Result<()> {
    rustix::fs::mknodat(
        dir,
        name,
        rustix::fs::FileType::CharacterDevice,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .map_err(|e| SysError::path("mknod", name, e))?;
    // mknod is subject to the umask; set the mode the caller asked for.
    rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| SysError::path("chmod", name, e))
}

/// Creates a symlink `name` → `link_target` in `dir`.
pub fn symlink_in(dir: BorrowedFd<'_>, link_target: &str, name: &Path) -> Result<()> {
    rustix::fs::symlinkat(link_target, dir, name).map_err(|e| SysError::path("symlink", name, e))
}

/// Creates directory `name` in `dir` with `mode` (exact, not masked).
pub fn mkdir_in(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> Result<()> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(SysError::path("mkdir", name, e)),
    }
    rustix::fs::chmodat(
        dir,
        name,
        Mode::from_raw_mode(mode),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| SysError::path("chmod", name, e))
}

/// Opens a directory (following nothing outside what `open_in_root` gave) for
/// use as a `dir` argument of the functions above.
pub fn reopen_dir(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SysError::call("open dir", e))
}
