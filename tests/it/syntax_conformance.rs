//! Conformance of `kiln::syntax` against BuildKit's parser data (copied unchanged
//! into `testdata/parser/buildkit/`) and our own golden cases (`testdata/parser/kiln*`).
//!
//! `BLESS=1 cargo test --test syntax_conformance` rewrites the expected files of our
//! own cases only; upstream expectations are never written.

use std::fs;
use std::path::{Path, PathBuf};

use kiln::syntax::{self, Dockerfile, Node};
use serde_json::Value;

fn data_dir(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/parser")
        .join(relative)
}

fn case_dirs(relative: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(data_dir(relative))
        .unwrap_or_else(|err| panic!("reading {relative}: {err}"))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn case_name(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_json(relative: &str) -> Value {
    let path = data_dir(relative);
    let text = fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path:?}: {err}"));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{path:?}: {err}"))
}

fn blessing() -> bool {
    std::env::var_os("BLESS").is_some_and(|v| v == "1")
}

/// Fails once with every problem listed, so one run shows all broken cases.
fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} {what} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// A line-by-line comparison that is easy to read in a test log.
fn diff(expected: &str, actual: &str) -> String {
    let expected_lines: Vec<&str> = expected.lines().collect();
    let actual_lines: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for i in 0..expected_lines.len().max(actual_lines.len()) {
        let (e, a) = (expected_lines.get(i), actual_lines.get(i));
        if e != a {
            out.push_str(&format!(
                "  line {}:\n    expected: {}\n    actual:   {}\n",
                i + 1,
                e.unwrap_or(&"<none>"),
                a.unwrap_or(&"<none>")
            ));
        }
    }
    if out.is_empty() {
        out.push_str("  (differs only in line endings)\n");
    }
    out
}

fn parse_ok(source: &[u8]) -> Dockerfile {
    syntax::parse(source).unwrap_or_else(|err| panic!("parse failed: {err} at {:?}", err.span()))
}

fn lines_of(node: &Node) -> (usize, usize) {
    node.span.lines()
}

// ---------------------------------------------------------------------------
// Upstream file-driven cases
// ---------------------------------------------------------------------------

#[test]
fn buildkit_testfiles_dump_exactly() {
    let mut failures = Vec::new();
    let dirs = case_dirs("buildkit/testfiles");
    assert_eq!(dirs.len(), 33, "expected the 33 upstream cases");
    for dir in dirs {
        let name = case_name(&dir);
        let source = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let expected = fs::read(dir.join("result")).expect("result");
        let expected = String::from_utf8_lossy(&expected);
        match syntax::parse(&source) {
            Ok(file) => {
                let actual = syntax::dump(&file);
                if actual != expected {
                    failures.push(format!("{name}:\n{}", diff(&expected, &actual)));
                }
            }
            Err(err) => failures.push(format!("{name}: parse error: {err}")),
        }
    }
    assert_no_failures("upstream testfiles", &failures);
}

#[test]
fn buildkit_negative_testfiles_fail() {
    let mut failures = Vec::new();
    let dirs = case_dirs("buildkit/testfiles-negative");
    assert_eq!(dirs.len(), 4);
    for dir in dirs {
        let source = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        if let Ok(file) = syntax::parse(&source) {
            failures.push(format!(
                "{}: parsed but must fail:\n{}",
                case_name(&dir),
                syntax::dump(&file)
            ));
        }
    }
    assert_no_failures("upstream negative", &failures);
}

#[test]
fn buildkit_line_numbers() {
    let table = read_json("buildkit/transcribed/parser/parser-misc.json");
    let case = &table["line_numbers"];
    let source = fs::read(data_dir("buildkit/testfile-line/Dockerfile")).expect("Dockerfile");
    let file = parse_ok(&source);
    let children: Vec<(usize, usize)> = file.instructions.iter().map(lines_of).collect();
    let expected: Vec<(usize, usize)> = case["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|pair| {
            (
                pair[0].as_u64().expect("start") as usize,
                pair[1].as_u64().expect("end") as usize,
            )
        })
        .collect();
    assert_eq!(children, expected);
    let root = (
        children.first().map(|c| c.0).unwrap_or(0),
        children.last().map(|c| c.1).unwrap_or(0),
    );
    assert_eq!(root.0 as u64, case["root"][0].as_u64().unwrap());
    assert_eq!(root.1 as u64, case["root"][1].as_u64().unwrap());
}

