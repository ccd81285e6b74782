//! `kiln run`'s options and the creation of a container from an image: Docker's argv,
//! environment, working directory, volume and name rules.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::error::io_err;
use super::security::Security;
use super::state::write_atomic;
use super::{
    CONFIG_FILE, Container, ContainerConfig, ContainerError, ContainerState, LOG_FILE, NAMES_LOCK,
    Result, SIGTERM, STATE_FILE, STDIN_FIFO, StdinConfig, list, load, names, now_rfc3339,
};
use crate::network::{Attachment, PortBinding};
use crate::oci::Digest;
use crate::sandbox::{BindMount, CgroupLimits, NetworkMode};
use crate::store::{Image, Store};
use crate::sys::NodeKind;

/// What `kiln run` asks for.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub name: Option<String>,
    /// The image as typed.
    pub image_ref: String,
    /// CMD arguments after the image (replace the image's Cmd).
    pub args: Vec<String>,
    /// `--entrypoint`: replaces the image's Entrypoint and clears its Cmd.
    pub entrypoint: Option<String>,
    /// `-e K=V` or `-e K` (the value taken from kiln's environment).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: NetworkMode,
    /// The bridge networks to join (with [`NetworkMode::Bridge`]; `-p` alone means
    /// the default `bridge`).
    pub networks: Vec<Attachment>,
    /// `-p`.
    pub ports: Vec<PortBinding>,
    /// `-v SRC:DST[:ro]`.
    pub volumes: Vec<String>,
    pub limits: CgroupLimits,
    pub auto_remove: bool,
    /// `--init`: a minimal init as PID 1 runs the command.
    pub init: bool,
    /// `--platform`: which image of a multi-platform one (default: this machine's).
    pub platform: Option<crate::oci::Platform>,
    /// `--cap-add`, `--cap-drop` and `--security-opt`, read by [`parse_security`](super::parse_security).
    pub security: Security,
    /// Standard input for attaches (the daemon's `OpenStdin`); closed by default.
    pub stdin: StdinConfig,
    /// `-t` / `Tty`: the client reads the output as a terminal's (raw, one stream); kiln
    /// allocates no pseudo-terminal.
    pub tty: bool,
    /// Labels over the image's (the daemon's create body's `Labels`).
    pub labels: BTreeMap<String, String>,
}

/// Docker's argv rules: `--entrypoint` replaces the Entrypoint and clears the Cmd; CMD
/// arguments replace the Cmd.
pub fn command_line(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let mut argv: Vec<String> = match entrypoint {
        Some("") => Vec::new(),
        Some(e) => vec![e.to_string()],
        None => image_entrypoint.to_vec(),
    };
    if !args.is_empty() {
        argv.extend(args.iter().cloned());
    } else if entrypoint.is_none() {
        argv.extend(image_cmd.iter().cloned());
    }
    argv
}

/// Parses `-v SRC:DST[:ro|rw]`: SRC is an absolute host path (created when missing) or
/// the name of a volume, which the returned mount then carries as its (relative) source
/// until [`create`] resolves it.
pub fn parse_volume(spec: &str) -> Result<BindMount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, destination, readonly) = match parts.as_slice() {
        [s, d] => (*s, *d, false),
        [s, d, "ro"] => (*s, *d, true),
        [s, d, "rw"] => (*s, *d, false),
        _ => {
            return Err(ContainerError::Usage(format!(
                "invalid volume specification: '{spec}'"
            )));
        }
    };
    if !source.starts_with('/') && !super::volume::valid_name(source) {
        return Err(ContainerError::Usage(format!(
            "invalid volume specification: '{spec}': {source:?} is neither an absolute host \
             path nor a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"
        )));
    }
    if !destination.starts_with('/') {
        return Err(ContainerError::Usage(format!(
            "invalid volume specification: '{spec}': mount path must be absolute"
        )));
    }
    Ok(BindMount {
        source: PathBuf::from(source),
        destination: destination.to_string(),
        readonly,
    })
}

/// Parses Docker's memory sizes: `64m`, `1g`, `512k`, `1048576` (binary units).
pub fn parse_memory(text: &str) -> Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower
        .char_indices()
        .find(|(_, c)| !c.is_ascii_digit() && *c != '.')
    {
        Some((i, _)) => (&lower[..i], &lower[i..]),
        None => (lower, ""),
    };
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(ContainerError::Usage(format!("invalid size: '{text}'"))),
    };
    let value: f64 = digits
        .parse()
        .map_err(|_| ContainerError::Usage(format!("invalid size: '{text}'")))?;
    Ok((value * multiplier as f64) as u64)
}

