//! COPY / ADD / WORKDIR onto snapshot layers (`kiln::fileop`), checked by the exact content
//! of the layer directory they produce over hand-made lower layers.
//!
//! Privileged (root + overlayfs): each test skips with a reason otherwise, and fails when
//! `CI` is set. Every test checks that no mount and no scratch directory is left behind.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kiln::fileop::{self, Error, Input, Outcome, Request};
use kiln::plan::{Copy, CopySource, FileOp, Mkdir};
use kiln::source::Context;

use crate::harness::{self, TempRoot};

// ---------------------------------------------------------------------------------------
// Fixtures

/// A temp directory with lower layers, a context, and the new layer's directory.
struct Env {
    dir: TempRoot,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: TempRoot::new(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn upper(&self) -> PathBuf {
        self.path("upper")
    }

    /// Runs `op` onto `upper` and checks nothing is left mounted or lying around.
    fn run(&self, op: FileOp, inputs: &[Input<'_>]) -> Result<Outcome, Error> {
        let upper = self.upper();
        let result = fileop::run(&Request {
            op: &op,
            inputs,
            upper: &upper,
            scratch: None,
            reuse: None,
            cancel: None,
        });
        self.check_clean();
        result
    }

    fn check_clean(&self) {
        harness::assert_no_mounts(self.dir.path());
        for entry in fs::read_dir(self.dir.path()).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".kiln-fileop"),
                "scratch directory {name:?} left behind"
            );
        }
    }
}

fn file(root: &Path, rel: &str, content: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(content.as_bytes()).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn dir(root: &Path, rel: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

fn whiteout(root: &Path, rel: &str) {
    kiln::sys::create_whiteout(&root.join(rel)).unwrap();
}

fn opaque(root: &Path, rel: &str) {
    kiln::sys::lsetxattr(&root.join(rel), "trusted.overlay.opaque", b"y").unwrap();
}

fn chown(root: &Path, rel: &str, uid: u32, gid: u32) {
    kiln::sys::lchown(&root.join(rel), uid, gid).unwrap();
}

/// `path kind mode uid:gid [content | -> target]`, sorted, for every entry below `root`.
fn dump(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let meta = fs::symlink_metadata(&path).unwrap();
        let owner = format!("{}:{}", meta.uid(), meta.gid());
        let mode = meta.mode() & 0o7777;
        if kiln::sys::is_whiteout(&meta) {
            out.push(format!("{rel} whiteout"));
        } else if meta.is_dir() {
            let opaque = kiln::sys::lgetxattr(&path, "trusted.overlay.opaque")
                .unwrap()
                .is_some();
            let flag = if opaque { " opaque" } else { "" };
            out.push(format!("{rel}/ {mode:o} {owner}{flag}"));
            walk(root, &path, out);
        } else if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.push(format!("{rel} -> {} {owner}", target.display()));
        } else if meta.is_file() {
            let content = fs::read(&path).unwrap();
            let content = String::from_utf8_lossy(&content);
            out.push(format!("{rel} {mode:o} {owner} {content:?}"));
        } else {
            out.push(format!("{rel} special {mode:o} {owner}"));
        }
    }
}

fn lines(expected: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn path_source(input: usize, path: &str) -> CopySource {
    CopySource::Path {
        input,
        path: path.to_string(),
        include_patterns: Vec::new(),
        follow_symlinks: true,
        copy_dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        unpack: false,
    }
}

fn copy_op(sources: Vec<CopySource>, dest: &str) -> Copy {
    Copy {
        sources,
        dest: dest.to_string(),
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        create_dest_path: true,
    }
}

/// Selects `patterns` in the context at `root` (as the solver would) and runs `copy` with
/// the context as input 1 over `layers`.
fn copy_from_context(
    env: &Env,
    layers: &[PathBuf],
    ctx_root: &Path,
    patterns: &[&str],
    excludes: &[&str],
    copy: Copy,
) -> Result<Outcome, Error> {
    let context = Context::open(ctx_root, None).unwrap();
    let selection = context.select(patterns, excludes).unwrap();
    env.run(
        FileOp::Copy(copy),
        &[
            Input::Layers(layers),
            Input::Context {
                root: context.root(),
                selection: &selection,
                digests: None,
            },
        ],
    )
}

// ---------------------------------------------------------------------------------------
// COPY: destinations

#[test]
fn copy_file_to_path_and_into_existing_dir() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "app", 0o750);
    file(&lower, "app/keep", "k", 0o644);
    let ctx = env.path("ctx");
    file(&ctx, "a.txt", "A", 0o640);
    chown(&ctx, "a.txt", 1234, 4321);
    let mtime = UNIX_EPOCH + Duration::from_secs(1_000_000);
    kiln::sys::set_times_nofollow(&ctx.join("a.txt"), mtime, mtime).unwrap();

    // Into an existing directory without a trailing slash, and to a new file path whose
    // parents are missing.
    let mut copy = copy_op(vec![path_source(1, "/a.txt")], "/app");
    copy.sources.push(path_source(1, "/a.txt"));
    copy.dest = "/app/".into();
    let out = copy_from_context(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &["a.txt"],
        &[],
        copy,
    )
    .unwrap();
    assert!(!out.empty);
    let out2 = {
        let env2 = Env::new();
        let up = env2.upper();
        let r = copy_from_context(
            &env2,
            std::slice::from_ref(&lower),
            &ctx,
            &["a.txt"],
            &[],
            copy_op(vec![path_source(1, "/a.txt")], "/new/sub/b.txt"),
        )
        .unwrap();
        assert_eq!(
            dump(&up),
            lines(&[
                "new/ 755 0:0",
                "new/sub/ 755 0:0",
                "new/sub/b.txt 640 0:0 \"A\"",
            ])
        );
        r
    };
    assert_eq!(out2.report.files, 1);
    assert_eq!(out2.report.bytes, 1);
    // The context file's owner is not kept; mode and mtime are.
    assert_eq!(
        dump(&env.upper()),
        lines(&["app/ 750 0:0", "app/a.txt 640 0:0 \"A\""])
    );
    let meta = fs::metadata(env.upper().join("app/a.txt")).unwrap();
    assert_eq!(meta.mtime(), 1_000_000);
    // Into the existing dir even without a slash.
    let env3 = Env::new();
    copy_from_context(
        &env3,
        &[lower],
        &ctx,
        &["a.txt"],
        &[],
        copy_op(vec![path_source(1, "/a.txt")], "/app"),
    )
    .unwrap();
    assert_eq!(
        dump(&env3.upper()),
        lines(&["app/ 750 0:0", "app/a.txt 640 0:0 \"A\""])
    );
}

