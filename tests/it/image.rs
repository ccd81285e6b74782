//! Image commands end to end: the built `kiln` binary against a real `docker-registry`,
//! skopeo as the independent reader and writer of archives, and a fake registry for
//! content that lies.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kiln::oci::Digest;
use serde_json::{Value, json};

use crate::harness::registry::{self, FakeServer, Resp};
use crate::harness::{
    self, BUSYBOX, Busybox, SKOPEO, TempRoot, fixture_dir, kiln, kiln_with_root, random_bytes,
    stderr,
};

/// Size of the random layer of the "big" test image.
const BIG_LAYER: usize = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Every tool these tests need and the busybox image; `None` after [`harness::skip`].
fn tools() -> Option<&'static Busybox> {
    if !(harness::have(registry::REGISTRY_BIN) && harness::have(SKOPEO) && harness::have(BUSYBOX)) {
        return None;
    }
    harness::busybox()
}

/// The busybox image, once [`tools`] has made it.
fn made_busybox() -> &'static Busybox {
    harness::busybox().expect("tools() made the busybox image")
}

fn write_blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = Digest::of(bytes);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), bytes).unwrap();
    (digest.to_string(), bytes.len() as u64)
}

/// An OCI layout with busybox plus one uncompressed layer of random data, made once.
fn big_layout() -> &'static Path {
    static L: OnceLock<PathBuf> = OnceLock::new();
    L.get_or_init(|| {
        let bb = made_busybox();
        let layout = fixture_dir().join("big");
        std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
        let bb_layer = std::fs::read(bb.oci.join("blobs/sha256").join(&bb.layer[7..])).unwrap();
        let (bb_digest, bb_size) = write_blob(&layout, &bb_layer);
        let mut tar = tar::Builder::new(Vec::new());
        let data = random_bytes(BIG_LAYER, 7);
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "big.bin", &data[..]).unwrap();
        let layer = tar.into_inner().unwrap();
        let (layer_digest, layer_size) = write_blob(&layout, &layer);
        let config = json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [bb.diff_id, layer_digest]},
            "history": [{"created_by": "busybox"}, {"created_by": "big"}],
        });
        let (config_digest, config_size) = write_blob(&layout, config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": bb_digest, "size": bb_size},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size},
            ],
        });
        let (m_digest, m_size) = write_blob(&layout, manifest.to_string().as_bytes());
        std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest, "size": m_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
        std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
        layout
    })
}

fn skopeo(args: &[&str]) -> Output {
    let out = Command::new(SKOPEO).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Copies an OCI layout's `latest` into `docker://addr/name`.
fn push_layout(layout: &Path, addr: &str, name: &str) {
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.display()),
        &format!("docker://{addr}/{name}"),
    ]);
}

/// The shared registry with `busybox:latest` and `big:latest` pushed (None = skipped).
fn pushed_registry() -> Option<&'static str> {
    let bb = tools()?;
    let reg = registry::plain()?;
    static PUSHED: OnceLock<()> = OnceLock::new();
    PUSHED.get_or_init(|| {
        push_layout(&bb.oci, &reg.addr, "busybox:latest");
        push_layout(big_layout(), &reg.addr, "big:latest");
    });
    Some(&reg.addr)
}

/// Runs kiln and asserts it exits 0; returns stdout.
fn ok(root: &Path, args: &[&str]) -> String {
    let out = kiln(root, args);
    assert!(
        out.status.success(),
        "kiln {args:?} exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file in `blobs/sha256` hashes to its name.
fn assert_blobs_verified(root: &Path) {
    let dir = root.join("blobs/sha256");
    // A pull killed before it made the store leaves no blob directory: nothing to be corrupt.
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => panic!("reading {}: {e}", dir.display()),
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            Digest::of(&bytes).hex(),
            name,
            "blob {} is corrupt",
            path.display()
        );
    }
}

