//! Our serde model of the OCI/Docker image config and history, the platform
//! type, and the Go formatting BuildKit's history texts are written with.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::syntax::go_quote;

/// `{}`: the value type of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The `config` object of an image configuration (Docker's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub user: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub working_dir: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "nullable"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub stop_signal: String,
    /// Set by CMD, as BuildKit does (a Windows-only meaning, kept for fidelity).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub args_escaped: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub on_build: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub shell: Vec<String>,
}

impl ImageConfig {
    /// The value of `key` in `Env`.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key` in `Env`: replaced in place when present, else appended.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }
}

/// Go image configs write `null` for empty lists and maps.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `Healthcheck` of the image config; durations in nanoseconds, 0 = inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    #[serde(default, deserialize_with = "nullable")]
    pub test: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_period: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_interval: u64,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub retries: u32,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_u32(value: &u32) -> bool {
    *value == 0
}

impl HealthConfig {
    /// BuildKit's history text: Go's `%q` of the struct pointer.
    pub fn go_text(&self) -> String {
        format!(
            "&{{{} {} {} {} {} {}}}",
            go_quote_list(&self.test),
            go_quote(&go_duration(self.interval)),
            go_quote(&go_duration(self.timeout)),
            go_quote(&go_duration(self.start_period)),
            go_quote(&go_duration(self.start_interval)),
            go_quote_rune(self.retries),
        )
    }
}

/// One entry of the image history. `created` is left to the exporter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// The comment BuildKit puts on every history entry it writes.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

impl History {
    pub(crate) fn buildkit(created_by: String, with_layer: bool) -> Self {
        History {
            created: None,
            created_by,
            author: None,
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: !with_layer,
        }
    }
}

/// An OCI platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of this machine, normalised the OCI way.
    pub fn host() -> Platform {
        let (architecture, variant) = normalise_arch(std::env::consts::ARCH, None);
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture,
            variant,
        }
    }

    /// Whether binaries for `self` run on `other`: same OS and architecture (the variant
    /// does not matter).
    pub fn runs_on(&self, other: &Platform) -> bool {
        self.os == other.os && self.architecture == other.architecture
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, `arm64` (OS defaults to linux).
    pub fn parse(text: &str) -> Result<Platform, String> {
        let lower = text.trim().to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
            return Err(format!(
                "invalid platform {text:?}: expected os/arch[/variant]"
            ));
        }
        const KNOWN_OS: &[&str] = &["linux", "windows", "darwin", "freebsd"];
        let (os, arch, variant) = match parts.as_slice() {
            [one] if KNOWN_OS.contains(one) => {
                let host = Platform::host();
                return Ok(Platform {
                    os: one.to_string(),
                    ..host
                });
            }
            [arch] => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => unreachable!("one to three parts"),
        };
        let os = if os == "macos" { "darwin" } else { os };
        let (architecture, variant) = normalise_arch(arch, variant);
        Ok(Platform {
            os: os.to_string(),
            architecture,
            variant,
        })
    }
}

fn normalise_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let variant = variant.map(str::to_string);
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8")),
        "i386" | "i486" | "i586" | "i686" | "x86" => ("386".into(), None),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => ("arm".into(), Some(variant.unwrap_or_else(|| "v7".into()))),
        other => (other.to_string(), variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| go_quote(item)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of an integer: a quoted rune (`'\x03'`, `'A'`).
pub fn go_quote_rune(value: u32) -> String {
    let Some(ch) = char::from_u32(value) else {
        return "'\u{FFFD}'".to_string();
    };
    let body = match ch {
        '\x07' => "\\a".to_string(),
        '\x08' => "\\b".to_string(),
        '\x0c' => "\\f".to_string(),
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        '\x0b' => "\\v".to_string(),
        '\'' => "\\'".to_string(),
        '\\' => "\\\\".to_string(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("\\x{:02x}", c as u32),
        c if c.is_control() => format!("\\u{:04x}", c as u32),
        c => c.to_string(),
    };
    format!("'{body}'")
}

/// Go's `time.Duration.String` of a number of nanoseconds.
pub fn go_duration(nanos: u64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", with_fraction(nanos, scale));
    }
    let seconds = nanos / 1_000_000_000;
    let fraction = nanos % 1_000_000_000;
    let (hours, minutes, secs) = (seconds / 3600, (seconds / 60) % 60, seconds % 60);
    let secs = with_fraction(secs * 1_000_000_000 + fraction, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{minutes}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / scale` with the remainder as decimals, trailing zeros removed.
fn with_fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rest = value % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let fraction = format!("{rest:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(300_000_000_000), "5m0s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500), "1.5µs");
    }

    #[test]
    fn go_runes() {
        assert_eq!(go_quote_rune(3), "'\\x03'");
        assert_eq!(go_quote_rune(0), "'\\x00'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(10), "'\\n'");
    }

    #[test]
    fn platforms() {
        assert_eq!(
            Platform::parse("linux/arm").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(Platform::parse("amd64").unwrap().to_string(), "linux/amd64");
        assert!(Platform::parse("linux//x").is_err());
    }

    #[test]
    fn config_reads_go_nulls() {
        let config: ImageConfig =
            serde_json::from_str(r#"{"Env":null,"Cmd":["sh"],"Labels":null,"OnBuild":null}"#)
                .unwrap();
        assert!(config.env.is_empty());
        assert_eq!(config.cmd, Some(vec!["sh".to_string()]));
    }
}