#[test]
fn copy_dir_copies_contents_and_merges() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "dst", 0o755);
    file(&lower, "dst/old", "o", 0o644);
    dir(&lower, "dst/sub", 0o700);
    let ctx = env.path("ctx");
    dir(&ctx, "src", 0o711);
    file(&ctx, "src/x", "x", 0o600);
    dir(&ctx, "src/sub", 0o755);
    file(&ctx, "src/sub/y", "y", 0o644);
    copy_from_context(
        &env,
        &[lower],
        &ctx,
        &["src"],
        &[],
        copy_op(vec![path_source(1, "/src")], "/dst"),
    )
    .unwrap();
    // The top directory keeps its metadata; merged subdirectories take the source's.
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "dst/ 755 0:0",
            "dst/x 600 0:0 \"x\"",
            "dst/sub/ 755 0:0",
            "dst/sub/y 644 0:0 \"y\"",
        ])
    );

    // A new destination directory is created 0755, not with the source's mode.
    let env = Env::new();
    copy_from_context(
        &env,
        &[],
        &ctx,
        &["src"],
        &[],
        copy_op(vec![path_source(1, "/src")], "/fresh"),
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "fresh/ 755 0:0",
            "fresh/x 600 0:0 \"x\"",
            "fresh/sub/ 755 0:0",
            "fresh/sub/y 644 0:0 \"y\"",
        ])
    );
}

#[test]
fn several_sources_need_a_directory() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let ctx = env.path("ctx");
    file(&ctx, "a", "a", 0o644);
    file(&ctx, "b", "b", 0o644);
    let copy = copy_op(vec![path_source(1, "/a"), path_source(1, "/b")], "/d");
    let err = copy_from_context(&env, &[], &ctx, &["a", "b"], &[], copy).unwrap_err();
    assert!(matches!(err, Error::DestNotDirectory { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("must be a directory and end with a /")
    );

    // An existing directory is fine without the slash.
    let lower = env.path("l0");
    dir(&lower, "d", 0o755);
    let env = Env::new();
    let copy = copy_op(vec![path_source(1, "/a"), path_source(1, "/b")], "/d");
    copy_from_context(&env, &[lower], &ctx, &["a", "b"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["d/ 755 0:0", "d/a 644 0:0 \"a\"", "d/b 644 0:0 \"b\""])
    );
}

#[test]
fn wildcards() {
    if !harness::privileged() {
        return;
    }
    let ctx_env = Env::new();
    let ctx = ctx_env.path("ctx");
    for name in ["a.txt", "b.txt", "c.md", "arr[0].txt", "x.go"] {
        file(&ctx, name, name, 0o644);
    }
    let env = Env::new();
    let copy = copy_op(
        vec![
            path_source(1, "/*.txt"),
            path_source(1, "/?.md"),
            path_source(1, "/nothing*"),
        ],
        "/out/",
    );
    copy_from_context(&env, &[], &ctx, &["*.txt", "?.md", "nothing*"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "out/ 755 0:0",
            "out/a.txt 644 0:0 \"a.txt\"",
            "out/b.txt 644 0:0 \"b.txt\"",
            "out/arr[0].txt 644 0:0 \"arr[0].txt\"",
            "out/c.md 644 0:0 \"c.md\"",
        ])
    );

    let env = Env::new();
    let copy = copy_op(vec![path_source(1, "/[ab].txt")], "/out/");
    copy_from_context(&env, &[], &ctx, &["[ab].txt"], &[], copy).unwrap();
    assert_eq!(dump(&env.upper()).len(), 3);

    // A wildcard matching nothing, not allowed to.
    let env = Env::new();
    let lower = env.path("stage");
    file(&lower, "f", "f", 0o644);
    let mut source = path_source(1, "/none*");
    if let CopySource::Path {
        allow_empty_wildcard,
        ..
    } = &mut source
    {
        *allow_empty_wildcard = false;
    }
    let err = env
        .run(
            FileOp::Copy(copy_op(vec![source], "/out/")),
            &[
                Input::Layers(&[]),
                Input::Layers(std::slice::from_ref(&lower)),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, Error::NoMatch { .. }), "{err}");
    // Allowed, and nothing matched at all: nothing is copied (BuildKit's AllowEmptyWildcard).
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/none*")], "/out/")),
        &[
            Input::Layers(&[]),
            Input::Layers(std::slice::from_ref(&lower)),
        ],
    )
    .unwrap();
    // A missing literal path.
    let err = env
        .run(
            FileOp::Copy(copy_op(vec![path_source(1, "/missing")], "/out/")),
            &[Input::Layers(&[]), Input::Layers(&[lower])],
        )
        .unwrap_err();
    assert_eq!(err.to_string(), "COPY failed: /missing: not found");
}

#[test]
fn missing_or_ignored_context_file() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let ctx = env.path("ctx");
    file(&ctx, "src/kept", "k", 0o644);
    file(&ctx, "src/secret", "s", 0o644);
    // The selection (after .dockerignore) is what may be copied.
    let ignore = kiln::source::PatternMatcher::new(["src/secret"]).unwrap();
    let context = Context::open(&ctx, Some(ignore)).unwrap();
    let selection = context.select(&["src"], &[]).unwrap();
    let inputs = [
        Input::Layers(&[]),
        Input::Context {
            root: context.root(),
            selection: &selection,
            digests: None,
        },
    ];
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/src")], "/app/")),
        &inputs,
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["app/ 755 0:0", "app/kept 644 0:0 \"k\""])
    );
    let whole = context.select(&["."], &[]).unwrap();
    let env = Env::new();
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/")], "/all")),
        &[
            Input::Layers(&[]),
            Input::Context {
                root: context.root(),
                selection: &whole,
                digests: None,
            },
        ],
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "all/ 755 0:0",
            "all/src/ 755 0:0",
            "all/src/kept 644 0:0 \"k\""
        ])
    );

    let env = Env::new();
    let err = env
        .run(
            FileOp::Copy(copy_op(vec![path_source(1, "/src/secret")], "/app/")),
            &inputs,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "COPY failed: file not found in build context or excluded by .dockerignore: src/secret"
    );
}

