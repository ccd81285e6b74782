//! `kiln build` outputs end to end: `-o type=oci|docker|local|tar`, `--push` and
//! `type=registry` with gzip and zstd against the real `docker-registry`, read back by
//! skopeo, `kiln load` and `kiln pull` + `kiln run`; refused pushes against a port where
//! nothing listens and a registry answering 500. Privileged (builds run steps): skipped
//! with the reason otherwise, failing under `CI`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::registry::{self, FakeServer, Resp};
use crate::harness::{self, Busybox, SKOPEO, TempRoot, stderr};

const DOCKERFILE: &str =
    "FROM busybox\nRUN mkdir -p /app && echo hi > /app/hello && rm /etc/group\nCOPY f /app/f\n";
const OCI_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A store root with busybox loaded and a context holding [`DOCKERFILE`].
struct Env {
    dir: TempRoot,
    busybox: &'static Busybox,
}

impl Env {
    /// `None` when the test cannot run here (the reason is printed).
    fn new() -> Option<Env> {
        if !harness::privileged() || !harness::have(SKOPEO) {
            return None;
        }
        let busybox = harness::busybox()?;
        let env = Env {
            dir: TempRoot::new(),
            busybox,
        };
        harness::write_file(&env.context(), "Dockerfile", DOCKERFILE);
        harness::write_file(&env.context(), "f", "data\n");
        let archive = busybox.oci_archive()?;
        env.ok(&["load", "-i", archive.to_str().unwrap()]);
        Some(env)
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn context(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn kiln(&self, args: &[&str]) -> Output {
        harness::kiln(&self.root(), args)
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.kiln(args);
        assert!(out.status.success(), "kiln {args:?}: {}", stderr(&out));
        out
    }

    /// `kiln build --progress plain ARGS CONTEXT`.
    fn build(&self, args: &[&str]) -> Output {
        let context = self.context();
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        all.push(context.to_str().unwrap());
        self.kiln(&all)
    }

    fn build_ok(&self, args: &[&str]) -> Output {
        let out = self.build(args);
        assert!(out.status.success(), "build {args:?}: {}", stderr(&out));
        out
    }
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let out = Command::new(SKOPEO).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn layer_types(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

/// One file of a tree: its kind and content (a symlink's target), owner and mode.
type Tree = BTreeMap<String, (String, u32, u32)>;

/// Every entry below `dir`, by relative path.
fn dir_tree(dir: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let what = if md.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).unwrap().display())
            } else if md.is_dir() {
                "dir".to_string()
            } else {
                format!(
                    "file {}",
                    harness::sha256_hex(&std::fs::read(&path).unwrap())
                )
            };
            out.insert(rel, (what, md.uid(), md.mode() & 0o7777));
            if md.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(dir, dir, &mut out);
    out
}

/// Every entry of a tar stream, by path (without a trailing slash), and their order.
fn tar_tree(tar: impl Read) -> (Tree, Vec<String>) {
    let mut archive = tar::Archive::new(tar);
    let (mut out, mut order) = (Tree::new(), Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let header = entry.header();
        let (uid, mode) = (
            header.uid().unwrap() as u32,
            header.mode().unwrap() & 0o7777,
        );
        let what = match header.entry_type() {
            tar::EntryType::Symlink => {
                format!("-> {}", entry.link_name().unwrap().unwrap().display())
            }
            tar::EntryType::Directory => "dir".to_string(),
            _ => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                format!("file {}", harness::sha256_hex(&content))
            }
        };
        order.push(path.clone());
        out.insert(path, (what, uid, mode));
    }
    (out, order)
}

