//! Overlay snapshot chains and layer diffs. The chain and whiteout/xattr/owner
//! cases need root (skipped with the reason otherwise, failing under `CI`).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use kiln::snapshot::diff::{self, DiffOptions, TarEntry};
use kiln::snapshot::overlay::{self, OverlayError};
use kiln::snapshot::settle;

use crate::harness::{self, TempRoot, sha256_hex};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = overlay::unmount(&self.0);
    }
}

/// `count` lower dirs with long (content-address-like) names, top first:
/// layer k holds `f<k>` and `shared` = "k".
fn layers(root: &Path, count: usize) -> Vec<PathBuf> {
    (0..count)
        .map(|k| {
            let hex = sha256_hex(k.to_string().as_bytes());
            let dir = root.join("snapshots-v1").join(hex).join("fs");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(format!("f{k}")), k.to_string()).unwrap();
            fs::write(dir.join("shared"), k.to_string()).unwrap();
            dir
        })
        .collect()
}

fn check_chain(target: &Path, count: usize) {
    for k in 0..count {
        assert_eq!(
            fs::read_to_string(target.join(format!("f{k}"))).unwrap(),
            k.to_string()
        );
    }
    assert_eq!(
        fs::read_to_string(target.join("shared")).unwrap(),
        "0",
        "the top layer wins"
    );
}

#[test]
fn a_chain_of_200_layers_mounts_read_only_and_writable() {
    if !harness::privileged() {
        return;
    }
    let dir = TempRoot::new();
    let lowers = layers(dir.path(), 200);
    let target = dir.path().join("ro");
    fs::create_dir(&target).unwrap();
    overlay::mount_readonly(&lowers, &target).unwrap();
    let guard = Mounted(target.clone());
    check_chain(&target, 200);
    assert!(fs::write(target.join("new"), "x").is_err(), "read-only");
    drop(guard);

    let prepared = overlay::prepare(&lowers, &dir.path().join("step")).unwrap();
    prepared.mount().unwrap();
    let guard = Mounted(prepared.target.clone());
    check_chain(&prepared.target, 200);
    fs::write(prepared.target.join("new"), "x").unwrap();
    fs::remove_file(prepared.target.join("f7")).unwrap();
    drop(guard);
    assert_eq!(fs::read_to_string(prepared.upper.join("new")).unwrap(), "x");
    let whiteout = fs::symlink_metadata(prepared.upper.join("f7")).unwrap();
    assert_eq!(whiteout.rdev(), 0, "a 0/0 whiteout");
    let committed = dir.path().join("committed");
    overlay::commit(&prepared, &committed).unwrap();
    assert!(committed.join("new").exists());
    assert!(!dir.path().join("step").exists());
}

