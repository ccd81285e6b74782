//! BuildKit shell-lexer conformance: runs `testdata/shell/buildkit/*` exactly as
//! upstream's `lex_test.go` reads them (see `testdata/shell/buildkit/SOURCE.md`),
//! plus kiln's own backtick-escape table. Each test reports every failing line
//! at once and checks how many cases ran, so a reader bug cannot skip cases.

use std::collections::{BTreeMap, BTreeSet};

use kiln::shell::{CaseInsensitiveEnv, Env, Lexer};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/shell");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DATA}/{name}")).expect("read test data")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn report(what: &str, failures: &[String], ran: usize, want: usize) {
    assert!(
        failures.is_empty(),
        "{what}: {} of {ran} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(ran, want, "{what}: number of cases run");
}

/// Checks one single-word case; returns a failure description.
fn check_word(lx: &Lexer, env: &dyn Env, input: &str, expected: &str) -> Option<String> {
    match (lx.process_word(input, env), expected) {
        (Err(_), "error") => None,
        (Ok(got), "error") => Some(format!("{input:?}: expected error, got {:?}", got.value)),
        (Ok(got), want) if got.value == want => None,
        (Ok(got), want) => Some(format!("{input:?}: expected {want:?}, got {:?}", got.value)),
        (Err(e), want) => Some(format!("{input:?}: expected {want:?}, got error {e}")),
    }
}

/// Runs envVarTest for the given platform tags; returns (failures, cases run).
fn run_env_var_test(platforms: &[&str], env: &dyn Env) -> (Vec<String>, usize) {
    let lx = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut ran = 0;
    for (i, raw) in read("buildkit/envVarTest").lines().enumerate() {
        if raw.starts_with('#') {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        let [platform, input, expected] = fields[..] else {
            failures.push(format!("line {}: not 3 fields: {raw:?}", i + 1));
            continue;
        };
        if !["A", "U", "W"].contains(&platform) {
            failures.push(format!("line {}: bad platform {platform:?}", i + 1));
            continue;
        }
        if !platforms.contains(&platform) {
            continue;
        }
        ran += 1;
        if let Some(f) = check_word(&lx, env, input, expected) {
            failures.push(format!("line {}: {f}", i + 1));
        }
    }
    (failures, ran)
}

fn env_var_test_env() -> Vec<(String, String)> {
    pairs(&[
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ])
}

#[test]
fn buildkit_env_var_test_unix() {
    let env = env_var_test_env();
    let (failures, ran) = run_env_var_test(&["A", "U"], &env);
    report("envVarTest (A+U)", &failures, ran, 228);
}

#[test]
fn buildkit_env_var_test_windows_case_insensitive() {
    let env = env_var_test_env();
    let (failures, ran) = run_env_var_test(&["A", "W"], &CaseInsensitiveEnv(&env));
    report("envVarTest (A+W, case-insensitive)", &failures, ran, 228);
}

#[test]
fn buildkit_words_test() {
    let lx = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut env_lines = 0;
    for (i, line) in read("buildkit/wordsTest").lines().enumerate() {
        let n = i + 1;
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start_matches(' ');
            match rest.split_once('=') {
                Some((k, v)) => env.push((k.to_string(), v.to_string())),
                None => failures.push(format!("line {n}: ENV without '=': {line:?}")),
            }
            env_lines += 1;
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        let [input, expected] = parts[..] else {
            failures.push(format!("line {n}: not exactly one '|': {line:?}"));
            continue;
        };
        let input = input.trim();
        let expected = expected.trim_start_matches(' ');
        ran += 1;
        match (lx.process_words(input, &env), expected) {
            (Err(_), "error") => {}
            (Ok(got), "error") => {
                failures.push(format!("line {n}: {input:?}: expected error, got {got:?}"))
            }
            (Ok(got), want) => {
                let want: Vec<&str> = want.split(',').collect();
                if got != want {
                    failures.push(format!(
                        "line {n}: {input:?}: expected {want:?}, got {got:?}"
                    ));
                }
            }
            (Err(e), want) => failures.push(format!(
                "line {n}: {input:?}: expected {want:?}, got error {e}"
            )),
        }
    }
    assert_eq!(env_lines, 4, "ENV lines read");
    report("wordsTest", &failures, ran, 24);
}

fn string_set(v: &Value) -> Option<BTreeSet<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn buildkit_process_word_cases() {
    let lx = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut ran = 0;
    for (i, line) in read("buildkit/process-word-cases.jsonl")
        .lines()
        .enumerate()
    {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let case: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("line {n}: bad JSON: {e}"));
                continue;
            }
        };
        ran += 1;
        let input = case["input"].as_str().unwrap_or_default();
        let env: BTreeMap<String, String> = case["env"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let result = lx.process_word(input, &env);
        if case["error"].as_bool() == Some(true) {
            match result {
                Ok(got) => failures.push(format!(
                    "line {n}: {input:?}: expected error, got {:?}",
                    got.value
                )),
                Err(e) => {
                    if let Some(want) = case["error_contains"].as_str()
                        && !e.message.contains(want)
                    {
                        failures.push(format!("line {n}: {input:?}: error {e:?} lacks {want:?}"));
                    }
                }
            }
            continue;
        }
        let got = match result {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("line {n}: {input:?}: unexpected error {e}"));
                continue;
            }
        };
        if Some(got.value.as_str()) != case["expected"].as_str() {
            failures.push(format!(
                "line {n}: {input:?}: expected {}, got {:?}",
                case["expected"], got.value
            ));
        }
        for (key, have) in [("matched", &got.matched), ("unmatched", &got.unmatched)] {
            if let Some(want) = string_set(&case[key])
                && &want != have
            {
                failures.push(format!("line {n}: {input:?}: {key} {want:?}, got {have:?}"));
            }
        }
    }
    report("process-word-cases.jsonl", &failures, ran, 56);
}

#[test]
fn kiln_escape_backtick() {
    let lx = Lexer::new('`');
    let env = pairs(&[("PWD", "/home"), ("EMPTY", ""), ("SP", "a b")]);
    let mut failures = Vec::new();
    let mut ran = 0;
    for (i, line) in read("kiln-escape-backtick.tsv").lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some((input, expected)) = line.split_once('\t') else {
            failures.push(format!("line {}: no tab: {line:?}", i + 1));
            continue;
        };
        ran += 1;
        if let Some(f) = check_word(&lx, &env, input, expected) {
            failures.push(format!("line {}: {f}", i + 1));
        }
    }
    report("kiln-escape-backtick.tsv", &failures, ran, 28);
}
