//! `RUN --mount=…` specifications: CSV fields, keys, defaults and validation.
//!
//! Values may hold build variables, which are known only when the build is planned.
//! So the instruction layer validates what it can (keys, and every value that holds
//! no `$`), and [`MountSpec::resolve`] does the full parse once values are expanded.

use super::error::InvalidValue;
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
    /// Checks the keys, and every value that needs no expansion; values holding a
    /// variable (and rules that depend on them) wait for [`MountSpec::resolve`].
    pub fn new(text: &str) -> Result<MountSpec, InvalidValue> {
        parse(text, Values::Deferred, 0).map_err(InvalidValue)?;
        Ok(MountSpec {
            text: text.to_string(),
        })
    }

    /// The mount with every value except `from` expanded by `expand`. `ssh_index`
    /// numbers ssh mounts of one RUN for their default target.
    pub fn resolve(
        &self,
        expand: &mut dyn FnMut(&str) -> Result<String, InvalidValue>,
        ssh_index: usize,
    ) -> Result<Mount, InvalidValue> {
        parse(&self.text, Values::Expanded(expand), ssh_index)
            .map_err(InvalidValue)?
            .ok_or_else(|| InvalidValue("mount options could not be resolved".to_string()))
    }
}

/// How `parse` gets values: after expansion, or as written with variables deferred.
enum Values<'a> {
    Deferred,
    Expanded(&'a mut dyn FnMut(&str) -> Result<String, InvalidValue>),
}