// ---------------------------------------------------------------------------
// Transcribed upstream tables
// ---------------------------------------------------------------------------

/// A syntax/directive finder: `(reference, cmdline, line)`.
type Detector = fn(&[u8]) -> Option<(String, String, usize)>;

#[test]
fn transcribed_directives() {
    let table = read_json("buildkit/transcribed/parser/directives.json");
    let mut failures = Vec::new();
    for case in table["parse_all"].as_array().expect("parse_all") {
        let input = case["input"].as_str().expect("input");
        let actual: Vec<(String, String)> = syntax::scan_directives(input.as_bytes())
            .expect("directives")
            .into_iter()
            .map(|d| (d.name, d.value))
            .collect();
        let expected: Vec<(String, String)> = case["directives"]
            .as_array()
            .expect("directives")
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap().to_string(),
                    d["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if actual != expected {
            failures.push(format!("parse_all {input:?}: {actual:?} != {expected:?}"));
        }
    }
    let sections: [(&str, Detector); 2] = [
        ("detect_syntax", syntax::detect_syntax),
        ("parse_directive_check", |source| {
            syntax::parse_directive("check", source)
        }),
    ];
    for (section, detect) in sections {
        for case in table[section].as_array().expect(section) {
            let input = case["input"].as_str().expect("input");
            let found = detect(input.as_bytes());
            let ok = case["ok"].as_bool().expect("ok");
            if found.is_some() != ok {
                failures.push(format!("{section} {input:?}: found {found:?}, ok = {ok}"));
                continue;
            }
            let (reference, cmdline, line) = found.unwrap_or_default();
            if let Some(expected) = case.get("ref").and_then(Value::as_str)
                && reference != expected
            {
                failures.push(format!(
                    "{section} {input:?}: ref {reference:?} != {expected:?}"
                ));
            }
            if let Some(expected) = case.get("cmdline").and_then(Value::as_str)
                && cmdline != expected
            {
                failures.push(format!(
                    "{section} {input:?}: cmdline {cmdline:?} != {expected:?}"
                ));
            }
            if let Some(expected) = case.get("line").and_then(Value::as_u64)
                && line as u64 != expected
            {
                failures.push(format!("{section} {input:?}: line {line} != {expected}"));
            }
        }
    }
    assert_no_failures("directive", &failures);
}