#[test]
fn classic_mount_fallback_fits_long_chains_with_relative_paths() {
    if !harness::privileged() {
        return;
    }
    let dir = TempRoot::new();
    // 40 layers of ~120-byte paths: ~5 KB of options, over the one-page limit.
    let lowers = layers(dir.path(), 40);
    let target = dir.path().join("ro");
    fs::create_dir(&target).unwrap();
    // The fallback changes the working directory, which is process-wide: on a thread with
    // its own (and its own mount namespace) the other tests of this process never see it.
    let mounted = std::thread::spawn(move || {
        kiln::sys::fileop::enter_private_mount_namespace().unwrap();
        let cwd = std::env::current_dir().unwrap();
        kiln::sys::mount::mount_overlay_classic(&lowers, None, &target).unwrap();
        let guard = Mounted(target.clone());
        assert_eq!(std::env::current_dir().unwrap(), cwd, "cwd restored");
        check_chain(&target, 40);
        drop(guard);
    })
    .join();
    if let Err(panic) = mounted {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn chains_over_the_kernel_limit_are_refused() {
    let dir = TempRoot::new();
    let lowers: Vec<PathBuf> = (0..501).map(|_| dir.path().to_path_buf()).collect();
    assert!(matches!(
        overlay::prepare(&lowers, &dir.path().join("x")),
        Err(OverlayError::TooManyLowers(501))
    ));
    assert!(matches!(
        overlay::prepare(&[dir.path().join("missing")], &dir.path().join("x")),
        Err(OverlayError::LowerMissing(_))
    ));
    let prepared = overlay::prepare(&[], &dir.path().join("s")).unwrap();
    assert!(prepared.upper.is_dir() && prepared.work.is_dir() && prepared.target.is_dir());
    assert!(matches!(
        overlay::prepare(&[], &dir.path().join("s")),
        Err(OverlayError::AlreadyExists(_))
    ));
    overlay::remove(&dir.path().join("s")).unwrap();
    assert!(!dir.path().join("s").exists());
}

/// An upper dir with one of everything an unprivileged user can make.
fn plain_upper(root: &Path) -> PathBuf {
    let upper = root.join("upper");
    fs::create_dir_all(upper.join("a/b")).unwrap();
    fs::write(upper.join("a/b/file"), "content").unwrap();
    fs::write(upper.join("a-b"), "dash").unwrap();
    fs::write(upper.join("x"), "linked").unwrap();
    fs::hard_link(upper.join("x"), upper.join("y")).unwrap();
    fs::write(upper.join("suid"), "s").unwrap();
    fs::set_permissions(upper.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    let long_dir = upper.join("d".repeat(120)).join("e".repeat(120));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(60)), "deep").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), upper.join("longlink")).unwrap();
    std::os::unix::fs::symlink("a/b/file", upper.join("link")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(upper.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    // Some filesystems refuse user xattrs; the diff test checks them only when set.
    let _ = rustix::fs::lsetxattr(
        upper.join("x"),
        "user.note",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    );
    for entry in walk(&upper) {
        if !fs::symlink_metadata(&entry)
            .unwrap()
            .file_type()
            .is_symlink()
            && !entry.ends_with("fifo")
        {
            harness::set_mtime(
                &entry,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            );
        }
    }
    harness::set_mtime(
        &upper,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
    );
    upper
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn entries(upper: &Path, options: &DiffOptions) -> (Vec<u8>, Vec<TarEntry>) {
    let tar = diff::diff(upper, options, Vec::new()).unwrap();
    let list = diff::list_tar(&tar).unwrap();
    (tar, list)
}

fn paths(list: &[TarEntry]) -> Vec<String> {
    list.iter().map(|e| e.path.display().to_string()).collect()
}

#[test]
fn diffs_are_deterministic_and_diff_id_is_the_tar_digest() {
    let dir = TempRoot::new();
    let upper = plain_upper(dir.path());
    let options = DiffOptions::default();
    let first = diff::diff(&upper, &options, Vec::new()).unwrap();
    let second = diff::diff(&upper, &options, Vec::new()).unwrap();
    assert_eq!(first, second, "same upper, same bytes");
    let id = diff::diff_id(&upper, &options).unwrap();
    assert_eq!(id.digest, format!("sha256:{}", sha256_hex(&first)));
    assert_eq!(id.size, first.len() as u64);
}

#[test]
fn diff_entries_are_sorted_and_carry_links_modes_and_long_names() {
    let dir = TempRoot::new();
    let upper = plain_upper(dir.path());
    let (tar, list) = entries(&upper, &DiffOptions::default());
    let names = paths(&list);
    let long = format!("{}/{}/", "d".repeat(120), "e".repeat(120));
    let expected = vec![
        "a/".to_string(),
        "a/b/".into(),
        "a/b/file".into(),
        "a-b".into(),
        format!("{}/", "d".repeat(120)),
        long.clone(),
        format!("{long}{}", "f".repeat(60)),
        "fifo".into(),
        "link".into(),
        "longlink".into(),
        "suid".into(),
        "x".into(),
        "y".into(),
    ];
    assert_eq!(
        names, expected,
        "directory before its content, names byte-sorted"
    );
    let get = |p: &str| list.iter().find(|e| e.path == Path::new(p)).unwrap();
    assert_eq!((get("suid").kind, get("suid").mode), (b'0', 0o4755));
    assert_eq!(
        (get("x").kind, get("x").body.as_slice()),
        (b'0', b"linked".as_slice())
    );
    assert_eq!(
        (get("y").kind, get("y").link.as_deref()),
        (b'1', Some(Path::new("x")))
    );
    assert_eq!(
        get("longlink").link.as_deref(),
        Some(Path::new(&"t".repeat(150)))
    );
    assert_eq!(get("fifo").kind, b'6');
    assert_eq!(get("a/b/file").mtime, 1_000_000);
    let uid = fs::metadata(&upper).unwrap().uid() as u64;
    assert!(list.iter().all(|e| e.uid == uid));
    if let Some(x) = list.iter().find(|e| !e.xattrs.is_empty()) {
        assert_eq!(x.xattrs, vec![(b"user.note".to_vec(), b"kept".to_vec())]);
    }
    // PAX only where needed: the three long paths (121, 242 and 303 bytes
    // that no ustar prefix/name split fits), the long link and the xattr.
    let pax_headers = tar.chunks(512).filter(|block| block[156] == b'x').count();
    let has_xattr = list.iter().any(|e| !e.xattrs.is_empty());
    assert_eq!(pax_headers, 4 + usize::from(has_xattr));
    // GNU tar reads it back with the same names.
    let tar_file = dir.path().join("layer.tar");
    fs::write(&tar_file, &tar).unwrap();
    if let Ok(out) = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_file)
        .output()
    {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(listed, expected);
    }
    // No user or group names anywhere (ustar uname/gname at 265..329).
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().username_bytes(), Some(&b""[..]));
        assert_eq!(entry.header().groupname_bytes(), Some(&b""[..]));
    }
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let dir = TempRoot::new();
    let upper = plain_upper(dir.path());
    let (_, list) = entries(
        &upper,
        &DiffOptions {
            source_date_epoch: Some(500),
        },
    );
    assert!(list.iter().all(|e| e.mtime <= 500));
    let (_, list) = entries(
        &upper,
        &DiffOptions {
            source_date_epoch: Some(2_000_000),
        },
    );
    assert_eq!(
        list.iter()
            .find(|e| e.path == Path::new("a-b"))
            .unwrap()
            .mtime,
        1_000_000
    );
}

