//! The build context: COPY source selection (wildcards, clamping, symlinks, .dockerignore,
//! --exclude) and content digests with the persistent stat cache.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln::source::{
    CacheStatus, Context, Error, FileChanges, FileKind, PatternMatcher, Selection, StatCache,
};

use crate::harness::{set_mtime, sha256_hex, write_file};

/// a.txt b.txt c.md dir/x.txt dir/y.md dir/sub/z.txt
fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (rel, content) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("dir/x.txt", "x"),
        ("dir/y.md", "y"),
        ("dir/sub/z.txt", "z"),
    ] {
        write_file(root, rel, content);
    }
    dir
}

fn open(root: &Path, ignore: &[&str]) -> Context {
    let matcher =
        (!ignore.is_empty()).then(|| PatternMatcher::new(ignore.iter().copied()).unwrap());
    Context::open(root, matcher).unwrap()
}

fn paths(selection: &Selection) -> Vec<&str> {
    selection.entries.iter().map(|e| e.path.as_str()).collect()
}

fn select(ctx: &Context, sources: &[&str], excludes: &[&str]) -> Vec<String> {
    let selection = ctx.select(sources, excludes).unwrap();
    paths(&selection).into_iter().map(str::to_string).collect()
}

#[test]
fn wildcards() {
    let dir = sample();
    let ctx = open(dir.path(), &[]);
    assert_eq!(select(&ctx, &["*.txt"], &[]), ["a.txt", "b.txt"]);
    assert_eq!(select(&ctx, &["[ab].txt"], &[]), ["a.txt", "b.txt"]);
    assert_eq!(select(&ctx, &["?.md"], &[]), ["c.md"]);
    assert_eq!(
        select(&ctx, &["dir/*"], &[]),
        ["dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir/y.md"]
    );
    assert_eq!(select(&ctx, &["*/*.md"], &[]), ["dir/y.md"]);
    // A wildcard that matches nothing is fine when another source matched.
    let selection = ctx.select(&["*.none", "a.txt"], &[]).unwrap();
    assert!(selection.sources[0].wildcard && selection.sources[0].roots.is_empty());
    assert_eq!(selection.sources[1].roots, ["a.txt"]);
    // Also when nothing matched at all: BuildKit then copies nothing (an empty layer).
    let selection = ctx.select(&["*.none"], &[]).unwrap();
    assert!(selection.sources[0].roots.is_empty() && selection.entries.is_empty());
    assert!(matches!(
        ctx.select(&["[a"], &[]),
        Err(Error::BadPattern { .. })
    ));
}

#[test]
fn directory_sources_and_excludes() {
    let dir = sample();
    let ctx = open(dir.path(), &[]);
    assert_eq!(
        select(&ctx, &["dir"], &[]),
        ["dir", "dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir/y.md"]
    );
    assert_eq!(
        select(&ctx, &["dir/"], &[]),
        select(&ctx, &["./dir/."], &[])
    );
    assert_eq!(
        select(&ctx, &["dir"], &["**/*.txt"]),
        ["dir", "dir/sub", "dir/y.md"]
    );
    // Excludes are relative to the source directory.
    assert_eq!(
        select(&ctx, &["dir"], &["sub"]),
        ["dir", "dir/x.txt", "dir/y.md"]
    );
    assert_eq!(
        select(&ctx, &["dir"], &["sub", "!sub/z.txt"]),
        ["dir", "dir/sub", "dir/sub/z.txt", "dir/x.txt", "dir/y.md"]
    );
    assert_eq!(select(&ctx, &["*.txt"], &["a.*"]), ["b.txt"]);
    // The whole context: everything but the root itself.
    assert_eq!(select(&ctx, &["."], &[]).len(), 8);
    let missing = ctx.select(&["nope.txt"], &[]).unwrap_err();
    assert!(matches!(missing, Error::NotFound { ref source_path } if source_path == "nope.txt"));
}

#[test]
fn dotdot_and_absolute_are_clamped_to_the_root() {
    let dir = sample();
    let ctx = open(&dir.path().join("dir"), &[]);
    // The context is `dir`: `../a.txt` must not reach the parent's a.txt.
    assert!(ctx.select(&["../a.txt"], &[]).is_err());
    assert_eq!(select(&ctx, &["../../x.txt"], &[]), ["x.txt"]);
    assert_eq!(select(&ctx, &["/x.txt"], &[]), ["x.txt"]);
    assert_eq!(
        select(&ctx, &["sub/../../../sub/z.txt"], &[]),
        ["sub/z.txt"]
    );
}

