//! The check options, and the rules that read more than the Dockerfile: the
//! `.dockerignore` and the base images at hand.

use std::collections::BTreeMap;

use super::{Expected, Report, run, run_with, table};
use crate::instruction;
use crate::oci::Platform;
use crate::plan::lint::{IgnoreRules, Input, check};
use crate::syntax;

#[test]
fn check_options_from_the_directive_and_the_build_arg() {
    const FILE: &str = "FROM scratch as base\ncopy Dockerfile .\n";
    let with = |directive: &str, build_arg: Option<&str>| {
        let args: Vec<(&str, &str)> = build_arg
            .map(|v| ("BUILDKIT_DOCKERFILE_CHECK", v))
            .into_iter()
            .collect();
        run(&format!("{directive}\n{FILE}"), &args)
    };
    let names =
        |report: &Report| -> Vec<&str> { report.findings.iter().map(|f| f.rule.name).collect() };
    for directive in [
        "#check=skip=all",
        "#check=skip=all;error=true",
        "#check=skip=ConsistentInstructionCasing,FromAsCasing",
        "#check=skip=ConsistentInstructionCasing,FromAsCasing;error=true",
    ] {
        let report = with(directive, None);
        assert!(report.findings.is_empty(), "{directive}");
        assert_eq!(report.violation(), None);
    }
    let report = with("#check=skip=ConsistentInstructionCasing", None);
    assert_eq!(names(&report), ["FromAsCasing"]);
    assert_eq!(report.violation(), None);
    let report = with("#check=skip=ConsistentInstructionCasing;error=true", None);
    assert_eq!(names(&report), ["FromAsCasing"]);
    assert_eq!(
        report.violation().as_deref(),
        Some("lint violation found for rules: FromAsCasing")
    );
    // The build arg replaces the directive.
    let report = with(
        "#check=skip=all",
        Some("skip=ConsistentInstructionCasing;error=true"),
    );
    assert_eq!(names(&report), ["FromAsCasing"]);
    assert!(report.violation().is_some());
    let report = with("#check=error=true", Some("skip=all"));
    assert!(report.findings.is_empty() && report.violation().is_none());
    // With no options, both rules.
    let report = with("", None);
    assert_eq!(
        names(&report),
        ["FromAsCasing", "ConsistentInstructionCasing"]
    );
}

#[test]
fn bad_check_options_are_errors() {
    let file = syntax::parse(b"FROM scratch\n").unwrap();
    let stages = instruction::parse(&file).unwrap();
    let platform = Platform::parse("linux/amd64").unwrap();
    for (value, message) in [
        ("skip", "invalid check option \"skip\""),
        ("nope=1", "invalid check option \"nope\""),
        ("error=maybe", "\"maybe\" is not a boolean"),
    ] {
        let build_args =
            BTreeMap::from([("BUILDKIT_DOCKERFILE_CHECK".to_string(), value.to_string())]);
        let error = check(&Input {
            file: &file,
            stages: &stages,
            build_args: &build_args,
            target_platform: &platform,
            build_platform: &platform,
            target: None,
            every_stage: true,
            ignore: None,
            images: None,
        })
        .unwrap_err();
        assert!(error.to_string().contains(message), "{value}: {error}");
    }
}

/// `.dockerignore` patterns that name paths exactly, or `*`/`**` for everything; `!`
/// marks an exception.
struct Patterns(&'static [&'static str]);

impl IgnoreRules for Patterns {
    fn excludes(&self, path: &str) -> bool {
        self.excluding_patterns()
            .iter()
            .any(|p| p == "*" || p == "**" || path == p || path.starts_with(&format!("{p}/")))
    }

    fn has_exceptions(&self) -> bool {
        self.0.iter().any(|p| p.starts_with('!'))
    }

    fn excluding_patterns(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|p| !p.starts_with('!'))
            .map(|p| p.to_string())
            .collect()
    }
}

#[test]
fn copy_ignored_file() {
    const RULE: &str = "CopyIgnoredFile";
    let cases: &[(&str, &'static [&'static str], Expected)] = &[
        (
            "\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n",
            &["Dockerfile"],
            &[
                (
                    RULE,
                    3,
                    "Attempting to Copy file \"Dockerfile\" that is excluded by .dockerignore",
                ),
                (
                    RULE,
                    4,
                    "Attempting to Add file \"Dockerfile\" that is excluded by .dockerignore",
                ),
            ],
        ),
        (
            "# check=skip=CopyIgnoredFile\n\nFROM scratch\nCOPY Dockerfile .\nADD Dockerfile /windy\n",
            &["Dockerfile"],
            &[],
        ),
        // A COPY --from reads another stage, not the context.
        (
            "\nFROM scratch AS base\nCOPY Dockerfile /foobar\nADD Dockerfile /windy\n\nFROM base\nCOPY --from=base /foobar /Dockerfile\n",
            &["foobar"],
            &[],
        ),
        // With an exception, nothing is reported.
        (
            "\nFROM scratch\nCOPY ./Dockerfile .\n",
            &["**", "!Dockerfile"],
            &[],
        ),
        ("\nFROM scratch\nCOPY . .\n\t", &["**", "!Dockerfile"], &[]),
        // The context root: only a pattern leaving out every entry.
        ("\nFROM scratch\nCOPY . .\n", &[".*"], &[]),
        (
            "\nFROM scratch\nCOPY . .\n",
            &["*"],
            &[(
                RULE,
                3,
                "Attempting to Copy file \".\" that is excluded by .dockerignore",
            )],
        ),
    ];
    for (dockerfile, patterns, expected) in cases {
        let report = run_with(dockerfile, &[], Some(&Patterns(patterns)));
        let got: Vec<(&str, usize, String)> = report
            .findings
            .iter()
            .map(|f| (f.rule.name, f.span.start.line, f.message.clone()))
            .collect();
        let want: Vec<(&str, usize, String)> = expected
            .iter()
            .map(|(r, l, m)| (*r, *l, m.to_string()))
            .collect();
        assert_eq!(got, want, "{dockerfile}");
    }
}

