//! Layer unpacking: entry types, whiteouts, compression, diff ids, atomicity, and refusal
//! of every way a hostile tar could write outside its destination.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln::oci::{Digest, chain_id};
use kiln::snapshot::{self, SnapshotError};
use kiln::sys;

use crate::harness::{TempRoot, entry_names, gzip, have_root, temp_store};

const MTIME: u64 = 1_600_000_000;

/// Builds layer tars entry by entry, with raw (unchecked) names so hostile paths are possible.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Layer {
    fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header
    }

    fn append(&mut self, mut header: tar::Header, data: &[u8]) -> &mut Self {
        header.set_cksum();
        self.builder.append(&header, data).unwrap();
        self
    }

    fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.append(Self::header(path, tar::EntryType::Directory, mode, 0), &[])
    }

    fn file(&mut self, path: &str, content: &[u8], mode: u32) -> &mut Self {
        let header = Self::header(path, tar::EntryType::Regular, mode, content.len() as u64);
        self.append(header, content)
    }

    fn owned_file(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut header = Self::header(path, tar::EntryType::Regular, mode, content.len() as u64);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_mtime(MTIME + 5);
        self.append(header, content)
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> &mut Self {
        let mut header = Self::header(path, kind, 0o777, 0);
        let link = &mut header.as_old_mut().linkname;
        link[..target.len()].copy_from_slice(target.as_bytes());
        self.append(header, &[])
    }

    fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, path, target)
    }

    fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, path, target)
    }

    fn device(&mut self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> &mut Self {
        let mut header = Self::header(path, kind, 0o660, 0);
        header.set_device_major(major).unwrap();
        header.set_device_minor(minor).unwrap();
        self.append(header, &[])
    }

    /// PAX extended attributes for the entry that follows.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            // Each record is "<len> <key>=<value>\n", where <len> counts itself too.
            let body_len = key.len() + value.len() + 3;
            let mut len = body_len + 1;
            while len != body_len + len.to_string().len() {
                len = body_len + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let header = Self::header(
            "PaxHeader",
            tar::EntryType::XHeader,
            0o644,
            data.len() as u64,
        );
        self.append(header, &data)
    }

    fn tar(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.builder, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// A temp dir with `dest/` to unpack into and a `sentinel/` sibling that must not change.
struct Sandbox {
    dir: TempRoot,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = TempRoot::new();
        fs::create_dir(dir.path().join("dest")).unwrap();
        fs::create_dir(dir.path().join("sentinel")).unwrap();
        fs::write(dir.path().join("sentinel/keep"), b"original").unwrap();
        Sandbox { dir }
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("dest")
    }

    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    /// Nothing appeared or changed outside `dest/`.
    fn assert_untouched(&self) {
        let mut top: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["dest", "sentinel"]);
        let sentinel: Vec<_> = fs::read_dir(self.sentinel())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(sentinel, ["keep"]);
        assert_eq!(fs::read(self.sentinel().join("keep")).unwrap(), b"original");
        assert_eq!(
            fs::metadata(self.sentinel().join("keep")).unwrap().nlink(),
            1
        );
    }

    fn unpack(&self, tar: &[u8]) -> Result<snapshot::UnpackStats, SnapshotError> {
        snapshot::unpack_tar(tar, &self.dest())
    }
}

fn assert_refused(result: Result<snapshot::UnpackStats, SnapshotError>, entry: &str) {
    match result {
        Err(SnapshotError::UnsafeEntry { entry: e, reason }) => {
            assert_eq!(e, entry, "refusal should name the entry ({reason})")
        }
        other => panic!("expected {entry:?} to be refused, got {other:?}"),
    }
}

#[test]
fn attack_parent_dir_component() {
    let sandbox = Sandbox::new();
    let tar = Layer::new().file("../x", b"evil", 0o644).tar();
    assert_refused(sandbox.unpack(&tar), "../x");
    sandbox.assert_untouched();
}

#[test]
fn attack_dotdot_in_the_middle() {
    let sandbox = Sandbox::new();
    let tar = Layer::new()
        .dir("a", 0o755)
        .file("a/../../x", b"evil", 0o644)
        .tar();
    assert_refused(sandbox.unpack(&tar), "a/../../x");
    sandbox.assert_untouched();
}

#[test]
fn attack_write_through_planted_symlink() {
    let sandbox = Sandbox::new();
    let outside = sandbox.sentinel().display().to_string();
    let tar = Layer::new()
        .symlink("evil", &outside)
        .file("evil/file", b"evil", 0o644)
        .tar();
    assert_refused(sandbox.unpack(&tar), "evil/file");
    sandbox.assert_untouched();
    // The symlink itself was created as is, never followed.
    assert_eq!(
        fs::read_link(sandbox.dest().join("evil")).unwrap(),
        Path::new(&outside)
    );
}