// ---------------------------------------------------------------------------------------
// Ownership and modes

#[test]
fn chown_names_from_the_destination_rootfs() {
    if !harness::privileged() {
        return;
    }
    let Some(busybox) = harness::busybox() else {
        return;
    };
    let rootfs = &busybox.rootfs;
    let env = Env::new();
    let ctx = env.path("ctx");
    file(&ctx, "f", "f", 0o644);
    dir(&ctx, "d", 0o755);
    file(&ctx, "d/g", "g", 0o600);
    let mut copy = copy_op(
        vec![path_source(1, "/f"), path_source(1, "/d")],
        "/home/app/new/",
    );
    copy.chown = Some("app:staff".into());
    copy_from_context(&env, &[rootfs.to_path_buf()], &ctx, &["f", "d"], &[], copy).unwrap();
    // Created destination directories belong to the --chown owner too (fsutil MkdirAll).
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "home/ 755 0:0",
            "home/app/ 755 1000:50",
            "home/app/new/ 755 1000:50",
            "home/app/new/f 644 1000:50 \"f\"",
            "home/app/new/g 600 1000:50 \"g\"",
        ])
    );

    for (spec, expect) in [
        ("app", "1000:1000"),
        ("7", "7:7"),
        ("7:8", "7:8"),
        (":staff", "0:50"),
    ] {
        let env = Env::new();
        let mut copy = copy_op(vec![path_source(1, "/f")], "/f");
        copy.chown = Some(spec.into());
        copy_from_context(&env, &[rootfs.to_path_buf()], &ctx, &["f"], &[], copy).unwrap();
        assert_eq!(
            dump(&env.upper()),
            lines(&[&format!("f 644 {expect} \"f\"")]),
            "{spec}"
        );
    }

    // --link: the layer starts empty, but names still come from the parent.
    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/f")], "/etc/f");
    copy.chown = Some("app".into());
    copy.link = true;
    copy_from_context(&env, &[rootfs.to_path_buf()], &ctx, &["f"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["etc/ 755 1000:1000", "etc/f 644 1000:1000 \"f\""])
    );

    // A name /etc/passwd lacks is root, as BuildKit's `readUser`; with no filesystem to
    // read names from (scratch), it fails.
    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/f")], "/f");
    copy.chown = Some("ghost".into());
    copy_from_context(&env, &[rootfs.to_path_buf()], &ctx, &["f"], &[], copy).unwrap();
    assert_eq!(dump(&env.upper()), lines(&["f 644 0:0 \"f\""]));
    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/f")], "/f");
    copy.chown = Some("ghost".into());
    let err = copy_from_context(&env, &[], &ctx, &["f"], &[], copy).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: the destination is empty, it has no /etc/passwd"
    );
}

#[test]
fn chmod_octal_and_symbolic() {
    if !harness::privileged() {
        return;
    }
    let env0 = Env::new();
    let ctx = env0.path("ctx");
    dir(&ctx, "d", 0o700);
    file(&ctx, "d/exe", "x", 0o700);
    file(&ctx, "d/data", "d", 0o600);
    dir(&ctx, "d/sub", 0o700);

    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/d")], "/o");
    copy.chmod = Some("640".into());
    copy_from_context(&env, &[], &ctx, &["d"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "o/ 755 0:0",
            "o/data 640 0:0 \"d\"",
            "o/exe 640 0:0 \"x\"",
            "o/sub/ 640 0:0",
        ])
    );

    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/d")], "/o");
    copy.chmod = Some("u=rwX,go=rX".into());
    copy_from_context(&env, &[], &ctx, &["d"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "o/ 755 0:0",
            "o/data 644 0:0 \"d\"",
            "o/exe 755 0:0 \"x\"",
            "o/sub/ 755 0:0",
        ])
    );
}

#[test]
fn stage_sources_keep_owners_and_see_the_merged_chain() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    // A two-layer source chain: l1 deletes /out/gone and makes /out/fresh opaque.
    let l0 = env.path("s0");
    dir(&l0, "out", 0o755);
    file(&l0, "out/bin", "bin", 0o4755);
    file(&l0, "out/gone", "gone", 0o644);
    dir(&l0, "out/fresh", 0o755);
    file(&l0, "out/fresh/hidden", "h", 0o644);
    let l1 = env.path("s1");
    dir(&l1, "out", 0o755);
    whiteout(&l1, "out/gone");
    dir(&l1, "out/fresh", 0o755);
    opaque(&l1, "out/fresh");
    file(&l1, "out/fresh/new", "n", 0o644);
    file(&l1, "out/mine", "m", 0o640);
    chown(&l1, "out/mine", 1000, 50);
    let stage = [l0, l1];
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/out")], "/app/")),
        &[Input::Layers(&[]), Input::Layers(&stage)],
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "app/ 755 0:0",
            "app/bin 4755 0:0 \"bin\"",
            "app/fresh/ 755 0:0",
            "app/fresh/new 644 0:0 \"n\"",
            "app/mine 640 1000:50 \"m\"",
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Links

#[test]
fn symlinks_and_hard_links() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let stage = env.path("stage");
    dir(&stage, "t", 0o755);
    link(&stage, "t/pw", "/etc/passwd");
    link(&stage, "t/rel", "../x");
    file(&stage, "t/h1", "same", 0o644);
    fs::hard_link(stage.join("t/h1"), stage.join("t/h2")).unwrap();
    file(&stage, "real", "real", 0o600);
    link(&stage, "alias", "/real");
    let layers = [stage];
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/t")], "/t")),
        &[Input::Layers(&[]), Input::Layers(&layers)],
    )
    .unwrap();
    let up = env.upper();
    assert_eq!(
        dump(&up),
        lines(&[
            "t/ 755 0:0",
            "t/h1 644 0:0 \"same\"",
            "t/h2 644 0:0 \"same\"",
            "t/pw -> /etc/passwd 0:0",
            "t/rel -> ../x 0:0",
        ])
    );
    let h1 = fs::metadata(up.join("t/h1")).unwrap();
    let h2 = fs::metadata(up.join("t/h2")).unwrap();
    assert_eq!(h1.ino(), h2.ino(), "hard link kept");

    // The source path itself is followed (inside its root) with follow_symlinks...
    let env = Env::new();
    env.run(
        FileOp::Copy(copy_op(vec![path_source(1, "/alias")], "/a")),
        &[Input::Layers(&[]), Input::Layers(&layers)],
    )
    .unwrap();
    assert_eq!(dump(&env.upper()), lines(&["a 600 0:0 \"real\""]));
    // ...and copied as a link without.
    let env = Env::new();
    let mut source = path_source(1, "/alias");
    if let CopySource::Path {
        follow_symlinks, ..
    } = &mut source
    {
        *follow_symlinks = false;
    }
    env.run(
        FileOp::Copy(copy_op(vec![source], "/a")),
        &[Input::Layers(&[]), Input::Layers(&layers)],
    )
    .unwrap();
    assert_eq!(dump(&env.upper()), lines(&["a -> /real 0:0"]));
}