#[test]
fn undefined_var() {
    const RULE: &str = "UndefinedVar";
    table(&[
        ("\nFROM scratch\nARG foo\nCOPY Dockerfile${foo} .\n", &[]),
        (
            "\nFROM alpine AS base\nARG foo=Dockerfile\n\nFROM base\nCOPY $foo .\n",
            &[],
        ),
        ("\nFROM alpine\nRUN echo $PATH\n", &[]),
        (
            "\nFROM alpine\nCOPY $foo .\nARG foo=bar\nRUN echo $foo\n",
            &[(RULE, 3, "Usage of undefined variable '$foo'")],
        ),
        (
            "\nFROM alpine\nARG DIR_BINARIES=binaries/\nARG DIR_ASSETS=assets/\nARG DIR_CONFIG=config/\nCOPY $DIR_ASSET .\n\t",
            &[(
                RULE,
                6,
                "Usage of undefined variable '$DIR_ASSET' (did you mean $DIR_ASSETS?)",
            )],
        ),
        (
            "\nFROM alpine\nENV PATH=$PAHT:/tmp/bin\n\t\t",
            &[(
                RULE,
                3,
                "Usage of undefined variable '$PAHT' (did you mean $PATH?)",
            )],
        ),
        // A global ARG reaches a stage that declares it; a predefined one needs the
        // declaration too.
        ("ARG V=1\nFROM scratch\nARG V\nLABEL v=$V\n", &[]),
        (
            "FROM scratch\nLABEL arch=$TARGETARCH\n",
            &[(RULE, 2, "Usage of undefined variable '$TARGETARCH'")],
        ),
        // An image whose environment is not at hand is not checked.
        ("FROM busybox\nENV A=$UNKNOWN\n", &[]),
        (
            "\nFROM scratch\n# check=skip=UndefinedVar\nWORKDIR /$nothing\n",
            &[],
        ),
    ]);
}

#[test]
fn invalid_base_image_platform() {
    table(&[
        (
            "FROM arm-only\n",
            &[(
                "InvalidBaseImagePlatform",
                1,
                "Base image arm-only was pulled with platform \"linux/arm64\", expected \"linux/amd64\" for current build",
            )],
        ),
        ("FROM --platform=linux/arm64 arm-only AS arm64\n", &[]),
        ("FROM alpine\n", &[]),
    ]);
}

/// The rules broken in `dockerfile` when checked as a build of `target` would be.
fn build_findings(dockerfile: &str, target: Option<&str>) -> Vec<(&'static str, usize)> {
    let file = syntax::parse(dockerfile.as_bytes()).unwrap();
    let stages = instruction::parse(&file).unwrap();
    let platform = Platform::parse("linux/amd64").unwrap();
    let report = check(&Input {
        file: &file,
        stages: &stages,
        build_args: &BTreeMap::new(),
        target_platform: &platform,
        build_platform: &platform,
        target,
        every_stage: false,
        ignore: None,
        images: None,
    })
    .unwrap();
    report
        .findings
        .iter()
        .map(|f| (f.rule.name, f.span.start.line))
        .collect()
}

#[test]
fn a_build_checks_the_instructions_of_the_stages_it_needs() {
    // BuildKit's case: stage b is not needed by the last stage, c.
    const FILE: &str =
        "\nFROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n";
    assert_eq!(build_findings(FILE, None), Vec::new());
    assert_eq!(
        build_findings(FILE, Some("b")),
        [("LegacyKeyValueFormat", 5), ("LegacyKeyValueFormat", 6)]
    );
    // Stages used by COPY --from and RUN --mount from= are needed too; FROM lines and
    // the file's casing are checked whatever the target.
    const USED: &str = "FROM scratch AS copied\nCMD [\"one\"]\nCMD [\"two\"]\nFROM scratch AS mounted\nWORKDIR rel\nFROM scratch AS unused\nMAINTAINER me\nFROM scratch AS Final\nCOPY --from=copied /a /a\nRUN --mount=from=mounted,target=/m true\n";
    assert_eq!(
        build_findings(USED, None),
        [
            ("MultipleInstructionsDisallowed", 2),
            ("WorkdirRelativePath", 5),
            ("MaintainerDeprecated", 7),
            ("StageNameCasing", 8),
        ]
    );
}
