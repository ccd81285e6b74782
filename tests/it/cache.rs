//! The cache index: records, step identities, explanations, recovery, concurrency.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln::cache::{BlobRef, CacheIndex, Explain, Record, ResultRef, StepIdentity, explain, key};

fn index_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("cache-v1").join("index.redb")
}

fn record(size: u64, last_used: u64, inputs: Explain) -> Record {
    Record {
        result: ResultRef {
            snapshot: Some(format!("snap-{size}")),
            chain: vec!["sha256:base".into()],
            diff_id: Some("sha256:diff".into()),
            blob: Some(BlobRef {
                digest: "sha256:blob".into(),
                size: 1234,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }),
            empty_layer: false,
        },
        created_at: last_used,
        last_used_at: last_used,
        size_bytes: size,
        inputs,
    }
}

fn identity(step: u32) -> StepIdentity {
    StepIdentity {
        dockerfile: "/src/app/Dockerfile".into(),
        context: "/src/app".into(),
        stage: "build".into(),
        step,
    }
}

#[test]
fn put_get_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let index = CacheIndex::open(&index_path(&dir)).unwrap();
    assert!(index.recovered().is_none());
    assert!(index.get("missing").unwrap().is_none());
    let inputs = Explain::new()
        .with("command", "/bin/sh -c make")
        .with("env:GOFLAGS", "-x")
        .with_files([("src/a.rs", "sha256:1")]);
    let rec = record(10, 100, inputs.clone());
    index.put("k1", rec.clone(), Some(&identity(1))).unwrap();
    let got = index.get("k1").unwrap().unwrap();
    assert_eq!(got.result, rec.result);
    assert_eq!(got.size_bytes, 10);
    assert_eq!(got.created_at, 100);
    assert!(got.last_used_at > 100, "a lookup is a use");
    assert_eq!(got.inputs.values, inputs.values);
    assert_eq!(got.inputs.files, None, "hits do not load file maps");
    drop(index);
    // Persistent across handles.
    let index = CacheIndex::open(&index_path(&dir)).unwrap();
    assert_eq!(index.get("k1").unwrap().unwrap().result, rec.result);
}

#[test]
fn previous_identity_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let index = CacheIndex::open(&index_path(&dir)).unwrap();
    let old = Explain::new()
        .with("command", "cargo build")
        .with_files([("src/a.rs", "sha256:1"), ("src/b.rs", "sha256:2")]);
    index
        .put("old", record(1, 1, old.clone()), Some(&identity(3)))
        .unwrap();
    let (key, prev) = index.previous(&identity(3)).unwrap().unwrap();
    assert_eq!(key, "old");
    assert_eq!(prev.inputs, old, "previous() loads the file map");
    assert!(index.previous(&identity(4)).unwrap().is_none());
    let other_file = StepIdentity {
        dockerfile: "/src/app/other.Dockerfile".into(),
        ..identity(3)
    };
    assert!(index.previous(&other_file).unwrap().is_none());

    let new = Explain::new()
        .with("command", "cargo build")
        .with_files([("src/a.rs", "sha256:1"), ("src/b.rs", "sha256:9")]);
    let mut batch = index.batch();
    batch.put("new", record(1, 2, new.clone()), Some(identity(3)));
    batch.commit().unwrap();
    let (key, prev) = index.previous(&identity(3)).unwrap().unwrap();
    assert_eq!(key, "new");
    assert_eq!(
        explain(&old, &prev.inputs).as_deref(),
        Some("1 file changed: src/b.rs")
    );
}

fn files(pairs: &[(&str, &str)]) -> Explain {
    Explain::new().with_files(pairs.iter().map(|(p, d)| (*p, *d)))
}