impl Values<'_> {
    /// The value to check now, or `None` when it holds a variable not yet known.
    fn get(&mut self, raw: &str) -> Result<Option<String>, String> {
        match self {
            Values::Deferred if raw.contains('$') => Ok(None),
            Values::Deferred => Ok(Some(raw.to_string())),
            Values::Expanded(expand) => expand(raw).map(Some).map_err(|e| e.0),
        }
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

/// Parses a mount. With deferred values, returns `Ok(None)` once every check that
/// does not depend on a variable has passed.
fn parse(text: &str, mut values: Values, ssh_index: usize) -> Result<Option<Mount>, String> {
    let fields = Fields::read(text, &mut values)?;
    // Without the type, no rule that depends on it can be checked yet.
    let kind = match fields.kind {
        None => MountType::Bind,
        Some(Some(kind)) => kind,
        Some(None) => return Ok(None),
    };
    reject_keys_for(kind, &fields)?;
    let placement = match kind {
        MountType::Secret => secret_placement(&fields)?,
        MountType::Ssh => ssh_placement(&fields, ssh_index),
        MountType::Bind | MountType::Cache | MountType::Tmpfs => path_placement(kind, &fields)?,
    };
    Ok(placement.map(|(target, id)| fields.into_mount(kind, target, id)))
}

/// A mount's fields as written, before defaults. An inner `None` means given, but holding
/// a variable not known yet.
#[derive(Default)]
struct Fields {
    kind: Option<Option<MountType>>,
    target: Option<Option<String>>,
    from: Option<String>,
    source: Option<Option<String>>,
    read_only: Option<bool>,
    id: Option<Option<String>>,
    sharing: Option<Option<Sharing>>,
    size: Option<Option<u64>>,
    mode: Option<Option<u32>>,
    uid: Option<Option<u32>>,
    gid: Option<Option<u32>>,
    required: Option<Option<bool>>,
    env: Option<Option<String>>,
    /// Some value held a variable not known yet.
    deferred: bool,
}

impl Fields {
    /// Reads the CSV fields in order; the first bad one is the error.
    fn read(text: &str, values: &mut Values) -> Result<Fields, String> {
        let mut fields = Fields::default();
        for field in split_csv(text)? {
            let (key, raw) = key_of(&field)?;
            if key == "from" {
                fields.from = Some(from_value(raw.unwrap_or_default())?);
                continue;
            }
            let value = match raw {
                Some(raw) => values.get(raw)?,
                None => Some("true".to_string()),
            };
            fields.deferred |= value.is_none();
            fields.set(&key, value)?;
        }
        Ok(fields)
    }

    /// Records one key's value (`None`: not known yet), checking the values it can.
    fn set(&mut self, key: &str, value: Option<String>) -> Result<(), String> {
        let boolean = |value: Option<String>| value.map(|v| parse_bool(key, &v)).transpose();
        match key {
            "type" => self.kind = Some(value.map(|v| parse_type(&v)).transpose()?),
            "source" | "src" => self.source = Some(value),
            "target" | "dst" | "destination" => self.target = Some(value),
            "readonly" | "ro" => self.read_only = boolean(value)?,
            "readwrite" | "rw" => self.read_only = boolean(value)?.map(|rw| !rw),
            "required" => self.required = Some(boolean(value)?),
            "sharing" => self.sharing = Some(value.map(|v| parse_sharing(&v)).transpose()?),
            "id" => self.id = Some(value),
            "size" => self.size = Some(value.map(|v| size_bytes(&v)).transpose()?),
            "mode" => self.mode = Some(value.map(|v| parse_mode(&v)).transpose()?),
            "uid" => self.uid = Some(value.map(|v| parse_id("uid", &v)).transpose()?),
            "gid" => self.gid = Some(value.map(|v| parse_id("gid", &v)).transpose()?),
            "env" => self.env = Some(value),
            _ => unreachable!("key_of accepts only known keys"),
        }
        Ok(())
    }

    /// The mount with its defaults applied, at `target` with `id`.
    fn into_mount(self, kind: MountType, target: String, id: Option<String>) -> Mount {
        Mount {
            kind,
            target,
            from: self.from,
            source: self.source.flatten(),
            // Bind, secret and ssh mounts are read-only unless asked otherwise.
            read_only: self.read_only.unwrap_or(matches!(
                kind,
                MountType::Bind | MountType::Secret | MountType::Ssh
            )),
            id,
            sharing: self.sharing.flatten().unwrap_or_default(),
            size: self.size.flatten(),
            mode: self.mode.flatten(),
            uid: self.uid.flatten(),
            gid: self.gid.flatten(),
            required: self.required.flatten().unwrap_or(false),
            env: self.env.flatten().filter(|_| kind == MountType::Secret),
        }
    }
}

/// A `from` value: a stage or image name, never expanded, as in BuildKit.
fn from_value(raw: &str) -> Result<String, String> {
    if raw.find('$').is_some_and(|at| at + 1 < raw.len()) {
        return Err(
            "'from' doesn't support variable expansion, define alias stage instead".to_string(),
        );
    }
    Ok(raw.to_string())
}

fn parse_type(value: &str) -> Result<MountType, String> {
    match value.to_ascii_lowercase().as_str() {
        "bind" => Ok(MountType::Bind),
        "cache" => Ok(MountType::Cache),
        "tmpfs" => Ok(MountType::Tmpfs),
        "secret" => Ok(MountType::Secret),
        "ssh" => Ok(MountType::Ssh),
        other => Err(format!("unsupported mount type {other:?}")),
    }
}

fn parse_sharing(value: &str) -> Result<Sharing, String> {
    match value.to_ascii_lowercase().as_str() {
        "shared" => Ok(Sharing::Shared),
        "private" => Ok(Sharing::Private),
        "locked" => Ok(Sharing::Locked),
        other => Err(format!("unsupported sharing value {other:?}")),
    }
}

fn parse_mode(value: &str) -> Result<u32, String> {
    parse_unsigned(value, 8)
        .ok_or_else(|| format!("invalid mode {value:?}: expected an octal number"))
}

/// Rejects the keys that mount type `kind` does not take.
fn reject_keys_for(kind: MountType, fields: &Fields) -> Result<(), String> {
    let reject = |present: bool, key: &str| {
        if present {
            Err(format!(
                "unexpected key '{key}' for mount type '{}'",
                kind.as_str()
            ))
        } else {
            Ok(())
        }
    };
    reject(
        fields.sharing.is_some() && kind != MountType::Cache,
        "sharing",
    )?;
    reject(fields.size.is_some() && kind != MountType::Tmpfs, "size")?;
    reject(
        fields.required.is_some() && !matches!(kind, MountType::Secret | MountType::Ssh),
        "required",
    )?;
    reject(fields.from.is_some() && kind == MountType::Secret, "from")?;
    for (present, key) in [
        (fields.mode.is_some(), "mode"),
        (fields.uid.is_some(), "uid"),
        (fields.gid.is_some(), "gid"),
    ] {
        reject(
            present && matches!(kind, MountType::Bind | MountType::Tmpfs),
            key,
        )?;
    }
    Ok(())
}

/// Where a mount goes and what identifies it: (target, id), or `None` while a value it
/// depends on is not known yet.
type Placement = Option<(String, Option<String>)>;

/// A secret's target and id. BuildKit: the id is `id`, else the whole `source`, else the
/// target's base name; the default target is /run/secrets/<base name of the id>.
fn secret_placement(fields: &Fields) -> Result<Placement, String> {
    if matches!(fields.source, Some(Some(_))) && matches!(fields.id, Some(Some(_))) {
        return Err("both source and id can't be set".to_string());
    }
    if fields.deferred {
        return Ok(None);
    }
    let target = fields.target.clone().flatten();
    let id = fields
        .id
        .clone()
        .flatten()
        .or(fields.source.clone().flatten())
        .or_else(|| target.as_deref().map(|t| base_name(t).to_string()))
        .filter(|id| !id.is_empty())
        .ok_or("one of source, target required")?;
    let target = match (target, fields.env.is_some()) {
        (Some(target), _) => target,
        // With only env=, the secret is not written to a file.
        (None, true) => String::new(),
        (None, false) => format!("/run/secrets/{}", base_name(&id)),
    };
    Ok(Some((target, Some(id))))
}

/// An ssh agent's target (numbered by `ssh_index` by default) and id (`default`).
fn ssh_placement(fields: &Fields, ssh_index: usize) -> Placement {
    if fields.deferred {
        return None;
    }
    let target = fields
        .target
        .clone()
        .flatten()
        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
    let id = fields
        .id
        .clone()
        .flatten()
        .unwrap_or_else(|| "default".to_string());
    Some((target, Some(id)))
}

/// A bind, cache or tmpfs mount's target (required) and id.
fn path_placement(kind: MountType, fields: &Fields) -> Result<Placement, String> {
    let target = match &fields.target {
        Some(Some(target)) if !target.is_empty() => target.clone(),
        Some(None) => return Ok(None),
        _ => {
            return Err(format!(
                "mount target is required for {} mounts",
                kind.as_str()
            ));
        }
    };
    if fields.deferred {
        return Ok(None);
    }
    // A cache mount without an id is identified by its target.
    let id = fields
        .id
        .clone()
        .flatten()
        .or_else(|| (kind == MountType::Cache).then(|| target.clone()));
    Ok(Some((target, id)))
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// Go's `strconv.ParseUint`: digits only, no sign.
fn parse_unsigned(value: &str, radix: u32) -> Option<u32> {
    if value.is_empty() || value.starts_with('+') {
        return None;
    }
    u32::from_str_radix(value, radix).ok()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "invalid value for {key}: {value:?} is not a boolean"
        )),
    }
}

