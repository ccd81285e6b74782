//! moby/patternmatcher v0.6.1 conformance: every row of the vectors in
//! `testdata/patternmatcher/` (see its SOURCE.md), through both the single-call API and the
//! walk API that passes parent results down.

use std::fs;
use std::path::PathBuf;

use kiln::gocompat::go_path_clean;
use kiln::source::{Error, IgnoreFile, MatchInfo, MatchType, PatternMatcher};

fn data(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/patternmatcher")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split('\t').collect())
        .collect()
}

/// Matches `path` through the walk API: each ancestor first, passing its `MatchInfo` down.
fn walk_matches(matcher: &PatternMatcher, path: &str) -> Result<bool, Error> {
    let cleaned = go_path_clean(path);
    if cleaned == "." {
        return Ok(false);
    }
    let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() || cleaned.starts_with('/') {
        return matcher
            .matches_using_parent_results(&cleaned, &MatchInfo::default())
            .map(|(m, _)| m);
    }
    let mut info = MatchInfo::default();
    let mut result = false;
    for depth in 1..=parts.len() {
        let prefix = parts[..depth].join("/");
        let (matched, next) = matcher.matches_using_parent_results(&prefix, &info)?;
        result = matched;
        info = next;
    }
    Ok(result)
}

/// Checks one case; returns a failure description or None.
fn check(patterns: &[&str], path: &str, want: bool, error: &str) -> Option<String> {
    let label = format!("patterns {patterns:?} path {path:?}");
    let matcher = match PatternMatcher::new(patterns.iter().copied()) {
        Ok(m) => m,
        Err(e) => {
            return match (error, &e) {
                ("error", _) | ("ErrBadPattern", Error::BadPattern { .. }) => None,
                _ => Some(format!("{label}: new failed unexpectedly: {e:?}")),
            };
        }
    };
    let single = matcher.matches(path);
    let walked = walk_matches(&matcher, path);
    let mut problems = Vec::new();
    for (api, got) in [("matches", &single), ("walk", &walked)] {
        match (error, got) {
            ("", Ok(m)) if *m == want => {}
            ("", other) => problems.push(format!("{api}: want {want}, got {other:?}")),
            ("error", Err(_)) | ("ErrBadPattern", Err(Error::BadPattern { .. })) => {}
            (_, other) => problems.push(format!("{api}: want {error}, got {other:?}")),
        }
    }
    // The match-time failure must repeat, not crash.
    if !error.is_empty() && matcher.matches(path).is_ok() {
        problems.push("second call did not fail again".to_string());
    }
    (!problems.is_empty()).then(|| format!("{label}: {}", problems.join("; ")))
}

#[test]
fn single_pattern_cases() {
    let text = data("cases.tsv");
    let mut failures = Vec::new();
    let mut run = 0;
    for row in rows(&text) {
        assert_eq!(row.len(), 7, "bad row {row:?}");
        let (pattern, path, want, error, os) = (row[0], row[1], row[2] == "true", row[3], row[5]);
        assert!(os == "all" || os == "unix", "os {os}");
        run += 1;
        if let Some(f) = check(&[pattern], path, want, error) {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 128);
}

#[test]
fn multi_pattern_cases() {
    let text = data("multi-cases.tsv");
    let mut failures = Vec::new();
    let mut run = 0;
    for row in rows(&text) {
        let (path, want, error) = (row[0], row[1] == "true", row[2]);
        let patterns = &row[6..];
        run += 1;
        if let Some(f) = check(patterns, path, want, error) {
            failures.push(f);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 10);
}

/// Optional upstream detail: our matcher copies moby's exact/prefix/suffix/regex strategy.
#[test]
fn compile_cases() {
    let text = data("compile-cases.tsv");
    let mut failures = Vec::new();
    let mut run = 0;
    for row in rows(&text) {
        let (pattern, kind, regex) = (row[0], row[1], row.get(2).copied().unwrap_or(""));
        run += 1;
        let info = &PatternMatcher::new([pattern]).unwrap().patterns()[0];
        let want_kind = match kind {
            "exact" => MatchType::Exact,
            "prefix" => MatchType::Prefix,
            "suffix" => MatchType::Suffix,
            _ => MatchType::Regex,
        };
        let want_regex = (!regex.is_empty()).then(|| regex.to_string());
        if info.match_type != want_kind || info.regex != want_regex {
            failures.push(format!("{pattern}: want {kind} {regex:?}, got {info:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing rows:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(run, 21);
}

#[test]
fn ignorefile_read_all() {
    let input = data("ignorefile/input.dockerignore");
    let expected: Vec<String> = data("ignorefile/expected-patterns.txt")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(IgnoreFile::parse(&input), expected);
    assert!(IgnoreFile::parse("").is_empty());
    // The lone `!` survives parsing and is rejected by the matcher.
    assert!(matches!(
        PatternMatcher::new(IgnoreFile::parse(&input)),
        Err(Error::IllegalExclusion)
    ));
}

#[test]
fn ignorefile_details() {
    let text = "\u{feff}# comment\r\n  # not a comment\n/abs/./x/\n!  /keep\n\n";
    assert_eq!(
        IgnoreFile::parse(text),
        vec!["# not a comment", "abs/x", "!keep"]
    );
}

#[test]
fn no_panic_on_odd_patterns() {
    for pattern in [
        "[[]",
        "[a&&b]",
        "[~~]",
        "a^b",
        "[[:alpha:]]",
        "\\d",
        "[\u{10ffff}-\u{0}]",
        "é[é-ë]",
        "**/**/**",
        "[\\",
        "[a-",
        "[^]",
        "***",
        "/",
        "!/",
        "..",
        "!..",
    ] {
        if let Ok(m) = PatternMatcher::new([pattern]) {
            for path in ["", ".", "a", "a/b", "[", "é", "/", "&", "~"] {
                let _ = m.matches(path);
                let _ = m.matches_using_parent_results(path, &MatchInfo::default());
            }
        }
    }
    let m = PatternMatcher::new(["[[]", "[a&&b]", "[~]"]).unwrap();
    assert!(m.matches("[").unwrap());
    assert!(m.matches("&").unwrap());
    assert!(m.matches("~").unwrap());
    assert!(!m.matches("x").unwrap());
}

#[test]
fn posix_classes_and_unicode_in_classes() {
    let m = PatternMatcher::new(["é[[:digit:]]x", "[[:alpha:]ü]z"]).unwrap();
    assert!(m.matches("é7x").unwrap());
    assert!(!m.matches("éax").unwrap());
    assert!(m.matches("üz").unwrap());
}