#[test]
fn escapes_stay_inside_the_roots() {
    if !harness::privileged() {
        return;
    }
    let sentinel = Path::new("/tmp/outside-sentinel");
    let existed = sentinel.exists();
    let env = Env::new();
    let lower = env.path("l0");
    link(&lower, "evil", "/tmp/outside-sentinel");
    link(&lower, "up", "../../../../..");
    let ctx = env.path("ctx");
    file(&ctx, "x", "x", 0o644);
    // A context symlink to the host's /etc/passwd is followed inside the context, never
    // to the host's file.
    link(&ctx, "pw", "/etc/passwd");
    let copy = copy_op(vec![path_source(1, "/x")], "/evil/file");
    copy_from_context(&env, std::slice::from_ref(&lower), &ctx, &["x"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "tmp/ 755 0:0",
            "tmp/outside-sentinel/ 755 0:0",
            "tmp/outside-sentinel/file 644 0:0 \"x\"",
        ])
    );
    assert!(!sentinel.join("file").exists());
    assert_eq!(sentinel.exists(), existed);

    let env = Env::new();
    let copy = copy_op(vec![path_source(1, "/x")], "/up/escaped");
    copy_from_context(&env, std::slice::from_ref(&lower), &ctx, &["x"], &[], copy).unwrap();
    assert_eq!(dump(&env.upper()), lines(&["escaped 644 0:0 \"x\""]));

    // The context has no /etc/passwd: BuildKit fails with `"/etc/passwd" not found`.
    let env = Env::new();
    let copy = copy_op(vec![path_source(1, "/pw")], "/copied");
    let err = copy_from_context(&env, std::slice::from_ref(&lower), &ctx, &["pw"], &[], copy)
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotInContext { path, .. } if path == "etc/passwd"),
        "{err}"
    );
    assert_eq!(dump(&env.upper()), lines(&[]));

    // A stage source path with `..` and absolute links is clamped to the stage.
    let stage = env.path("stage");
    link(&stage, "pw", "/etc/passwd");
    let env = Env::new();
    let stage_layers = [stage];
    let err = env
        .run(
            FileOp::Copy(copy_op(vec![path_source(1, "/../../etc/passwd")], "/p")),
            &[Input::Layers(&[]), Input::Layers(&stage_layers)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = env
        .run(
            FileOp::Copy(copy_op(vec![path_source(1, "/pw")], "/p")),
            &[Input::Layers(&[]), Input::Layers(&stage_layers)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

#[test]
fn dest_through_a_symlink_in_the_destination() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "real", 0o755);
    link(&lower, "lnk", "/real");
    let ctx = env.path("ctx");
    file(&ctx, "f", "f", 0o644);
    let copy = copy_op(vec![path_source(1, "/f")], "/lnk/");
    copy_from_context(&env, std::slice::from_ref(&lower), &ctx, &["f"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["real/ 755 0:0", "real/f 644 0:0 \"f\""])
    );

    // --link: nothing of the parent is seen, its symlinks included.
    let env = Env::new();
    let mut copy = copy_op(vec![path_source(1, "/f")], "/lnk/f");
    copy.link = true;
    copy_from_context(&env, &[lower], &ctx, &["f"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["lnk/ 755 0:0", "lnk/f 644 0:0 \"f\""])
    );
}

// ---------------------------------------------------------------------------------------
// Replacing what the parent has

#[test]
fn replacing_entries_of_the_parent() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    file(&lower, "etc/conf", "old", 0o644);
    link(&lower, "etc/ln", "conf");
    dir(&lower, "etc/d", 0o755);
    file(&lower, "etc/d/x", "x", 0o644);
    let ctx = env.path("ctx");
    file(&ctx, "etc/conf", "new", 0o600);
    file(&ctx, "etc/ln", "file now", 0o644);
    let copy = copy_op(vec![path_source(1, "/etc")], "/etc");
    copy_from_context(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &["etc"],
        &[],
        copy,
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "etc/ 755 0:0",
            "etc/conf 600 0:0 \"new\"",
            "etc/ln 644 0:0 \"file now\"",
        ])
    );

    // A file over a directory inside a copied tree is an error, as in BuildKit.
    let env = Env::new();
    let ctx2 = env.path("ctx2");
    file(&ctx2, "etc/d", "file", 0o644);
    let copy = copy_op(vec![path_source(1, "/etc")], "/etc");
    let err = copy_from_context(
        &env,
        std::slice::from_ref(&lower),
        &ctx2,
        &["etc"],
        &[],
        copy,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot replace to directory /etc/d with file"
    );

    // A directory where the parent has a file.
    let env = Env::new();
    let ctx3 = env.path("ctx3");
    file(&ctx3, "etc/conf/inner", "i", 0o644);
    let copy = copy_op(vec![path_source(1, "/etc")], "/etc");
    let err = copy_from_context(
        &env,
        std::slice::from_ref(&lower),
        &ctx3,
        &["etc"],
        &[],
        copy,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /etc/conf");

    // Copying into a path below a file.
    let env = Env::new();
    let copy = copy_op(vec![path_source(1, "/etc/conf")], "/etc/conf/sub/");
    let err = copy_from_context(&env, &[lower], &ctx, &["etc/conf"], &[], copy).unwrap_err();
    assert_eq!(err.to_string(), "cannot copy to non-directory: /etc/conf");
}

// ---------------------------------------------------------------------------------------
// --exclude, --parents, heredocs

