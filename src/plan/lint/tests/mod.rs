//! BuildKit's lint cases (`frontend/dockerfile/dockerfile_lint_test.go`), as tables:
//! each Dockerfile with the findings BuildKit reports, as `(rule, line, message)`.

use std::collections::BTreeMap;

use super::{BaseImages, IgnoreRules, Input, Report, check};
use crate::instruction;
use crate::oci::Platform;
use crate::plan::ResolvedImage;
use crate::syntax;

/// The images at hand: `alpine` (linux/amd64, with a PATH), `arm-only` (linux/arm64)
/// and `pwsh` (with a SHELL).
struct Images;

impl BaseImages for Images {
    fn find(&self, reference: &str, _: &Platform) -> Option<ResolvedImage> {
        let mut image = ResolvedImage {
            platform: Some(Platform::parse("linux/amd64").unwrap()),
            ..ResolvedImage::default()
        };
        match reference {
            "alpine" => image.config.env = vec![format!("PATH={}", "/usr/sbin:/usr/bin")],
            "arm-only" => image.platform = Some(Platform::parse("linux/arm64").unwrap()),
            "pwsh" => image.config.shell = vec!["pwsh".to_string(), "-c".to_string()],
            _ => return None,
        }
        Some(image)
    }
}

fn run(dockerfile: &str, build_args: &[(&str, &str)]) -> Report {
    run_with(dockerfile, build_args, None)
}

fn run_with(
    dockerfile: &str,
    build_args: &[(&str, &str)],
    ignore: Option<&dyn IgnoreRules>,
) -> Report {
    let file = syntax::parse(dockerfile.as_bytes()).expect("parses");
    let stages = instruction::parse(&file).expect("has stages");
    let build_args: BTreeMap<String, String> = build_args
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let platform = Platform::parse("linux/amd64").unwrap();
    check(&Input {
        file: &file,
        stages: &stages,
        build_args: &build_args,
        target_platform: &platform,
        build_platform: &platform,
        target: None,
        every_stage: true,
        ignore,
        images: Some(&Images),
    })
    .expect("valid check options")
}

type Expected<'a> = &'a [(&'a str, usize, &'a str)];

fn assert_findings(dockerfile: &str, build_args: &[(&str, &str)], expected: Expected) {
    let report = run(dockerfile, build_args);
    let mut got: Vec<(&str, usize, String)> = report
        .findings
        .iter()
        .map(|f| (f.rule.name, f.span.start.line, f.message.clone()))
        .collect();
    got.sort();
    let mut want: Vec<(&str, usize, String)> = expected
        .iter()
        .map(|(rule, line, message)| (*rule, *line, message.to_string()))
        .collect();
    want.sort();
    assert_eq!(got, want, "for\n{dockerfile}");
}

fn table(cases: &[(&str, Expected)]) {
    for (dockerfile, expected) in cases {
        assert_findings(dockerfile, &[], expected);
    }
}

mod inputs;
mod rules;
