//! The local image store: blobs, index, images, prune, and interop with skopeo/umoci.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kiln::oci::{self, Descriptor, Digest, MediaType, Reference, media_type};
use kiln::snapshot;
use kiln::store::{PruneRoots, Store, StoreError};

use crate::harness::{self, entry_names, temp_store};

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// A one-file layer tar, gzip-compressed, and its diff id.
fn gzip_layer(file: &str, content: &[u8]) -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_700_000_000);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, file, content).unwrap();
    let tar = builder.into_inner().unwrap();
    let diff_id = Digest::of(&tar);
    (harness::gzip(&tar), diff_id)
}

struct TestImage {
    manifest: Descriptor,
    config_digest: Digest,
    layer_digests: Vec<Digest>,
    diff_ids: Vec<Digest>,
}

/// Stores a small image with one layer per `(file, content)` and returns its descriptors.
fn store_image(
    store: &Store,
    layers: &[(&str, &[u8])],
    manifest_type: &str,
    layer_type: &str,
) -> TestImage {
    let mut layer_descriptors = Vec::new();
    let mut layer_digests = Vec::new();
    let mut diff_ids = Vec::new();
    for (file, content) in layers {
        let (blob, diff_id) = gzip_layer(file, content);
        let digest = store.write_blob(&blob).unwrap();
        layer_descriptors.push(serde_json::json!({
            "mediaType": layer_type, "digest": digest.to_string(), "size": blob.len(),
        }));
        layer_digests.push(digest);
        diff_ids.push(diff_id);
    }
    let config_type = if manifest_type == media_type::DOCKER_MANIFEST {
        media_type::DOCKER_CONFIG
    } else {
        media_type::OCI_CONFIG
    };
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.write_blob(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layer_descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = store.write_blob(&manifest_bytes).unwrap();
    TestImage {
        manifest: Descriptor::new(
            MediaType::from(manifest_type),
            manifest_bytes.len() as u64,
            manifest_digest.to_oci(),
        ),
        config_digest,
        layer_digests,
        diff_ids,
    }
}

#[test]
fn open_creates_an_oci_layout() {
    let (_dir, store) = temp_store();
    let root = store.root();
    assert_eq!(
        fs::read_to_string(root.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], serde_json::json!([]));
    for dir in [
        "blobs/sha256",
        "ingest",
        "snapshots-v1",
        "cache-v1",
        "containers-v1",
        "locks",
    ] {
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    // Opening again keeps what is there.
    Store::open(root).unwrap();
}

#[test]
fn blobs_round_trip() {
    let (_dir, store) = temp_store();
    let digest = store.write_blob(b"hello").unwrap();
    assert_eq!(digest, Digest::of(b"hello"));
    assert!(store.has_blob(&digest));
    assert_eq!(store.read_blob(&digest).unwrap(), b"hello");
    assert_eq!(store.blob_size(&digest).unwrap(), 5);
    assert_eq!(
        store.blob_path(&digest),
        store.root().join("blobs/sha256").join(digest.hex())
    );
    // Writing the same content again is a no-op.
    assert_eq!(store.write_blob(b"hello").unwrap(), digest);
    let missing = Digest::of(b"missing");
    assert!(matches!(
        store.read_blob(&missing),
        Err(StoreError::BlobNotFound(d)) if d == missing
    ));
    assert!(matches!(
        store.open_blob(&missing),
        Err(StoreError::BlobNotFound(_))
    ));
}

#[test]
fn ingest_streams_and_verifies() {
    let (_dir, store) = temp_store();
    let content = vec![7u8; 300_000];
    let expected = Digest::of(&content);
    let mut ingest = store.ingest().unwrap();
    for chunk in content.chunks(4096) {
        ingest.write_all(chunk).unwrap();
    }
    assert_eq!(ingest.written(), content.len() as u64);
    let (digest, size) = ingest
        .commit(Some(&expected), Some(content.len() as u64))
        .unwrap();
    assert_eq!((digest, size), (expected.clone(), content.len() as u64));
    assert_eq!(store.read_blob(&expected).unwrap(), content);
    assert!(entry_names(&store.root().join("ingest")).is_empty());
}

#[test]
fn ingest_mismatch_leaves_nothing() {
    let (_dir, store) = temp_store();
    let wrong = Digest::of(b"something else");

    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"actual content").unwrap();
    let err = ingest.commit(Some(&wrong), None).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&wrong.to_string())
            && message.contains(&Digest::of(b"actual content").to_string()),
        "{message}"
    );

    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"actual content").unwrap();
    let err = ingest
        .commit(Some(&Digest::of(b"actual content")), Some(3))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SizeMismatch {
                expected: 3,
                actual: 14,
                ..
            }
        ),
        "{err}"
    );

    let sha512: Digest = format!("sha512:{}", "a".repeat(128)).parse().unwrap();
    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"x").unwrap();
    assert!(matches!(
        ingest.commit(Some(&sha512), None),
        Err(StoreError::UnsupportedAlgorithm(_))
    ));

    assert!(entry_names(&store.root().join("blobs/sha256")).is_empty());
    assert!(entry_names(&store.root().join("ingest")).is_empty());
}

