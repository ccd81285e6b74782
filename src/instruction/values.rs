//! Small value grammars used by instruction flags: Go durations, `--chmod` modes,
//! `--checksum` digests and stage names.

use std::time::Duration;

use super::error::InvalidValue;

/// Parses a Go duration string (`30s`, `1m30s`, `1.5h`, `250ms`, `0`) exactly as
/// Go's `time.ParseDuration` does, rounding included, so image configs match
/// BuildKit's byte for byte.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidValue> {
    duration(text).map_err(InvalidValue)
}

fn duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {text:?}");
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let body = text.strip_prefix('+').unwrap_or(text);
    if body.starts_with('-') {
        return Err(format!("duration {text:?} cannot be negative"));
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let integer_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (integer, tail) = rest.split_at(integer_end);
        let (fraction, tail) = match tail.strip_prefix('.') {
            Some(after_dot) => {
                let end = after_dot
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_dot.len());
                after_dot.split_at(end)
            }
            None => ("", tail),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(bad());
        }
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let nanos_per_unit: u64 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(bad()),
        };
        let whole: u64 = if integer.is_empty() {
            0
        } else {
            integer.parse().map_err(|_| bad())?
        };
        let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(bad)?;
        // Go keeps at most the fraction digits that fit, then scales in floating
        // point: the same arithmetic gives the same rounding.
        let (mut digits, mut scale) = (0u64, 1f64);
        for digit in fraction.bytes() {
            if digits > (i64::MAX as u64) / 10 {
                break;
            }
            digits = digits * 10 + u64::from(digit - b'0');
            scale *= 10.0;
        }
        nanos = nanos
            .checked_add((digits as f64 * (nanos_per_unit as f64 / scale)) as u64)
            .ok_or_else(bad)?;
        total = total.checked_add(nanos).ok_or_else(bad)?;
        if total > i64::MAX as u64 {
            return Err(bad());
        }
        rest = tail;
    }
    Ok(Duration::from_nanos(total))
}

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Chmod {
    /// `0755`, `644`.
    Octal(u32),
    /// `u=rwX,go=rX`, `+x`: applied per file, as `chmod(1)` would.
    Symbolic(String),
}

impl Chmod {
    pub fn parse(text: &str) -> Result<Chmod, InvalidValue> {
        Chmod::parse_text(text).map_err(InvalidValue)
    }

    fn parse_text(text: &str) -> Result<Chmod, String> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(text, 8) {
                Ok(mode) if mode <= 0o7777 => Ok(Chmod::Octal(mode)),
                _ => Err(format!("invalid chmod value {text:?}: not an octal mode")),
            };
        }
        for clause in text.split(',') {
            let ops_start = clause.find(['+', '-', '=']).ok_or_else(|| {
                format!(
                    "invalid chmod value {text:?}: expected an octal mode or [ugoa]*[+-=][rwxXst]*"
                )
            })?;
            let (who, ops) = clause.split_at(ops_start);
            if !who.chars().all(|c| "ugoa".contains(c)) {
                return Err(format!(
                    "invalid chmod value {text:?}: unknown class in {clause:?}"
                ));
            }
            if !ops.chars().all(|c| "+-=rwxXstugo".contains(c)) {
                return Err(format!(
                    "invalid chmod value {text:?}: unknown permission in {clause:?}"
                ));
            }
        }
        Ok(Chmod::Symbolic(text.to_string()))
    }

    /// The mode a file with `current` permission bits gets.
    pub fn apply(&self, current: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(mode) => *mode,
            Chmod::Symbolic(spec) => spec.split(',').fold(current & 0o7777, |mode, clause| {
                apply_clause(mode, clause, is_dir)
            }),
        }
    }
}

