//! The test suite's base image, made once per test process by
//! `testdata/busybox/make-image.sh` (offline, bit-reproducible).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::{BUSYBOX, SKOPEO, fixture_dir, skip, text};

/// The busybox image: its root filesystem, its OCI layout and its digests.
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
    docker_archive: OnceLock<Result<PathBuf, String>>,
    oci_archive: OnceLock<Result<PathBuf, String>>,
}

/// The busybox image, made on first use; `None` (after [`skip`]) when it cannot be made.
pub fn busybox() -> Option<&'static Busybox> {
    static IMAGE: OnceLock<Result<Busybox, String>> = OnceLock::new();
    match IMAGE.get_or_init(make) {
        Ok(image) => Some(image),
        Err(reason) => {
            skip(reason);
            None
        }
    }
}

fn make() -> Result<Busybox, String> {
    if !Path::new(BUSYBOX).exists() {
        return Err(format!(
            "{BUSYBOX} is missing (apt-get install busybox-static)"
        ));
    }
    let dest = fixture_dir().join("busybox");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox/make-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dest)
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
        docker_archive: OnceLock::new(),
        oci_archive: OnceLock::new(),
    })
}

impl Busybox {
    /// `busybox:latest` as a `docker-archive` tarball, made with skopeo on first use;
    /// `None` (after [`skip`]) when it cannot be made.
    pub fn docker_archive(&self) -> Option<&Path> {
        self.archive(&self.docker_archive, "docker-archive", "busybox-docker.tar")
    }

    /// `busybox:latest` as an `oci-archive` tarball, made like [`Busybox::docker_archive`].
    pub fn oci_archive(&self) -> Option<&Path> {
        self.archive(&self.oci_archive, "oci-archive", "busybox-oci.tar")
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
            let archive = fixture_dir().join(name);
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
