//! `kiln build`'s options that need more than clap: `--build-arg`/`--label` pairs,
//! `--secret`, `--ssh`, `SOURCE_DATE_EPOCH`, and the empty context of `kiln build -`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::cli::UsageError;
use crate::solve::SecretSource;

/// `K=V` pairs; a bare `K` takes its value from the environment (skipped when unset), as
/// `docker build --build-arg` does.
pub(super) fn key_values(
    items: &[String],
    from_env: bool,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            None => bail!("invalid value {item:?}: expected KEY=VALUE"),
        }
    }
    Ok(out)
}

/// `--secret id=ID[,src=FILE|,source=FILE][,env=VAR][,type=file|env]`; with neither
/// `src` nor `env`, the environment variable named like the id.
pub(super) fn parse_secrets(specs: &[String]) -> anyhow::Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (mut id, mut src, mut env, mut kind) = (None, None, None, None);
        for field in spec.split(',') {
            let (key, value) = field.split_once('=').ok_or_else(|| {
                usage(format!(
                    "--secret {spec}: expected KEY=VALUE, got {field:?}"
                ))
            })?;
            match key {
                "id" => id = Some(value.to_string()),
                "src" | "source" => src = Some(value.to_string()),
                "env" => env = Some(value.to_string()),
                "type" if value == "file" || value == "env" => kind = Some(value.to_string()),
                _ => return Err(usage(format!("--secret {spec}: unexpected {field:?}"))),
            }
        }
        let id = id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| usage(format!("--secret {spec}: id= is required")))?;
        let source = match (kind.as_deref(), src, env) {
            (Some("env"), Some(_), _) | (Some("file"), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(usage(format!("--secret {spec}: give either src= or env=")));
            }
            (Some("file"), None, None) => {
                return Err(usage(format!("--secret {spec}: type=file needs src=")));
            }
            (_, Some(src), None) => SecretSource::File(PathBuf::from(src)),
            (_, None, Some(env)) => SecretSource::Env(env),
            (_, None, None) => SecretSource::Env(id.clone()),
        };
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh default` (`$SSH_AUTH_SOCK`) or `--ssh ID=SOCKET`: agent sockets only.
pub(super) fn parse_ssh(specs: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for spec in specs {
        let (id, path) = match spec.split_once('=') {
            Some((id, path)) => (id.to_string(), PathBuf::from(path)),
            None => {
                let socket = std::env::var_os("SSH_AUTH_SOCK").ok_or_else(|| {
                    usage(format!(
                        "--ssh {spec}: SSH_AUTH_SOCK is not set (give {spec}=SOCKET)"
                    ))
                })?;
                (spec.clone(), PathBuf::from(socket))
            }
        };
        if path.as_os_str().to_string_lossy().contains(',') {
            return Err(usage(format!(
                "--ssh {spec}: one agent socket per id (keys are not supported)"
            )));
        }
        let is_socket = std::fs::metadata(&path).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            return Err(usage(format!(
                "--ssh {spec}: {} is not an agent socket (kiln forwards SSH agents, not key files)",
                path.display()
            )));
        }
        out.insert(id, path);
    }
    Ok(out)
}

/// A usage error (exit status 2).
/// `--cache-from`/`--cache-to` specs, parsed by `parse`; a bad one is a usage error.
pub(super) fn cache_specs<T>(
    specs: &[String],
    parse: impl Fn(&str) -> Result<T, crate::build::BuildError>,
) -> anyhow::Result<Vec<T>> {
    specs
        .iter()
        .map(|spec| parse(spec).map_err(|e| usage(e.to_string())))
        .collect()
}

fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(message))
}

/// An empty directory removed on drop: the context of `kiln build -`.
pub(super) struct EmptyDir(pub(super) PathBuf);

impl EmptyDir {
    pub(super) fn create() -> anyhow::Result<EmptyDir> {
        let dir = std::env::temp_dir().join(format!(
            "kiln-empty-context-{}",
            crate::store::random_name()
        ));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(EmptyDir(dir))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `SOURCE_DATE_EPOCH` from the environment becomes the build arg of that name unless one
/// is given, as buildx passes it; the planner reads it (or the Dockerfile's default).
pub(super) fn source_date_epoch_from_env(build_args: &mut BTreeMap<String, String>) {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        build_args
            .entry("SOURCE_DATE_EPOCH".to_string())
            .or_insert(value);
    }
}

/// `--platform P1,P2,…`: each platform once, in order (empty: this machine's).
pub(super) fn parse_platforms(arg: Option<&str>) -> anyhow::Result<Vec<crate::plan::Platform>> {
    let mut platforms: Vec<crate::plan::Platform> = Vec::new();
    for text in arg.unwrap_or_default().split(',').map(str::trim) {
        if text.is_empty() {
            continue;
        }
        let platform = crate::plan::Platform::parse(text)
            .map_err(|e| anyhow::Error::new(UsageError(format!("--platform {text}: {e}"))))?;
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    Ok(platforms)
}