#[test]
fn transcribed_heredoc_helpers() {
    let table = read_json("buildkit/transcribed/parser/heredoc-helpers.json");
    let mut failures = Vec::new();
    let words = &table["parse_heredoc_word"];
    for word in words["valid"].as_array().expect("valid") {
        let word = word.as_str().unwrap();
        match syntax::parse_heredoc_word(word) {
            Ok(Some(heredoc)) if heredoc.name == "EOF" => {}
            other => failures.push(format!("valid {word:?}: {other:?}")),
        }
    }
    for word in words["invalid"].as_array().expect("invalid") {
        let word = word.as_str().unwrap();
        if let Ok(found) = syntax::parse_heredoc_word(word) {
            failures.push(format!("invalid {word:?}: Ok({found:?})"));
        }
    }
    for word in words["not_heredoc"].as_array().expect("not_heredoc") {
        let word = word.as_str().unwrap();
        match syntax::parse_heredoc_word(word) {
            Ok(None) => {}
            other => failures.push(format!("not_heredoc {word:?}: {other:?}")),
        }
    }
    for case in table["heredocs_from_line"]["cases"]
        .as_array()
        .expect("cases")
    {
        let line = case["line"].as_str().unwrap();
        let names: Vec<String> = syntax::heredocs_from_line(line)
            .expect("heredocs_from_line")
            .into_iter()
            .map(|h| h.name)
            .collect();
        let expected: Vec<String> = case["heredoc_names"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        if names != expected {
            failures.push(format!(
                "heredocs_from_line {line:?}: {names:?} != {expected:?}"
            ));
        }
    }
    let json_form = &table["json_form_has_no_heredocs"];
    let file = parse_ok(json_form["dockerfile"].as_str().unwrap().as_bytes());
    for (i, node) in file.instructions.iter().enumerate().skip(1).take(3) {
        if !node.heredocs.is_empty() || !node.json {
            failures.push(format!("json_form child {i}: {node:?}"));
        }
    }
    let chomp = &table["chomp"];
    let chomped = syntax::chomp(chomp["input"].as_str().unwrap());
    if chomped != chomp["expected"].as_str().unwrap() {
        failures.push(format!("chomp: {chomped:?}"));
    }
    assert_no_failures("heredoc helper", &failures);
}

/// Heredocs of each instruction as JSON (`null` when none), like upstream's table.
fn heredocs_json(file: &Dockerfile) -> Vec<Value> {
    file.instructions
        .iter()
        .map(|node| {
            let holder = node.onbuild.as_deref().unwrap_or(node);
            if holder.heredocs.is_empty() {
                Value::Null
            } else {
                Value::Array(
                    holder
                        .heredocs
                        .iter()
                        .map(|h| {
                            serde_json::json!({
                                "name": h.name,
                                "file_descriptor": h.file_descriptor,
                                "expand": h.expand,
                                "chomp": h.chomp,
                                "content": h.content,
                            })
                        })
                        .collect(),
                )
            }
        })
        .collect()
}

#[test]
fn transcribed_heredoc_extract() {
    let source = fs::read(data_dir(
        "buildkit/transcribed/parser/heredoc-extract/Dockerfile",
    ))
    .expect("Dockerfile");
    let expected = read_json("buildkit/transcribed/parser/heredoc-extract/expected.json");
    let file = parse_ok(&source);
    let actual = heredocs_json(&file);
    let expected = expected["expected"].as_array().expect("expected");
    let mut failures = Vec::new();
    if actual.len() != expected.len() + 1 {
        failures.push(format!(
            "{} instructions, expected {}",
            actual.len(),
            expected.len() + 1
        ));
    }
    for (i, want) in expected.iter().enumerate() {
        let got = actual.get(i + 1).cloned().unwrap_or(Value::Null);
        if &got != want {
            failures.push(format!("instruction {}: {got} != {want}", i + 1));
        }
    }
    assert_no_failures("heredoc extract", &failures);
}

#[test]
fn transcribed_parser_misc() {
    let table = read_json("buildkit/transcribed/parser/parser-misc.json");
    let mut failures = Vec::new();

    for case in table["parse_words"]["cases"].as_array().expect("cases") {
        let input = case["input"].as_str().unwrap();
        let words = syntax::parse_words(input, '\\');
        let expected: Vec<&str> = case["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        if words != expected {
            failures.push(format!("parse_words {input:?}: {words:?} != {expected:?}"));
        }
    }

    let json = &table["json_arrays"];
    for case in json["valid"].as_array().expect("valid") {
        let input = case["input"].as_str().unwrap();
        let expected: Vec<&str> = case["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap())
            .collect();
        match syntax::parse(format!("CMD {input}").as_bytes()) {
            Ok(file) => {
                let node = &file.instructions[0];
                let args: Vec<&str> = node.args.iter().map(|a| a.value.as_str()).collect();
                if args != expected || !node.json {
                    failures.push(format!("json {input:?}: {args:?} json={}", node.json));
                }
            }
            Err(err) => failures.push(format!("json {input:?}: {err}")),
        }
    }
    for input in json["invalid_not_strings"].as_array().expect("invalid") {
        let input = input.as_str().unwrap();
        match syntax::parse(format!("CMD {input}").as_bytes()) {
            Err(err)
                if err
                    .message()
                    .contains("arrays must be comprised of strings only") => {}
            other => failures.push(format!("json {input:?} must fail: {other:?}")),
        }
    }

    let warnings = &table["empty_continuation_warnings"];
    let file = parse_ok(warnings["dockerfile"].as_str().unwrap().as_bytes());
    let count = warnings["warning_count"].as_u64().unwrap() as usize;
    if file.warnings.len() != count {
        failures.push(format!("warnings: {:?}", file.warnings));
    }
    for (warning, needles) in file
        .warnings
        .iter()
        .zip(warnings["warnings_contain"].as_array().unwrap())
    {
        for needle in needles.as_array().unwrap() {
            let needle = needle.as_str().unwrap();
            if !warning.message.contains(needle) {
                failures.push(format!("warning {:?} lacks {needle:?}", warning.message));
            }
        }
    }

    let too_long = &table["line_too_long"];
    let length = too_long["label_value_length"].as_u64().unwrap() as usize;
    let source = format!("\n\t\tFROM image\n\t\tLABEL test={}\n", "a".repeat(length));
    match syntax::parse(source.as_bytes()) {
        Err(err) if err.message() == too_long["error"].as_str().unwrap() => {
            if err.span().start.line != 3 {
                failures.push(format!("line too long reported at {:?}", err.span()));
            }
        }
        other => failures.push(format!("line too long: {:?}", other.map(|_| ()))),
    }

    for case in table["name_val"]["cases"].as_array().expect("cases") {
        let source = format!(
            "{} {}",
            case["instruction"].as_str().unwrap(),
            case["args"].as_str().unwrap()
        );
        match (syntax::parse(source.as_bytes()), case.get("error")) {
            (Ok(file), None) => {
                let args: Vec<&str> = file.instructions[0]
                    .args
                    .iter()
                    .map(|a| a.value.as_str())
                    .collect();
                let expected: Vec<&str> = case["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_str().unwrap())
                    .collect();
                if args != expected {
                    failures.push(format!("name_val {source:?}: {args:?} != {expected:?}"));
                }
            }
            (Err(err), Some(expected)) if err.message() == expected.as_str().unwrap() => {}
            (result, _) => failures.push(format!("name_val {source:?}: {result:?}")),
        }
    }
    assert_no_failures("parser misc", &failures);
}

// ---------------------------------------------------------------------------
// Our own golden cases
// ---------------------------------------------------------------------------

#[test]
fn kiln_golden_cases() {
    let bless = blessing();
    let mut failures = Vec::new();
    for dir in case_dirs("kiln") {
        let name = case_name(&dir);
        let source = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let file = match syntax::parse(&source) {
            Ok(file) => file,
            Err(err) => {
                failures.push(format!("{name}: parse error: {err} at {:?}", err.span()));
                continue;
            }
        };
        let actual = syntax::dump(&file);
        let result_path = dir.join("result");
        let heredocs_path = dir.join("heredocs.json");
        let heredocs = heredocs_json(&file);
        let has_heredocs = heredocs.iter().any(|h| !h.is_null());
        if bless {
            fs::write(&result_path, &actual).expect("write result");
            if has_heredocs {
                let pretty = serde_json::to_string_pretty(&heredocs).expect("json");
                fs::write(&heredocs_path, pretty + "\n").expect("write heredocs");
            }
            continue;
        }
        let expected = fs::read_to_string(&result_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!("{name}:\n{}", diff(&expected, &actual)));
        }
        if has_heredocs || heredocs_path.exists() {
            let expected: Value = fs::read_to_string(&heredocs_path)
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(Value::Null);
            if Value::Array(heredocs.clone()) != expected {
                failures.push(format!(
                    "{name}: heredocs differ:\n  expected: {expected}\n  actual:   {}",
                    Value::Array(heredocs)
                ));
            }
        }
    }
    assert_no_failures("kiln golden", &failures);
}

#[test]
fn kiln_negative_cases() {
    let bless = blessing();
    let mut failures = Vec::new();
    for dir in case_dirs("kiln-negative") {
        let name = case_name(&dir);
        let source = fs::read(dir.join("Dockerfile")).expect("Dockerfile");
        let actual = match syntax::parse(&source) {
            Ok(file) => {
                failures.push(format!(
                    "{name}: parsed but must fail:\n{}",
                    syntax::dump(&file)
                ));
                continue;
            }
            Err(err) => {
                let at = err.span().start;
                format!("{}:{}: {}\n", at.line, at.column, err)
            }
        };
        let error_path = dir.join("error");
        if bless {
            fs::write(&error_path, &actual).expect("write error");
            continue;
        }
        let expected = fs::read_to_string(&error_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{name}:\n  expected: {}  actual:   {}",
                expected, actual
            ));
        }
    }
    assert_no_failures("kiln negative", &failures);
}