fn inspect(root: &Path, name: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(root, &["image", "inspect", name])).unwrap();
    v[0].clone()
}

// ---------------------------------------------------------------------------------------------
// Pull and the local views

#[test]
fn pull_then_images_inspect_history() {
    let Some(reg) = pushed_registry() else { return };
    let bb = made_busybox();
    let (_t, root) = harness::temp_dir();
    let name = format!("{reg}/busybox:latest");
    let out = ok(&root, &["pull", &name]);
    assert!(out.contains("latest: Pulling from busybox"), "{out}");
    assert!(
        out.contains(&format!("{}: Pull complete", &bb.layer[7..19])),
        "{out}"
    );
    assert!(out.contains(&format!("Digest: {}", bb.manifest)), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );

    // The digest kiln reports is the digest of the bytes skopeo reads from the registry.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ])
    .stdout;
    assert_eq!(Digest::of(&raw).to_string(), bb.manifest);
    let meta: Value = serde_json::from_slice(
        &skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]).stdout,
    )
    .unwrap();
    assert_eq!(meta["Digest"], bb.manifest);

    let again = ok(&root, &["pull", &name]);
    assert!(again.contains("Status: Image is up to date"), "{again}");

    let table = ok(&root, &["images"]);
    let header = table.lines().next().unwrap();
    for column in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains(&format!("{reg}/busybox")) && table.contains(&bb.config[7..19]),
        "{table}"
    );
    assert!(table.contains("years ago"), "{table}");
    assert_eq!(ok(&root, &["images", "-q"]).trim(), &bb.config[7..19]);
    let line: Value =
        serde_json::from_str(ok(&root, &["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(line["Tag"], "latest");
    assert_eq!(line["Digest"], bb.manifest);

    let image = inspect(&root, &name);
    assert_eq!(image["Id"], bb.config);
    assert_eq!(image["RepoTags"], json!([name]));
    assert_eq!(
        image["RepoDigests"],
        json!([format!("{reg}/busybox@{}", bb.manifest)])
    );
    assert_eq!(image["Architecture"], "amd64");
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["RootFS"]["Layers"], json!([bb.diff_id]));
    assert_eq!(image["Config"]["Cmd"], json!(["sh"]));
    // By id prefix too.
    assert_eq!(inspect(&root, &bb.config[7..15])["Id"], bb.config);

    let history = ok(&root, &["image", "history", &name]);
    assert!(history.starts_with("IMAGE"), "{history}");
    assert!(
        history.contains(&bb.config[7..19]) && history.contains("make-image.sh"),
        "{history}"
    );

    // The layer is unpacked for run/build, and the store is an OCI layout skopeo reads.
    let chain = root.join("snapshots-v1").join(&bb.diff_id[7..]);
    assert!(chain.join("fs/bin/busybox").is_file());
    let direct = skopeo(&["inspect", &format!("oci:{}:{name}", root.display())]).stdout;
    let direct: Value = serde_json::from_slice(&direct).unwrap();
    assert_eq!(direct["Digest"], bb.manifest);

    // By digest.
    let by_digest = format!("{reg}/busybox@{}", bb.manifest);
    let out = ok(&root, &["pull", &by_digest]);
    assert!(out.contains(&format!("Digest: {}", bb.manifest)), "{out}");
    assert_eq!(inspect(&root, &by_digest)["Id"], bb.config);
    assert_blobs_verified(&root);
}

/// Pushes an arm64 variant of busybox and a two-platform index `multi:latest`; returns the
/// index digest.
fn push_index(reg: &str) -> String {
    use kiln::registry::{Anonymous, BlobSource, Client, ClientConfig, RegistryRef};
    let bb = made_busybox();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = Client::new(ClientConfig::new(vec![], std::sync::Arc::new(Anonymous))).unwrap();
    rt.block_on(async {
        let target = RegistryRef::repo(reg, "multi");
        // Same layer; mounting it from busybox keeps the fixture cheap.
        let layer: Digest = bb.layer.parse().unwrap();
        assert!(client.mount_blob(&target, "busybox", &layer).await.unwrap());
        let amd_config = std::fs::read(bb.oci.join("blobs/sha256").join(&bb.config[7..])).unwrap();
        let arm_config = String::from_utf8(amd_config.clone())
            .unwrap()
            .replace("\"amd64\"", "\"arm64\"")
            .into_bytes();
        let mut entries = Vec::new();
        for (config, arch) in [(amd_config, "amd64"), (arm_config, "arm64")] {
            let digest = Digest::of(&config);
            client
                .push_blob(&target, &digest, config.len() as u64, BlobSource::Bytes(config.clone()), None)
                .await
                .unwrap();
            let layer_size = std::fs::metadata(bb.oci.join("blobs/sha256").join(&bb.layer[7..])).unwrap().len();
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest, "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": bb.layer, "size": layer_size}],
            })
            .to_string();
            let m_digest = Digest::of(manifest.as_bytes());
            client
                .push_manifest(
                    &target.clone().with_digest(m_digest.clone()),
                    "application/vnd.oci.image.manifest.v1+json",
                    manifest.as_bytes(),
                )
                .await
                .unwrap();
            entries.push(json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m_digest,
                "size": manifest.len(), "platform": {"os": "linux", "architecture": arch},
            }));
        }
        let index = json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries,
        })
        .to_string();
        client
            .push_manifest(&target.with_tag("latest"), "application/vnd.oci.image.index.v1+json", index.as_bytes())
            .await
            .unwrap()
            .to_string()
    })
}