#[test]
fn attack_symlink_to_dotdot_chain() {
    let sandbox = Sandbox::new();
    let tar = Layer::new()
        .symlink("up", "..")
        .symlink("up2", "up/..")
        .file("up/up/sentinel/keep", b"evil", 0o644)
        .tar();
    assert_refused(sandbox.unpack(&tar), "up/up/sentinel/keep");
    let tar = Layer::new().file("up2/sentinel/keep", b"evil", 0o644).tar();
    assert_refused(sandbox.unpack(&tar), "up2/sentinel/keep");
    sandbox.assert_untouched();
}

#[test]
fn attack_symlink_already_in_the_tree() {
    // A symlink that an earlier layer (or anything else) left in the destination is no
    // more trusted than one the archive planted.
    let sandbox = Sandbox::new();
    std::os::unix::fs::symlink(sandbox.sentinel(), sandbox.dest().join("pre")).unwrap();
    let tar = Layer::new().file("pre/keep", b"evil", 0o644).tar();
    assert_refused(sandbox.unpack(&tar), "pre/keep");
    sandbox.assert_untouched();
}

#[test]
fn attack_file_over_symlink_replaces_the_link() {
    let sandbox = Sandbox::new();
    let keep = sandbox.sentinel().join("keep").display().to_string();
    let tar = Layer::new()
        .symlink("target", &keep)
        .file("target", b"replaced", 0o644)
        .tar();
    sandbox.unpack(&tar).unwrap();
    sandbox.assert_untouched();
    let md = fs::symlink_metadata(sandbox.dest().join("target")).unwrap();
    assert!(md.is_file());
    assert_eq!(
        fs::read(sandbox.dest().join("target")).unwrap(),
        b"replaced"
    );
}

#[test]
fn attack_hardlink_to_absolute_path() {
    let sandbox = Sandbox::new();
    let tar = Layer::new().hardlink("passwd", "/etc/passwd").tar();
    assert_refused(sandbox.unpack(&tar), "passwd");
    let keep = sandbox.sentinel().join("keep").display().to_string();
    let tar = Layer::new().hardlink("keep", &keep).tar();
    assert_refused(sandbox.unpack(&tar), "keep");
    sandbox.assert_untouched();
    assert!(!sandbox.dest().join("passwd").exists());
}

#[test]
fn attack_hardlink_with_dotdot() {
    let sandbox = Sandbox::new();
    let tar = Layer::new().hardlink("keep", "../sentinel/keep").tar();
    assert_refused(sandbox.unpack(&tar), "keep");
    sandbox.assert_untouched();
}

#[test]
fn attack_hardlink_through_planted_symlink() {
    let sandbox = Sandbox::new();
    let outside = sandbox.sentinel().display().to_string();
    let tar = Layer::new()
        .symlink("s", &outside)
        .hardlink("h", "s/keep")
        .tar();
    assert_refused(sandbox.unpack(&tar), "h");
    sandbox.assert_untouched();
}

#[test]
fn attack_whiteout_cannot_escape() {
    let sandbox = Sandbox::new();
    let outside = sandbox.sentinel().display().to_string();
    let tar = Layer::new()
        .symlink("s", &outside)
        .file("s/.wh.keep", b"", 0o644)
        .tar();
    assert_refused(sandbox.unpack(&tar), "s/.wh.keep");
    let tar = Layer::new().file("../sentinel/.wh.keep", b"", 0o644).tar();
    assert_refused(sandbox.unpack(&tar), "../sentinel/.wh.keep");
    sandbox.assert_untouched();
}

#[test]
fn leading_slash_is_stripped() {
    let sandbox = Sandbox::new();
    let tar = Layer::new()
        .file("/abs", b"a", 0o644)
        .file("./dot/./x", b"b", 0o644)
        .tar();
    sandbox.unpack(&tar).unwrap();
    assert_eq!(fs::read(sandbox.dest().join("abs")).unwrap(), b"a");
    assert_eq!(fs::read(sandbox.dest().join("dot/x")).unwrap(), b"b");
    sandbox.assert_untouched();
}

