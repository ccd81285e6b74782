//! The test suite's base images, made once per test process by
//! `testdata/busybox/make-image.sh` (offline, bit-reproducible): busybox for the host, and
//! for arm64 from Debian's `busybox-static:arm64` package (see [`ARM64_DEB_DIR`]), run
//! through binfmt_misc emulation; and both pushed as one multi-platform index.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::registry::TestRegistry;
use super::{BUSYBOX, SKOPEO, fixture_dir, skip, text};

/// Where `.ci/run` puts Debian's `busybox-static` package for arm64
/// (`busybox-static_<version>_arm64.deb`, from `apt-get download busybox-static:arm64`).
pub const ARM64_DEB_DIR: &str = "/var/cache/kiln-test";

/// A busybox image: its root filesystem, its OCI layout and its digests.
pub struct Busybox {
    /// The root filesystem (`/bin/busybox`, applet links, `/etc/passwd`, ...).
    pub rootfs: PathBuf,
    /// An OCI layout holding the image as `latest`.
    pub oci: PathBuf,
    pub manifest: String,
    pub config: String,
    /// The (gzip) layer blob's digest.
    pub layer: String,
    pub diff_id: String,
    /// Where its archives are made.
    dir: PathBuf,
    docker_archive: OnceLock<Result<PathBuf, String>>,
    oci_archive: OnceLock<Result<PathBuf, String>>,
}

/// The busybox image, made on first use; `None` (after [`skip`]) when it cannot be made.
pub fn busybox() -> Option<&'static Busybox> {
    static IMAGE: OnceLock<Result<Busybox, String>> = OnceLock::new();
    made(IMAGE.get_or_init(|| {
        if !Path::new(BUSYBOX).exists() {
            return Err(format!(
                "{BUSYBOX} is missing (apt-get install busybox-static)"
            ));
        }
        make("busybox", None)
    }))
}

/// The arm64 busybox image (its config says `arm64`), made on first use from the package
/// in [`ARM64_DEB_DIR`] once arm64 binaries run here ([`arm64_emulation`]); `None` (after
/// [`skip`]) when it cannot be made.
pub fn busybox_arm64() -> Option<&'static Busybox> {
    static IMAGE: OnceLock<Result<Busybox, String>> = OnceLock::new();
    if !arm64_emulation() {
        return None;
    }
    made(IMAGE.get_or_init(|| make("busybox-arm64", Some(&arm64_deb()?))))
}

/// Whether arm64 binaries run here, through a binfmt_misc emulator usable in the sandbox;
/// otherwise [`skip`]s. As root, Debian's emulators are registered first when arm64 has
/// none (what `kiln system binfmt --install` does; `.ci/run` does it too).
pub fn arm64_emulation() -> bool {
    use kiln::sandbox::emulation;
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        if emulation::runs_natively("arm64") || emulation::emulator_for("arm64", None).is_ok() {
            return Ok(());
        }
        if kiln::sys::is_root() {
            emulation::install().map_err(|e| format!("registering emulators: {e}"))?;
        }
        emulation::emulator_for("arm64", None)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    match ready {
        Ok(()) => true,
        Err(reason) => {
            skip(reason);
            false
        }
    }
}

/// The newest `busybox-static_*_arm64.deb` in [`ARM64_DEB_DIR`].
fn arm64_deb() -> Result<PathBuf, String> {
    let missing = || {
        format!(
            "no busybox-static_*_arm64.deb in {ARM64_DEB_DIR} (.ci/run downloads it: dpkg \
             --add-architecture arm64 && apt-get update && apt-get download busybox-static:arm64)"
        )
    };
    let mut debs: Vec<PathBuf> = std::fs::read_dir(ARM64_DEB_DIR)
        .map_err(|_| missing())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name.starts_with("busybox-static_") && name.ends_with("_arm64.deb")
                })
        })
        .collect();
    debs.sort();
    debs.pop().ok_or_else(missing)
}

