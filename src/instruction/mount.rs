//! `RUN --mount=…` specifications: CSV fields, keys, defaults and validation.
//!
//! Values may hold build variables, which are known only when the build is planned.
//! So the instruction layer validates what it can (keys, and every value that holds
//! no `$`), and [`MountSpec::resolve`] does the full parse once values are expanded.

use super::suggest;

/// What kind of mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// A fully parsed mount, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub kind: MountType,
    /// Path inside the RUN's filesystem.
    pub target: String,
    /// Stage, image or context the source comes from (bind and cache).
    pub from: Option<String>,
    /// Path within `from` (or the context).
    pub source: Option<String>,
    pub read_only: bool,
    /// Cache, secret and ssh identifier.
    pub id: Option<String>,
    pub sharing: Sharing,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Secret and ssh: fail when the secret or agent is not provided.
    pub required: bool,
    /// Secret: also expose it as this environment variable.
    pub env: Option<String>,
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "required",
    "sharing",
    "id",
    "size",
    "mode",
    "uid",
    "gid",
    "env",
];
const FLAG_ONLY_KEYS: &[&str] = &["readonly", "ro", "readwrite", "rw", "required"];

/// A `--mount` value as written, checked as far as it can be before expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub text: String,
}

impl MountSpec {
    /// Checks the keys, and every value that needs no expansion.
    pub fn new(text: &str) -> Result<MountSpec, String> {
        if text.contains('$') {
            for field in split_csv(text)? {
                key_of(&field)?;
            }
        } else {
            parse(text, &mut |value| Ok(value.to_string()), 0)?;
        }
        Ok(MountSpec {
            text: text.to_string(),
        })
    }

    /// The mount with every value except `from` expanded by `expand`. `ssh_index`
    /// numbers ssh mounts of one RUN for their default target.
    pub fn resolve(
        &self,
        expand: &mut dyn FnMut(&str) -> Result<String, String>,
        ssh_index: usize,
    ) -> Result<Mount, String> {
        parse(&self.text, expand, ssh_index)
    }
}

fn key_of(field: &str) -> Result<(String, Option<&str>), String> {
    let (key, value) = match field.split_once('=') {
        Some((key, value)) => (key.to_ascii_lowercase(), Some(value)),
        None => (field.to_ascii_lowercase(), None),
    };
    if !KEYS.contains(&key.as_str()) {
        let hint = suggest::closest(&key, KEYS.iter().copied())
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        return Err(format!("unexpected key '{key}' in '{field}'{hint}"));
    }
    if value.is_none() && !FLAG_ONLY_KEYS.contains(&key.as_str()) {
        return Err(format!("invalid field '{field}': must be a key=value pair"));
    }
    Ok((key, value))
}

fn parse(
    text: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
    ssh_index: usize,
) -> Result<Mount, String> {
    let mut kind = MountType::Bind;
    let mut target = None;
    let mut from = None;
    let mut source = None;
    let mut read_only = None;
    let mut id = None;
    let mut sharing = None;
    let mut size = None;
    let mut mode = None;
    let mut uid = None;
    let mut gid = None;
    let mut required = false;
    let mut env = None;

    for field in split_csv(text)? {
        let (key, raw) = key_of(&field)?;
        let value = match (key.as_str(), raw) {
            // `from` names a stage or image: never expanded, as BuildKit does.
            ("from", Some(raw)) => raw.to_string(),
            (_, Some(raw)) => expand(raw)?,
            (_, None) => "true".to_string(),
        };
        match key.as_str() {
            "type" => {
                kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    other => return Err(format!("unsupported mount type {other:?}")),
                }
            }
            "from" => from = Some(value),
            "source" | "src" => source = Some(value),
            "target" | "dst" | "destination" => target = Some(value),
            "readonly" | "ro" => read_only = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => read_only = Some(!parse_bool(&key, &value)?),
            "required" => required = parse_bool(&key, &value)?,
            "sharing" => {
                sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => return Err(format!("unsupported sharing value {other:?}")),
                })
            }
            "id" => id = Some(value),
            "size" => size = Some(parse_size(&value)?),
            "mode" => {
                mode = Some(
                    u32::from_str_radix(&value, 8)
                        .map_err(|_| format!("invalid mode {value:?}: expected an octal number"))?,
                )
            }
            "uid" => uid = Some(parse_id("uid", &value)?),
            "gid" => gid = Some(parse_id("gid", &value)?),
            "env" => env = Some(value),
            _ => unreachable!("key_of accepts only known keys"),
        }
    }

    let name = kind.as_str();
    let reject = |present: bool, key: &str| {
        if present {
            Err(format!("{key} is not supported for {name} mounts"))
        } else {
            Ok(())
        }
    };
    reject(sharing.is_some() && kind != MountType::Cache, "sharing")?;
    reject(size.is_some() && kind != MountType::Tmpfs, "size")?;
    reject(env.is_some() && kind != MountType::Secret, "env")?;
    reject(
        from.is_some() && matches!(kind, MountType::Secret | MountType::Ssh | MountType::Tmpfs),
        "from",
    )?;
    let owner_keys = mode.is_some() || uid.is_some() || gid.is_some();
    reject(
        owner_keys && matches!(kind, MountType::Bind | MountType::Tmpfs),
        "mode/uid/gid",
    )?;

    let target = match kind {
        MountType::Secret => {
            if id.is_none() {
                let base = target
                    .as_deref()
                    .or(source.as_deref())
                    .map(|path| path.rsplit('/').next().unwrap_or(path).to_string())
                    .filter(|base| !base.is_empty());
                match base {
                    Some(base) => id = Some(base),
                    None if env.is_some() => {}
                    None => return Err("secret mount requires an id or a target".to_string()),
                }
            }
            match (target, env.is_some()) {
                (Some(target), _) => target,
                // With only env=, the secret is not written to a file.
                (None, true) => String::new(),
                (None, false) => format!("/run/secrets/{}", id.as_deref().unwrap_or_default()),
            }
        }
        MountType::Ssh => {
            id.get_or_insert_with(|| "default".to_string());
            target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"))
        }
        _ => match target {
            Some(target) if !target.is_empty() => target,
            _ => return Err(format!("mount target is required for {name} mounts")),
        },
    };
    if kind == MountType::Cache && id.is_none() {
        id = Some(target.clone());
    }
    let read_only = read_only.unwrap_or(kind == MountType::Bind);

    Ok(Mount {
        kind,
        target,
        from,
        source,
        read_only,
        id,
        sharing: sharing.unwrap_or_default(),
        size,
        mode,
        uid,
        gid,
        required,
        env,
    })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Ok(true),
        "false" | "0" | "f" => Ok(false),
        _ => Err(format!(
            "invalid value for {key}: {value:?} is not a boolean"
        )),
    }
}