#[test]
fn explanation_sentences() {
    let e = Explain::new;
    let cases: Vec<(Explain, Explain, Option<&str>)> = vec![
        (e().with("command", "a"), e().with("command", "a"), None),
        (
            e().with("base", format!("sha256:{}", "ab".repeat(32)))
                .with("parent", "1"),
            e().with("base", format!("sha256:{}", "cd".repeat(32)))
                .with("parent", "2"),
            Some("base image changed: sha256:abababababab… → sha256:cdcdcdcdcdcd…"),
        ),
        (
            e().with("command", "make"),
            e().with("command", "make all"),
            Some("command changed"),
        ),
        (
            e().with("env:GOFLAGS", "-x"),
            e().with("env:GOFLAGS", "-v"),
            Some(r#"ENV GOFLAGS changed: "-x" → "-v""#),
        ),
        (
            e(),
            e().with("env:GOFLAGS", "-v"),
            Some(r#"ENV GOFLAGS added: "-v""#),
        ),
        (
            e().with("env:GOFLAGS", "-x"),
            e(),
            Some(r#"ENV GOFLAGS removed (was "-x")"#),
        ),
        (
            e().with("arg:VERSION", "1.0"),
            e().with("arg:VERSION", "1.1"),
            Some(r#"ARG VERSION changed: "1.0" → "1.1""#),
        ),
        (
            e().with("user", "root"),
            e().with("user", "app"),
            Some(r#"USER changed: "root" → "app""#),
        ),
        (
            e().with("workdir", "/"),
            e().with("workdir", "/src"),
            Some(r#"WORKDIR changed: "/" → "/src""#),
        ),
        (
            e().with("network", "default"),
            e().with("network", "none"),
            Some(r#"network changed: "default" → "none""#),
        ),
        (
            files(&[("src/a.rs", "1"), ("src/b.rs", "2"), ("lib/c.rs", "3")]),
            files(&[("src/a.rs", "x"), ("src/b.rs", "y"), ("lib/c.rs", "z")]),
            Some("3 files changed: lib/c.rs, src/a.rs, src/b.rs"),
        ),
        (
            files(&[("a", "1")]),
            files(&[("a", "1"), ("x", "2")]),
            Some("1 file added: x"),
        ),
        (
            files(&[("a", "1"), ("b", "2"), ("c", "3")]),
            files(&[("c", "3")]),
            Some("2 files removed: a, b"),
        ),
        (
            files(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")]),
            files(&[
                ("a", "2"),
                ("b", "2"),
                ("c", "2"),
                ("d", "2"),
                ("e", "2"),
                ("f", "2"),
            ]),
            Some("5 files changed: a, b, c, …; 1 file added: f"),
        ),
        (
            e().with("files", "sha256:1"),
            e().with("files", "sha256:2"),
            Some("files changed"),
        ),
        (
            e().with("command", "make").with("parent", "k1"),
            e().with("command", "make").with("parent", "k2"),
            Some("parent step changed"),
        ),
        (
            e().with("parent:0", "k1").with("parent:1", "k1"),
            e().with("parent:0", "k1").with("parent:1", "k3"),
            Some("parent step changed"),
        ),
        (
            e().with("mount:0", "type=cache,target=/root/.cache"),
            e().with("mount:0", "type=cache,target=/cache"),
            Some("mounts changed"),
        ),
        (
            e().with("command", "make")
                .with("env:A", "1")
                .with("user", "a"),
            e().with("command", "make all")
                .with("env:A", "2")
                .with("user", "b"),
            Some("command changed (and 2 more changes)"),
        ),
        (
            e().with("user", "a").with("env:A", "1"),
            e().with("user", "b").with("env:A", "2"),
            Some(r#"ENV A changed: "1" → "2" (and 1 more change)"#),
        ),
        (
            e().with("platform", "linux/amd64"),
            e().with("platform", "linux/arm64"),
            Some("platform changed"),
        ),
    ];
    for (i, (old, new, want)) in cases.iter().enumerate() {
        assert_eq!(explain(old, new).as_deref(), *want, "case {i}");
    }
}

#[test]
fn corrupt_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
    let index = CacheIndex::open(&path).unwrap();
    let recovery = index.recovered().expect("recovery reported").clone();
    assert_eq!(
        std::fs::read(&recovery.moved_to).unwrap(),
        vec![0x5a; 64 * 1024]
    );
    assert!(!recovery.reason.is_empty());
    index.put("k", record(1, 1, Explain::new()), None).unwrap();
    assert!(index.get("k").unwrap().is_some());
    drop(index);
    let again = CacheIndex::open(&path).unwrap();
    assert!(again.recovered().is_none());
    assert_eq!(again.usage().unwrap(), (1, 1));
}

#[test]
fn foreign_redb_with_other_table_types_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<u64, u64> = redb::TableDefinition::new("records-v1");
            txn.open_table(def).unwrap().insert(1, 2).unwrap();
        }
        txn.commit().unwrap();
    }
    let index = CacheIndex::open(&path).unwrap();
    assert!(index.recovered().is_some());
    assert_eq!(index.usage().unwrap(), (0, 0));
}

#[test]
fn truncated_database_is_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    {
        let index = CacheIndex::open(&path).unwrap();
        for i in 0..50 {
            index
                .put(&format!("k{i}"), record(i, i, Explain::new()), None)
                .unwrap();
        }
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 3).unwrap();
    drop(file);
    // redb refuses a file shorter than its recorded layout: the index starts over.
    let index = CacheIndex::open(&path).unwrap();
    let recovery = index.recovered().expect("moved aside");
    assert!(recovery.reason.contains("truncated"), "{}", recovery.reason);
    assert_eq!(index.usage().unwrap(), (0, 0));
    index
        .put("after", record(1, 1, Explain::new()), None)
        .unwrap();
    assert!(index.get("after").unwrap().is_some());
}

#[test]
fn ordering_by_last_use_and_usage_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    let index = CacheIndex::open(&path).unwrap();
    let shared = [("f", "1")];
    let mut batch = index.batch();
    batch.put("a", record(10, 100, files(&shared)), Some(identity(1)));
    batch.put("b", record(20, 200, files(&shared)), Some(identity(2)));
    batch.put("c", record(30, 300, Explain::new()), Some(identity(3)));
    assert_eq!(batch.len(), 3);
    batch.commit().unwrap();
    let keys = |index: &CacheIndex| -> Vec<String> {
        index
            .iter_by_last_used()
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(&index), ["a", "b", "c"]);
    assert_eq!(index.usage().unwrap(), (3, 60));
    index.get("a").unwrap();
    assert_eq!(keys(&index), ["b", "c", "a"]);
    // Lookups are written on drop too.
    index.get("b").unwrap();
    drop(index);
    let index = CacheIndex::open(&path).unwrap();
    assert_eq!(keys(&index), ["c", "a", "b"]);

    assert_eq!(index.remove(&["a".into(), "zzz".into()]).unwrap(), 1);
    assert_eq!(index.usage().unwrap(), (2, 50));
    assert!(index.get("a").unwrap().is_none());
    assert!(index.previous(&identity(1)).unwrap().is_none());
    // The file map shared with "a" is still there for "b".
    let (_, b) = index.previous(&identity(2)).unwrap().unwrap();
    assert_eq!(b.inputs.files, files(&shared).files);
    assert_eq!(index.remove(&["b".into(), "c".into()]).unwrap(), 2);
    assert_eq!(index.usage().unwrap(), (0, 0));
}

fn write_many(path: &Path, prefix: &str, count: u64) {
    let index = CacheIndex::open(path).unwrap();
    for i in 0..count {
        let inputs = Explain::new()
            .with("command", format!("{prefix} {i}"))
            .with_files([(format!("{prefix}/{i}"), format!("sha256:{i}"))]);
        let key = format!("{prefix}-{i}");
        if i % 10 == 0 {
            let mut batch = index.batch();
            batch.put(
                key.clone(),
                record(1, i, inputs.clone()),
                Some(identity(i as u32)),
            );
            batch.put(format!("{key}-b"), record(1, i, inputs), None);
            batch.commit().unwrap();
        } else {
            index.put(&key, record(1, i, inputs), None).unwrap();
        }
        // Reads interleave with the other writers' commits.
        assert!(index.get(&key).unwrap().is_some());
    }
}

const PER_WRITER: u64 = 30;
/// 30 keys plus a second key for every tenth.
const KEYS_PER_WRITER: u64 = PER_WRITER + PER_WRITER / 10;

#[test]
fn two_handles_in_two_threads_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    CacheIndex::open(&path).unwrap();
    let threads: Vec<_> = ["t1", "t2"]
        .into_iter()
        .map(|prefix| {
            let path = path.clone();
            std::thread::spawn(move || write_many(&path, prefix, PER_WRITER))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let index = CacheIndex::open(&path).unwrap();
    assert_eq!(index.usage().unwrap().0, 2 * KEYS_PER_WRITER);
}

/// Run by `processes_share_the_index` in child processes; a no-op otherwise.
#[test]
fn helper_process_writer() {
    let (Ok(path), Ok(prefix)) = (
        std::env::var("KILN_CACHE_TEST_PATH"),
        std::env::var("KILN_CACHE_TEST_PREFIX"),
    ) else {
        return;
    };
    write_many(Path::new(&path), &prefix, PER_WRITER);
}

#[test]
fn processes_share_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    // This process keeps the index open (and writes) while two others write.
    let index = CacheIndex::open(&path).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["p1", "p2"]
        .into_iter()
        .map(|prefix| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "cache::helper_process_writer",
                    "--test-threads=1",
                ])
                .env("KILN_CACHE_TEST_PATH", &path)
                .env("KILN_CACHE_TEST_PREFIX", prefix)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for i in 0..PER_WRITER {
        index
            .put(&format!("parent-{i}"), record(1, i, Explain::new()), None)
            .unwrap();
    }
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let (count, _) = index.usage().unwrap();
    assert_eq!(count, PER_WRITER + 2 * KEYS_PER_WRITER);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (key, _) in index.iter_by_last_used().unwrap() {
        *seen
            .entry(key.split('-').next().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(seen.get("p1"), Some(&KEYS_PER_WRITER));
    assert_eq!(seen.get("p2"), Some(&KEYS_PER_WRITER));
}

#[test]
fn keys_are_unambiguous_hex() {
    let k = key(b"{\"op\":\"exec\"}", &["a", "b"]);
    assert_eq!(k.len(), 64);
    assert!(
        k.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(k, key(b"{\"op\":\"exec\"}", &["a", "b"]));
    assert_ne!(k, key(b"{\"op\":\"exec\"}", &["b", "a"]));
    assert_ne!(k, key(b"{\"op\":\"exec\"}", &["ab"]));
    assert_ne!(key(b"x", &[]), key(b"", &["x"]));
}

#[test]
fn undecodable_records_are_misses_and_pruned_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = index_path(&dir);
    {
        let index = CacheIndex::open(&path).unwrap();
        index
            .put("good", record(5, 50, Explain::new()), None)
            .unwrap();
    }
    {
        let db = redb::Database::builder()
            .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
            .create(&path)
            .unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("records-v1");
            txn.open_table(def)
                .unwrap()
                .insert("bad", b"{not json".as_slice())
                .unwrap();
        }
        txn.commit().unwrap();
    }
    let index = CacheIndex::open(&path).unwrap();
    assert!(index.recovered().is_none());
    assert!(index.get("bad").unwrap().is_none());
    let order: Vec<String> = index
        .iter_by_last_used()
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(order, ["bad", "good"]);
    assert_eq!(index.remove(&["bad".into()]).unwrap(), 1);
}