/// A signal number from a StopSignal value (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(text: &str) -> Option<i32> {
    if let Ok(n) = text.parse::<i32>() {
        return Some(n);
    }
    let name = text.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    const SIGNALS: [(&str, i32); 12] = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("KILL", 9),
        ("USR1", 10),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("CONT", 18),
        ("STOP", 19),
        ("WINCH", 28),
    ];
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// A new random container id (64 hex digits).
pub(super) fn new_id() -> Result<String> {
    Ok(crate::store::random_id()?)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Creates a container for `options` from the image (pulled and unpacked beforehand by
/// the caller; snapshots are unpacked here if missing). The state is `created`, owned
/// by this process.
pub fn create(store: &Store, options: &RunOptions) -> Result<Container> {
    let (_, image) =
        crate::image::resolve_platform(store, &options.image_ref, options.platform.as_ref())?;
    let _lease = store.lease()?;
    let (lowers, chain_ids) = image_snapshots(store, &image, &options.image_ref)?;
    let config = image.config.config().clone().unwrap_or_default();
    let none = Vec::new();
    let argv = command_line(
        config.entrypoint().as_ref().unwrap_or(&none),
        config.cmd().as_ref().unwrap_or(&none),
        options.entrypoint.as_deref(),
        &options.args,
    );
    if argv.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    let id = new_id()?;
    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let env = environment(config.env().as_deref(), &hostname, &options.env);
    let working_dir = working_dir(options.workdir.as_deref(), config.working_dir().as_deref())?;
    let image_volumes: Vec<String> = config.volumes().clone().unwrap_or_default();
    let (mounts, anonymous_volumes) = volumes(store, &options.volumes, &image_volumes, &lowers)?;
    let stop_signal = config
        .stop_signal()
        .as_deref()
        .and_then(parse_signal)
        .unwrap_or(SIGTERM);
    let (network, networks) = networks_of(store, options)?;
    let containers = store.containers_dir();
    fs::create_dir_all(&containers).map_err(io_err("create", &containers))?;
    // Held until the container is listed, so no other `run` takes the same name.
    let names_lock = lock_names(&containers)?;
    let name = choose_name(store, options.name.as_deref(), &id)?;
    let container_config = ContainerConfig {
        id: id.clone(),
        name,
        image: image.config_digest.to_string(),
        image_ref: options.image_ref.clone(),
        command: argv,
        created: now_rfc3339(),
        env,
        working_dir,
        user: options
            .user
            .clone()
            .or_else(|| config.user().clone())
            .unwrap_or_default(),
        hostname,
        network,
        networks,
        ports: options.ports.clone(),
        mounts,
        limits: options.limits,
        lowers,
        snapshots: chain_ids.iter().map(ToString::to_string).collect(),
        auto_remove: options.auto_remove,
        stop_signal,
        init: options.init,
        security: options.security.clone(),
        anonymous_volumes,
        stdin: options.stdin,
        tty: options.tty,
        labels: config
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(options.labels.clone())
            .collect(),
    };
    let dir = write_container_dir(&containers, &container_config)?;
    drop(names_lock);
    let container = load(&dir)?;
    super::state::event(&container, "create", &[]);
    Ok(container)
}

/// Docker's `--network` value: `host` and `default` (kiln's default is the host's
/// network), `none`, or a bridge network by name (`bridge` is the default one), with
/// `--network-alias`es for it.
pub fn network_choice(mode: &str, aliases: &[String]) -> (NetworkMode, Vec<Attachment>) {
    match mode {
        "" | "default" | "host" if aliases.is_empty() => (NetworkMode::Host, Vec::new()),
        "none" if aliases.is_empty() => (NetworkMode::None, Vec::new()),
        // Aliases on host or none: refused by `create`, which sees a bridge without a name.
        "" | "default" | "host" | "none" => (NetworkMode::Bridge, Vec::new()),
        name => (
            NetworkMode::Bridge,
            vec![Attachment {
                network: name.to_string(),
                aliases: aliases.to_vec(),
                address: None,
            }],
        ),
    }
}

/// The network mode and bridge networks a container gets: publishing ports without a
/// network puts it on the default `bridge`, as Docker's default mode would; every
/// network named must exist (the default `bridge` is made when first asked for).
fn networks_of(store: &Store, options: &RunOptions) -> Result<(NetworkMode, Vec<Attachment>)> {
    let mut networks = options.networks.clone();
    if networks.is_empty() && !options.ports.is_empty() && options.network == NetworkMode::Host {
        networks.push(Attachment {
            network: crate::network::DEFAULT_BRIDGE.to_string(),
            aliases: Vec::new(),
            address: None,
        });
    }
    if networks.is_empty() {
        if options.network == NetworkMode::Bridge {
            return Err(ContainerError::Usage(
                "network-scoped aliases are only supported for user-defined networks".into(),
            ));
        }
        return Ok((options.network, networks));
    }
    if options.network == NetworkMode::None {
        return Err(ContainerError::Usage(
            "container cannot be disconnected from host network or connected to host network"
                .into(),
        ));
    }
    for attachment in &mut networks {
        let network = crate::network::find(store, &attachment.network)?;
        // Docker's default bridge knows no names: aliases are for user-defined networks.
        if network.name == crate::network::DEFAULT_BRIDGE && !attachment.aliases.is_empty() {
            return Err(ContainerError::Usage(
                "network-scoped aliases are only supported for user-defined networks".into(),
            ));
        }
        attachment.network = network.name;
    }
    Ok((NetworkMode::Bridge, networks))
}

/// Unpacks the image's layers (unless they are) and returns their snapshot directories,
/// top first, and their chain ids, bottom first.
fn image_snapshots(
    store: &Store,
    image: &Image,
    image_ref: &str,
) -> Result<(Vec<PathBuf>, Vec<Digest>)> {
    crate::image::unpack_image(store, image)?;
    let mut lowers = Vec::new();
    let chain_ids = image.chain_ids();
    for chain in &chain_ids {
        match crate::snapshot::open_snapshot(store, chain)? {
            Some(snapshot) => lowers.push(snapshot.fs_path()),
            None => {
                return Err(ContainerError::Usage(format!(
                    "snapshot {chain} of image {image_ref} is missing"
                )));
            }
        }
    }
    lowers.reverse();
    Ok((lowers, chain_ids))
}

/// The image's environment, with Docker's default `PATH` when it sets none, `HOSTNAME`,
/// then each `-e` (`K=V`, or `K` taking the value from kiln's own environment).
pub(super) fn environment(
    image_env: Option<&[String]>,
    hostname: &str,
    options_env: &[String],
) -> Vec<String> {
    let mut env: Vec<String> = image_env.map(<[String]>::to_vec).unwrap_or_default();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_string();
        env.retain(|e| e.split('=').next() != Some(&key));
        env.push(entry);
    };
    if !image_env.is_some_and(|e| e.iter().any(|v| v.starts_with("PATH="))) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    }
    set(format!("HOSTNAME={hostname}"));
    for entry in options_env {
        if entry.contains('=') {
            set(entry.clone());
        } else if let Ok(value) = std::env::var(entry) {
            set(format!("{entry}={value}"));
        }
    }
    env
}