#[test]
fn line_length_limit() {
    let ok = format!(
        "FROM a\nLABEL x={}\n",
        "a".repeat(65_535 - "LABEL x=".len())
    );
    let file = parse_ok(ok.as_bytes());
    assert_eq!(file.instructions.len(), 2);
    assert_eq!(file.instructions[1].args[1].value.len(), 65_535 - 8);

    let too_long = format!("FROM a\nRUN {}\n", "b".repeat(70_000));
    let err = syntax::parse(too_long.as_bytes()).expect_err("70,000-byte line");
    assert_eq!(
        err.to_string(),
        "dockerfile line greater than max allowed size of 65535"
    );
    assert_eq!(err.span().start.line, 2);

    // Exactly 65,536 bytes fails too, even on the last line without a newline.
    let boundary = format!("FROM a\nRUN {}", "c".repeat(65_536 - 4));
    assert!(syntax::parse(boundary.as_bytes()).is_err());
}

#[test]
fn spans_point_into_the_source() {
    let source = "\u{feff}# syntax=x\n# doc one\n# doc two\nRUN --mount=type=cache \\\n  echo \\\n  hi\nCOPY [\"a\", \"b\"] /c\n";
    let file = parse_ok(source.as_bytes());
    assert!(file.had_bom);
    assert_eq!(file.directives.len(), 1);
    let run = &file.instructions[0];
    assert_eq!(run.doc_comments, ["doc one", "doc two"]);
    assert_eq!(run.keyword_span.start.line, 4);
    assert_eq!(run.keyword_span.start.column, 1);
    assert_eq!(run.flags[0].span.start.column, 5);
    assert_eq!(run.flags[0].span.end.column, 23);
    let arg = &run.args[0];
    assert_eq!(arg.value, "echo   hi");
    assert_eq!((arg.span.start.line, arg.span.start.column), (5, 3));
    assert_eq!((arg.span.end.line, arg.span.end.column), (6, 5));
    assert_eq!(
        &source[arg.span.start.offset..arg.span.end.offset],
        "echo \\\n  hi"
    );
    assert_eq!(run.span.lines(), (4, 6));
    let copy = &file.instructions[1];
    assert!(!copy.json);
    // Not JSON: COPY's rest is not a JSON array (trailing text), so whitespace split.
    assert_eq!(copy.args.len(), 3);
    assert_eq!(
        &source[copy.args[0].span.start.offset..copy.args[0].span.end.offset],
        "[\"a\","
    );
}