#[test]
fn every_entry_type_is_preserved() {
    if !have_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let tar = Layer::new()
        .dir("etc", 0o750)
        .dir("tmp", 0o1777)
        .pax(&[
            ("SCHILY.xattr.user.kiln", b"hello"),
            (
                "SCHILY.xattr.security.capability",
                b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ),
        ])
        .owned_file("bin/tool", b"#!/bin/sh\n", 0o4755, 1000, 2000)
        .file("bin/sgid", b"", 0o2711)
        .hardlink("bin/tool-link", "bin/tool")
        .symlink("etc/link", "/etc/passwd")
        .symlink("dangling", "does/not/exist")
        .device("dev/null", tar::EntryType::Char, 1, 3)
        .device("dev/loop0", tar::EntryType::Block, 7, 0)
        .device("run/fifo", tar::EntryType::Fifo, 0, 0)
        .tar();
    let stats = sandbox.unpack(&tar).unwrap();
    assert_eq!(stats.diff_id, Digest::of(&tar));
    assert_eq!(stats.tar_size, tar.len() as u64);
    assert_eq!(stats.content_size, 10);
    let dest = sandbox.dest();
    let md = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();

    assert!(md("etc").is_dir());
    assert_eq!(md("etc").mode() & 0o7777, 0o750);
    assert_eq!(
        md("etc").mtime() as u64,
        MTIME,
        "dir mtime survives its children"
    );
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("bin").mode() & 0o7777, 0o755, "implied parent");

    let tool = md("bin/tool");
    assert_eq!(tool.mode() & 0o7777, 0o4755, "setuid survives chown");
    assert_eq!((tool.uid(), tool.gid()), (1000, 2000));
    assert_eq!(tool.mtime() as u64, MTIME + 5);
    assert_eq!(fs::read(dest.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        sys::lgetxattr(&dest.join("bin/tool"), "user.kiln").unwrap(),
        Some(b"hello".to_vec())
    );
    assert!(
        sys::lgetxattr(&dest.join("bin/tool"), "security.capability")
            .unwrap()
            .is_some()
    );
    assert_eq!(md("bin/sgid").mode() & 0o7777, 0o2711);

    let link = md("bin/tool-link");
    assert_eq!((link.ino(), link.nlink()), (tool.ino(), 2));

    assert!(md("etc/link").file_type().is_symlink());
    assert_eq!(
        fs::read_link(dest.join("etc/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(md("etc/link").mtime() as u64, MTIME);
    assert!(md("dangling").file_type().is_symlink());

    let null = md("dev/null");
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix_makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o660);
    assert!(md("dev/loop0").file_type().is_block_device());
    assert_eq!(md("dev/loop0").rdev(), nix_makedev(7, 0));
    assert!(md("run/fifo").file_type().is_fifo());
    sandbox.assert_untouched();
}

/// Linux `makedev`, so the test does not depend on nix.
fn nix_makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    if !have_root() {
        return;
    }
    let sandbox = Sandbox::new();
    let tar = Layer::new()
        .file(".wh.gone", b"", 0o644)
        .dir("opaque", 0o755)
        .file("opaque/.wh..wh..opq", b"", 0o644)
        .file("opaque/new", b"n", 0o644)
        .file("deep/er/.wh.x", b"", 0o644)
        .file(".wh..wh.plnk", b"", 0o644)
        .tar();
    sandbox.unpack(&tar).unwrap();
    let dest = sandbox.dest();
    let gone = fs::symlink_metadata(dest.join("gone")).unwrap();
    assert!(sys::is_whiteout(&gone));
    assert!(!dest.join(".wh.gone").exists());
    assert!(sys::is_whiteout(
        &fs::symlink_metadata(dest.join("deep/er/x")).unwrap()
    ));
    assert_eq!(
        sys::lgetxattr(&dest.join("opaque"), "trusted.overlay.opaque").unwrap(),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(dest.join("opaque/new")).unwrap(), b"n");
    assert!(!dest.join("opaque/.wh..wh..opq").exists());
    assert!(!dest.join(".wh..wh.plnk").exists());
    sandbox.assert_untouched();
}

fn sample_layer() -> Vec<u8> {
    Layer::new()
        .dir("app", 0o755)
        .file("app/main", &[42u8; 10_000], 0o755)
        .symlink("app/current", "main")
        .tar()
}

#[test]
fn compressed_layers_are_detected_by_magic() {
    let tar = sample_layer();
    let diff_id = Digest::of(&tar);
    for (label, blob) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let sandbox = Sandbox::new();
        let stats = sandbox.unpack(&blob).unwrap();
        assert_eq!(stats.diff_id, diff_id, "{label}");
        assert_eq!(
            fs::read(sandbox.dest().join("app/main")).unwrap(),
            vec![42u8; 10_000],
            "{label}"
        );
        assert_eq!(
            fs::read_link(sandbox.dest().join("app/current")).unwrap(),
            Path::new("main")
        );
    }
}