#[test]
fn exclude_patterns() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let stage = env.path("stage");
    file(&stage, "src/a.go", "a", 0o644);
    file(&stage, "src/a_test.go", "t", 0o644);
    file(&stage, "src/vendor/v.go", "v", 0o644);
    file(&stage, "src/keep.md", "k", 0o644);
    let layers = [stage];
    let mut copy = copy_op(vec![path_source(1, "/src")], "/s/");
    copy.exclude = vec!["*_test.go".into(), "vendor".into()];
    env.run(
        FileOp::Copy(copy),
        &[Input::Layers(&[]), Input::Layers(&layers)],
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "s/ 755 0:0",
            "s/a.go 644 0:0 \"a\"",
            "s/keep.md 644 0:0 \"k\""
        ])
    );
}

#[test]
fn parents_keep_directories() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let stage = env.path("stage");
    dir(&stage, "x", 0o700);
    file(&stage, "x/a/one.txt", "1", 0o644);
    file(&stage, "x/b/two.txt", "2", 0o644);
    file(&stage, "x/b/skip.bin", "s", 0o644);
    file(&stage, "y/other.txt", "o", 0o644);
    let layers = [stage];
    let source = CopySource::Path {
        input: 1,
        path: "/".into(),
        include_patterns: vec!["x/*/*.txt".into()],
        follow_symlinks: true,
        copy_dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        unpack: false,
    };
    let mut copy = copy_op(vec![source], "/dst/");
    copy.parents = true;
    env.run(
        FileOp::Copy(copy),
        &[Input::Layers(&[]), Input::Layers(&layers)],
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "dst/ 755 0:0",
            "dst/x/ 700 0:0",
            "dst/x/a/ 755 0:0",
            "dst/x/a/one.txt 644 0:0 \"1\"",
            "dst/x/b/ 755 0:0",
            "dst/x/b/two.txt 644 0:0 \"2\"",
        ])
    );
}

#[test]
fn heredoc_sources() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "app", 0o755);
    let copy = copy_op(
        vec![
            CopySource::Inline {
                name: "EOF".into(),
                content: "hello\n".into(),
                mode: 0o644,
            },
            CopySource::Inline {
                name: "run.sh".into(),
                content: "#!/bin/sh\n".into(),
                mode: 0o644,
            },
        ],
        "/app/",
    );
    let mut copy = copy;
    copy.chmod = Some("755".into());
    env.run(
        FileOp::Copy(copy),
        &[Input::Layers(std::slice::from_ref(&lower))],
    )
    .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "app/ 755 0:0",
            "app/EOF 755 0:0 \"hello\\n\"",
            "app/run.sh 755 0:0 \"#!/bin/sh\\n\"",
        ])
    );
    // One heredoc to a file path.
    let env = Env::new();
    let copy = copy_op(
        vec![CopySource::Inline {
            name: "EOF".into(),
            content: "x".into(),
            mode: 0o600,
        }],
        "/app/conf",
    );
    env.run(FileOp::Copy(copy), &[Input::Layers(&[lower])])
        .unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["app/ 755 0:0", "app/conf 600 0:0 \"x\""])
    );
}

// ---------------------------------------------------------------------------------------
// ADD of local archives

