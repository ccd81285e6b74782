//! What `kiln build --progress plain` shows of a whole build: `#N` numbers without gaps,
//! `CANCELED` for steps a failure stopped. Privileged, like `build`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::build::Env;
use crate::harness::stderr;

/// The step numbers of the `#N …` lines of plain output, in the order they first appear.
fn step_numbers(output: &str) -> Vec<u64> {
    let mut seen = Vec::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u64>()
            && !seen.contains(&n)
        {
            seen.push(n);
        }
    }
    seen
}

/// The numbers are `1..=n` in the order they first show.
fn assert_consecutive(output: &str) {
    let numbers = step_numbers(output);
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert_eq!(numbers, expected, "{output}");
}

#[test]
fn plain_output_numbers_steps_without_gaps() {
    let Some(env) = Env::new(false) else { return };
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let out = env.kiln(&["build", "--progress", "plain", example.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_consecutive(&err);
    // The export follows the last step directly (scratch shows no vertex).
    let last = step_numbers(&err).last().copied().unwrap();
    assert!(
        err.contains(&format!("#{last} exporting to image")),
        "{err}"
    );
}

#[test]
fn a_step_stopped_by_another_failure_is_canceled() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox AS slow\n\
         RUN sleep 30\n\
         FROM busybox AS failing\n\
         RUN sleep 1 && exit 3\n\
         FROM busybox\n\
         COPY --from=slow /etc/passwd /a\n\
         COPY --from=failing /etc/passwd /b\n",
    );
    let out = env.build(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let numbered = |text: &str| {
        err.lines()
            .find(|l| l.ends_with(text) && l.starts_with('#'))
            .and_then(|l| l[1..].split(' ').next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no step {text:?} in\n{err}"))
    };
    let slow = numbered("RUN sleep 30");
    let failing = numbered("RUN sleep 1 && exit 3");
    assert!(err.contains(&format!("#{slow} CANCELED\n")), "{err}");
    assert!(err.contains(&format!("#{failing} ERROR: ")), "{err}");
    let errors: BTreeSet<&str> = err.lines().filter(|l| l.contains(" ERROR")).collect();
    assert_eq!(errors.len(), 1, "only the failing step is an error:\n{err}");
    // The COPY steps never started: nothing is numbered for them, and nothing skipped.
    assert_consecutive(&err);
}