#[test]
fn dropped_ingest_is_removed() {
    let (_dir, store) = temp_store();
    let mut ingest = store.ingest().unwrap();
    ingest.write_all(b"partial").unwrap();
    assert_eq!(entry_names(&store.root().join("ingest")).len(), 1);
    drop(ingest);
    assert!(entry_names(&store.root().join("ingest")).is_empty());
    assert!(entry_names(&store.root().join("blobs/sha256")).is_empty());
}

#[test]
fn stale_ingests_are_cleaned_on_open_but_live_ones_kept() {
    let (_dir, store) = temp_store();
    let ingest_dir = store.root().join("ingest");
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);

    // Left by a killed process: old, and nobody holds its lock.
    let stale = ingest_dir.join("stale");
    fs::write(&stale, b"partial").unwrap();
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // A live but slow writer: just as old, but locked.
    let mut live = store.ingest().unwrap();
    live.write_all(b"slow download").unwrap();
    for name in entry_names(&ingest_dir) {
        let path = ingest_dir.join(name);
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    // A fresh file whose writer may not have locked it yet.
    fs::write(ingest_dir.join("fresh"), b"").unwrap();

    Store::open(store.root()).unwrap();
    let left = entry_names(&ingest_dir);
    assert!(!left.contains(&"stale".to_string()), "{left:?}");
    assert!(left.contains(&"fresh".to_string()), "{left:?}");
    assert_eq!(left.len(), 2, "the live ingest stays: {left:?}");
    live.commit(None, None).unwrap();
}