#[test]
fn whiteouts_opaque_dirs_devices_owners_and_overlay_xattrs() {
    if !harness::privileged() {
        return;
    }
    let dir = TempRoot::new();
    let upper = dir.path().join("upper");
    fs::create_dir_all(upper.join("op")).unwrap();
    fs::write(upper.join("op/child"), "c").unwrap();
    fs::write(upper.join("op/-first"), "sorted before the marker name").unwrap();
    let run = |args: &[&str]| {
        let status = std::process::Command::new(args[0])
            .args(&args[1..])
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    let p = |name: &str| upper.join(name).display().to_string();
    run(&["mknod", &p("gone"), "c", "0", "0"]);
    run(&["mknod", &p("null"), "c", "1", "3"]);
    let setxattr = |name: &str, key: &str, value: &[u8]| {
        rustix::fs::lsetxattr(
            upper.join(name),
            key,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    };
    setxattr("op", "trusted.overlay.opaque", b"y");
    fs::write(upper.join("owned"), "o").unwrap();
    setxattr("owned", "trusted.overlay.origin", b"z");
    run(&["chown", "3000000:1234", &p("owned")]);
    // File capabilities (cap_net_raw+ep), set after chown, which clears them.
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    setxattr("owned", "security.capability", &cap);
    let (_, list) = entries(&upper, &DiffOptions::default());
    let names = paths(&list);
    assert_eq!(
        names,
        vec![
            ".wh.gone",
            "null",
            "op/",
            "op/.wh..wh..opq",
            "op/-first",
            "op/child",
            "owned"
        ]
    );
    let get = |p: &str| list.iter().find(|e| e.path == Path::new(p)).unwrap();
    let whiteout = get(".wh.gone");
    assert_eq!(
        (
            whiteout.kind,
            whiteout.mode,
            whiteout.uid,
            whiteout.body.len()
        ),
        (b'0', 0, 0, 0)
    );
    assert_eq!(get("op/.wh..wh..opq").mode, 0);
    assert_eq!(get("null").kind, b'3');
    let owned = get("owned");
    assert_eq!(
        (owned.uid, owned.gid),
        (3_000_000, 1234),
        "large ids through PAX"
    );
    let keys: Vec<&[u8]> = owned.xattrs.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        keys,
        vec![b"security.capability".as_slice()],
        "overlay xattrs dropped"
    );
    assert!(get("op/").xattrs.is_empty());
}

/// Each entry under `root`: path, type and permission bits, owner, and content or link
/// target (no times: settling may show a lower directory's instead of its copy-up's).
fn view(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(root)
        .into_iter()
        .map(|path| {
            let meta = fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_file() {
                String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
            } else if meta.file_type().is_symlink() {
                fs::read_link(&path).unwrap().display().to_string()
            } else {
                String::new()
            };
            format!(
                "{} {:o} {}:{} {what}",
                path.strip_prefix(root).unwrap().display(),
                meta.mode(),
                meta.uid(),
                meta.gid()
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn settled_uppers_hold_what_buildkits_overlay_differ_writes() {
    if !harness::privileged() {
        return;
    }
    let dir = TempRoot::new();
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let tick = old + Duration::from_nanos(500);
    // Two lower layers (top first), so settling mounts their merged view.
    let top = dir.path().join("top");
    fs::create_dir_all(top.join("extra")).unwrap();
    let bottom = dir.path().join("bottom");
    for sub in ["etc", "usr/bin", "d/keep", "d/sub"] {
        fs::create_dir_all(bottom.join(sub)).unwrap();
    }
    for (path, content) in [
        ("etc/passwd", "root"),
        ("usr/bin/tool", "t"),
        ("d/a", "a"),
        ("d/keep/k", "k"),
        ("d/sub/x", "x"),
        ("f", "file"),
        ("same", "s"),
        ("ticked", "aa"),
    ] {
        fs::write(bottom.join(path), content).unwrap();
    }
    harness::set_mtime(&bottom.join("same"), old);
    harness::set_mtime(&bottom.join("ticked"), tick);
    for path in walk(&bottom).into_iter().chain(walk(&top)) {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let lowers = vec![top, bottom];

    let prepared = overlay::prepare(&lowers, &dir.path().join("step")).unwrap();
    prepared.mount().unwrap();
    let guard = Mounted(prepared.target.clone());
    let m = |path: &str| prepared.target.join(path);
    // Copied up for a file made and removed again: only the mtime changed.
    fs::write(m("etc/tmp"), "").unwrap();
    fs::remove_file(m("etc/tmp")).unwrap();
    fs::create_dir(m("extra/tmp")).unwrap();
    fs::remove_dir(m("extra/tmp")).unwrap();
    // A mode change, and a deletion below it.
    fs::set_permissions(m("usr"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::remove_file(m("usr/bin/tool")).unwrap();
    // Opaque directories: one over a directory, one over a file.
    fs::remove_dir_all(m("d")).unwrap();
    fs::create_dir(m("d")).unwrap();
    fs::create_dir(m("d/sub")).unwrap();
    for path in ["d", "d/sub"] {
        fs::set_permissions(m(path), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(m("d/b"), "b").unwrap();
    fs::write(m("d/sub/y"), "y").unwrap();
    fs::remove_file(m("f")).unwrap();
    fs::create_dir(m("f")).unwrap();
    fs::write(m("f/in"), "in").unwrap();
    // Rewritten as it was, mtime too: unchanged. Other content with the same size and
    // mtime (BuildKit would leave it out): changed.
    fs::write(m("same"), "s").unwrap();
    harness::set_mtime(&m("same"), old);
    fs::write(m("ticked"), "bb").unwrap();
    harness::set_mtime(&m("ticked"), tick);
    let before = view(&prepared.target);
    drop(guard);
    assert!(prepared.upper.join("etc").is_dir(), "copied up");
    harness::set_mtime(&prepared.upper.join("d"), old);

    let scratch = dir.path().join("lower-view");
    settle::settle(&prepared.upper, &lowers, &scratch).unwrap();
    assert!(!scratch.exists());
    let (_, list) = entries(&prepared.upper, &DiffOptions::default());
    assert_eq!(
        paths(&list),
        vec![
            "d/",
            "d/.wh.a",
            "d/.wh.keep",
            "d/b",
            "d/sub/",
            "d/sub/.wh.x",
            "d/sub/y",
            "f/",
            "f/in",
            "ticked",
            "usr/",
            "usr/bin/",
            "usr/bin/.wh.tool",
        ]
    );
    let get = |p: &str| list.iter().find(|e| e.path == Path::new(p)).unwrap();
    assert_eq!(get("usr/").mode, 0o700);
    for whiteout in ["d/.wh.a", "d/.wh.keep", "d/sub/.wh.x", "usr/bin/.wh.tool"] {
        assert_eq!(
            (get(whiteout).kind, get(whiteout).mode),
            (b'0', 0),
            "{whiteout}"
        );
    }
    assert_eq!(
        fs::metadata(prepared.upper.join("d"))
            .unwrap()
            .modified()
            .unwrap(),
        old,
        "a directory settling wrote into keeps its times"
    );

    // What the overlay shows is the same.
    let stacked: Vec<PathBuf> = std::iter::once(prepared.upper.clone())
        .chain(lowers.iter().cloned())
        .collect();
    let target = dir.path().join("after");
    fs::create_dir(&target).unwrap();
    overlay::mount_readonly(&stacked, &target).unwrap();
    let guard = Mounted(target.clone());
    assert_eq!(view(&target), before);
    drop(guard);
}

#[test]
fn settling_against_one_lower_reads_it_in_place() {
    if !harness::privileged() {
        return;
    }
    let dir = TempRoot::new();
    let lower = dir.path().join("lower");
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/group"), "g").unwrap();
    let prepared =
        overlay::prepare(std::slice::from_ref(&lower), &dir.path().join("step")).unwrap();
    prepared.mount().unwrap();
    let guard = Mounted(prepared.target.clone());
    fs::write(prepared.target.join("etc/new"), "").unwrap();
    fs::remove_file(prepared.target.join("etc/new")).unwrap();
    fs::write(prepared.target.join("added"), "n").unwrap();
    drop(guard);
    // A whiteout of a name nothing below has hides nothing: it goes.
    make_whiteout(&prepared.upper.join("etc/never"));
    settle::settle(&prepared.upper, &[lower], &dir.path().join("unused")).unwrap();
    assert!(!dir.path().join("unused").exists(), "nothing mounted");
    let (_, list) = entries(&prepared.upper, &DiffOptions::default());
    assert_eq!(paths(&list), vec!["added"]);
}

fn make_whiteout(path: &Path) {
    let status = std::process::Command::new("mknod")
        .arg(path)
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(status.success());
}
