//! The cache shared between machines, end to end: `--cache-to` and `--cache-from` through a
//! real `docker-registry` (a private one per test, so its access log holds that test's
//! requests alone), an OCI layout directory and an image's own config, read by fresh
//! "runners": another store root and a re-created context at another path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::harness::registry::{self, Access, FakeServer, Resp, TestRegistry};
use crate::harness::{self, SKOPEO, TempRoot, kiln, sha256_hex, stderr};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A private registry holding the busybox test image as `busybox:latest`; `None` after
/// [`harness::skip`].
struct Fixture {
    registry: TestRegistry,
}

impl Fixture {
    fn new() -> Option<Fixture> {
        if !(harness::privileged() && harness::have(SKOPEO)) {
            return None;
        }
        let busybox = harness::busybox()?;
        let registry = TestRegistry::private()?;
        skopeo(&[
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", busybox.oci.display()),
            &format!("docker://{}/busybox:latest", registry.addr),
        ]);
        Some(Fixture { registry })
    }

    /// `REGISTRY/name`.
    fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.registry.addr)
    }

    /// The base image every Dockerfile here starts from.
    fn base(&self) -> String {
        self.name("busybox:latest")
    }
}

/// One CI runner: an empty store root and a fresh checkout of the context, at a path of its
/// own (every file written anew: new inodes and mtimes).
struct Runner {
    dir: TempRoot,
}

impl Runner {
    fn new(files: &BTreeMap<&str, String>) -> Runner {
        let runner = Runner {
            dir: TempRoot::new(),
        };
        for (path, content) in files {
            harness::write_file(&runner.context(), path, content);
        }
        runner
    }

    fn root(&self) -> PathBuf {
        self.dir.join("store")
    }

    fn context(&self) -> PathBuf {
        self.dir.join("checkout")
    }

    fn kiln(&self, args: &[&str]) -> Output {
        kiln(&self.root(), args)
    }

    /// `kiln build --progress plain ARGS CONTEXT`.
    fn build(&self, args: &[&str]) -> Output {
        let context = self.context();
        let mut all = vec!["build", "--progress", "plain"];
        all.extend_from_slice(args);
        all.push(context.to_str().unwrap());
        self.kiln(&all)
    }

    /// [`Runner::build`], which must succeed; returns its progress log.
    fn build_ok(&self, args: &[&str]) -> String {
        let out = self.build(args);
        assert!(
            out.status.success(),
            "kiln build {args:?} exited {:?}:\n{}",
            out.status.code(),
            stderr(&out)
        );
        stderr(&out)
    }

    fn push_ok(&self, name: &str) {
        let out = self.kiln(&["push", name]);
        assert!(out.status.success(), "kiln push {name}: {}", stderr(&out));
    }
}

fn skopeo(args: &[&str]) -> Output {
    let out = Command::new(SKOPEO).args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", stderr(&out));
    out
}

/// The manifest `reference` (a skopeo transport:reference) and the digest of its bytes.
fn manifest(reference: &str) -> (Value, String) {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]).stdout;
    let value = serde_json::from_slice(&raw)
        .unwrap_or_else(|e| panic!("{reference}: manifest is not JSON ({e})"));
    (value, format!("sha256:{}", sha256_hex(&raw)))
}

/// The manifest of `name` in the registry (`docker://name`).
fn remote_manifest(name: &str) -> (Value, String) {
    manifest(&format!("docker://{name}"))
}

/// The layer digests of a manifest.
fn layers(manifest: &Value) -> BTreeSet<String> {
    manifest["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no layers in {manifest}"))
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect()
}

fn config_digest(manifest: &Value) -> String {
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// What the progress log says

/// What a build did with one step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Outcome {
    cached: bool,
    /// The explanation of a miss (`cache miss: …`).
    miss: Option<String>,
}