#[test]
fn directives_comments_and_warnings_are_recorded() {
    let source = fs::read(data_dir("kiln/check-directive/Dockerfile")).expect("Dockerfile");
    let file = parse_ok(&source);
    let directives: Vec<(&str, &str)> = file
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str()))
        .collect();
    assert_eq!(
        directives,
        [
            ("syntax", "docker/dockerfile:1"),
            ("check", "skip=all;error=true")
        ]
    );
    assert_eq!(file.directives[1].span.start.line, 2);
    // The escape line comes after an ordinary comment, so it is only a comment.
    assert_eq!(file.escape, '\\');
    let comments: Vec<&str> = file.comments.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        comments,
        ["this comment ends directive scanning", "escape=`"]
    );
    assert_eq!(
        file.instructions[0].doc_comments,
        ["this comment ends directive scanning", "escape=`"]
    );

    let escaped = parse_ok(&fs::read(data_dir("kiln/escape-backtick/Dockerfile")).unwrap());
    assert_eq!(escaped.escape, '`');

    // Blank and comment lines skipped inside a continuation belong to it.
    let file = parse_ok(b"RUN a \\\n\n# inside\n  b \\\n\nFROM x\n");
    assert_eq!(file.instructions[0].span.lines(), (1, 6));
    assert_eq!(file.instructions[0].args[0].value, "a   b FROM x");
    assert_eq!(file.comments[0].text, "inside");
    assert_eq!(file.warnings.len(), 1);
    assert_eq!(file.warnings[0].span.lines(), (2, 2));
    let file = parse_ok(b"RUN a \\\n\n");
    assert_eq!(file.instructions[0].span.lines(), (1, 2));

    // Blank lines separate doc comments.
    let file = parse_ok(b"# far\n\n# near\nFROM x\n");
    assert_eq!(file.instructions[0].doc_comments, ["near"]);
}