#[test]
fn a_symlink_source_selects_what_it_points_to() {
    let dir = sample();
    let root = dir.path();
    symlink("a.txt", root.join("link-file")).unwrap();
    symlink("dir", root.join("link-dir")).unwrap();
    symlink("../x.txt", root.join("dir/sub/up-link")).unwrap();
    symlink("missing", root.join("dangling")).unwrap();
    let ctx = open(root, &["c.md"]);
    assert_eq!(select(&ctx, &["link-file"], &[]), ["a.txt", "link-file"]);
    assert_eq!(
        select(&ctx, &["link-dir"], &[]),
        [
            "dir",
            "dir/sub",
            "dir/sub/up-link",
            "dir/sub/z.txt",
            "dir/x.txt",
            "dir/y.md",
            "link-dir"
        ]
    );
    // Relative to the link's own directory; a wildcard match is followed too.
    assert_eq!(
        select(&ctx, &["dir/sub/up-*"], &[]),
        ["dir/sub/up-link", "dir/x.txt"]
    );
    // Links below a selected directory are not followed.
    assert_eq!(
        select(&ctx, &["dir/sub"], &[]),
        ["dir/sub", "dir/sub/up-link", "dir/sub/z.txt"]
    );
    // A missing or ignored target selects the link alone (the copy then fails).
    assert_eq!(select(&ctx, &["dangling"], &[]), ["dangling"]);
    symlink("c.md", root.join("to-ignored")).unwrap();
    assert_eq!(select(&ctx, &["to-ignored"], &[]), ["to-ignored"]);
}

#[test]
fn double_star_matches_any_number_of_directories() {
    let dir = sample();
    let root = dir.path();
    write_file(root, "dir/sub/deeper/w.txt", "w");
    symlink("dir", root.join("link-dir")).unwrap();
    let ctx = open(root, &[]);
    // None, one, or several: what `COPY --parents dir/**/*.txt` copies.
    assert_eq!(
        select(&ctx, &["dir/**/*.txt"], &[]),
        ["dir/sub/deeper/w.txt", "dir/sub/z.txt", "dir/x.txt"]
    );
    // `**` descends only into real directories (not through link-dir).
    assert_eq!(select(&ctx, &["**/z.txt"], &[]), ["dir/sub/z.txt"]);
    // A link before the `**` is followed, as anywhere in the middle of a source.
    assert_eq!(select(&ctx, &["link-dir/**/z.txt"], &[]), ["dir/sub/z.txt"]);
}

