//! `kiln build --call check` as BuildKit's: the lint rules by name with their lines and
//! documentation, the `check=` options, the JSON result, the problems only planning
//! finds, and the warnings a build prints at its end.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::harness::{self, TempRoot, kiln, stderr, text};

/// A context holding `dockerfile` (and `.dockerignore` when given), and a store root that
/// does not exist (so nothing is looked up in a store).
struct Context {
    dir: TempRoot,
}

impl Context {
    fn new(dockerfile: &str, dockerignore: Option<&str>) -> Context {
        let dir = TempRoot::new();
        harness::write_file(&dir.join("ctx"), "Dockerfile", dockerfile);
        if let Some(ignore) = dockerignore {
            harness::write_file(&dir.join("ctx"), ".dockerignore", ignore);
        }
        Context { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join("ctx")
    }

    fn root(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `kiln build ARGS CONTEXT`.
    fn build(&self, args: &[&str]) -> Output {
        let context = self.path();
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        all.push(context.to_str().unwrap());
        kiln(&self.root(), &all)
    }

    fn check(&self, args: &[&str]) -> Output {
        let mut all = vec!["--call", "check"];
        all.extend_from_slice(args);
        self.build(&all)
    }
}

const URL: &str = "https://docs.docker.com/go/dockerfile/rule/";

#[test]
fn check_reports_rules_with_line_and_documentation() {
    let context = Context::new(
        "FROM scratch AS Base\ncopy a /a\nCMD run\nMAINTAINER me\nENV name value\nWORKDIR app\nEXPOSE 80/TCP\n",
        Some("a\n"),
    );
    let out = context.check(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for (line, rule, slug, message) in [
        (
            1,
            "StageNameCasing",
            "stage-name-casing",
            "Stage name 'Base' should be lowercase",
        ),
        (
            2,
            "ConsistentInstructionCasing",
            "consistent-instruction-casing",
            "Command 'copy' should match the case of the command majority (uppercase)",
        ),
        (
            2,
            "CopyIgnoredFile",
            "copy-ignored-file",
            "Attempting to Copy file \"a\" that is excluded by .dockerignore",
        ),
        (
            3,
            "JSONArgsRecommended",
            "json-args-recommended",
            "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
        ),
        (
            4,
            "MaintainerDeprecated",
            "maintainer-deprecated",
            "Maintainer instruction is deprecated in favor of using label",
        ),
        (
            5,
            "LegacyKeyValueFormat",
            "legacy-key-value-format",
            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
        ),
        (
            6,
            "WorkdirRelativePath",
            "workdir-relative-path",
            "Relative workdir \"app\" can have unexpected results if the base image changes",
        ),
        (
            7,
            "ExposeProtoCasing",
            "expose-proto-casing",
            "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
        ),
    ] {
        let expected = format!("warning: Dockerfile:{line}:1: {rule}: {message} ({URL}{slug}/)\n");
        assert!(err.contains(&expected), "missing {expected}in\n{err}");
    }
    assert_eq!(
        text(&out.stdout).trim(),
        "Check complete: no errors, 8 warnings."
    );
}

#[test]
fn check_options_skip_experimental_and_error() {
    let file = "FROM scratch as base\nCOPY a /a\n";
    // error=true: a broken rule fails the check.
    let context = Context::new(&format!("# check=error=true\n{file}"), None);
    let out = context.check(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("lint violation found for rules: FromAsCasing"),
        "{}",
        stderr(&out)
    );
    // The build arg replaces the directive.
    let out = context.check(&["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        text(&out.stdout).trim(),
        "Check complete: no problems found."
    );
    // skip= by name; an experimental rule runs only when asked for.
    let context = Context::new(
        &format!(
            "# check=skip=FromAsCasing;experimental=InvalidDefinitionDescription\n# a comment\n{file}"
        ),
        None,
    );
    let out = context.check(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("FromAsCasing:"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("InvalidDefinitionDescription: Comment for FROM should follow the format: `# base <description>`"),
        "{}",
        stderr(&out)
    );
    // Options that do not parse are a usage error.
    let out = context.check(&["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid check option \"skip\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_plans_every_stage() {
    for (dockerfile, args, expected) in [
        (
            "FROM scratch AS a\nFROM scratch\nCOPY --from=5 /x /y\n",
            &[][..],
            "error: Dockerfile:3:1: invalid stage index 5",
        ),
        (
            "ARG IMAGE\nFROM $IMAGE\n",
            &[],
            "error: Dockerfile:2:1: base name ($IMAGE) should not be blank",
        ),
        (
            "FROM scratch AS a\nCOPY --from=b /x /y\nFROM scratch AS b\n",
            &[],
            "error: Dockerfile:2:1: cannot copy from stage \"b\", it needs to be defined before current stage \"a\"",
        ),
        (
            "FROM scratch AS build\n",
            &["--target", "biuld"],
            "error: target stage \"biuld\" could not be found (did you mean build?)",
        ),
    ] {
        let out = Context::new(dockerfile, None).check(args);
        assert_eq!(out.status.code(), Some(2), "{dockerfile}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(expected),
            "{dockerfile}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("Check complete: 1 problem found."));
    }
}

#[test]
fn check_as_json() {
    let context = Context::new("FROM scratch\nCMD run\nCOPY --from=3 /x /y\n", None);
    let out = context.check(&[]);
    assert_eq!(out.status.code(), Some(2));
    let out = context.build(&["--call", "check,format=json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let warning = &result["warnings"][0];
    assert_eq!(warning["ruleName"], "JSONArgsRecommended");
    assert_eq!(
        warning["url"],
        format!("{URL}json-args-recommended/").as_str()
    );
    assert_eq!(
        warning["detail"],
        "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"
    );
    assert_eq!(warning["location"]["ranges"][0]["start"]["line"], 2);
    assert_eq!(result["warnings"].as_array().unwrap().len(), 1);
    assert_eq!(result["sources"][0]["filename"], "Dockerfile");
    assert_eq!(result["sources"][0]["language"], "Dockerfile");
    assert_eq!(result["buildError"]["message"], "invalid stage index 3");
    assert_eq!(
        result["buildError"]["location"]["ranges"][0]["start"]["line"],
        3
    );

    // A Dockerfile that does not parse: the error, no warnings.
    let context = Context::new("FROM scratch\nFNTRYPOINT x\n", None);
    let out = context.build(&["--call", "check,format=json"]);
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(result["warnings"].as_array().unwrap().len(), 0);
    assert!(
        result["buildError"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown instruction: FNTRYPOINT")
    );
}

#[test]
fn a_build_prints_its_warnings_at_the_end() {
    let context = Context::new("FROM scratch\nLABEL a b\nMAINTAINER me\n", None);
    let out = context.build(&["--progress", "plain"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let summary = "2 warnings found:\n - LegacyKeyValueFormat: \"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format (line 2)\n - MaintainerDeprecated: Maintainer instruction is deprecated in favor of using label (line 3)\n";
    assert!(err.contains(summary), "{err}");

    // error=true: the build does not start.
    let context = Context::new("# check=error=true\nFROM scratch\nMAINTAINER me\n", None);
    let out = context.build(&["--progress", "plain"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error: lint violation found for rules: MaintainerDeprecated"),
        "{}",
        stderr(&out)
    );
    assert!(text(&out.stdout).is_empty());
}

/// Loads the busybox image into `root`; `None` (after a skip) when it cannot be made.
fn load_busybox(root: &Path) -> Option<()> {
    let archive = harness::busybox()?.docker_archive()?;
    let out = kiln(root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    Some(())
}

#[test]
fn undefined_var_follows_a_stored_base_image() {
    let context = Context::new(
        "FROM busybox\nENV A=$PATH:$NOPE\nFROM busybox:nowhere\nENV B=$NOPE\n",
        None,
    );
    if load_busybox(&context.root()).is_none() {
        return;
    }
    let out = context.check(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: Dockerfile:2:1: UndefinedVar: Usage of undefined variable '$NOPE'"),
        "{err}"
    );
    // An image not in the store: its environment is unknown, nothing is said.
    assert!(!err.contains("Dockerfile:4:1"), "{err}");
}