#[test]
fn archive_layout_local_and_tar_outputs() {
    let Some(env) = Env::new() else { return };
    // A symlink already in the destination is replaced, never followed out of it.
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(env.path("local")).unwrap();
    std::os::unix::fs::symlink(&outside, env.path("local/app")).unwrap();
    let (oci, docker, layout, local, files) = (
        env.path("image-oci.tar"),
        env.path("image-docker.tar"),
        env.path("layout"),
        env.path("local"),
        env.path("files.tar"),
    );
    let spec = |kind: &str, dest: &Path, extra: &str| {
        format!("type={kind},dest={}{extra}", dest.display())
    };
    let out = env.build_ok(&[
        "-t",
        "app:1",
        "-o",
        &spec("oci", &oci, ""),
        "-o",
        &spec("docker", &docker, ""),
        "-o",
        &spec(
            "oci",
            &layout,
            r#",tar=false,"name=example.com/app:layout,example.com/app:two""#,
        ),
        "-o",
        local.to_str().unwrap(),
        "-o",
        &spec("tar", &files, ""),
    ]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    // Without --load or type=image, the image is not named in the store.
    assert!(!env.kiln(&["image", "inspect", "app:1"]).status.success());

    // The OCI archive: OCI types, gzip layers, the image's config; skopeo reads it.
    let raw = json(&skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", oci.display()),
    ]));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(raw["config"]["digest"], id.as_str());
    assert_eq!(layer_types(&raw), vec![OCI_GZIP; 3]);
    // The docker archive: Docker types, named app:1; skopeo and kiln load read it.
    let raw = json(&skopeo(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", docker.display()),
    ]));
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert!(
        layer_types(&raw)
            .iter()
            .all(|t| t == "application/vnd.docker.image.rootfs.diff.tar.gzip")
    );
    let loaded = TempRoot::new();
    let out = harness::kiln(loaded.path(), &["load", "-i", docker.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("app:1"));
    let inspected = harness::kiln(loaded.path(), &["image", "inspect", "app:1"]);
    assert!(String::from_utf8_lossy(&inspected.stdout).contains(&id));
    // The layout directory, named by its own name=.
    let raw = json(&skopeo(&[
        "inspect",
        "--raw",
        &format!("oci:{}:layout", layout.display()),
    ]));
    assert_eq!(raw["config"]["digest"], id.as_str());

    // type=local: the merged files, owners and modes kept, the removed file gone.
    let tree = dir_tree(&local);
    assert_eq!(
        tree["app/hello"].0,
        format!("file {}", harness::sha256_hex(b"hi\n"))
    );
    assert_eq!(
        tree["app/f"].0,
        format!("file {}", harness::sha256_hex(b"data\n"))
    );
    assert!(!tree.contains_key("etc/group"));
    assert_eq!(tree["app"].0, "dir");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    let base = dir_tree(&env.busybox.rootfs);
    for (path, (what, _, mode)) in &base {
        if path == "etc/group" || what == "dir" {
            continue;
        }
        let (got, uid, got_mode) = &tree[path];
        assert_eq!((got, got_mode), (what, mode), "{path}");
        assert_eq!(*uid, 0, "{path}");
    }
    // type=tar: the same files, in name order.
    let (tar, order) = tar_tree(std::fs::File::open(&files).unwrap());
    assert_eq!(tar, tree);
    let mut sorted = order.clone();
    sorted.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    assert_eq!(order, sorted);

    // dest=- writes the archive to standard output and nothing else.
    let out = env.build_ok(&["-q", "-o", "type=oci,dest=-"]);
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"index.json".to_string()), "{names:?}");
}