#[test]
fn symlinks_resolve_inside_the_context() {
    let dir = sample();
    let root = dir.path();
    symlink("/etc", root.join("evil")).unwrap();
    symlink("../../../../etc", root.join("up")).unwrap();
    symlink("dir", root.join("link-to-dir")).unwrap();
    let ctx = open(root, &[]);

    let err = ctx.select(&["evil/passwd"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "file not found in build context or excluded by .dockerignore: evil/passwd"
    );
    assert!(ctx.select(&["up/passwd"], &[]).is_err());
    // A wildcard through a link out of the context selects nothing (never the host's files).
    assert!(ctx.select(&["evil/*"], &[]).unwrap().entries.is_empty());

    // A link whose target is not in the context selects the link alone.
    let selection = ctx.select(&["evil"], &[]).unwrap();
    assert_eq!(selection.entries.len(), 1);
    assert_eq!(selection.entries[0].kind, FileKind::Symlink);
    assert_eq!(
        selection.entries[0].link_target.as_deref(),
        Some(Path::new("/etc"))
    );

    // A link in the middle of the path is followed within the root.
    assert_eq!(select(&ctx, &["link-to-dir/x.txt"], &[]), ["dir/x.txt"]);
    write_file(root, "etc/passwd", "inside");
    let selection = ctx.select(&["evil/passwd"], &[]).unwrap();
    assert_eq!(paths(&selection), ["etc/passwd"]);
    let digest = ctx.digest(&selection, None).unwrap();
    let own = format!("sha256:{}", sha256_hex(b"inside"));
    assert_eq!(digest.files(&selection)["etc/passwd"], own);
    assert_eq!(select(&ctx, &["up/passwd"], &[]), ["etc/passwd"]);
    // Now that it is, COPY follows the link: its target is selected with it.
    assert_eq!(select(&ctx, &["evil"], &[]), ["etc", "etc/passwd", "evil"]);

    // A loop is an error, not a hang.
    symlink("loop2", root.join("loop1")).unwrap();
    symlink("loop1", root.join("loop2")).unwrap();
    assert!(matches!(
        ctx.select(&["loop1/x"], &[]),
        Err(Error::SymlinkLoop { .. })
    ));
}

#[test]
fn dockerignore_hides_files_and_exceptions_reinclude() {
    let dir = sample();
    let root = dir.path();
    write_file(root, "docs/README.md", "r");
    write_file(root, "docs/other.md", "o");
    write_file(root, "app.log", "l");
    write_file(root, "Dockerfile", "FROM scratch");
    let ctx = open(root, &["docs", "!docs/README.md", "*.log", "Dockerfile"]);
    let all = select(&ctx, &["."], &[]);
    assert!(all.contains(&"docs/README.md".to_string()));
    assert!(all.contains(&"docs".to_string()));
    assert!(
        !all.iter()
            .any(|p| p == "docs/other.md" || p == "app.log" || p == "Dockerfile")
    );
    assert_eq!(select(&ctx, &["docs"], &[]), ["docs", "docs/README.md"]);
    assert!(matches!(
        ctx.select(&["app.log"], &[]),
        Err(Error::NotFound { .. })
    ));
    assert!(ctx.select(&["docs/other.md"], &[]).is_err());
    assert_eq!(select(&ctx, &["*.log", "a.txt"], &[]), ["a.txt"]);
    // The builder still reads its own files.
    assert_eq!(
        ctx.read_builder_file("Dockerfile").unwrap(),
        b"FROM scratch"
    );
    assert!(ctx.is_ignored("Dockerfile").unwrap());

    // Without exceptions an ignored directory is skipped entirely.
    let ctx = open(root, &["dir"]);
    assert!(
        !select(&ctx, &["."], &[])
            .iter()
            .any(|p| p.starts_with("dir"))
    );
}

#[test]
fn digest_depends_on_content_and_mode_not_times() {
    let dir = sample();
    let root = dir.path();
    let ctx = open(root, &[]);
    // (digest, per-file digests) of the whole context.
    let digest = |ctx: &Context| {
        let selection = ctx.select(&["."], &[]).unwrap();
        let digest = ctx.digest(&selection, None).unwrap();
        let files = digest.files(&selection);
        (digest.digest, files)
    };
    let first = digest(&ctx);
    assert_eq!(first.1.len(), 6);
    assert!(first.0.starts_with("sha256:") && first.0.len() == 71);

    set_mtime(
        &root.join("a.txt"),
        SystemTime::now() + Duration::from_secs(3600),
    );
    assert_eq!(digest(&ctx).0, first.0, "touch must keep the digest");

    write_file(root, "dir/x.txt", "X");
    let changed = digest(&ctx);
    assert_ne!(changed.0, first.0);
    let changes = FileChanges::between(&first.1, &changed.1);
    assert_eq!(changes.changed, ["dir/x.txt"]);
    assert!(changes.added.is_empty() && changes.removed.is_empty());

    fs::set_permissions(root.join("b.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    let chmodded = digest(&ctx);
    assert_ne!(chmodded.0, changed.0);
    assert_eq!(chmodded.1, changed.1);

    symlink("a.txt", root.join("ln")).unwrap();
    let linked = digest(&ctx);
    assert_ne!(linked.0, chmodded.0);
    fs::remove_file(root.join("ln")).unwrap();
    symlink("b.txt", root.join("ln")).unwrap();
    assert_ne!(digest(&ctx).0, linked.0, "link target is hashed");

    // Same content elsewhere gives the same digest.
    let copy = tempfile::tempdir().unwrap();
    for entry in [
        "a.txt",
        "b.txt",
        "c.md",
        "dir/x.txt",
        "dir/y.md",
        "dir/sub/z.txt",
    ] {
        write_file(
            copy.path(),
            entry,
            &fs::read_to_string(root.join(entry)).unwrap(),
        );
    }
    fs::set_permissions(copy.path().join("b.txt"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::remove_file(root.join("ln")).unwrap();
    let ctx2 = open(copy.path(), &[]);
    assert_eq!(digest(&ctx2).0, digest(&ctx).0);
}

#[test]
fn stat_cache_avoids_rereading_unchanged_files() {
    let dir = sample();
    let root = dir.path();
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("cache-v1/context-stat.redb");
    let ctx = open(root, &[]);
    let selection = ctx.select(&["."], &[]).unwrap();
    // Files changed within the last few ms are not trusted to the cache ("racy clean").
    std::thread::sleep(Duration::from_millis(100));

    let cache = StatCache::open(&db);
    assert_eq!(cache.status(), CacheStatus::Used);
    let cold = ctx.digest(&selection, Some(&cache)).unwrap();
    let cold_files = cold.files(&selection);
    assert_eq!(
        (cold.stats.files_hashed, cold.stats.files_from_cache),
        (6, 0)
    );
    let warm = ctx.digest(&selection, Some(&cache)).unwrap();
    assert_eq!(
        (warm.stats.files_hashed, warm.stats.files_from_cache),
        (0, 6)
    );
    assert_eq!(warm.digest, cold.digest);
    assert_eq!(warm.files(&selection), cold_files);
    drop(cache);

    // Persistent across opens; a changed file is re-read, the others are not.
    write_file(root, "c.md", "changed");
    let cache = StatCache::open(&db);
    let selection = ctx.select(&["."], &[]).unwrap();
    let after = ctx.digest(&selection, Some(&cache)).unwrap();
    assert_eq!(
        (after.stats.files_hashed, after.stats.files_from_cache),
        (1, 5)
    );
    assert_eq!(
        FileChanges::between(&cold_files, &after.files(&selection)).changed,
        ["c.md"]
    );
    let uncached = ctx.digest(&selection, None).unwrap();
    assert_eq!(uncached.digest, after.digest);
    assert_eq!(uncached.stats.cache, CacheStatus::NotConfigured);

    // A second handle on the same file is locked out and falls back to hashing.
    let second = StatCache::open(&db);
    assert!(matches!(second.status(), CacheStatus::Disabled { .. }));
    let fallback = ctx.digest(&selection, Some(&second)).unwrap();
    assert_eq!(fallback.digest, after.digest);
    assert_eq!(fallback.stats.files_hashed, 6);
}

#[test]
fn corrupt_stat_cache_falls_back_to_hashing() {
    let dir = sample();
    let ctx = open(dir.path(), &[]);
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("context-stat.redb");
    fs::write(&db, vec![0x5au8; 10_000]).unwrap();
    let cache = StatCache::open(&db);
    let CacheStatus::Disabled { reason } = cache.status() else {
        panic!("a corrupt cache must be disabled");
    };
    assert!(reason.contains("context-stat.redb"), "{reason}");
    let selection = ctx.select(&["."], &[]).unwrap();
    let digest = ctx.digest(&selection, Some(&cache)).unwrap();
    assert_eq!(digest.digest, ctx.digest(&selection, None).unwrap().digest);
    assert_eq!(digest.stats.files_hashed, 6);
    assert!(matches!(digest.stats.cache, CacheStatus::Disabled { .. }));

    // A directory where the file should be: also just disabled.
    let cache = StatCache::open(state.path());
    assert!(matches!(cache.status(), CacheStatus::Disabled { .. }));
}

#[test]
fn special_files_and_big_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("big.bin"), &big).unwrap();
    fs::write(root.join("empty"), b"").unwrap();
    let ctx = open(root, &[]);
    let selection = ctx.select(&["."], &[]).unwrap();
    let digest = ctx.digest(&selection, None).unwrap();
    assert_eq!(
        digest.files(&selection)["big.bin"],
        format!("sha256:{}", sha256_hex(&big))
    );
    assert_eq!(
        digest.files(&selection)["empty"],
        format!("sha256:{}", sha256_hex(b""))
    );
    assert_eq!(digest.stats.bytes_hashed, big.len() as u64);
}

#[test]
fn stat_cache_many_files_and_two_roots() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    for i in 0..600 {
        write_file(first.path(), &format!("d{}/f{i}", i % 7), &format!("{i}"));
        write_file(
            second.path(),
            &format!("d{}/f{i}", i % 7),
            &format!("other {i}"),
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let state = tempfile::tempdir().unwrap();
    let cache = StatCache::open(&state.path().join("stat.redb"));
    for root in [first.path(), second.path()] {
        let ctx = open(root, &[]);
        let selection = ctx.select(&["."], &[]).unwrap();
        let cold = ctx.digest(&selection, Some(&cache)).unwrap();
        assert_eq!(cold.stats.files_hashed, 600);
        let warm = ctx.digest(&selection, Some(&cache)).unwrap();
        assert_eq!(
            (warm.stats.files_hashed, warm.stats.files_from_cache),
            (0, 600)
        );
        assert_eq!(warm.digest, ctx.digest(&selection, None).unwrap().digest);
    }
}

#[test]
fn many_symlinks_under_a_wildcard_are_not_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_file(root, "target/file", "t");
    for i in 0..60 {
        symlink("target", root.join(format!("l{i:02}"))).unwrap();
    }
    let ctx = open(root, &[]);
    let selection = ctx.select(&["l*/file"], &[]).unwrap();
    assert_eq!(paths(&selection), ["target/file"]);
    assert_eq!(selection.sources[0].roots.len(), 1);
}