fn tar_bytes(entries: &[(&str, Option<&str>, u32, u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content, mode, uid) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_uid(u64::from(*uid));
        header.set_gid(u64::from(*uid));
        header.set_mtime(1_000);
        match content {
            Some(content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(content.len() as u64);
                header.set_cksum();
                builder
                    .append_data(&mut header, name, content.as_bytes())
                    .unwrap();
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                header.set_cksum();
                builder.append_data(&mut header, name, &[][..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn add_source(path: &str, unpack: bool) -> CopySource {
    CopySource::Path {
        input: 1,
        path: path.into(),
        include_patterns: Vec::new(),
        follow_symlinks: true,
        copy_dir_contents_only: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        unpack,
    }
}

#[test]
fn add_extracts_local_archives() {
    if !harness::privileged() {
        return;
    }
    let env0 = Env::new();
    let ctx = env0.path("ctx");
    let tar = tar_bytes(&[
        ("pkg/", None, 0o750, 0),
        ("pkg/bin", Some("bin"), 0o755, 1000),
        ("d", Some("replaces a dir"), 0o644, 0),
    ]);
    // Named as if it were not an archive: detection is by content.
    fs::write(ctx.join("plain.dat"), &tar).unwrap();
    fs::write(ctx.join("a.tar.gz"), harness::gzip(&tar)).unwrap();
    fs::write(ctx.join("not.tar"), "just text, not an archive").unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&tar), &mut xz).unwrap();
    fs::write(ctx.join("a.tar.xz"), xz).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    fs::write(ctx.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    // Compressed, but not a tar: copied as is.
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut std::io::Cursor::new(&[7u8; 2000][..]), &mut xz).unwrap();
    fs::write(ctx.join("data.xz"), &xz).unwrap();

    let lower = env0.path("l0");
    dir(&lower, "opt/d", 0o755);
    file(&lower, "opt/d/old", "old", 0o644);

    for name in ["plain.dat", "a.tar.gz", "a.tar.xz", "a.tar.bz2"] {
        let env = Env::new();
        let copy = copy_op(vec![add_source(&format!("/{name}"), true)], "/opt");
        let out = copy_from_context(&env, std::slice::from_ref(&lower), &ctx, &[name], &[], copy)
            .unwrap();
        assert_eq!(out.report.archives, 1);
        // Owners from the archive; a file replaces the parent's directory (Untar).
        assert_eq!(
            dump(&env.upper()),
            lines(&[
                "opt/ 755 0:0",
                "opt/d 644 0:0 \"replaces a dir\"",
                "opt/pkg/ 750 0:0",
                "opt/pkg/bin 755 1000:1000 \"bin\"",
            ]),
            "{name}"
        );
    }

    // --chown applies to extracted entries and to the destination made for them
    // (BuildKit's testDockerfileAddChownArchive).
    let env = Env::new();
    let mut copy = copy_op(vec![add_source("/a.tar.gz", true)], "/x/");
    copy.chown = Some("5:6".into());
    copy_from_context(&env, &[], &ctx, &["a.tar.gz"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "x/ 755 5:6",
            "x/d 644 5:6 \"replaces a dir\"",
            "x/pkg/ 750 5:6",
            "x/pkg/bin 755 5:6 \"bin\"",
        ])
    );

    // --unpack=false, and files that are not archives, are copied as files.
    let env = Env::new();
    let copy = copy_op(
        vec![add_source("/a.tar.gz", false), add_source("/not.tar", true)],
        "/x/",
    );
    copy_from_context(&env, &[], &ctx, &["a.tar.gz", "not.tar"], &[], copy).unwrap();
    let listing = dump(&env.upper());
    assert_eq!(listing.len(), 3, "{listing:?}");
    assert!(listing[1].starts_with("x/a.tar.gz 644 0:0"));
    assert_eq!(
        listing[2],
        "x/not.tar 644 0:0 \"just text, not an archive\""
    );

    // A directory of the archive where the parent has a file: the directory replaces it;
    // with nothing below to hide, the layer has no opaque mark (the overlay set one; the
    // layer is settled as BuildKit's differ writes it).
    fs::write(
        ctx.join("dir.tar"),
        tar_bytes(&[("f/", None, 0o755, 0), ("f/inner", Some("i"), 0o644, 0)]),
    )
    .unwrap();
    let lower2 = env0.path("l2");
    file(&lower2, "opt/f", "a file", 0o644);
    let env = Env::new();
    let copy = copy_op(vec![add_source("/dir.tar", true)], "/opt/");
    copy_from_context(&env, &[lower2], &ctx, &["dir.tar"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "opt/ 755 0:0",
            "opt/f/ 755 0:0",
            "opt/f/inner 644 0:0 \"i\""
        ])
    );

    let env = Env::new();
    let copy = copy_op(vec![add_source("/data.xz", true)], "/x/");
    let out = copy_from_context(&env, &[], &ctx, &["data.xz"], &[], copy).unwrap();
    assert_eq!(out.report.archives, 0);
    assert_eq!(fs::read(env.upper().join("x/data.xz")).unwrap(), xz);
}

// ---------------------------------------------------------------------------------------
// WORKDIR

#[test]
fn workdir_mkdir() {
    if !harness::privileged() {
        return;
    }
    let Some(busybox) = harness::busybox() else {
        return;
    };
    let rootfs = &busybox.rootfs;
    let layers = [rootfs.to_path_buf()];
    let mkdir = |path: &str, owner: &str| {
        FileOp::Mkdir(Mkdir {
            path: path.into(),
            owner: owner.into(),
            mode: 0o755,
            make_parents: true,
        })
    };
    let env = Env::new();
    let out = env
        .run(mkdir("/srv/app/data", "app"), &[Input::Layers(&layers)])
        .unwrap();
    assert!(!out.empty);
    assert_eq!(out.report.dirs, 3);
    assert_eq!(
        dump(&env.upper()),
        lines(&[
            "srv/ 755 1000:1000",
            "srv/app/ 755 1000:1000",
            "srv/app/data/ 755 1000:1000",
        ])
    );
    // Existing: nothing changes, the layer is empty.
    let env = Env::new();
    let out = env
        .run(mkdir("/tmp", "app"), &[Input::Layers(&layers)])
        .unwrap();
    assert!(out.empty);
    assert_eq!(dump(&env.upper()), Vec::<String>::new());
    // Through a symlink of the rootfs (/bin/sh -> /bin/busybox is a file).
    let env = Env::new();
    let err = env
        .run(mkdir("/etc/passwd/x", ""), &[Input::Layers(&layers)])
        .unwrap_err();
    assert_eq!(err.to_string(), "mkdir /etc/passwd: not a directory");
    // Without parents: one directory, which must have its parent.
    let env = Env::new();
    let op = FileOp::Mkdir(Mkdir {
        path: "/home/x".into(),
        owner: "app:staff".into(),
        mode: 0o700,
        make_parents: false,
    });
    env.run(op, &[Input::Layers(&layers)]).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["home/ 755 0:0", "home/x/ 700 1000:50"])
    );
    let env = Env::new();
    let op = FileOp::Mkdir(Mkdir {
        path: "/nope/x".into(),
        owner: String::new(),
        mode: 0o755,
        make_parents: false,
    });
    let err = env.run(op, &[Input::Layers(&layers)]).unwrap_err();
    assert_eq!(err.to_string(), "mkdir /nope/x: no such file or directory");
    // FROM scratch: written directly.
    let env = Env::new();
    let out = env
        .run(mkdir("/w", "12:34"), &[Input::Layers(&[])])
        .unwrap();
    assert!(!out.empty);
    assert_eq!(dump(&env.upper()), lines(&["w/ 755 12:34"]));
}

// ---------------------------------------------------------------------------------------
// Mounting

#[test]
fn many_layers_use_the_new_mount_api() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let mut layers = Vec::new();
    for i in 0..90 {
        let layer = env.path(&format!("layer-with-a-rather-long-name-{i:03}"));
        if i == 0 {
            file(&layer, "etc/base", "b", 0o644);
        }
        layers.push(layer);
    }
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the lowers must not fit one page ({total})");
    let copy = copy_op(vec![path_source(1, "/etc/base")], "/copied");
    let out = env
        .run(
            FileOp::Copy(copy),
            &[Input::Layers(&layers), Input::Layers(&layers)],
        )
        .unwrap();
    assert_eq!(out.report.files, 1);
    assert_eq!(dump(&env.upper()), lines(&["copied 644 0:0 \"b\""]));
}

#[test]
fn concurrent_ops_do_not_interfere() {
    if !harness::privileged() {
        return;
    }
    let base = Env::new();
    let l0 = base.path("l0");
    file(&l0, "etc/a", "a", 0o644);
    let l1 = base.path("l1");
    file(&l1, "etc/b", "b", 0o644);
    let layers = vec![l0, l1];
    std::thread::scope(|scope| {
        for i in 0..4 {
            let layers = &layers;
            scope.spawn(move || {
                let env = Env::new();
                let copy = copy_op(vec![path_source(1, "/etc")], &format!("/c{i}/"));
                env.run(
                    FileOp::Copy(copy),
                    &[Input::Layers(layers), Input::Layers(layers)],
                )
                .unwrap();
                assert_eq!(
                    dump(&env.upper()),
                    lines(&[
                        &format!("c{i}/ 755 0:0"),
                        &format!("c{i}/a 644 0:0 \"a\""),
                        &format!("c{i}/b 644 0:0 \"b\""),
                    ])
                );
            });
        }
    });
    base.check_clean();
}