#[test]
fn tag_lookup_untag_list() {
    let (_dir, store) = temp_store();
    let image = store_image(
        &store,
        &[("a", b"1")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    let busybox = reference("busybox");
    store.tag(&busybox, &image.manifest).unwrap();
    store
        .tag(&reference("busybox:1.36"), &image.manifest)
        .unwrap();

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(store.root().join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1.36"
        ]
    );

    let found = store.lookup(&busybox).unwrap().unwrap();
    assert_eq!(found.digest(), image.manifest.digest());
    let by_digest = reference(&format!("busybox@{}", image.manifest.digest()));
    assert_eq!(
        store.lookup(&by_digest).unwrap().unwrap().digest(),
        image.manifest.digest()
    );
    assert!(store.lookup(&reference("other")).unwrap().is_none());

    // Re-tagging replaces, not duplicates.
    store.tag(&busybox, &image.manifest).unwrap();
    assert_eq!(store.list().unwrap().len(), 2);

    assert!(store.untag(&busybox).unwrap().is_some());
    assert!(store.untag(&busybox).unwrap().is_none());
    let listed: Vec<String> = store
        .list()
        .unwrap()
        .iter()
        .map(|(r, _)| r.to_string())
        .collect();
    assert_eq!(listed, ["docker.io/library/busybox:1.36"]);

    // Tagging a manifest that is not stored is refused.
    let absent = Descriptor::new(MediaType::ImageManifest, 2, Digest::of(b"{}").to_oci());
    assert!(matches!(
        store.tag(&busybox, &absent),
        Err(StoreError::BlobNotFound(_))
    ));
}

#[test]
fn concurrent_tagging_from_separate_stores_loses_nothing() {
    let (_dir, store) = temp_store();
    let image = store_image(
        &store,
        &[("a", b"1")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let root = store.root().to_path_buf();
            let manifest = image.manifest.clone();
            std::thread::spawn(move || {
                let store = Store::open(root).unwrap();
                for i in 0..25 {
                    store
                        .tag(&reference(&format!("repo{t}:tag{i}")), &manifest)
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let names: HashSet<String> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.to_string())
        .collect();
    assert_eq!(names.len(), 100);
    assert!(names.contains("docker.io/library/repo3:tag24"));
}

#[test]
fn image_view_normalises_docker_manifests() {
    let (_dir, store) = temp_store();
    let image = store_image(
        &store,
        &[("a", b"1"), ("b", b"22")],
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_LAYER_GZIP,
    );
    let manifest_digest = Digest::from_oci(image.manifest.digest()).unwrap();
    let view = store.image(&manifest_digest).unwrap();
    assert_eq!(view.manifest_digest, manifest_digest);
    assert_eq!(view.config_digest, image.config_digest);
    assert_eq!(view.id(), &image.config_digest);
    assert_eq!(
        view.manifest.media_type().as_ref().unwrap().to_string(),
        media_type::OCI_MANIFEST
    );
    assert_eq!(
        view.manifest.config().media_type().to_string(),
        media_type::OCI_CONFIG
    );
    assert!(
        view.layers
            .iter()
            .all(|l| l.media_type().to_string() == media_type::OCI_LAYER_GZIP)
    );
    assert_eq!(view.diff_ids, image.diff_ids);
    assert_eq!(view.chain_ids().len(), 2);
    assert_eq!(view.chain_ids()[1], oci::chain_id(&image.diff_ids).unwrap());
    let layer_bytes: u64 = image
        .layer_digests
        .iter()
        .map(|d| store.blob_size(d).unwrap())
        .sum();
    assert_eq!(
        view.size(),
        image.manifest.size() + store.blob_size(&image.config_digest).unwrap() + layer_bytes
    );
    assert_eq!(
        view.config
            .config()
            .as_ref()
            .unwrap()
            .cmd()
            .as_ref()
            .unwrap(),
        &vec!["sh".to_string()]
    );
}

#[test]
fn image_of_an_index_is_an_error() {
    let (_dir, store) = temp_store();
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": []});
    let digest = store
        .write_blob(&serde_json::to_vec(&index).unwrap())
        .unwrap();
    assert!(matches!(
        store.image(&digest),
        Err(StoreError::NotAManifest { .. })
    ));
}

#[test]
fn corrupt_blob_is_detected_on_read() {
    let (_dir, store) = temp_store();
    let digest = store.write_blob(b"{\"a\":1}").unwrap();
    fs::write(store.blob_path(&digest), b"{\"a\":2}").unwrap();
    assert!(matches!(
        store.read_blob(&digest),
        Err(StoreError::CorruptBlob { .. })
    ));
}

#[test]
fn resolve_image_by_name_or_id_prefix() {
    let (_dir, store) = temp_store();
    let one = store_image(
        &store,
        &[("a", b"1")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    let two = store_image(
        &store,
        &[("a", b"2")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    store.tag(&reference("one"), &one.manifest).unwrap();
    store.tag(&reference("one:alias"), &one.manifest).unwrap();
    store.tag(&reference("two"), &two.manifest).unwrap();

    assert_eq!(
        store.resolve_image("one").unwrap().digest(),
        one.manifest.digest()
    );
    let id = one.config_digest.hex();
    for query in [&id[..12], id, &format!("sha256:{}", &id[..8])] {
        assert_eq!(
            store.resolve_image(query).unwrap().digest(),
            one.manifest.digest(),
            "{query}"
        );
    }
    assert!(matches!(
        store.resolve_image("nothing"),
        Err(StoreError::ImageNotFound(_))
    ));
    // The empty-looking prefix "" is not an id; a prefix shared by both is ambiguous.
    let common = one
        .config_digest
        .hex()
        .chars()
        .zip(two.config_digest.hex().chars())
        .take_while(|(a, b)| a == b)
        .count();
    if common > 0 {
        assert!(matches!(
            store.resolve_image(&id[..common]),
            Err(StoreError::AmbiguousImage { .. })
        ));
    }
}

#[test]
fn prune_removes_only_unreachable_content() {
    let (_dir, store) = temp_store();
    let kept = store_image(
        &store,
        &[("a", b"kept")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    let dropped = store_image(
        &store,
        &[("b", b"dropped")],
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_LAYER_GZIP,
    );
    store.tag(&reference("kept"), &kept.manifest).unwrap();
    let pinned_blob = store.write_blob(b"pinned").unwrap();
    let loose_blob = store.write_blob(b"loose").unwrap();

    // An index that points at the kept image through a nested index keeps it too.
    let nested = serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX,
        "manifests": [serde_json::to_value(&kept.manifest).unwrap()]});
    let nested_bytes = serde_json::to_vec(&nested).unwrap();
    let nested_digest = store.write_blob(&nested_bytes).unwrap();
    let nested_descriptor = Descriptor::new(
        MediaType::ImageIndex,
        nested_bytes.len() as u64,
        nested_digest.to_oci(),
    );
    store
        .tag(&reference("multi:latest"), &nested_descriptor)
        .unwrap();

    // Snapshots: the kept image's layer, the dropped one's, and a pinned container's.
    let unpack = |image: &TestImage, content: &[u8], file: &str| {
        let (blob, _) = gzip_layer(file, content);
        snapshot::unpack_layer(&store, None, &image.diff_ids[0], &blob[..]).unwrap()
    };
    let kept_snapshot = unpack(&kept, b"kept", "a");
    let dropped_snapshot = unpack(&dropped, b"dropped", "b");
    let (pinned_layer, pinned_diff) = gzip_layer("c", b"pinned");
    let pinned_snapshot =
        snapshot::unpack_layer(&store, None, &pinned_diff, &pinned_layer[..]).unwrap();
    fs::create_dir(store.snapshots_dir().join("tmp-leftover")).unwrap();

    let roots = PruneRoots {
        snapshots: [pinned_snapshot.meta.chain_id.clone()].into(),
        blobs: [pinned_blob.clone()].into(),
    };
    let report = store.prune(&roots).unwrap();

    for digest in [&kept.config_digest, &pinned_blob, &nested_digest]
        .into_iter()
        .chain(&kept.layer_digests)
    {
        assert!(store.has_blob(digest), "{digest} should be kept");
    }
    assert!(store.has_blob(&Digest::from_oci(kept.manifest.digest()).unwrap()));
    for digest in [&dropped.config_digest, &loose_blob]
        .into_iter()
        .chain(&dropped.layer_digests)
    {
        assert!(!store.has_blob(digest), "{digest} should be removed");
    }
    assert!(!store.has_blob(&Digest::from_oci(dropped.manifest.digest()).unwrap()));
    assert_eq!(report.blobs_removed, 4);
    assert!(report.blob_bytes > 0);

    assert!(kept_snapshot.dir.exists());
    assert!(pinned_snapshot.dir.exists());
    assert!(!dropped_snapshot.dir.exists());
    assert!(!store.snapshots_dir().join("tmp-leftover").exists());
    assert_eq!(report.snapshots_removed, 1);
    assert!(report.snapshot_bytes >= 7);

    // A second prune finds nothing more.
    let again = store.prune(&roots).unwrap();
    assert_eq!((again.blobs_removed, again.snapshots_removed), (0, 0));
}

#[test]
fn prune_waits_for_leases() {
    let (_dir, store) = temp_store();
    let lease = store.lease().unwrap();
    let loose = store.write_blob(b"loose").unwrap();
    let pruner = {
        let store = Store::open(store.root()).unwrap();
        std::thread::spawn(move || store.prune(&PruneRoots::default()).unwrap())
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        store.has_blob(&loose),
        "prune must not run while a lease is held"
    );
    drop(lease);
    let report = pruner.join().unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert!(!store.has_blob(&loose));
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    if !harness::have(harness::SKOPEO) || !harness::have(harness::UMOCI) {
        return;
    }
    let (dir, store) = temp_store();
    let image = store_image(
        &store,
        &[("hello.txt", b"hello from kiln\n")],
        media_type::OCI_MANIFEST,
        media_type::OCI_LAYER_GZIP,
    );
    let name = reference("example.com/kiln/test:v1");
    store.tag(&name, &image.manifest).unwrap();

    let location = format!("oci:{}:{}", store.root().display(), name);
    let output = Command::new(harness::SKOPEO)
        .args(["inspect", "--raw", &location])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo inspect {location}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        Digest::of(&output.stdout).to_string(),
        image.manifest.digest().to_string()
    );
    let output = Command::new(harness::SKOPEO)
        .args(["inspect", "--config", &location])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let bundle = dir.path().join("bundle");
    let output = Command::new(harness::UMOCI)
        .arg("unpack")
        .arg("--rootless")
        .arg("--image")
        .arg(format!("{}:{}", store.root().display(), name))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        fs::read(bundle.join("rootfs/hello.txt")).unwrap(),
        b"hello from kiln\n"
    );
}
