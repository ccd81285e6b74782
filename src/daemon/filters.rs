//! Docker's `filters` query parameter: a JSON object of filter names, each with its values
//! as a list (`{"label":["a=b"]}`) or, as docker 20.10's client sends them, as the keys of
//! an object (`{"label":{"a=b":true}}`). A name an endpoint does not know is a 400.

use std::collections::BTreeMap;

use serde_json::Value;

use super::http::Request;
use super::{DaemonError, Result};

/// The filters of one request, by name.
#[derive(Debug, Default)]
pub(super) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// The request's `filters`, every name among `known` (else Docker's 400).
    pub fn of(request: &Request, known: &[&str]) -> Result<Filters> {
        let text = request.param("filters").unwrap_or("");
        let filters = Filters::parse(text)?;
        if let Some(unknown) = filters
            .0
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            return Err(DaemonError::BadRequest(format!(
                "invalid filter '{unknown}'"
            )));
        }
        Ok(filters)
    }

    fn parse(text: &str) -> Result<Filters> {
        if text.trim().is_empty() {
            return Ok(Filters::default());
        }
        let bad = || DaemonError::BadRequest(format!("invalid filters: {text}"));
        let value: Value = serde_json::from_str(text).map_err(|_| bad())?;
        let Value::Object(object) = value else {
            return Err(bad());
        };
        let mut out = BTreeMap::new();
        for (name, values) in object {
            let values: Vec<String> = match values {
                Value::Array(list) => list
                    .into_iter()
                    .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
                    .collect::<Result<_>>()?,
                Value::Object(set) => set
                    .into_iter()
                    .filter(|(_, on)| on.as_bool() != Some(false))
                    .map(|(key, _)| key)
                    .collect(),
                _ => return Err(bad()),
            };
            out.insert(name, values);
        }
        Ok(Filters(out))
    }

    /// The values given for `name` (none when it is absent).
    pub fn values(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn has(&self, name: &str) -> bool {
        !self.values(name).is_empty()
    }

    /// A boolean filter (`dangling`, `all`): `None` when absent, a 400 for other words.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>> {
        let mut answer = None;
        for value in self.values(name) {
            answer = Some(match value.to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(DaemonError::BadRequest(format!(
                        "invalid filter '{name}={value}'"
                    )));
                }
            });
        }
        Ok(answer)
    }

    /// Whether `labels` pass the `label` filters (all of `key` or `key=value`) and the
    /// `label!` ones (none of them).
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        let has = |wanted: &String| match wanted.split_once('=') {
            Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
            None => labels.contains_key(wanted.as_str()),
        };
        self.values("label").iter().all(has) && !self.values("label!").iter().any(has)
    }

    /// Whether a thing created at `created` (seconds since the epoch) passes `until`: every
    /// value a time (seconds, RFC 3339, or a duration ago such as `10m`) it is older than.
    pub fn until_match(&self, created: i64, now: i64) -> Result<bool> {
        for value in self.values("until") {
            let limit = timestamp(value, now).ok_or_else(|| {
                DaemonError::BadRequest(format!("invalid filter 'until={value}'"))
            })?;
            if created >= limit {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Seconds since the epoch of a Docker time filter: `1700000000`, `2024-01-01T00:00:00Z`,
/// or a Go duration before `now` (`90s`, `10m`, `2h`, `1h30m`).
fn timestamp(text: &str, now: i64) -> Option<i64> {
    if let Ok(seconds) = text.split('.').next().unwrap_or("").parse::<i64>()
        && !text.is_empty()
    {
        return Some(seconds);
    }
    if let Some(seconds) = crate::image::parse_rfc3339(text) {
        return Some(seconds);
    }
    duration_seconds(text).map(|ago| now - ago)
}

/// A Go duration of hours, minutes and seconds, in whole seconds.
fn duration_seconds(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        // Checked: an absurd duration is a bad request, not a wrap into the future.
        total = total.checked_add(number.parse::<i64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && !text.is_empty()).then_some(total)
}

/// Go's `path.Match` for the patterns Docker's `reference` filter takes: `*` and `?`
/// match within one `/`-separated part, every other character itself.
pub(super) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // matched[j]: pattern[i..] matches text[j..], filled from the pattern's end: time
    // pattern × text, however many stars (backtracking would be exponential in them).
    let mut matched = vec![false; text.len() + 1];
    matched[text.len()] = true;
    for p in pattern.iter().rev() {
        let mut next = vec![false; text.len() + 1];
        for j in (0..=text.len()).rev() {
            let c = text.get(j);
            next[j] = match p {
                '*' => matched[j] || (c.is_some_and(|c| *c != '/') && next[j + 1]),
                '?' => c.is_some_and(|c| *c != '/') && matched[j + 1],
                literal => c == Some(literal) && matched[j + 1],
            };
        }
        matched = next;
    }
    matched[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_of_filters() {
        let list = Filters::parse(r#"{"label":["a=b","c"],"dangling":["false"]}"#).unwrap();
        let set =
            Filters::parse(r#"{"label":{"a=b":true,"c":true},"dangling":{"false":true}}"#).unwrap();
        for filters in [list, set] {
            assert_eq!(filters.values("label"), ["a=b", "c"]);
            assert_eq!(filters.boolean("dangling").unwrap(), Some(false));
            assert!(!filters.has("until"));
        }
        assert!(Filters::parse("[1]").is_err());
        assert!(Filters::parse(r#"{"label":7}"#).is_err());
        assert!(Filters::parse("").unwrap().0.is_empty());
    }

    #[test]
    fn labels_and_until() {
        let filters = Filters::parse(r#"{"label":["a=b","c"],"label!":["d"]}"#).unwrap();
        let mut labels: BTreeMap<String, String> =
            [("a".into(), "b".into()), ("c".into(), "x".into())].into();
        assert!(filters.labels_match(&labels));
        labels.insert("d".into(), "1".into());
        assert!(!filters.labels_match(&labels));
        labels.remove("d");
        labels.insert("a".into(), "z".into());
        assert!(!filters.labels_match(&labels));

        let until = Filters::parse(r#"{"until":["10m"]}"#).unwrap();
        assert!(until.until_match(1000, 2000).unwrap());
        assert!(!until.until_match(1500, 2000).unwrap());
        let absolute = Filters::parse(r#"{"until":["2001-09-09T01:46:40Z"]}"#).unwrap();
        assert!(absolute.until_match(999_999_999, 0).unwrap());
        assert!(!absolute.until_match(1_000_000_000, 0).unwrap());
        let bad = Filters::parse(r#"{"until":["soon"]}"#).unwrap();
        assert!(bad.until_match(0, 0).is_err());
    }

    #[test]
    fn reference_patterns() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("busy*", "library/busybox"));
        assert!(glob_match("*/app", "team/app"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(!glob_match("busybox", "busybox:latest"));
        assert!(glob_match("**b*x", "busybox"));
        assert!(!glob_match("b*?*/", "busybox"));
        // Stars cost time in proportion, not exponentially.
        let stars = format!("{}x", "*".repeat(64));
        assert!(!glob_match(&stars, &"a".repeat(64)));
        assert!(glob_match(&stars, &format!("{}x", "a".repeat(64))));
    }

    #[test]
    fn an_absurd_duration_is_refused_not_wrapped() {
        assert_eq!(duration_seconds("1h30m"), Some(5400));
        assert_eq!(duration_seconds("9999999999999999h"), None);
        assert_eq!(duration_seconds(""), None);
    }
}
