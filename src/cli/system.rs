//! `kiln system df` and `kiln builder prune`: what the store holds, and freeing the build
//! cache; `kiln system binfmt`: the emulators of foreign platforms.

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::image::{GlobalArgs, open_store};
use crate::cache::CacheIndex;
use crate::container;
use crate::image::human_size;
use crate::oci::Digest;
use crate::solve::{self, PruneOptions};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show disk usage: images, containers and the build cache.
    Df,
    /// Check what running kiln without root needs (subordinate ids, newuidmap, user
    /// namespaces, overlay in a user namespace, cgroup delegation), each with its fix.
    Check,
    /// Show the emulators binfmt_misc has for foreign platforms (what RUN steps of another
    /// architecture need).
    Binfmt {
        /// As root: mount binfmt_misc if needed and register Debian's qemu-user-static
        /// emulators that are not registered yet, with the F (fix-binary) flag.
        #[arg(long)]
        install: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BuilderCommand {
    /// Remove build cache: superseded and orphaned results (everything with --all).
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every cache record, step snapshot, download and cache mount.
    #[arg(short, long)]
    all: bool,
    /// Remove least recently used cache only until it fits in SIZE (e.g. 10GB, 512m).
    #[arg(long = "keep-storage", value_name = "SIZE")]
    keep_storage: Option<String>,
    /// Do not ask for confirmation (kiln never asks; accepted as docker does).
    #[arg(short, long)]
    force: bool,
}

pub fn builder(command: BuilderCommand, global: &GlobalArgs) -> Result<ExitCode> {
    let BuilderCommand::Prune(args) = command;
    let _ = args.force;
    let keep_storage = match &args.keep_storage {
        Some(text) => Some(
            container::parse_memory(text)
                .map_err(|e| anyhow::Error::new(super::UsageError(e.to_string())))?,
        ),
        None => None,
    };
    let store = open_store(global)?;
    let cache = CacheIndex::for_store(&store)?;
    let report = solve::prune(
        &store,
        &cache,
        &PruneOptions {
            all: args.all,
            keep_storage,
        },
    )?;
    println!(
        "Deleted {} cache record{} and {} snapshot{}",
        report.records,
        if report.records == 1 { "" } else { "s" },
        report.snapshots,
        if report.snapshots == 1 { "" } else { "s" },
    );
    println!("Total reclaimed space: {}", human_size(report.bytes));
    Ok(ExitCode::SUCCESS)
}

pub fn system(command: SystemCommand, global: &GlobalArgs) -> Result<ExitCode> {
    match command {
        SystemCommand::Check => return Ok(check(global)),
        SystemCommand::Binfmt { install } => return binfmt(install),
        SystemCommand::Df => {}
    }
    let store = open_store(global)?;
    let cache = CacheIndex::for_store(&store)?;
    let containers = container_usage(&store)?;
    let images = image_usage(&store, &containers.images)?;
    let build = solve::usage(&store, &cache)?;

    let percent = |part: u64, whole: u64| {
        (part * 100)
            .checked_div(whole)
            .map_or(String::new(), |p| format!(" ({p}%)"))
    };
    let rows = [
        [
            "TYPE".to_string(),
            "TOTAL".into(),
            "ACTIVE".into(),
            "SIZE".into(),
            "RECLAIMABLE".into(),
        ],
        [
            "Images".into(),
            images.total.to_string(),
            images.active.to_string(),
            human_size(images.bytes),
            format!(
                "{}{}",
                human_size(images.reclaimable),
                percent(images.reclaimable, images.bytes)
            ),
        ],
        [
            "Containers".into(),
            containers.total.to_string(),
            containers.running.to_string(),
            human_size(containers.bytes),
            format!(
                "{}{}",
                human_size(containers.stopped_bytes),
                percent(containers.stopped_bytes, containers.bytes)
            ),
        ],
        [
            "Build Cache".into(),
            build.records.to_string(),
            "0".into(),
            human_size(build.bytes),
            human_size(build.bytes),
        ],
    ];
    for row in rows {
        println!(
            "{:<16}{:<10}{:<10}{:<10}{}",
            row[0], row[1], row[2], row[3], row[4]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What the containers use: each one's directory (its writable layer and log).
struct ContainerUsage {
    total: usize,
    running: usize,
    bytes: u64,
    stopped_bytes: u64,
    /// The image ids containers use.
    images: HashSet<String>,
}

fn container_usage(store: &Store) -> Result<ContainerUsage> {
    let mut containers = container::list(store)?;
    let mut usage = ContainerUsage {
        total: containers.len(),
        running: 0,
        bytes: 0,
        stopped_bytes: 0,
        images: HashSet::new(),
    };
    for c in &mut containers {
        let _ = container::refresh(c);
        let bytes = crate::store::disk_usage(&c.dir);
        usage.bytes += bytes;
        if c.state.status == container::Status::Running {
            usage.running += 1;
        } else {
            usage.stopped_bytes += bytes;
        }
        usage.images.insert(c.config.image.clone());
    }
    Ok(usage)
}

/// What the images use: every tagged image, active when a container uses it. Sizes are the
/// blobs, each counted once however many images share it.
struct ImageUsage {
    total: usize,
    active: usize,
    bytes: u64,
    reclaimable: u64,
}

fn image_usage(store: &Store, used: &HashSet<String>) -> Result<ImageUsage> {
    let mut images: HashMap<Digest, Vec<(Digest, u64)>> = HashMap::new();
    for (_, descriptor) in store.list()? {
        let Ok(digest) = Digest::from_oci(descriptor.digest()) else {
            continue;
        };
        let Ok(image) = store.image(&digest) else {
            continue;
        };
        let mut blobs = vec![
            (image.manifest_digest.clone(), image.manifest_size),
            (image.config_digest.clone(), image.config_size),
        ];
        for layer in &image.layers {
            if let Ok(d) = Digest::from_oci(layer.digest()) {
                blobs.push((d, layer.size()));
            }
        }
        images.insert(image.config_digest.clone(), blobs);
    }
    let active: HashSet<&Digest> = images
        .keys()
        .filter(|id| used.contains(&id.to_string()))
        .collect();
    let mut all_blobs: HashMap<&Digest, u64> = HashMap::new();
    let mut active_blobs: HashSet<&Digest> = HashSet::new();
    for (id, blobs) in &images {
        for (digest, size) in blobs {
            all_blobs.insert(digest, *size);
            if active.contains(id) {
                active_blobs.insert(digest);
            }
        }
    }
    Ok(ImageUsage {
        total: images.len(),
        active: active.len(),
        bytes: all_blobs.values().sum(),
        reclaimable: all_blobs
            .iter()
            .filter(|(d, _)| !active_blobs.contains(*d))
            .map(|(_, s)| s)
            .sum(),
    })
}

/// `kiln system check`: one line per need; exit 1 when one fails.
fn check(global: &GlobalArgs) -> ExitCode {
    use super::rootless::Verdict;
    let root = crate::store::select_root(global.root.as_deref()).ok();
    let (uid, _) = crate::sys::userns::real_ids();
    if uid == 0 {
        println!("running as root: the checks below are for running kiln as another user");
    }
    let findings = super::rootless::check(root.as_deref());
    for finding in &findings {
        let mark = match finding.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        println!("[{mark}] {}: {}", finding.what, finding.detail);
        if let Some(fix) = &finding.fix {
            println!("       fix: {fix}");
        }
    }
    if findings.iter().any(|f| f.verdict == Verdict::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `kiln system binfmt [--install]`: binfmt_misc's state, then one line per platform:
/// native, its emulator, or what is missing.
fn binfmt(install: bool) -> Result<ExitCode> {
    use crate::sandbox::EmulationError;
    use crate::sandbox::emulation::{self, Registration};
    if install {
        for registration in emulation::install()? {
            match registration {
                Registration::Added { name, flags } => {
                    println!("{name}: registered (flags {flags})");
                }
                Registration::Present { name } => println!("{name}: already registered"),
                Registration::NoInterpreter { name, interpreter } => {
                    println!(
                        "{name}: skipped, {} is not installed",
                        interpreter.display()
                    );
                }
            }
        }
    }
    match emulation::binfmt_misc() {
        Ok(dir) => println!("binfmt_misc: mounted at {}", dir.display()),
        Err(error) => println!("binfmt_misc: {error}"),
    }
    let host = crate::oci::Platform::host();
    let mut unregistered = false;
    for (arch, variant) in emulation::PLATFORMS {
        let platform = crate::oci::Platform::new("linux", arch, *variant);
        let state = if platform.runs_on(&host) || emulation::runs_natively(arch) {
            "native".to_string()
        } else {
            match emulation::emulator_for(arch, *variant) {
                Ok(emulator) => format!(
                    "{} ({}, flags {})",
                    emulator.name,
                    emulator.interpreter.display(),
                    emulator.flags
                ),
                // Said once, above or below.
                Err(EmulationError::NotMounted { .. } | EmulationError::BinfmtDisabled { .. }) => {
                    "missing".to_string()
                }
                Err(EmulationError::NoEntry { .. }) => {
                    unregistered = true;
                    "missing".to_string()
                }
                Err(error) => format!("unusable: {error}"),
            }
        };
        println!("{:<16}{state}", platform.to_string());
    }
    if unregistered {
        println!(
            "fix: apt-get install qemu-user-static, then kiln system binfmt --install (as root)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