fn made(image: &'static Result<Busybox, String>) -> Option<&'static Busybox> {
    match image {
        Ok(image) => Some(image),
        Err(reason) => {
            skip(reason);
            None
        }
    }
}

/// Runs make-image.sh into `fixture_dir()/name` (from `deb` when given).
fn make(name: &str, deb: Option<&Path>) -> Result<Busybox, String> {
    let dest = fixture_dir().join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox/make-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dest)
        .args(deb)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("make-image.sh failed: {}", text(&out.stderr)));
    }
    let digests = std::fs::read_to_string(dest.join("digests"))
        .map_err(|e| format!("make-image.sh wrote no digests: {e}"))?;
    let get = |key: &str| {
        digests
            .lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| format!("make-image.sh wrote no {key} digest"))
    };
    Ok(Busybox {
        rootfs: dest.join("rootfs"),
        oci: dest.join("oci"),
        manifest: get("manifest")?,
        config: get("config")?,
        layer: get("layer")?,
        diff_id: get("diff_id")?,
        dir: dest,
        docker_archive: OnceLock::new(),
        oci_archive: OnceLock::new(),
    })
}

impl Busybox {
    /// `busybox:latest` as a `docker-archive` tarball, made with skopeo on first use;
    /// `None` (after [`skip`]) when it cannot be made.
    pub fn docker_archive(&self) -> Option<&Path> {
        self.archive(&self.docker_archive, "docker-archive", "docker.tar")
    }

    /// `busybox:latest` as an `oci-archive` tarball, made like [`Busybox::docker_archive`].
    pub fn oci_archive(&self) -> Option<&Path> {
        self.archive(&self.oci_archive, "oci-archive", "oci.tar")
    }

    fn archive<'a>(
        &self,
        made: &'a OnceLock<Result<PathBuf, String>>,
        transport: &str,
        name: &str,
    ) -> Option<&'a Path> {
        let made = made.get_or_init(|| {
            if !Path::new(SKOPEO).exists() {
                return Err(format!("{SKOPEO} is missing (apt-get install skopeo)"));
            }
            let archive = self.dir.join(name);
            let out = Command::new(SKOPEO)
                .args(["copy", "-q"])
                .arg(format!("oci:{}:latest", self.oci.display()))
                .arg(format!("{transport}:{}:busybox:latest", archive.display()))
                .output()
                .map_err(|e| format!("running skopeo: {e}"))?;
            if !out.status.success() {
                return Err(format!("skopeo copy: {}", text(&out.stderr)));
            }
            Ok(archive)
        });
        match made {
            Ok(path) => Some(path),
            Err(reason) => {
                skip(reason);
                None
            }
        }
    }
}

impl Busybox {
    /// A blob of the image's OCI layout.
    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        std::fs::read(self.oci.join("blobs/sha256").join(hex)).unwrap()
    }

    /// The index entry of the image's manifest, its platform read from its config.
    fn index_entry(&self) -> serde_json::Value {
        let config: serde_json::Value = serde_json::from_slice(&self.blob(&self.config)).unwrap();
        let mut platform = serde_json::json!({
            "architecture": config["architecture"],
            "os": config["os"],
        });
        if let Some(variant) = config.get("variant") {
            platform["variant"] = variant.clone();
        }
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.manifest,
            "size": self.blob(&self.manifest).len(),
            "platform": platform,
        })
    }
}

/// Pushes busybox for amd64 and arm64 to `registry` as one OCI image index,
/// `REGISTRY/repository:tag` (an OCI layout of the two handed to `skopeo copy --all`);
/// returns the index's digest. `None` (after [`skip`]) when the images or skopeo are
/// missing.
pub fn push_busybox_index(registry: &TestRegistry, repository: &str, tag: &str) -> Option<String> {
    let images = [busybox()?, busybox_arm64()?];
    if !super::have(SKOPEO) {
        return None;
    }
    let layout = tempfile::tempdir().unwrap();
    let blobs = layout.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    for image in images {
        for blob in std::fs::read_dir(image.oci.join("blobs/sha256")).unwrap() {
            let blob = blob.unwrap();
            std::fs::copy(blob.path(), blobs.join(blob.file_name())).unwrap();
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": images.map(Busybox::index_entry),
    })
    .to_string();
    let digest = format!("sha256:{}", super::sha256_hex(index.as_bytes()));
    std::fs::write(blobs.join(&digest[7..]), &index).unwrap();
    let layout_index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(layout.path().join("index.json"), layout_index.to_string()).unwrap();
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let out = Command::new(SKOPEO)
        .args([
            "copy",
            "-q",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:latest", layout.path().display()))
        .arg(format!("docker://{}/{repository}:{tag}", registry.addr))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));
    Some(digest)
}