fn apply_clause(mode: u32, clause: &str, is_dir: bool) -> u32 {
    let ops_start = clause.find(['+', '-', '=']).unwrap_or(clause.len());
    let (who, mut ops) = clause.split_at(ops_start);
    let mut who_mask = 0;
    for class in who.chars() {
        who_mask |= match class {
            'u' => 0o4700,
            'g' => 0o2070,
            'o' => 0o0007,
            _ => 0o7777,
        };
    }
    if who_mask == 0 {
        who_mask = 0o7777;
    }
    let mut mode = mode;
    while let Some(op) = ops.chars().next() {
        ops = &ops[op.len_utf8()..];
        let perms_end = ops.find(['+', '-', '=']).unwrap_or(ops.len());
        let (perms, rest) = ops.split_at(perms_end);
        ops = rest;
        let mut bits = 0;
        for perm in perms.chars() {
            bits |= match perm {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                's' => 0o6000,
                't' => 0o1000,
                'u' => copy_class((mode >> 6) & 7),
                'g' => copy_class((mode >> 3) & 7),
                'o' => copy_class(mode & 7),
                _ => 0,
            };
        }
        let bits = bits & who_mask;
        mode = match op {
            '+' => mode | bits,
            '-' => mode & !bits,
            _ => (mode & !who_mask) | bits,
        };
    }
    mode
}

fn copy_class(bits: u32) -> u32 {
    bits * 0o111
}

/// A `--checksum` value: `sha256:<64 lower-case hex>` (sha384/sha512 by length) for
/// HTTP sources, or a commit SHA (prefix) of lower-case hex for git sources.
pub fn parse_checksum(text: &str) -> Result<(), InvalidValue> {
    checksum(text).map_err(InvalidValue)
}

fn checksum(text: &str) -> Result<(), String> {
    let lower_hex = |hex: &str| {
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let Some((algorithm, hex)) = text.split_once(':') else {
        if !text.is_empty() && text.len() <= 64 && lower_hex(text) {
            return Ok(());
        }
        return Err(format!(
            "invalid checksum {text:?}: expected sha256:<hex> or a git commit SHA"
        ));
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err(format!("unsupported checksum algorithm {algorithm:?}")),
    };
    if hex.len() != expected_len || !lower_hex(hex) {
        return Err(format!(
            "invalid checksum {text:?}: expected {expected_len} lower-case hex digits"
        ));
    }
    Ok(())
}

/// Stage names: `[a-z][a-z0-9-_.]*`, after lower-casing.
pub fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(
            parse_duration("1.001s").unwrap(),
            Duration::from_nanos(1_001_000_000)
        );
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("2562047h").unwrap(),
            Duration::from_secs(2562047 * 3600)
        );
        for bad in ["", "5", "s", "5x", "-1s", "1..2s", ".s", "9999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn chmod_parse_and_apply() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("0644").unwrap(), Chmod::Octal(0o644));
        assert!(Chmod::parse("999").is_err());
        assert!(Chmod::parse("z+x").is_err());
        assert!(Chmod::parse("u+q").is_err());
        let plus_x = Chmod::parse("+x").unwrap();
        assert_eq!(plus_x.apply(0o644, false), 0o755);
        let spec = Chmod::parse("u=rwX,go=rX").unwrap();
        assert_eq!(spec.apply(0o600, false), 0o644);
        assert_eq!(spec.apply(0o700, true), 0o755);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o777, false), 0o755);
        assert_eq!(Chmod::parse("u=rw").unwrap().apply(0o4755, false), 0o655);
        assert_eq!(Chmod::parse("+t").unwrap().apply(0o755, true), 0o1755);
    }

    #[test]
    fn checksums_and_names() {
        assert!(parse_checksum(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(parse_checksum("sha256:abc").is_err());
        assert!(parse_checksum(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(parse_checksum("8f1c2d").is_ok());
        assert!(parse_checksum("main").is_err());
        assert!(parse_checksum("md5:abc").is_err());
        assert!(valid_stage_name("build-2.x_y"));
        assert!(!valid_stage_name("2build"));
        assert!(!valid_stage_name("a/b"));
    }
}