#[test]
fn bad_outputs_are_usage_errors() {
    let dir = TempRoot::new();
    harness::write_file(&dir.join("ctx"), "Dockerfile", "FROM scratch\n");
    let ctx = dir.join("ctx");
    for (spec, says) in [
        ("type=bogus", "unknown type"),
        ("type=oci", "needs dest"),
        (
            "type=image,compression=lz4",
            "expected gzip, zstd or uncompressed",
        ),
        ("type=local,dest=x,foo=bar", "does not take foo="),
    ] {
        let out = harness::kiln(dir.path(), &["build", "-o", spec, ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{spec}: {}", stderr(&out));
    }
    // Pushing needs a name; two outputs cannot share standard output.
    for args in [vec!["--push"], vec!["-o", "-", "-o", "type=oci,dest=-"]] {
        let mut all = vec!["build"];
        all.extend(args.iter().copied());
        all.push(ctx.to_str().unwrap());
        let out = harness::kiln(dir.path(), &all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

/// The records of the compressed twins made in `root`: path → modification time.
fn twin_records(root: &Path) -> BTreeMap<PathBuf, std::time::SystemTime> {
    let mut out = BTreeMap::new();
    let Ok(kinds) = std::fs::read_dir(root.join("image-v1/compressed")) else {
        return out;
    };
    for kind in kinds {
        for record in std::fs::read_dir(kind.unwrap().path()).unwrap() {
            let path = record.unwrap().path();
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            out.insert(path, mtime);
        }
    }
    out
}

#[test]
fn push_gzip_and_zstd_remembered_and_forced() {
    let Some(env) = Env::new() else { return };
    if !harness::have(registry::REGISTRY_BIN) {
        return;
    }
    let Some(reg) = registry::plain() else { return };
    let name = format!("{}/outputs/app:gzip", reg.addr);
    let out = env.build_ok(&["-t", &name, "--push"]);
    assert!(
        stderr(&out).contains(&format!("pushed {name}@sha256:")),
        "{}",
        stderr(&out)
    );
    // --push alone: pushed, not named in the store.
    assert!(!env.kiln(&["image", "inspect", &name]).status.success());
    let tls = "--tls-verify=false";
    let raw = skopeo(&["inspect", tls, "--raw", &format!("docker://{name}")]);
    assert_eq!(layer_types(&json(&raw)), vec![OCI_GZIP; 3]);

    // The twins are made once: a second push compresses nothing and pushes the same bytes.
    let records = twin_records(&env.root());
    assert_eq!(records.len(), 2, "{records:?}");
    let metadata = env.path("metadata.json");
    env.build_ok(&[
        "-t",
        &name,
        "--push",
        "--metadata-file",
        metadata.to_str().unwrap(),
    ]);
    assert_eq!(twin_records(&env.root()), records);
    let written = json(&std::fs::read(&metadata).unwrap());
    assert_eq!(
        written["containerimage.digest"],
        format!("sha256:{}", harness::sha256_hex(&raw))
    );

    // zstd: the built layers are compressed so, the pulled one stays gzip unless forced.
    let zstd = format!("{}/outputs/app:zstd", reg.addr);
    env.build_ok(&["-o", &format!("type=registry,name={zstd},compression=zstd")]);
    let raw = json(&skopeo(&[
        "inspect",
        tls,
        "--raw",
        &format!("docker://{zstd}"),
    ]));
    assert_eq!(layer_types(&raw), vec![OCI_GZIP, OCI_ZSTD, OCI_ZSTD]);
    let forced = format!("{}/outputs/app:forced", reg.addr);
    env.build_ok(&[
        "-t",
        &forced,
        "-o",
        "type=image,push=true,compression=zstd,compression-level=9,force-compression=true",
    ]);
    let raw = json(&skopeo(&[
        "inspect",
        tls,
        "--raw",
        &format!("docker://{forced}"),
    ]));
    assert_eq!(layer_types(&raw), vec![OCI_ZSTD; 3]);
    // type=image,push=true also names the image here.
    env.ok(&["image", "inspect", &forced]);
    // `kiln push --compression zstd` compresses the built layers only.
    env.ok(&["push", "--compression", "zstd", &forced]);
    let raw = json(&skopeo(&[
        "inspect",
        tls,
        "--raw",
        &format!("docker://{forced}"),
    ]));
    assert_eq!(layer_types(&raw), vec![OCI_GZIP, OCI_ZSTD, OCI_ZSTD]);

    // Others read the zstd image back: skopeo copies it, kiln pulls and runs it.
    let copied = env.path("copied");
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{forced}"),
        &format!("oci:{}:x", copied.display()),
    ]);
    let fresh = TempRoot::new();
    let out = harness::kiln(fresh.path(), &["pull", &forced]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = harness::kiln(
        fresh.path(),
        &["run", "--rm", &forced, "cat", "/app/hello", "/app/f"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\ndata\n");
}

#[test]
fn a_layer_only_in_the_registry_is_mounted_not_downloaded() {
    let Some(env) = Env::new() else { return };
    if !harness::have(registry::REGISTRY_BIN) {
        return;
    }
    let Some(reg) = registry::plain() else { return };
    // The base image goes to the registry, and a fresh store pulls it from there.
    let base = format!("{}/outputs/base:1", reg.addr);
    env.ok(&["tag", "busybox", &base]);
    env.ok(&["push", &base]);
    let fresh = Env {
        dir: TempRoot::new(),
        busybox: env.busybox,
    };
    harness::write_file(
        &fresh.context(),
        "Dockerfile",
        &format!("FROM {base}\nRUN echo more > /more\n"),
    );
    fresh.ok(&["pull", &base]);
    // Its layer blob leaves the store (as after a lazy import): the snapshot stays.
    let layer = fresh
        .root()
        .join("blobs/sha256")
        .join(&env.busybox.layer[7..]);
    std::fs::remove_file(&layer).unwrap();
    let name = format!("{}/outputs/mounted:1", reg.addr);
    let out = fresh.build_ok(&["-t", &name, "--push"]);
    assert!(
        stderr(&out).contains("Mounted from outputs/base"),
        "{}",
        stderr(&out)
    );
    assert!(!layer.exists(), "the layer was downloaded");
    skopeo(&["inspect", "--tls-verify=false", &format!("docker://{name}")]);

    // Known only on another registry: downloaded (verified) into the store, then uploaded.
    let other = registry::TestRegistry::start(None);
    let elsewhere = format!("{}/elsewhere/app:1", other.addr);
    fresh.build_ok(&["-t", &elsewhere, "--push"]);
    assert!(layer.exists(), "the layer was not fetched");
    let raw = json(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{elsewhere}"),
    ]));
    assert_eq!(raw["layers"][0]["digest"], env.busybox.layer.as_str());
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{elsewhere}"),
        &format!("oci:{}:x", fresh.path("copy").display()),
    ]);
}

#[test]
fn refused_pushes_name_registry_repository_and_status() {
    let Some(env) = Env::new() else { return };
    // Nothing listens on the port: the error names it, the local image is stored.
    let port = registry::free_port();
    let name = format!("127.0.0.1:{port}/team/app:1");
    let out = env.build(&["-t", &name, "-o", "type=image,push=true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("team/app"),
        "{err}"
    );
    env.ok(&["image", "inspect", &name]);

    // A registry answering 500: the status is named, nothing is tagged there.
    let server = FakeServer::start(|req| match req.target.as_str() {
        "/v2/" => Resp::new(200),
        _ => Resp::new(500).body("broken"),
    });
    let name = format!("{}/team/app:1", server.addr);
    let out = env.build(&["-t", &name, "--push"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("HTTP 500") && err.contains("team/app") && err.contains(&server.addr),
        "{err}"
    );
    assert_eq!(
        server.count(|r| r.method == "PUT" && r.target.contains("/manifests/")),
        0
    );
}