#[test]
fn a_copy_over_whiteouts_and_opaque_dirs_of_the_parent() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let l0 = env.path("l0");
    file(&l0, "data/old", "old", 0o644);
    file(&l0, "data/gone", "gone", 0o644);
    dir(&l0, "cfg", 0o755);
    file(&l0, "cfg/hidden", "h", 0o644);
    let l1 = env.path("l1");
    dir(&l1, "data", 0o755);
    whiteout(&l1, "data/gone");
    dir(&l1, "cfg", 0o755);
    opaque(&l1, "cfg");
    let ctx = env.path("ctx");
    file(&ctx, "gone", "back", 0o644);
    let copy = copy_op(vec![path_source(1, "/gone")], "/data/");
    copy_from_context(&env, &[l0.clone(), l1.clone()], &ctx, &["gone"], &[], copy).unwrap();
    assert_eq!(
        dump(&env.upper()),
        lines(&["data/ 755 0:0", "data/gone 644 0:0 \"back\""])
    );
    // The opaque directory hides the lower content: copying it elsewhere sees nothing.
    let env2 = Env::new();
    let copy = copy_op(vec![path_source(1, "/cfg")], "/cfg-copy/");
    env2.run(
        FileOp::Copy(copy),
        &[Input::Layers(&[]), Input::Layers(&[l0, l1])],
    )
    .unwrap();
    assert_eq!(dump(&env2.upper()), lines(&["cfg-copy/ 755 0:0"]));
}

#[test]
fn mounts_never_reach_the_host_even_on_panic() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("lower");
    file(&lower, "f", "f", 0o644);
    let upper = env.path("up");
    let work = env.path("work");
    let target = env.path("mnt");
    let overlay = kiln::sys::fileop::Overlay {
        lowers: vec![lower],
        upper: Some((upper.clone(), work)),
    };
    // A thread that mounts in its private namespace and dies without unmounting.
    let joined = std::thread::spawn({
        let target = target.clone();
        move || {
            kiln::sys::fileop::enter_private_mount_namespace().unwrap();
            kiln::sys::fileop::mount_overlay(&overlay, &target).unwrap();
            assert!(target.join("f").exists(), "mounted inside the thread");
            fs::write(target.join("new"), "n").unwrap();
            panic!("dying with the mount in place");
        }
    })
    .join();
    assert!(joined.is_err());
    // The host never saw the mount; what was written went to the upper directory.
    assert!(!target.join("f").exists());
    assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "n");
    env.check_clean();
}

// ---------------------------------------------------------------------------------------
// Writing the layer directly, and reusing an earlier layer

/// Runs `copy` from the context at `ctx` (with its content digests, as the solver passes
/// them) over `layers` into `upper`, reusing `reuse`.
fn copy_with_digests(
    env: &Env,
    layers: &[PathBuf],
    ctx: &Path,
    copy: &Copy,
    upper: &Path,
    reuse: Option<&fileop::Reuse>,
) -> Outcome {
    let context = Context::open(ctx, None).unwrap();
    let selection = context.select(&["."], &[]).unwrap();
    let digest = context.digest(&selection, None).unwrap();
    let op = FileOp::Copy(copy.clone());
    let inputs = [
        Input::Layers(layers),
        Input::Context {
            root: context.root(),
            selection: &selection,
            digests: Some(&digest.entry_digests),
        },
    ];
    let outcome = fileop::run(&Request {
        op: &op,
        inputs: &inputs,
        upper,
        scratch: None,
        reuse,
        cancel: None,
    })
    .unwrap();
    env.check_clean();
    outcome
}

#[test]
fn a_new_destination_is_written_directly_with_parents_copied_up() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "srv", 0o710);
    chown(&lower, "srv", 5, 6);
    kiln::sys::lsetxattr(&lower.join("srv"), "user.kiln-test", b"v").unwrap();
    file(&lower, "srv/old", "old", 0o644);
    let ctx = env.path("ctx");
    file(&ctx, "a.txt", "a", 0o640);
    file(&ctx, "sub/b.txt", "b", 0o644);
    // Two lowers, so the parent is a mounted view, as in a real chain.
    let lower2 = env.path("l1");
    file(&lower2, "other", "o", 0o644);
    let upper = env.path("direct");
    let outcome = copy_with_digests(
        &env,
        &[lower, lower2],
        &ctx,
        &copy_op(vec![path_source(1, "/")], "/srv/app/"),
        &upper,
        None,
    );
    assert_eq!(outcome.report.files, 2);
    // The layer is what overlayfs would have made: the parent directory copied up with
    // its mode, owner and xattrs, the new tree below it, nothing else.
    assert_eq!(
        dump(&upper),
        lines(&[
            "srv/ 710 5:6",
            "srv/app/ 755 0:0",
            "srv/app/a.txt 640 0:0 \"a\"",
            "srv/app/sub/ 755 0:0",
            "srv/app/sub/b.txt 644 0:0 \"b\"",
        ])
    );
    assert_eq!(
        kiln::sys::lgetxattr(&upper.join("srv"), "user.kiln-test").unwrap(),
        Some(b"v".to_vec())
    );
    let mut copied: Vec<String> = outcome
        .copied
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    copied.sort();
    assert_eq!(copied, ["srv/app/a.txt", "srv/app/sub/b.txt"]);
}