fn parse_id(key: &str, value: &str) -> Result<u32, String> {
    parse_unsigned(value, 10).ok_or_else(|| format!("invalid {key} {value:?}: expected a number"))
}

/// Sizes as Docker writes them: `1024`, `64k`, `128m`, `1.5g`, `2GiB` (powers of 1024).
pub fn parse_size(value: &str) -> Result<u64, InvalidValue> {
    size_bytes(value).map_err(InvalidValue)
}

fn size_bytes(value: &str) -> Result<u64, String> {
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

    fn literal(text: &str) -> Result<Mount, InvalidValue> {
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
        assert!(by_target.read_only);
        let by_source = literal("type=secret,source=npmrc,target=/root/.npmrc").unwrap();
        assert_eq!(by_source.id.as_deref(), Some("npmrc"));
        let nested_id = literal("type=secret,id=a/b").unwrap();
        assert_eq!(nested_id.target, "/run/secrets/b");
        assert!(by_target.read_only);
        let by_source = literal("type=secret,source=npmrc,target=/root/.npmrc").unwrap();
        assert_eq!(by_source.id.as_deref(), Some("npmrc"));
        let nested_id = literal("type=secret,id=a/b").unwrap();
        assert_eq!(nested_id.target, "/run/secrets/b");
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
            (
                "type=secret,id=a,from=b",
                "unexpected key 'from' for mount type 'secret'",
            ),
            (
                "type=secret,id=a,sharing=locked",
                "unexpected key 'sharing'",
            ),
            (
                "type=bind,target=/x,mode=0644",
                "unexpected key 'mode' for mount type 'bind'",
            ),
            ("type=cache,target=/x,required", "unexpected key 'required'"),
            (
                "type=secret,source=a,id=b",
                "both source and id can't be set",
            ),
            ("type=secret,env=TOKEN", "one of source, target required"),
            (
                "from=$STAGE,target=/x",
                "doesn't support variable expansion",
            ),
            ("type=cahce,target=$DIR", "unsupported mount type"),
            ("type=cache,target=/x,uid=+1", "invalid uid"),
            ("type=cache,target=/x,ro=tRuE", "not a boolean"),
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
            assert!(error.0.contains(message), "{spec}: {error}");
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
