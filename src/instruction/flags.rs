//! The `--flag` words of one instruction, checked against what it accepts.

use super::{Error, suggest};
use crate::syntax::{Flag, Span};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--name=value`, at most once. An empty value (`--name=`) counts as not given.
    Value,
    /// `--name`, `--name=true|false`, at most once.
    Bool,
    /// `--name=value`, repeatable.
    List,
}

/// One flag's value as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub value: String,
    pub span: Span,
}

/// The flags given on one instruction, after validation.
#[derive(Debug, Default)]
pub struct Flags {
    given: Vec<(&'static str, Given)>,
}

impl Flags {
    /// Checks `flags` against the accepted `(name, kind)` pairs.
    pub fn parse(flags: &[Flag], accepted: &[(&'static str, Kind)]) -> Result<Flags, Error> {
        let mut parsed = Flags::default();
        for flag in flags {
            let name = flag.name();
            let Some(&(known, kind)) = accepted.iter().find(|(known, _)| *known == name) else {
                return Err(Error::UnknownFlag {
                    flag: name.to_string(),
                    suggestion: suggest::closest(name, accepted.iter().map(|(n, _)| *n))
                        .map(str::to_string),
                    span: flag.span,
                });
            };
            if kind != Kind::List && parsed.given.iter().any(|(n, _)| *n == known) {
                return Err(Error::DuplicateFlag {
                    flag: known.to_string(),
                    span: flag.span,
                });
            }
            let value = match (kind, flag.value()) {
                (Kind::Bool, None) => "true".to_string(),
                (_, Some("")) if kind == Kind::Bool => {
                    return Err(Error::MissingFlagValue {
                        flag: known.to_string(),
                        span: flag.span,
                    });
                }
                // BuildKit treats `--from=` like an absent flag.
                (_, Some("")) => continue,
                (Kind::Bool, Some(value)) => match value.to_ascii_lowercase().as_str() {
                    "true" | "false" => value.to_ascii_lowercase(),
                    _ => {
                        return Err(Error::NotABoolean {
                            flag: known.to_string(),
                            value: value.to_string(),
                            span: flag.span,
                        });
                    }
                },
                (_, None) => {
                    return Err(Error::MissingFlagValue {
                        flag: known.to_string(),
                        span: flag.span,
                    });
                }
                (_, Some(value)) => value.to_string(),
            };
            parsed.given.push((
                known,
                Given {
                    value,
                    span: flag.span,
                },
            ));
        }
        Ok(parsed)
    }

    /// The value of a string flag, if given.
    pub fn string(&self, name: &str) -> Option<Given> {
        self.given
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, given)| given.clone())
    }

    /// The value of a boolean flag, if given.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|given| given.value == "true")
    }

    /// Every value of a repeatable flag, in order.
    pub fn list(&self, name: &str) -> Vec<Given> {
        self.given
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, given)| given.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(text: &str) -> Flag {
        Flag {
            text: text.to_string(),
            span: Span::default(),
        }
    }

    const ACCEPTED: &[(&str, Kind)] = &[
        ("from", Kind::Value),
        ("link", Kind::Bool),
        ("exclude", Kind::List),
    ];

    #[test]
    fn parses_each_kind() {
        let flags = Flags::parse(
            &[
                flag("--from=build"),
                flag("--link"),
                flag("--exclude=*.md"),
                flag("--exclude=tmp"),
            ],
            ACCEPTED,
        )
        .unwrap();
        assert_eq!(flags.string("from").unwrap().value, "build");
        assert_eq!(flags.bool("link"), Some(true));
        let excluded: Vec<_> = flags.list("exclude").into_iter().map(|g| g.value).collect();
        assert_eq!(excluded, ["*.md", "tmp"]);
    }

    #[test]
    fn rejects_bad_flags() {
        let unknown = Flags::parse(&[flag("--fro=x")], ACCEPTED).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "unknown flag: --fro (did you mean --from?)"
        );
        let duplicate = Flags::parse(&[flag("--from=a"), flag("--from=b")], ACCEPTED).unwrap_err();
        assert!(matches!(duplicate, Error::DuplicateFlag { .. }));
        let missing = Flags::parse(&[flag("--from")], ACCEPTED).unwrap_err();
        assert!(matches!(missing, Error::MissingFlagValue { .. }));
        let not_bool = Flags::parse(&[flag("--link=yes")], ACCEPTED).unwrap_err();
        assert!(matches!(not_bool, Error::NotABoolean { .. }));
        assert_eq!(
            Flags::parse(&[flag("--link=FALSE")], ACCEPTED)
                .unwrap()
                .bool("link"),
            Some(false)
        );
    }
}