/// Every step of a `--progress plain` log (`#N [stage i/n] INSTRUCTION`), keyed by that
/// title; `FROM` lines and internal vertices are left out.
fn steps(log: &str) -> BTreeMap<String, Outcome> {
    let mut titles = BTreeMap::new();
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for line in log.lines() {
        let Some((vertex, body)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else {
            continue;
        };
        if body.starts_with('[') && !body.starts_with("[internal]") {
            if !body.contains("] FROM ") {
                titles.insert(vertex.to_string(), body.to_string());
                outcomes.entry(body.to_string()).or_default();
            }
            continue;
        }
        let Some(title) = titles.get(vertex) else {
            continue;
        };
        let outcome = outcomes.get_mut(title).unwrap();
        if body == "CACHED" {
            outcome.cached = true;
        } else if let Some(why) = body.strip_prefix("cache miss: ") {
            outcome.miss = Some(why.to_string());
        }
    }
    outcomes
}

/// The outcome of the one step whose title contains `instruction`.
fn step<'a>(steps: &'a BTreeMap<String, Outcome>, instruction: &str) -> &'a Outcome {
    let found: Vec<_> = steps
        .iter()
        .filter(|(title, _)| title.contains(instruction))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one step with {instruction:?} in {steps:#?}"
    );
    found[0].1
}

fn assert_all_cached(log: &str) {
    let steps = steps(log);
    assert!(!steps.is_empty(), "no steps in:\n{log}");
    let missed: Vec<_> = steps.iter().filter(|(_, o)| !o.cached).collect();
    assert!(missed.is_empty(), "steps not CACHED: {missed:#?}\n{log}");
}

// ---------------------------------------------------------------------------------------------
// What the registry saw

/// Blob downloads (`GET …/blobs/D` answered 200) of any digest in `digests`.
fn downloads_of<'a>(requests: &'a [Access], digests: &BTreeSet<String>) -> Vec<&'a Access> {
    requests
        .iter()
        .filter(|access| {
            access
                .downloaded_blob()
                .is_some_and(|digest| digests.contains(digest))
        })
        .collect()
}

/// The digests of the blobs uploaded by `requests`.
fn uploads(requests: &[Access]) -> BTreeSet<String> {
    requests.iter().filter_map(Access::uploaded_blob).collect()
}

/// The requests of `registry` made while `run` ran.
fn requests_during<T>(registry: &TestRegistry, run: impl FnOnce() -> T) -> (T, Vec<Access>) {
    let before = registry.requests().len();
    let result = run();
    let after = registry.requests();
    (result, after[before..].to_vec())
}

/// The access log counts what the tests below count: skopeo's upload of busybox (in
/// [`Fixture::new`]) and kiln's download of it.
#[test]
fn registry_log_shows_blob_uploads_and_downloads() {
    let Some(fx) = Fixture::new() else { return };
    let busybox = harness::busybox().unwrap();
    let pushed = uploads(&fx.registry.requests());
    assert_eq!(
        pushed,
        BTreeSet::from([busybox.layer.clone(), busybox.config.clone()])
    );

    let runner = Runner::new(&BTreeMap::new());
    let ((), during) = requests_during(&fx.registry, || {
        let out = runner.kiln(&["pull", &fx.base()]);
        assert!(out.status.success(), "kiln pull: {}", stderr(&out));
    });
    let layer = BTreeSet::from([busybox.layer.clone()]);
    let downloaded = downloads_of(&during, &layer);
    assert_eq!(downloaded.len(), 1, "{during:#?}");
    assert_eq!(
        downloaded[0].path,
        format!("/v2/busybox/blobs/{}", busybox.layer)
    );
    assert!(downloaded[0].bytes > 0);
    assert_eq!(uploads(&during), BTreeSet::new());
}

// ---------------------------------------------------------------------------------------------
// The fresh-runner story

/// A builder stage whose output the final stage copies, then the context and a RUN on both.
fn app_files(base: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (
            "Dockerfile",
            format!(
                "FROM {base} AS builder\n\
                 RUN mkdir -p /out && echo built > /out/tool && seq 1 100 > /out/table\n\
                 RUN cat /out/tool /out/table > /out/all\n\
                 \n\
                 FROM {base}\n\
                 COPY --from=builder /out/ /app/bin/\n\
                 COPY . /src/\n\
                 RUN cat /src/app/main.txt /app/bin/tool > /combined\n"
            ),
        ),
        ("app/main.txt", "main v1\n".to_string()),
        ("app/lib.txt", "lib\n".to_string()),
        ("README", "the app\n".to_string()),
    ])
}

