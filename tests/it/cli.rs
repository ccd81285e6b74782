//! The command line end to end: `kiln build --call check|targets|outline`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use crate::harness::{TempRoot, kiln_command, text};

fn kiln(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = kiln_command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln starts");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("stdin written");
    drop(input);
    child.wait_with_output().expect("kiln finishes")
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello")
}

/// A scratch directory holding one Dockerfile.
fn context_with(name: &str, dockerfile: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-cli-{}-{name}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir
}

#[test]
fn check_accepts_the_example() {
    let out = kiln(
        &["build", "--call", "check", example().to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("no problems found"));
}

#[test]
fn targets_lists_stages_with_descriptions() {
    let out = kiln(
        &["build", "--call", "targets", example().to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("INDEX") && lines[0].contains("DESCRIPTION"));
    assert!(lines[1].starts_with("0 ") && lines[1].contains("assets"));
    assert!(lines[1].ends_with("   collects the static files of the site."));
    assert!(lines[2].contains("release (default)") && lines[2].contains("scratch"));
}

#[test]
fn outline_shows_used_arguments_and_defaults() {
    let out = kiln(
        &["build", "--call", "outline", example().to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("TARGET:      release\n"), "{stdout}");
    let version = stdout
        .lines()
        .find(|l| l.contains("VERSION"))
        .expect(&stdout);
    assert!(
        version.starts_with("release") && version.contains("1.0"),
        "{version}"
    );
    assert!(
        version.ends_with("is the site version, recorded in a label."),
        "{version}"
    );
    let email = stdout
        .lines()
        .find(|l| l.contains("MAINTAINER_EMAIL"))
        .expect(&stdout);
    assert!(email.contains("team@example.com") && email.ends_with("is who to write to."));
}

#[test]
fn outline_of_another_target_and_a_mistyped_one() {
    let dir = context_with(
        "outline",
        "ARG GO=1.22\nFROM golang:$GO AS build\nARG FLAGS=-v\nRUN go build $FLAGS\nFROM scratch AS final\nCOPY --from=build /app /app\n",
    );
    let out = kiln(
        &[
            "build",
            "--call",
            "outline",
            "--target",
            "build",
            dir.to_str().unwrap(),
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains("(global)") && stdout.contains("GO") && stdout.contains("1.22"),
        "{stdout}"
    );
    assert!(
        stdout.contains("FLAGS") && stdout.contains("-v"),
        "{stdout}"
    );

    let out = kiln(
        &[
            "build",
            "--call",
            "outline",
            "--target",
            "biuld",
            dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean build?"),
        "{}",
        text(&out.stderr)
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_reports_every_problem_with_excerpts() {
    let dir = context_with(
        "problems",
        "FROM scratch\nCOPY a /a\nFNTRYPOINT [\"/a\"]\nRUN --mont=x true\n",
    );
    let out = kiln(&["build", "--check", dir.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "error: Dockerfile:3:1: unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("   3 | >>> FNTRYPOINT [\"/a\"]\n     |     ^^^^^^^^^^\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: Dockerfile:4:5: unknown flag: --mont (did you mean --mount?)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Check complete: 2 problems found."),
        "{stderr}"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn parse_errors_name_line_and_column() {
    let out = kiln(
        &["build", "--call", "check", "-f", "-", "."],
        Some("FROM scratch\nRUN <<EOF\necho never closed\n"),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error: Dockerfile:2:"), "{stderr}");
    assert!(stderr.contains("heredoc"), "{stderr}");
}

#[test]
fn dockerfile_from_stdin_context() {
    let out = kiln(
        &["build", "--call", "targets", "-"],
        Some("FROM scratch AS only\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("only (default)"));
}

#[test]
fn lowercase_dockerfile_is_found() {
    let dir = std::env::temp_dir().join(format!("kiln-cli-{}-lower", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("dockerfile"), "FROM scratch\n").unwrap();
    let out = kiln(&["build", "--check", dir.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_dockerfile_and_binary_garbage() {
    let out = kiln(&["build", "--check", "/nonexistent/kiln/context"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("/nonexistent/kiln/context"));

    // Arbitrary bytes never panic: an error with a position, exit 2.
    let out = kiln(
        &["build", "--check", "-"],
        Some("\u{1}\u{0}FROM\u{7f} [1,2]\n\\"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("panicked"));
}

#[test]
fn a_dockerfile_on_stdin_builds_with_an_empty_context() {
    // `kiln build -`: the Dockerfile from stdin, no context. (Builds that mount or run
    // need root; they are tested in `build`.)
    let root = TempRoot::new();
    let root_arg = root.path().to_str().unwrap();
    let out = kiln(
        &["--root", root_arg, "build", "-q", "-"],
        Some("FROM scratch\nLABEL from=stdin\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().starts_with("sha256:"));
    let out = kiln(
        &["--root", root_arg, "build", "-"],
        Some("FROM scratch\nCOPY a.txt /\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not found in build context"),
        "{}",
        text(&out.stderr)
    );
    // A bad --secret value is a usage error.
    let out = kiln(
        &["--root", root_arg, "build", "--secret", "src=/x", "-"],
        Some("FROM scratch\n"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("id= is required"));
}

#[test]
fn every_buildkit_positive_case_passes_the_front_end() {
    // BuildKit's parser cases test the parser alone: eight of them hold lines that
    // BuildKit's own instruction layer rejects too (unknown flags, bare HEALTHCHECK,
    // instructions with no FROM), and two hold words its dispatch cannot expand (an
    // unterminated quote), which `--call check` finds by planning. `--call check` must
    // reject exactly those, with BuildKit's reasons; every other case must pass.
    const NO_FROM: &[&str] = &["no build stage in current context"];
    let expected_rejections: &[(&str, &[&str])] = &[
        (
            "flags",
            &["3:6: unknown flag: --user", "4:6: unknown flag: --doit"],
        ),
        (
            "health",
            &[
                "4:1: HEALTHCHECK requires at least one argument",
                "7:13: Missing command after HEALTHCHECK CMD",
                "10:13: unknown type \"CONNECT\" in HEALTHCHECK",
            ],
        ),
        ("json", NO_FROM),
        (
            "escapes",
            &[
                r#"6:1: failed to process "\\conf\\\\\"": unexpected end of statement while looking for matching double-quote"#,
            ],
        ),
        (
            "env",
            &[
                r#"12:1: failed to process "'a\\'b'": unexpected end of statement while looking for matching single-quote"#,
            ],
        ),
        ("jeztah-invalid-json-json-inside-string", NO_FROM),
        ("jeztah-invalid-json-json-inside-string-double", NO_FROM),
        ("jeztah-invalid-json-single-quotes", NO_FROM),
        ("jeztah-invalid-json-unterminated-bracket", NO_FROM),
        ("jeztah-invalid-json-unterminated-string", NO_FROM),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/parser/buildkit/testfiles");
    let mut failures = Vec::new();
    let mut cases = 0;
    for entry in fs::read_dir(&root).expect("testfiles") {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        cases += 1;
        let out = kiln(&["build", "--check", dir.to_str().unwrap()], None);
        let stderr = text(&out.stderr);
        let expected = expected_rejections.iter().find(|(case, _)| *case == name);
        let as_expected = match expected {
            Some((_, messages)) => {
                out.status.code() == Some(2) && messages.iter().all(|m| stderr.contains(m))
            }
            None => out.status.success(),
        };
        if !as_expected {
            failures.push(format!("{name}: expected {expected:?}, got\n{stderr}"));
        }
    }
    assert_eq!(cases, 33);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_buildkit_negative_case_fails_with_a_line() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/parser/buildkit/testfiles-negative");
    let mut cases = 0;
    for entry in fs::read_dir(&root).expect("negative testfiles") {
        let dir = entry.unwrap().path();
        cases += 1;
        let out = kiln(&["build", "--check", dir.to_str().unwrap()], None);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", dir.display());
        assert!(
            stderr.contains("error: Dockerfile:"),
            "{}: {stderr}",
            dir.display()
        );
    }
    assert_eq!(cases, 4);
}