#[test]
fn pull_platform_from_index() {
    let Some(reg) = pushed_registry() else { return };
    let index_digest = push_index(reg);
    let (_t, root) = harness::temp_dir();
    let name = format!("{reg}/multi:latest");

    let out = ok(&root, &["pull", "--platform", "linux/arm64", &name]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let image = inspect(&root, &name);
    assert_eq!(image["Architecture"], "arm64");
    assert_eq!(
        image["RepoDigests"],
        json!([format!("{reg}/multi@{index_digest}")])
    );

    ok(&root, &["pull", &name]); // The host: linux/amd64.
    assert_eq!(inspect(&root, &name)["Architecture"], "amd64");

    // The index stays reachable through prune.
    ok(&root, &["image", "prune", "-f"]);
    assert!(root.join("blobs/sha256").join(&index_digest[7..]).is_file());

    let out = kiln(&root, &["pull", "--platform", "linux/s390x", &name]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("linux/s390x") && err.contains("linux/amd64") && err.contains("linux/arm64"),
        "{err}"
    );

    let out = kiln(&root, &["pull", "--platform", "linux", &name]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Push

#[test]
fn push_uploads_only_what_is_missing_and_mounts() {
    let Some(reg) = pushed_registry() else { return };
    let bb = made_busybox();
    let layer_id = &bb.layer[7..19];

    // A store that never talked to the registry must upload.
    let (_t, fresh) = harness::temp_dir();
    let archive = fixture_dir().join("push-src.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:latest", bb.oci.display()),
        &format!("oci-archive:{}:pushsrc:1", archive.display()),
    ]);
    ok(&fresh, &["load", "-i", archive.to_str().unwrap()]);
    let first = format!("{reg}/pushed/uploaded:v1");
    ok(&fresh, &["tag", "pushsrc:1", &first]);
    let out = ok(&fresh, &["push", &first]);
    assert!(out.contains(&format!("{layer_id}: Pushed")), "{out}");
    assert!(
        out.contains(&format!("v1: digest: {} size:", bb.manifest)),
        "{out}"
    );
    let meta: Value = serde_json::from_slice(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{first}"),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(meta["Digest"], bb.manifest);

    // Again: the registry has everything.
    let out = ok(&fresh, &["push", &first]);
    assert!(
        out.contains(&format!("{layer_id}: Layer already exists")),
        "{out}"
    );
    assert!(!out.contains("Pushed"), "{out}");

    // A third repository on the same registry: mounted from where we pushed it.
    let third = format!("{reg}/pushed/third:v1");
    ok(&fresh, &["tag", &first, &third]);
    let out = ok(&fresh, &["push", &third]);
    assert!(
        out.contains(&format!("{layer_id}: Mounted from pushed/uploaded")),
        "{out}"
    );
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{third}"),
    ]);

    // After a pull, blob sources name the pulled repository.
    let (_t2, pulled) = harness::temp_dir();
    ok(&pulled, &["pull", &format!("{reg}/busybox:latest")]);
    let fourth = format!("{reg}/pushed/fourth:v2");
    ok(&pulled, &["tag", &format!("{reg}/busybox:latest"), &fourth]);
    let out = ok(&pulled, &["push", &fourth]);
    assert!(
        out.contains(&format!("{layer_id}: Mounted from busybox")),
        "{out}"
    );

    let out = kiln(&pulled, &["push", &format!("{reg}/pushed/absent:v1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Save and load

#[test]
fn save_load_interop_with_skopeo() {
    let Some(bb) = tools() else { return };
    let dir = fixture_dir().join("save-load");
    std::fs::create_dir_all(&dir).unwrap();
    let (_t, root) = harness::temp_dir();

    // skopeo-written archives load into kiln.
    let docker_archive = dir.join("skopeo-docker.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:latest", bb.oci.display()),
        &format!("docker-archive:{}:foo/bar:1", docker_archive.display()),
    ]);
    let out = ok(&root, &["load", "-i", docker_archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: foo/bar:1"), "{out}");
    assert_eq!(inspect(&root, "foo/bar:1")["Id"], bb.config);
    let oci_archive = dir.join("skopeo-oci.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:latest", bb.oci.display()),
        &format!("oci-archive:{}:baz:2", oci_archive.display()),
    ]);
    let out = ok(&root, &["load", "-i", oci_archive.to_str().unwrap()]);
    assert!(out.contains("Loaded image: baz:2"), "{out}");
    let image = inspect(&root, "baz:2");
    assert_eq!(image["Id"], bb.config);
    assert!(
        root.join("snapshots-v1")
            .join(&bb.diff_id[7..])
            .join("fs/bin/busybox")
            .is_file()
    );

    // kiln-written archives read by skopeo, and by kiln again.
    let saved = dir.join("kiln-docker.tar");
    ok(&root, &["save", "-o", saved.to_str().unwrap(), "baz:2"]);
    let meta: Value = serde_json::from_slice(
        &skopeo(&["inspect", &format!("docker-archive:{}", saved.display())]).stdout,
    )
    .unwrap();
    assert_eq!(meta["Architecture"], "amd64");
    let config: Value = serde_json::from_slice(
        &skopeo(&[
            "inspect",
            "--config",
            &format!("docker-archive:{}", saved.display()),
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], json!([bb.diff_id]));
    let saved_oci = dir.join("kiln-oci.tar");
    ok(
        &root,
        &[
            "save",
            "--format",
            "oci",
            "-o",
            saved_oci.to_str().unwrap(),
            "baz:2",
        ],
    );
    let meta: Value = serde_json::from_slice(
        &skopeo(&["inspect", &format!("oci-archive:{}", saved_oci.display())]).stdout,
    )
    .unwrap();
    assert_eq!(meta["Digest"], bb.manifest);

    let (_t2, other) = harness::temp_dir();
    let out = ok(&other, &["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("Loaded image: baz:2"), "{out}");
    assert_eq!(inspect(&other, "baz:2")["Id"], bb.config);
    // The original manifest survives a docker-format round trip.
    assert_eq!(
        json!(
            ok(&other, &["images", "--format", "json"])
                .trim()
                .parse::<Value>()
                .unwrap()["Digest"]
        ),
        json!(bb.manifest)
    );
    let (_t3, third) = harness::temp_dir();
    let file = std::fs::File::open(&saved_oci).unwrap();
    let out = kiln_with_root(&third)
        .arg("load")
        .stdin(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(inspect(&third, "baz:2")["Id"], bb.config);
    assert_blobs_verified(&third);

    // Garbage is refused clearly, and nothing is stored.
    let garbage = dir.join("garbage.tar");
    std::fs::write(&garbage, random_bytes(10_000, 3)).unwrap();
    let (_t4, empty) = harness::temp_dir();
    let out = kiln(&empty, &["load", "-i", garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("garbage.tar"), "{}", stderr(&out));
    let empty_tar = dir.join("empty.tar");
    std::fs::write(&empty_tar, [0u8; 1024]).unwrap();
    let out = kiln(&empty, &["load", "-i", empty_tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("neither manifest.json"),
        "{}",
        stderr(&out)
    );
    assert_eq!(ok(&empty, &["images", "-q"]), "");
}

// ---------------------------------------------------------------------------------------------
// rm and prune

#[test]
fn rm_refuses_in_use_and_prune_reclaims() {
    let Some(bb) = tools() else { return };
    let (_t, root) = harness::temp_dir();
    let archive = fixture_dir().join("rm-src.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:latest", bb.oci.display()),
        &format!("docker-archive:{}:rm/me:1", archive.display()),
    ]);
    ok(&root, &["load", "-i", archive.to_str().unwrap()]);
    ok(&root, &["tag", "rm/me:1", "rm/me:2"]);

    let out = kiln(&root, &["image", "rm", &bb.config[7..19]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("referenced in multiple repositories"),
        "{}",
        stderr(&out)
    );
    assert!(ok(&root, &["image", "rm", "rm/me:2"]).contains("Untagged: rm/me:2"));

    let container = root.join("containers-v1/c0ffee");
    std::fs::create_dir_all(&container).unwrap();
    std::fs::write(
        container.join("config.json"),
        json!({"image": bb.config}).to_string(),
    )
    .unwrap();
    let out = kiln(&root, &["image", "rm", "rm/me:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("container c0ffee"),
        "{}",
        stderr(&out)
    );
    assert!(ok(&root, &["image", "rm", "-f", "rm/me:1"]).contains("Untagged: rm/me:1"));
    assert_eq!(ok(&root, &["images", "-q"]), "");

    let out = ok(&root, &["image", "prune", "-f"]);
    assert!(
        out.contains("Total reclaimed space:") && !out.contains("space: 0B"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.join("snapshots-v1"))
            .unwrap()
            .count(),
        0
    );

    let out = kiln(&root, &["image", "rm", "nothing/here:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such image"), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn bad_references_and_unreachable_registries() {
    let (_t, root) = harness::temp_dir();
    // (`UPPER/case` itself is valid: Docker's grammar reads `UPPER` as a registry host.)
    let out = kiln(&root, &["pull", "library/UPPER"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("must be lowercase"),
        "{}",
        stderr(&out)
    );
    let out = kiln(&root, &["tag", "a", "bad tag"]);
    assert_eq!(out.status.code(), Some(2));

    let out = kiln(&root, &["pull", "127.0.0.1:1/nothing:latest"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));

    let out = kiln(&root, &["image", "inspect", "nothing:here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such image: nothing:here"),
        "{}",
        stderr(&out)
    );
    let out = kiln(&root, &["image", "history", "nothing:here"]);
    assert_eq!(out.status.code(), Some(1));
    let out = kiln(&root, &["load", "-i", "/nonexistent/file.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/file.tar"),
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

/// A registry of our own that can be killed and restarted on the same port and storage.
struct OwnRegistry {
    addr: String,
    config: PathBuf,
    child: Option<Child>,
    _dir: TempRoot,
}

impl OwnRegistry {
    fn start() -> OwnRegistry {
        let dir = TempRoot::new();
        let addr = format!("127.0.0.1:{}", registry::free_port());
        let config = registry::write_config(dir.path(), &addr, "");
        let mut reg = OwnRegistry {
            addr,
            config,
            child: None,
            _dir: dir,
        };
        reg.restart();
        reg
    }

    fn restart(&mut self) {
        let child = Command::new(registry::REGISTRY_BIN)
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if registry::probe(&self.addr) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry on {} did not come up", self.addr);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn registry_stopped_mid_pull_then_retry() {
    if tools().is_none() {
        return;
    }
    let mut reg = OwnRegistry::start();
    push_layout(big_layout(), &reg.addr, "big:latest");
    let (_t, root) = harness::temp_dir();
    let name = format!("{}/big:latest", reg.addr);
    let mut child = kiln_with_root(&root)
        .args(["pull", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    // Stop the registry once the layers are on their way.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.ends_with(": Downloading") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    reg.stop();
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "pull survived the registry's death:\n{seen}{err}"
    );
    assert!(err.contains(&reg.addr), "{err}");

    // Nothing half-done is visible.
    assert_eq!(ok(&root, &["images", "-q"]), "");
    assert_blobs_verified(&root);
    let big_layer_present = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .any(|e| e.unwrap().metadata().unwrap().len() > (BIG_LAYER as u64));
    assert!(
        !big_layer_present || seen.contains("Download complete"),
        "{seen}"
    );
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);

    reg.restart();
    let out = ok(&root, &["pull", &name]);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_blobs_verified(&root);
    assert!(ok(&root, &["images"]).contains(&format!("{}/big", reg.addr)));
}

#[test]
fn wrong_blob_content_is_refused() {
    let good_layer = b"not even a tar, but it is what the digest says".to_vec();
    // Same length, other bytes: only the digest can tell.
    let served_layer = b"NOT even a tar, but it is what the digest says".to_vec();
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&good_layer).to_string()]}})
    .to_string()
    .into_bytes();
    let wrong_config = b"{\"tampered\":true}".to_vec();
    let manifest_for = |config: &[u8]| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": Digest::of(&good_layer).to_string(), "size": good_layer.len()}],
        })
        .to_string()
    };
    let m_layer = manifest_for(&config);
    let (config_path, layer_path) = (
        format!("/v2/bad/blobs/{}", Digest::of(&config)),
        format!("/v2/bad/blobs/{}", Digest::of(&good_layer)),
    );
    let server = FakeServer::start(move |req| {
        let t = req.target.as_str();
        if t == "/v2/" {
            Resp::new(200)
        } else if t == "/v2/bad/manifests/layer" {
            Resp::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(m_layer.clone())
        } else if t == config_path {
            Resp::new(200).body(config.clone())
        } else if t == layer_path {
            Resp::new(200).body(served_layer.clone())
        } else {
            Resp::new(404)
        }
    });
    let (_t, root) = harness::temp_dir();
    let out = kiln(&root, &["pull", &format!("{}/bad:layer", server.addr)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("digest mismatch") && err.contains(&server.addr),
        "{err}"
    );
    assert_eq!(ok(&root, &["images", "-q"]), "");
    assert!(
        !root
            .join("blobs/sha256")
            .join(Digest::of(&good_layer).hex())
            .exists()
    );
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
    assert_eq!(
        std::fs::read_dir(root.join("snapshots-v1"))
            .unwrap()
            .count(),
        0
    );
    assert_blobs_verified(&root);

    // A config that is not what the manifest says: nothing at all is stored.
    let server2 = {
        let cfg_manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(b"{}").to_string(), "size": wrong_config.len()},
            "layers": [],
        })
        .to_string();
        let wrong = wrong_config.clone();
        FakeServer::start(move |req| match req.target.as_str() {
            "/v2/" => Resp::new(200),
            "/v2/bad/manifests/config" => Resp::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(cfg_manifest.clone()),
            t if t.starts_with("/v2/bad/blobs/") => Resp::new(200).body(wrong.clone()),
            _ => Resp::new(404),
        })
    };
    let (_t2, root2) = harness::temp_dir();
    let out = kiln(&root2, &["pull", &format!("{}/bad:config", server2.addr)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_dir(root2.join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_dir(root2.join("ingest")).unwrap().count(), 0);
}

#[test]
fn kill_9_during_pull_then_rerun() {
    let Some(reg) = pushed_registry() else { return };
    let (_t, root) = harness::temp_dir();
    let name = format!("{reg}/big:latest");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    for _ in 0..5 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 300);
        let mut child = kiln_with_root(&root)
            .args(["pull", "-q", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        assert_blobs_verified(&root);
    }
    ok(&root, &["pull", &name]);
    assert_blobs_verified(&root);
    assert!(ok(&root, &["images"]).contains(&format!("{reg}/big")));
    assert!(
        inspect(&root, &name)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );
}

#[test]
fn concurrent_pulls_and_tags_on_one_root() {
    let Some(reg) = pushed_registry() else { return };
    let (_t, root) = harness::temp_dir();
    let busybox_name = format!("{reg}/busybox:latest");
    ok(&root, &["pull", "-q", &busybox_name]);
    let mut children = Vec::new();
    for args in [
        vec!["pull".to_string(), "-q".into(), format!("{reg}/big:latest")],
        vec![
            "pull".to_string(),
            "-q".into(),
            format!("{reg}/busybox@{}", made_busybox().manifest),
        ],
        vec![
            "tag".to_string(),
            busybox_name.clone(),
            "local/one:1".into(),
        ],
        vec![
            "tag".to_string(),
            busybox_name.clone(),
            "local/two:2".into(),
        ],
        vec![
            "tag".to_string(),
            busybox_name.clone(),
            "local/three:3".into(),
        ],
    ] {
        children.push((
            args.clone(),
            kiln_with_root(&root)
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        ));
    }
    for (args, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kiln {args:?}: {}", stderr(&out));
    }
    let table = ok(&root, &["images"]);
    for name in [
        &format!("{reg}/big"),
        &format!("{reg}/busybox"),
        "local/one",
        "local/two",
        "local/three",
    ] {
        assert!(table.contains(name), "{name} missing:\n{table}");
    }
    assert_blobs_verified(&root);
}

#[test]
fn login_push_pull_logout_with_basic_auth() {
    let Some(bb) = tools() else { return };
    if !harness::have(registry::HTPASSWD_BIN) {
        return;
    }
    let Some(reg) = registry::basic_auth() else {
        return;
    };
    let config_dir = tempfile::tempdir().unwrap();
    let (_t, root) = harness::temp_dir();
    let run = |args: &[&str], stdin: &str| {
        let mut child = kiln_with_root(&root)
            .env("DOCKER_CONFIG", config_dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(
        &["login", "-u", registry::USER, "--password-stdin", &reg.addr],
        "wrong\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = run(
        &["login", "-u", registry::USER, "--password-stdin", &reg.addr],
        &format!("{}\n", registry::PASSWORD),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Login Succeeded"));

    let archive = fixture_dir().join("auth-src.tar");
    skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:latest", bb.oci.display()),
        &format!("oci-archive:{}:authsrc:1", archive.display()),
    ]);
    assert!(
        run(&["load", "-i", archive.to_str().unwrap()], "")
            .status
            .success()
    );
    let name = format!("{}/private/busybox:1", reg.addr);
    assert!(run(&["tag", "authsrc:1", &name], "").status.success());
    let out = run(&["push", &name], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(run(&["image", "rm", &name], "").status.success());
    let out = run(&["pull", &name], "");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(&["logout", &reg.addr], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["pull", &name], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
}
