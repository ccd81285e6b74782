//! What to check: BuildKit's `check=skip=A,B|all;error=true;experimental=A|all`, from the
//! `# check=` directive, a `--build-arg BUILDKIT_DOCKERFILE_CHECK=…` (which replaces
//! it), and `# check=` comments right above an instruction (which add to it there).

use std::collections::BTreeSet;

use super::Error;
use super::rules::Rule;

/// Which rules run and whether a finding fails the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub skip_all: bool,
    pub skip: BTreeSet<String>,
    pub experimental_all: bool,
    pub experimental: BTreeSet<String>,
    /// `error=true`: any finding fails the check and the build.
    pub error: bool,
}

impl Config {
    /// Parses `skip=…;error=…;experimental=…` (at most three options, as BuildKit).
    pub fn parse(text: &str) -> Result<Config, Error> {
        let text = text.trim();
        let mut config = Config::default();
        if text.is_empty() {
            return Ok(config);
        }
        for option in text.splitn(3, ';') {
            let Some((key, value)) = option.split_once('=') else {
                return Err(Error::Option {
                    option: option.to_string(),
                });
            };
            let value = value.trim();
            match key.trim() {
                "skip" if value == "all" => config.skip_all = true,
                "skip" => config.skip = names(value),
                "experimental" if value == "all" => config.experimental_all = true,
                "experimental" => config.experimental = names(value),
                "error" => config.error = parse_bool(option, value)?,
                other => {
                    return Err(Error::Option {
                        option: other.to_string(),
                    });
                }
            }
        }
        Ok(config)
    }

    /// Whether `rule` runs. Skipping never applies to experimental rules: they run only
    /// when asked for.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.contains(rule.name)
        } else {
            !self.skip_all && !self.skip.contains(rule.name)
        }
    }

    /// This configuration with the first `check=` among the comment lines above an
    /// instruction added (text after a space in its value is a remark; `error=` counts
    /// only for the whole file); unchanged when there is none or it does not parse.
    pub fn with_comments(&self, comments: &[String]) -> Config {
        let Some(value) = comments.iter().find_map(|comment| check_comment(comment)) else {
            return self.clone();
        };
        let value = value.split(' ').next().unwrap_or_default();
        let Ok(local) = Config::parse(value) else {
            return self.clone();
        };
        let mut merged = self.clone();
        merged.skip_all |= local.skip_all;
        merged.skip.extend(local.skip);
        merged.experimental_all |= local.experimental_all;
        merged.experimental.extend(local.experimental);
        merged
    }
}

fn names(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|name| name.trim().to_string())
        .collect()
}

/// Go's `strconv.ParseBool`.
fn parse_bool(option: &str, value: &str) -> Result<bool, Error> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(Error::Boolean {
            option: option.to_string(),
            value: value.to_string(),
        }),
    }
}

/// The value of a comment written as the directive `check=…`.
fn check_comment(comment: &str) -> Option<&str> {
    let (name, value) = comment.split_once('=')?;
    let name = name.trim();
    let is_word = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    (is_word && name.eq_ignore_ascii_case("check")).then(|| value.trim())
}