#[test]
fn an_earlier_layer_is_reused_for_unchanged_files() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "etc", 0o755);
    let ctx = env.path("ctx");
    for i in 0..5 {
        file(&ctx, &format!("d/f{i}"), &format!("content {i}"), 0o644);
    }
    let copy = copy_op(vec![path_source(1, "/")], "/src/");
    let first = env.path("first");
    let made = copy_with_digests(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &copy,
        &first,
        None,
    );
    assert_eq!(made.report.linked, 0);
    let reuse = fileop::Reuse {
        layer: first.clone(),
        copied: made.copied.into_iter().collect(),
    };

    // One file changes, one is only touched, one is removed, one is added.
    file(&ctx, "d/f1", "changed", 0o644);
    let touched = ctx.join("d/f2");
    let old_time = fs::metadata(&touched).unwrap().modified().unwrap();
    harness::set_mtime(&touched, old_time + Duration::from_secs(5));
    fs::remove_file(ctx.join("d/f3")).unwrap();
    file(&ctx, "d/new", "new", 0o644);
    let second = env.path("second");
    let again = copy_with_digests(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &copy,
        &second,
        Some(&reuse),
    );
    // f0 and f4 are linked; f1 (content), f2 (mtime) and the new file are copied.
    assert_eq!(again.report.linked, 2, "{:?}", again.report);
    for name in ["f0", "f4"] {
        let old = fs::metadata(first.join("src/d").join(name)).unwrap();
        let new = fs::metadata(second.join("src/d").join(name)).unwrap();
        assert_eq!(old.ino(), new.ino(), "{name} is shared");
    }
    let old = fs::metadata(first.join("src/d/f2")).unwrap();
    let new = fs::metadata(second.join("src/d/f2")).unwrap();
    assert_ne!(old.ino(), new.ino());
    // The same layer as without reuse, and the earlier layer is untouched.
    let fresh = env.path("fresh");
    copy_with_digests(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &copy,
        &fresh,
        None,
    );
    assert_eq!(dump(&second), dump(&fresh));
    assert_eq!(
        fs::read_to_string(first.join("src/d/f1")).unwrap(),
        "content 1"
    );
    assert!(first.join("src/d/f3").exists());

    // A different --chmod gives files other metadata: nothing is linked.
    let mut chmod = copy.clone();
    chmod.chmod = Some("600".into());
    let third = env.path("third");
    let other = copy_with_digests(
        &env,
        std::slice::from_ref(&lower),
        &ctx,
        &chmod,
        &third,
        Some(&reuse),
    );
    assert_eq!(other.report.linked, 0);
    assert_eq!(
        fs::metadata(first.join("src/d/f0")).unwrap().mode() & 0o777,
        0o644
    );

    // Two paths that were one inode in the earlier layer stay two files.
    let ctx2 = env.path("ctx2");
    file(&ctx2, "a", "same", 0o644);
    fs::hard_link(ctx2.join("a"), ctx2.join("b")).unwrap();
    let linked_first = env.path("linked-first");
    let made = copy_with_digests(&env, &[], &ctx2, &copy, &linked_first, None);
    let (a, b) = (linked_first.join("src/a"), linked_first.join("src/b"));
    assert_eq!(
        fs::metadata(&a).unwrap().ino(),
        fs::metadata(&b).unwrap().ino()
    );
    fs::remove_file(ctx2.join("b")).unwrap();
    fs::copy(ctx2.join("a"), ctx2.join("b")).unwrap();
    let mtime = fs::metadata(ctx2.join("a")).unwrap().modified().unwrap();
    harness::set_mtime(&ctx2.join("b"), mtime);
    let reuse = fileop::Reuse {
        layer: linked_first,
        copied: made.copied.into_iter().collect(),
    };
    let linked_again = env.path("linked-again");
    let again = copy_with_digests(&env, &[], &ctx2, &copy, &linked_again, Some(&reuse));
    assert_eq!(again.report.linked, 1, "{:?}", again.report);
    let (a, b) = (linked_again.join("src/a"), linked_again.join("src/b"));
    assert_ne!(
        fs::metadata(&a).unwrap().ino(),
        fs::metadata(&b).unwrap().ino()
    );
}

#[test]
fn a_cancelled_copy_stops_between_files() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let ctx = env.path("ctx");
    for i in 0..20 {
        file(&ctx, &format!("f{i}"), "x", 0o644);
    }
    let context = Context::open(&ctx, None).unwrap();
    let selection = context.select(&["."], &[]).unwrap();
    let cancel = std::sync::atomic::AtomicBool::new(true);
    let upper = env.upper();
    let op = FileOp::Copy(copy_op(vec![path_source(1, "/")], "/dest/"));
    let result = fileop::run(&Request {
        op: &op,
        inputs: &[
            Input::Layers(&[]),
            Input::Context {
                root: context.root(),
                selection: &selection,
                digests: None,
            },
        ],
        upper: &upper,
        scratch: None,
        reuse: None,
        cancel: Some(&cancel),
    });
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    env.check_clean();
}

/// A deep tree (walked by path below some depth) and many directories (spread over the
/// re-linking workers) give exactly the layer of a fresh copy, directory mtimes included:
/// each directory gets its times after every entry is linked or copied into it.
#[test]
fn an_incremental_copy_of_a_deep_and_wide_tree_is_a_fresh_one() {
    if !harness::privileged() {
        return;
    }
    let env = Env::new();
    let lower = env.path("l0");
    dir(&lower, "etc", 0o755);
    let ctx = env.path("ctx");
    let mut deep = String::from("deep");
    for level in 0..40 {
        file(&ctx, &format!("{deep}/f"), &format!("level {level}"), 0o644);
        deep.push_str("/d");
    }
    for i in 0..30 {
        for j in 0..4 {
            file(&ctx, &format!("wide/d{i}/f{j}"), &format!("{i} {j}"), 0o600);
        }
    }
    // Into the layer's root: no destination directory made now, with its own mtime.
    let copy = copy_op(vec![path_source(1, "/")], "/");
    let layers = std::slice::from_ref(&lower);
    let first = env.path("first");
    let made = copy_with_digests(&env, layers, &ctx, &copy, &first, None);
    let reuse = fileop::Reuse {
        layer: first,
        copied: made.copied.into_iter().collect(),
    };
    file(
        &ctx,
        &format!("deep{}/f", "/d".repeat(35)),
        "changed",
        0o644,
    );
    file(&ctx, "wide/d7/f2", "changed", 0o600);
    let second = env.path("second");
    let again = copy_with_digests(&env, layers, &ctx, &copy, &second, Some(&reuse));
    assert_eq!(again.report.linked, 40 + 30 * 4 - 2, "{:?}", again.report);
    let fresh = env.path("fresh");
    copy_with_digests(&env, layers, &ctx, &copy, &fresh, None);
    assert_eq!(dump(&second), dump(&fresh));
    let options = kiln::snapshot::diff::DiffOptions::default();
    assert_eq!(
        kiln::snapshot::diff::diff_id(&second, &options).unwrap(),
        kiln::snapshot::diff::diff_id(&fresh, &options).unwrap()
    );
}