fn parse_id(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|_| format!("invalid {key} {value:?}: expected a number"))
}

/// Sizes as Docker writes them: `1024`, `64k`, `128m`, `1.5g`, `2GiB` (powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {value:?}");
    let trimmed = value.trim();
    let digits_end = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let multiplier: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Splits one CSV record as Go's `encoding/csv` reads it: `,` separates fields, a
/// field that starts with `"` is quoted and `""` inside it is one `"`.
fn split_csv(text: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("unterminated quote in mount {text:?}")),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err(format!("unexpected text after a quote in mount {text:?}")),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(text: &str) -> Result<Mount, String> {
        MountSpec::new(text)?.resolve(&mut |v| Ok(v.to_string()), 0)
    }

    #[test]
    fn bind_defaults_read_only() {
        let mount = literal("target=/src,source=app,from=build").unwrap();
        assert_eq!(mount.kind, MountType::Bind);
        assert!(mount.read_only);
        assert_eq!(mount.from.as_deref(), Some("build"));
        assert!(!literal("type=bind,target=/x,rw").unwrap().read_only);
    }

    #[test]
    fn cache_defaults() {
        let mount =
            literal("type=cache,target=/root/.cache,sharing=locked,mode=0700,uid=1000").unwrap();
        assert_eq!(mount.id.as_deref(), Some("/root/.cache"));
        assert_eq!(mount.sharing, Sharing::Locked);
        assert_eq!(mount.mode, Some(0o700));
        assert_eq!(mount.uid, Some(1000));
        assert!(!mount.read_only);
    }

    #[test]
    fn secret_and_ssh_defaults() {
        let secret = literal("type=secret,id=token").unwrap();
        assert_eq!(secret.target, "/run/secrets/token");
        let by_target = literal("type=secret,target=/etc/creds").unwrap();
        assert_eq!(by_target.id.as_deref(), Some("creds"));
        let env = literal("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(env.env.as_deref(), Some("TOKEN"));
        let ssh = MountSpec::new("type=ssh").unwrap();
        let ssh = ssh.resolve(&mut |v| Ok(v.to_string()), 2).unwrap();
        assert_eq!(ssh.target, "/run/buildkit/ssh_agent.2");
        assert_eq!(ssh.id.as_deref(), Some("default"));
    }

    #[test]
    fn tmpfs_size() {
        assert_eq!(
            literal("type=tmpfs,target=/t,size=128m").unwrap().size,
            Some(128 << 20)
        );
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn rejects_bad_specs() {
        for (spec, message) in [
            ("type=volume,target=/x", "unsupported mount type"),
            ("target=/x,tagret=/y", "did you mean target?"),
            ("type=cache", "mount target is required"),
            ("type=secret,id=a,from=b", "from is not supported"),
            (
                "type=secret,id=a,sharing=locked",
                "sharing is not supported",
            ),
            (
                "type=bind,target=/x,mode=0644",
                "mode/uid/gid is not supported",
            ),
            (
                "type=cache,target=/x,sharing=sometimes",
                "unsupported sharing",
            ),
            ("type=cache,target=/x,mode=999", "octal"),
            ("type=cache,target=/x,uid=me", "invalid uid"),
            ("target", "key=value"),
            ("type=cache,target=/x,ro=maybe", "not a boolean"),
            ("\"type=cache,target=/x", "unterminated quote"),
        ] {
            let error = literal(spec).unwrap_err();
            assert!(error.contains(message), "{spec}: {error}");
        }
    }

    #[test]
    fn variables_are_checked_after_expansion() {
        let spec = MountSpec::new("type=cache,target=$DIR,uid=$UID").unwrap();
        let mount = spec
            .resolve(
                &mut |v| Ok(v.replace("$DIR", "/cache").replace("$UID", "7")),
                0,
            )
            .unwrap();
        assert_eq!(mount.target, "/cache");
        assert_eq!(mount.uid, Some(7));
        assert!(MountSpec::new("type=cache,tagret=$DIR").is_err());
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(split_csv(r#""a,b",c"#).unwrap(), ["a,b", "c"]);
        assert_eq!(split_csv(r#""say ""hi""""#).unwrap(), [r#"say "hi""#]);
        assert_eq!(split_csv("").unwrap(), [""]);
    }
}