/// `--workdir`, else the image's WorkingDir, else `/`; it must be absolute.
fn working_dir(option: Option<&str>, image: Option<&str>) -> Result<String> {
    let working_dir = option
        .or(image.filter(|w| !w.is_empty()))
        .unwrap_or("/")
        .to_string();
    if !working_dir.starts_with('/') {
        return Err(ContainerError::Usage(format!(
            "the working directory '{working_dir}' is invalid, it needs to be an absolute path"
        )));
    }
    Ok(working_dir)
}

/// The `-v` mounts: host directories (created when missing, as Docker does) and named
/// volumes (created when missing and, while empty, filled with the image's content at
/// their path); then an anonymous volume for each of the image's `VOLUME`s that no `-v`
/// covers. Returns the mounts and the anonymous volumes' names.
fn volumes(
    store: &Store,
    specs: &[String],
    image_volumes: &[String],
    lowers: &[PathBuf],
) -> Result<(Vec<BindMount>, Vec<String>)> {
    let mut mounts = Vec::new();
    let mut anonymous = Vec::new();
    let mut named = |name: Option<&str>, destination: &str, readonly: bool| -> Result<BindMount> {
        let volume = super::volume::create(store, name, Default::default())?;
        let empty = fs::read_dir(&volume.mountpoint)
            .map_err(io_err("read", &volume.mountpoint))?
            .next()
            .is_none();
        if empty {
            super::volume::copy_up(lowers, destination, &volume.mountpoint)?;
        }
        if volume.anonymous {
            anonymous.push(volume.name.clone());
        }
        Ok(BindMount {
            source: volume.mountpoint,
            destination: destination.to_string(),
            readonly,
        })
    };
    for spec in specs {
        let mount = parse_volume(spec)?;
        let mount = if mount.source.is_absolute() {
            fs::create_dir_all(&mount.source).map_err(io_err("create", &mount.source))?;
            mount
        } else {
            let name = mount.source.to_string_lossy().into_owned();
            named(Some(&name), &mount.destination, mount.readonly)?
        };
        mounts.push(mount);
    }
    for path in image_volumes {
        let clean = crate::gocompat::go_path_clean(path);
        if !mounts.iter().any(|m| m.destination == clean) {
            let mount = named(None, &clean, false)?;
            mounts.push(mount);
        }
    }
    Ok((mounts, anonymous))
}