#[test]
fn fresh_runners_share_a_registry_cache() {
    let Some(fx) = Fixture::new() else { return };
    let reg = &fx.registry;
    let cache = fx.name("app:cache");
    let files = app_files(&fx.base());

    // Runner A: cold build, cache exported (mode=max), image pushed.
    let a = Runner::new(&files);
    let image_a = fx.name("app:a");
    a.build_ok(&[
        "-t",
        &image_a,
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
    ]);
    a.push_ok(&image_a);
    let (manifest_a, digest_a) = remote_manifest(&image_a);
    let (cache_a, _) = remote_manifest(&cache);
    let mut known_layers = layers(&manifest_a);
    known_layers.extend(layers(&cache_a));
    drop(a);

    // Runner B: another root, a re-created checkout elsewhere. Every step comes from the
    // cache, the pushed image is A's, and no layer byte is downloaded.
    let b = Runner::new(&files);
    let image_b = fx.name("app:b");
    let (log, during_b) = requests_during(reg, || {
        b.build_ok(&[
            "-t",
            &image_b,
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "--push",
        ])
    });
    assert_all_cached(&log);
    assert_eq!(
        remote_manifest(&image_b).1,
        digest_a,
        "runner B pushed another manifest\n{log}"
    );
    assert!(
        during_b
            .iter()
            .any(|access| access.method == "GET" && access.path == "/v2/app/manifests/cache"),
        "runner B never read the cache manifest: {during_b:#?}"
    );
    let downloaded = downloads_of(&during_b, &known_layers);
    assert!(
        downloaded.is_empty(),
        "runner B downloaded layers: {downloaded:#?}"
    );
    assert_eq!(
        uploads(&during_b),
        BTreeSet::new(),
        "runner B uploaded blobs the registry had"
    );
    drop(b);

    // Runner C: one file changed. Only the steps from the COPY of the context on run, the
    // miss names the file, and only the new layers (and configs) are uploaded.
    let mut changed = files.clone();
    changed.insert("app/main.txt", "main v2\n".to_string());
    let c = Runner::new(&changed);
    let image_c = fx.name("app:c");
    let (log, during_c) = requests_during(reg, || {
        c.build_ok(&[
            "-t",
            &image_c,
            "--cache-from",
            &cache,
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--push",
        ])
    });
    let outcomes = steps(&log);
    for cached in [
        "RUN mkdir -p /out",
        "RUN cat /out/tool",
        "COPY --from=builder",
    ] {
        assert!(
            step(&outcomes, cached).cached,
            "{cached} not CACHED:\n{log}"
        );
    }
    let copy = step(&outcomes, "COPY . /src/");
    assert!(!copy.cached, "{log}");
    assert_eq!(
        copy.miss.as_deref(),
        Some("1 file changed: app/main.txt"),
        "{log}"
    );
    assert!(
        !step(&outcomes, "RUN cat /src/app/main.txt").cached,
        "{log}"
    );

    let (manifest_c, digest_c) = remote_manifest(&image_c);
    assert_ne!(digest_c, digest_a);
    let (cache_c, _) = remote_manifest(&cache);
    let new_image_layers: BTreeSet<String> = layers(&manifest_c)
        .difference(&layers(&manifest_a))
        .cloned()
        .collect();
    assert_eq!(
        new_image_layers.len(),
        2,
        "the COPY of the context and the RUN after it make the only new layers"
    );
    let mut may_upload: BTreeSet<String> = layers(&manifest_c)
        .union(&layers(&cache_c))
        .filter(|digest| !known_layers.contains(*digest))
        .cloned()
        .collect();
    may_upload.insert(config_digest(&manifest_c));
    may_upload.insert(config_digest(&cache_c));
    let uploaded = uploads(&during_c);
    assert!(
        uploaded.is_subset(&may_upload),
        "runner C uploaded blobs the registry had: {:?}",
        uploaded.difference(&may_upload).collect::<Vec<_>>()
    );
    assert!(
        new_image_layers.is_subset(&uploaded),
        "runner C's new layers were not uploaded: {new_image_layers:?} vs {uploaded:?}"
    );
    // Lazy: the only layers fetched are the lower filesystem of the first step that ran
    // (the base and the COPY --from layer under the COPY of the context).
    let lower: BTreeSet<String> = manifest_a["layers"].as_array().unwrap()[..2]
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_string())
        .collect();
    let fetched: BTreeSet<String> = downloads_of(&during_c, &known_layers)
        .iter()
        .filter_map(|access| access.downloaded_blob())
        .map(str::to_string)
        .collect();
    assert!(
        fetched.is_subset(&lower),
        "runner C downloaded layers no step that ran needed: {:?}",
        fetched.difference(&lower).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// mode=min and mode=max

#[test]
fn min_exports_the_image_steps_and_max_every_stage() {
    let Some(fx) = Fixture::new() else { return };
    let base = fx.base();
    let files = BTreeMap::from([
        (
            "Dockerfile",
            format!(
                "FROM {base} AS builder\n\
                 RUN echo built > /tool\n\
                 \n\
                 FROM {base}\n\
                 COPY app.txt /app.txt\n\
                 RUN cat /app.txt > /copy\n\
                 COPY --from=builder /tool /tool\n"
            ),
        ),
        ("app.txt", "app\n".to_string()),
    ]);
    for (mode, ref_name) in [("min", "app:min"), ("max", "app:max")] {
        let cache = fx.name(ref_name);
        let a = Runner::new(&files);
        a.build_ok(&[
            "-t",
            "app",
            "--cache-to",
            &format!("type=registry,ref={cache},mode={mode}"),
        ]);
        drop(a);

        // The shorthand `--cache-from REF`.
        let b = Runner::new(&files);
        let log = b.build_ok(&["-t", "app", "--cache-from", &cache]);
        let outcomes = steps(&log);
        assert!(step(&outcomes, "COPY app.txt").cached, "mode={mode}\n{log}");
        assert!(
            step(&outcomes, "RUN cat /app.txt").cached,
            "mode={mode}\n{log}"
        );
        let builder = step(&outcomes, "RUN echo built");
        match mode {
            "min" => assert!(
                !builder.cached,
                "mode=min exported the builder stage\n{log}"
            ),
            _ => assert_all_cached(&log),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compression

#[test]
fn zstd_cache_layers_are_read_back() {
    let Some(fx) = Fixture::new() else { return };
    let mut files = app_files(&fx.base());
    // The Dockerfile changes below; the context the COPY sees must not.
    files.insert(".dockerignore", "Dockerfile\n".to_string());
    let cache = fx.name("app:zstd");
    let a = Runner::new(&files);
    a.build_ok(&[
        "-t",
        "app",
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max,compression=zstd"),
    ]);
    drop(a);
    let (manifest, _) = remote_manifest(&cache);
    let media_types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap())
        .collect();
    assert!(!media_types.is_empty(), "{manifest}");
    assert!(
        media_types
            .iter()
            .all(|media_type| *media_type == "application/vnd.oci.image.layer.v1.tar+zstd"),
        "{media_types:?}"
    );

    // A step on top of the imported steps runs on their (zstd) layers.
    let mut more = files.clone();
    let dockerfile = format!(
        "{}RUN test \"$(cat /app/bin/tool)\" = built && grep -q 'main v1' /combined\n",
        files["Dockerfile"]
    );
    more.insert("Dockerfile", dockerfile);
    let b = Runner::new(&more);
    let log = b.build_ok(&["-t", "app", "--cache-from", &cache]);
    let outcomes = steps(&log);
    let ran: Vec<_> = outcomes.iter().filter(|(_, o)| !o.cached).collect();
    assert_eq!(ran.len(), 1, "only the new step runs: {ran:#?}\n{log}");
    assert!(ran[0].0.contains("RUN test"), "{log}");
}

#[test]
fn a_zstd_cache_still_pushes_the_gzip_image_of_the_first_runner() {
    let Some(fx) = Fixture::new() else { return };
    let files = app_files(&fx.base());
    let cache = fx.name("app:zstd-cache");
    let image_a = fx.name("app:zstd-a");
    let a = Runner::new(&files);
    a.build_ok(&[
        "-t",
        &image_a,
        "--push",
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max,compression=zstd"),
    ]);
    drop(a);
    let (_, digest_a) = remote_manifest(&image_a);

    // Runner B's image layers come from a zstd cache, but its push (gzip, the default)
    // sends the same layers runner A sent.
    let b = Runner::new(&files);
    let image_b = fx.name("app:zstd-b");
    let log = b.build_ok(&["-t", &image_b, "--push", "--cache-from", &cache]);
    assert_all_cached(&log);
    let (manifest_b, digest_b) = remote_manifest(&image_b);
    let media_types: Vec<&str> = manifest_b["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["mediaType"].as_str().unwrap())
        .collect();
    assert!(
        media_types.iter().all(|m| m.ends_with("tar+gzip")),
        "{media_types:?}"
    );
    assert_eq!(
        digest_b, digest_a,
        "runner B pushed another manifest\n{log}"
    );
}

// ---------------------------------------------------------------------------------------------
// A local (OCI layout) cache

/// Every blob a manifest names is in the layout `dir`, with the bytes its digest says.
fn assert_blobs_in_layout(dir: &Path, manifest: &Value) {
    let mut digests = layers(manifest);
    digests.insert(config_digest(manifest));
    for digest in digests {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex))
            .unwrap_or_else(|e| panic!("blob {digest} of the layout: {e}"));
        assert_eq!(sha256_hex(&bytes), hex, "blob {digest} has other bytes");
    }
}

#[test]
fn local_cache_directory_is_an_oci_layout_another_root_hits() {
    let Some(fx) = Fixture::new() else { return };
    let files = app_files(&fx.base());
    let out = TempRoot::new();
    let dest = out.join("cache");

    let a = Runner::new(&files);
    a.build_ok(&[
        "-t",
        "app",
        "--cache-to",
        &format!("type=local,dest={},mode=max", dest.display()),
    ]);
    drop(a);
    let (cache, _) = manifest(&format!("oci:{}:latest", dest.display()));
    assert_eq!(cache["schemaVersion"], 2, "{cache}");
    assert_eq!(
        cache["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{cache}"
    );
    assert_eq!(
        cache["config"]["mediaType"], "application/vnd.kiln.cache.config.v1+json",
        "{cache}"
    );
    assert_blobs_in_layout(&dest, &cache);

    let b = Runner::new(&files);
    let log = b.build_ok(&[
        "-t",
        "app",
        "--cache-from",
        &format!("type=local,src={}", dest.display()),
    ]);
    assert_all_cached(&log);
    let images = b.kiln(&["images"]);
    assert!(harness::text(&images.stdout).contains("app"), "{images:?}");
}

// ---------------------------------------------------------------------------------------------
// An inline cache

#[test]
fn inline_cache_travels_in_the_pushed_image() {
    let Some(fx) = Fixture::new() else { return };
    let base = fx.base();
    let files = BTreeMap::from([
        (
            "Dockerfile",
            format!("FROM {base}\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\n"),
        ),
        ("app.txt", "app\n".to_string()),
    ]);
    let image = fx.name("app:inline");
    let a = Runner::new(&files);
    a.build_ok(&["-t", &image, "--cache-to", "type=inline"]);
    a.push_ok(&image);
    drop(a);

    let b = Runner::new(&files);
    let log = b.build_ok(&["-t", "app", "--cache-from", &image]);
    assert_all_cached(&log);
}

// ---------------------------------------------------------------------------------------------
// Failures

/// A registry that answers `GET /v2/` and then 500 to everything.
fn failing_registry() -> FakeServer {
    FakeServer::start(|req| {
        if req.target == "/v2/" {
            Resp::new(200).body("{}")
        } else {
            Resp::new(500).body(r#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#)
        }
    })
}

#[test]
fn failed_export_fails_the_build_after_the_image_is_stored() {
    let Some(fx) = Fixture::new() else { return };
    let base = fx.base();
    let files = BTreeMap::from([("Dockerfile", format!("FROM {base}\nRUN echo hi > /hi\n"))]);
    let server = failing_registry();
    let cache = format!("{}/app:cache", server.addr);

    let runner = Runner::new(&files);
    let out = runner.build(&[
        "-t",
        "exported",
        "--cache-to",
        &format!("type=registry,ref={cache}"),
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "a failed export is a failed build:\n{err}"
    );
    assert!(err.contains("500"), "the status is named:\n{err}");
    assert!(err.contains(&server.addr), "the registry is named:\n{err}");
    let images = runner.kiln(&["images"]);
    assert!(
        harness::text(&images.stdout).contains("exported"),
        "the image was not stored: {images:?}"
    );

    // ignore-error=true: a warning, and the build succeeds.
    let runner = Runner::new(&files);
    let out = runner.build(&[
        "-t",
        "ignored",
        "--cache-to",
        &format!("type=registry,ref={cache},ignore-error=true"),
    ]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "ignore-error=true failed the build:\n{err}"
    );
    assert!(err.contains("500"), "the warning names the status:\n{err}");
    let images = runner.kiln(&["images"]);
    assert!(
        harness::text(&images.stdout).contains("ignored"),
        "{images:?}"
    );
}

#[test]
fn unreachable_cache_source_is_a_warning_and_the_next_source_is_tried() {
    let Some(fx) = Fixture::new() else { return };
    let base = fx.base();
    let files = BTreeMap::from([("Dockerfile", format!("FROM {base}\nRUN echo hi > /hi\n"))]);
    let nowhere = format!("127.0.0.1:{}/app:cache", registry::free_port());
    let cache = fx.name("app:cache");

    // Unreachable, missing, and an image that holds no cache: warnings, not failures.
    let missing = fx.name("app:absent");
    let a = Runner::new(&files);
    let out = a.build(&[
        "-t",
        "app",
        "--cache-from",
        &format!("type=registry,ref={nowhere}"),
        "--cache-from",
        &missing,
        "--cache-from",
        &base,
        "--cache-to",
        &format!("type=registry,ref={cache}"),
    ]);
    let err = stderr(&out);
    assert!(
        out.status.success(),
        "an unreachable cache failed the build:\n{err}"
    );
    assert!(
        err.contains(&nowhere),
        "the warning names the source:\n{err}"
    );
    assert!(
        err.contains(&missing),
        "the warning names the source:\n{err}"
    );
    assert!(!step(&steps(&err), "RUN echo hi").cached, "{err}");
    drop(a);

    // Sources are tried in order: the unreachable one, then the cache A exported.
    let b = Runner::new(&files);
    let log = b.build_ok(&[
        "-t",
        "app",
        "--cache-from",
        &nowhere,
        "--cache-from",
        &cache,
    ]);
    assert!(
        log.contains(&nowhere),
        "the warning names the source:\n{log}"
    );
    assert_all_cached(&log);
}

#[test]
fn push_only_build_uploads_the_layers_of_a_local_cache_directory() {
    let Some(fx) = Fixture::new() else { return };
    let files = app_files(&fx.base());
    let out = TempRoot::new();
    let dest = out.join("cache");
    let a = Runner::new(&files);
    a.build_ok(&[
        "--cache-to",
        &format!("type=local,dest={},mode=max", dest.display()),
    ]);
    drop(a);

    // The registry has none of the cache's layers, and cannot mount them from a directory.
    let b = Runner::new(&files);
    let pushed = fx.name("from-directory:1");
    let log = b.build_ok(&[
        "--push",
        "-t",
        &pushed,
        "--cache-from",
        &format!("type=local,src={}", dest.display()),
    ]);
    assert_all_cached(&log);
    let (cache, _) = manifest(&format!("oci:{}:latest", dest.display()));
    let (image, _) = remote_manifest(&pushed);
    // Every layer but the base image's came from the directory.
    assert_eq!(
        layers(&image).difference(&layers(&cache)).count(),
        1,
        "cache {cache}\nimage {image}"
    );
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{pushed}"),
        &format!("oci:{}:pushed", out.join("copy").display()),
    ]);
}

#[test]
fn an_image_whose_cached_layers_cannot_be_fetched_is_not_named() {
    let Some(fx) = Fixture::new() else { return };
    let files = app_files(&fx.base());
    let out = TempRoot::new();
    let dest = out.join("cache");
    let a = Runner::new(&files);
    // mode=min: every layer of the cache is one of the image's.
    a.build_ok(&["--cache-to", &format!("type=local,dest={}", dest.display())]);
    drop(a);
    let (cache, _) = manifest(&format!("oci:{}:latest", dest.display()));
    let lost = layers(&cache).into_iter().next().unwrap();
    std::fs::remove_file(
        dest.join("blobs/sha256")
            .join(lost.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();

    let b = Runner::new(&files);
    let out = b.build(&[
        "-t",
        "half",
        "--cache-from",
        &format!("type=local,src={}", dest.display()),
    ]);
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(lost.strip_prefix("sha256:").unwrap()),
        "{}",
        stderr(&out)
    );
    let images = b.kiln(&["images"]);
    assert!(
        !harness::text(&images.stdout).contains("half"),
        "a failed build named an image whose layers the store lacks: {}",
        harness::text(&images.stdout)
    );
}
