//! `SOURCE_DATE_EPOCH` end to end: two `--no-cache` builds of the same inputs on two
//! "machines" (store roots and context checkouts at different paths, the files of each
//! checkout with other mtimes) give the same image when the Dockerfile's global ARG
//! default fixes the epoch. Privileged, like tests/it/build.rs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::build::Env;
use crate::harness::{self, set_mtime};

const EPOCH: u64 = 1_700_000_000;
const EPOCH_RFC3339: &str = "2023-11-14T22:13:20Z";
/// The mtime of the archive's file: before the epoch, so it is kept.
const OLD: u64 = 1_600_000_000;
/// The mtime of another of its files: after the epoch, so it is clamped.
const LATER: u64 = 1_800_000_000;

const DOCKERFILE: &str = "ARG SOURCE_DATE_EPOCH=1700000000\nFROM busybox\n\
     COPY tree /src/\nADD files.tar /unpacked/\n\
     RUN mkdir -p /made/sub && echo made > /made/sub/x && touch /src/a.txt\nWORKDIR /work\n";
/// The instructions above that add a history entry (after the base image's).
const NEW_ENTRIES: usize = 4;

/// A tar with a directory and two files of fixed mtimes (written the same in both checkouts).
fn archive() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mtime: u64, body: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_size(body.len() as u64);
        header.set_mtime(mtime);
        header.set_cksum();
        builder.append_data(&mut header, path, body).unwrap();
    };
    add("pkg/", tar::EntryType::Directory, OLD, b"");
    add("pkg/old.txt", tar::EntryType::Regular, OLD, b"old\n");
    add("pkg/later.txt", tar::EntryType::Regular, LATER, b"later\n");
    builder.into_inner().unwrap()
}

/// Writes the context into `env` (files in `order`) and dates every entry `mtime`.
fn checkout(env: &Env, order: &[&str], mtime: SystemTime) {
    let files: BTreeMap<&str, &str> = [
        ("Dockerfile", DOCKERFILE),
        ("tree/a.txt", "a\n"),
        ("tree/sub/b.txt", "b\n"),
    ]
    .into();
    for name in order {
        match files.get(name) {
            Some(content) => env.write(name, content),
            None => std::fs::write(env.context().join(name), archive()).unwrap(),
        }
    }
    for path in ["Dockerfile", "tree/a.txt", "tree/sub/b.txt", "files.tar"] {
        set_mtime(&env.context().join(path), mtime);
    }
    for dir in ["tree/sub", "tree", ""] {
        set_mtime(&env.context().join(dir), mtime);
    }
}

/// The digest of the manifest tagged `name` in `root`.
fn manifest_digest(root: &Path, name: &str) -> String {
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {index}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// path → mtime of every entry of the (uncompressed) layer `n`.
fn layer_mtimes(env: &Env, manifest: &Value, n: usize) -> BTreeMap<String, u64> {
    let blob = env.blob(manifest["layers"][n]["digest"].as_str().unwrap());
    let mut archive = tar::Archive::new(&blob[..]);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_string();
        out.insert(path, entry.header().mtime().unwrap());
        entry.read_to_end(&mut Vec::new()).unwrap();
    }
    out
}

#[test]
fn dockerfile_epoch_gives_the_same_image_on_two_machines() {
    let Some(first) = Env::new(true) else { return };
    let Some(second) = Env::new(true) else { return };
    assert_ne!(first.context(), second.context());
    let now = SystemTime::now();
    checkout(
        &first,
        &["Dockerfile", "tree/a.txt", "tree/sub/b.txt", "files.tar"],
        now,
    );
    checkout(
        &second,
        &["files.tar", "tree/sub/b.txt", "tree/a.txt", "Dockerfile"],
        UNIX_EPOCH + Duration::from_secs(1_750_000_000),
    );
    let name = "docker.io/library/repro:latest";
    let (first_id, _) = first.build_ok(&["--no-cache", "-t", "repro"]);
    // The second machine's RUN step writes its files at another second.
    std::thread::sleep(Duration::from_millis(1100));
    let (second_id, _) = second.build_ok(&["--no-cache", "-t", "repro"]);
    assert_eq!(first_id, second_id, "the two machines' image ids differ");
    assert_eq!(
        manifest_digest(&first.root(), name),
        manifest_digest(&second.root(), name)
    );

    let (manifest, config) = first.image(name);
    assert_eq!(config["created"], EPOCH_RFC3339);
    let history = config["history"].as_array().unwrap();
    for entry in &history[history.len() - NEW_ENTRIES..] {
        assert_eq!(entry["created"], EPOCH_RFC3339, "{entry}");
    }
    // Times after the epoch are clamped to it, earlier ones kept (BuildKit's
    // `rewrite-timestamp`); the base image's layer is left as it is.
    let layers = manifest["layers"].as_array().unwrap().len();
    let new_layers = layers - NEW_ENTRIES..layers;
    let mut all = BTreeMap::new();
    for n in new_layers {
        all.extend(layer_mtimes(&first, &manifest, n));
    }
    for path in ["src/a.txt", "src/sub/b.txt", "made/sub/x", "work"] {
        assert_eq!(all.get(path), Some(&EPOCH), "{path}: {all:?}");
    }
    assert_eq!(all["unpacked/pkg/old.txt"], OLD);
    assert_eq!(all["unpacked/pkg/later.txt"], EPOCH);
    assert!(all.values().all(|&t| t <= EPOCH), "{all:?}");

    // An empty build arg overrides the Dockerfile's default: no epoch at all.
    let (unset_id, _) = first.build_ok(&["-t", "unset", "--build-arg", "SOURCE_DATE_EPOCH="]);
    assert_ne!(unset_id, first_id);
    let (_, config) = first.image("docker.io/library/unset:latest");
    assert_ne!(config["created"], EPOCH_RFC3339);
    // A build arg overrides it too.
    let later = "SOURCE_DATE_EPOCH=1700000100";
    first.build_ok(&["-t", "later", "--build-arg", later]);
    let (_, config) = first.image("docker.io/library/later:latest");
    assert_eq!(config["created"], "2023-11-14T22:15:00Z");
    // A value that is not whole seconds is refused before anything runs, naming the ARG's line.
    first.write(
        "Dockerfile",
        &DOCKERFILE.replace("=1700000000", "=not-a-timestamp"),
    );
    let out = first.build(&[]);
    // Exit 2, as for every error in planning.
    assert_eq!(out.status.code(), Some(2));
    let err = harness::stderr(&out);
    assert!(
        err.contains("invalid SOURCE_DATE_EPOCH: not-a-timestamp"),
        "{err}"
    );
    assert!(err.contains("Dockerfile:1"), "{err}");
}