#[test]
fn unpack_layer_creates_a_snapshot_by_chain_id() {
    let (_dir, store) = temp_store();
    let base = sample_layer();
    let base_diff = Digest::of(&base);
    let snapshot = snapshot::unpack_layer(&store, None, &base_diff, &gzip(&base)[..]).unwrap();
    assert!(snapshot.created);
    assert_eq!(
        snapshot.meta.chain_id, base_diff,
        "chain id of a base layer is its diff id"
    );
    assert_eq!(snapshot.dir, store.snapshots_dir().join(base_diff.hex()));
    assert_eq!(snapshot.meta.size, 10_000);
    assert_eq!(
        fs::read(snapshot.fs_path().join("app/main")).unwrap().len(),
        10_000
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(snapshot.dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["diff_id"], base_diff.to_string());
    assert_eq!(meta["parent"], serde_json::Value::Null);

    let top = Layer::new().file("app/extra", b"x", 0o644).tar();
    let top_diff = Digest::of(&top);
    let child = snapshot::unpack_layer(
        &store,
        Some(&snapshot.meta.chain_id),
        &top_diff,
        &zstd(&top)[..],
    )
    .unwrap();
    assert_eq!(
        child.meta.chain_id,
        chain_id([&base_diff, &top_diff]).unwrap()
    );
    assert_eq!(child.meta.parent.as_ref(), Some(&base_diff));
    assert_eq!(
        snapshot::open_snapshot(&store, &child.meta.chain_id)
            .unwrap()
            .unwrap()
            .meta,
        child.meta
    );

    // Already there: not unpacked again, the stream is not even read.
    let again = snapshot::unpack_layer(&store, None, &base_diff, &b"not a tar"[..]).unwrap();
    assert!(!again.created);
    assert_eq!(again.meta, snapshot.meta);
    assert_eq!(entry_names(&store.snapshots_dir()).len(), 2);
}

#[test]
fn diff_id_mismatch_leaves_nothing() {
    let (_dir, store) = temp_store();
    let wrong = Digest::of(b"not this layer");
    let err = snapshot::unpack_layer(&store, None, &wrong, &gzip(&sample_layer())[..]).unwrap_err();
    match &err {
        SnapshotError::DiffIdMismatch { expected, actual } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &Digest::of(&sample_layer()));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(entry_names(&store.snapshots_dir()).is_empty());
}

#[test]
fn hostile_layer_leaves_no_snapshot() {
    let (_dir, store) = temp_store();
    let tar = Layer::new()
        .file("ok", b"1", 0o644)
        .file("../x", b"2", 0o644)
        .tar();
    let err = snapshot::unpack_layer(&store, None, &Digest::of(&tar), &tar[..]).unwrap_err();
    assert!(matches!(err, SnapshotError::UnsafeEntry { .. }), "{err}");
    assert!(entry_names(&store.snapshots_dir()).is_empty());
}

#[test]
fn truncated_and_garbage_streams_are_errors() {
    let (_dir, store) = temp_store();
    let tar = gzip(&sample_layer());
    let truncated = &tar[..tar.len() / 2];
    let diff_id = Digest::of(&sample_layer());
    assert!(snapshot::unpack_layer(&store, None, &diff_id, truncated).is_err());
    let garbage = vec![0x5au8; 4096];
    assert!(snapshot::unpack_layer(&store, None, &diff_id, &garbage[..]).is_err());
    assert!(entry_names(&store.snapshots_dir()).is_empty());
}

#[test]
fn concurrent_unpacks_of_the_same_layer_both_succeed() {
    let (_dir, store) = temp_store();
    let tar = Layer::new()
        .file("big", &vec![1u8; 2_000_000], 0o644)
        .file("small", b"s", 0o644)
        .tar();
    let diff_id = Digest::of(&tar);
    let blob = gzip(&tar);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            let blob = blob.clone();
            let diff_id = diff_id.clone();
            std::thread::spawn(move || snapshot::unpack_layer(&store, None, &diff_id, &blob[..]))
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|s| s.created).count(), 1);
    assert!(results.iter().all(|s| s.meta.chain_id == diff_id));
    assert_eq!(
        entry_names(&store.snapshots_dir()),
        [diff_id.hex().to_string()]
    );
    assert_eq!(fs::read(results[0].fs_path().join("small")).unwrap(), b"s");
}

#[test]
fn long_names_and_link_targets_survive() {
    let sandbox = Sandbox::new();
    let long_dir = "d".repeat(120);
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    builder
        .append_data(&mut header, &long_file, &b"long"[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_mtime(MTIME);
    builder
        .append_link(&mut link, "to-long", &long_file)
        .unwrap();
    let tar = builder.into_inner().unwrap();
    sandbox.unpack(&tar).unwrap();
    assert_eq!(fs::read(sandbox.dest().join(&long_file)).unwrap(), b"long");
    assert_eq!(
        fs::read_link(sandbox.dest().join("to-long")).unwrap(),
        Path::new(&long_file)
    );
    sandbox.assert_untouched();
}