#[test]
fn heredoc_spans_and_onbuild_nesting() {
    let source = "FROM x\nONBUILD RUN <<A <<-B\none\nA\n\ttwo\n\tB\nRUN echo\n";
    let file = parse_ok(source.as_bytes());
    let onbuild = &file.instructions[1];
    assert!(onbuild.heredocs.is_empty());
    let inner = onbuild.onbuild.as_deref().expect("wrapped RUN");
    assert_eq!(inner.keyword, "RUN");
    assert_eq!(inner.original, "RUN <<A <<-B");
    assert_eq!(inner.keyword_span.start.column, 9);
    let names: Vec<&str> = inner.heredocs.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(inner.heredocs[0].span.lines(), (3, 4));
    assert_eq!(inner.heredocs[1].span.lines(), (5, 6));
    assert_eq!(syntax::chomp(&inner.heredocs[1].content), "two\n");
    assert_eq!(onbuild.span.lines(), (2, 6));
    assert_eq!(file.instructions[2].span.lines(), (7, 7));
}

/// Deterministic pseudo-random mutations of every test file; `parse` must return.
#[test]
fn never_panics_on_mutated_input() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for relative in [
        "buildkit/testfiles",
        "buildkit/testfiles-negative",
        "kiln",
        "kiln-negative",
    ] {
        for dir in case_dirs(relative) {
            if let Ok(bytes) = fs::read(dir.join("Dockerfile")) {
                seeds.push(bytes);
            }
        }
    }
    seeds.push(
        fs::read(data_dir(
            "buildkit/transcribed/parser/heredoc-extract/Dockerfile",
        ))
        .unwrap(),
    );
    let interesting: &[u8] = b"\\`\n\r\t #<<-'\"[]{},=$-EOF\xff\xc3\xa0";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        // 64-bit LCG (Knuth's MMIX constants); the high bits are the random ones.
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize
    };
    let mut runs = 0;
    while runs < 20_000 {
        for seed in &seeds {
            let mut input = seed.clone();
            for _ in 0..1 + next() % 4 {
                if input.is_empty() {
                    input.push(interesting[next() % interesting.len()]);
                    continue;
                }
                let at = next() % input.len();
                match next() % 5 {
                    0 => input[at] = interesting[next() % interesting.len()],
                    1 => input.truncate(at),
                    2 => input.insert(at, interesting[next() % interesting.len()]),
                    3 => {
                        input.remove(at);
                    }
                    _ => input[at] ^= 1 << (next() % 8),
                }
            }
            let _ = syntax::parse(&input).map(|file| syntax::dump(&file));
            runs += 1;
        }
    }
}