/// Locks `containers/.names.lock`: one creation at a time picks a name.
fn lock_names(containers: &Path) -> Result<fs::File> {
    let lock_path = containers.join(NAMES_LOCK);
    crate::sys::lock_file(&lock_path).map_err(io_err("lock", &lock_path))
}

/// `--name` (checked and free), else a generated name no container has.
fn choose_name(store: &Store, requested: Option<&str>, id: &str) -> Result<String> {
    let existing = list(store)?;
    let Some(name) = requested else {
        return Ok(names::generate(id, |n| {
            existing.iter().any(|c| c.config.name == n)
        }));
    };
    let name = name.trim_start_matches('/').to_string();
    if !valid_name(&name) {
        return Err(ContainerError::Usage(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    if let Some(other) = existing.iter().find(|c| c.config.name == name) {
        return Err(ContainerError::NameInUse {
            name,
            id: other.config.id.clone(),
        });
    }
    Ok(name)
}

/// `docker rename`: gives the container `new_name` (checked and free, as a create's
/// `--name`); a running one is known by it on its networks at once.
pub fn rename(store: &Store, query: &str, new_name: &str) -> Result<()> {
    let (mut container, _config) = super::networks::locked(store, query)?;
    let _names = lock_names(&store.containers_dir())?;
    if new_name.trim_start_matches('/') == container.config.name {
        return Err(ContainerError::Usage(
            "Renaming a container with the same name as its current name".into(),
        ));
    }
    let name = choose_name(store, Some(new_name), &container.config.id)?;
    let old = std::mem::replace(&mut container.config.name, name);
    write_atomic(
        &container.dir.join(CONFIG_FILE),
        &serde_json::to_vec_pretty(&container.config)?,
    )?;
    if container.state.status == super::Status::Running {
        crate::network::rename_member(store, &container.config.id, &container.config.name)?;
    }
    super::state::event(&container, "rename", &[("oldName", &format!("/{old}"))]);
    Ok(())
}

/// Makes the container's directory under a hidden name, then renames it into place: a
/// half-made container is never listed. Returns the directory.
fn write_container_dir(containers: &Path, config: &ContainerConfig) -> Result<PathBuf> {
    let building = containers.join(format!(".new-{}", config.id));
    let dir = containers.join(&config.id);
    let made = (|| {
        fs::create_dir(&building).map_err(io_err("create", &building))?;
        for sub in ["upper", "work"] {
            let path = building.join(sub);
            fs::create_dir(&path).map_err(io_err("create", &path))?;
        }
        let log = building.join(LOG_FILE);
        fs::write(&log, b"").map_err(io_err("write", &log))?;
        if config.stdin.open {
            crate::sys::mknod(&building.join(STDIN_FIFO), NodeKind::Fifo, 0o600, 0, 0)?;
        }
        write_atomic(
            &building.join(CONFIG_FILE),
            &serde_json::to_vec_pretty(config)?,
        )?;
        write_atomic(
            &building.join(STATE_FILE),
            &serde_json::to_vec_pretty(&ContainerState::created())?,
        )?;
        fs::rename(&building, &dir).map_err(io_err("rename", &building))
    })();
    if let Err(error) = made {
        let _ = fs::remove_dir_all(&building);
        return Err(error);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_argv_rules() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ep = s(&["/entry"]);
        let cmd = s(&["sh"]);
        assert_eq!(command_line(&ep, &cmd, None, &[]), s(&["/entry", "sh"]));
        assert_eq!(
            command_line(&ep, &cmd, None, &s(&["ls"])),
            s(&["/entry", "ls"])
        );
        assert_eq!(command_line(&ep, &cmd, Some("echo"), &[]), s(&["echo"]));
        assert_eq!(
            command_line(&ep, &cmd, Some("echo"), &s(&["hi"])),
            s(&["echo", "hi"])
        );
        assert_eq!(command_line(&ep, &cmd, Some(""), &[]), Vec::<String>::new());
    }

    #[test]
    fn sizes_and_signals() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("12q").is_err());
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("QUIT"), Some(3));
        assert_eq!(parse_signal("9"), Some(9));
    }

    #[test]
    fn volumes() {
        let m = parse_volume("/a:/b:ro").unwrap();
        assert!(m.readonly);
        assert_eq!(m.destination, "/b");
        let named = parse_volume("named:/b").unwrap();
        assert_eq!(named.source, PathBuf::from("named"));
        assert!(parse_volume("bad/name:/b").is_err());
        assert!(parse_volume("/a:b").is_err());
    }
}
