//! `kiln completion SHELL` and `kiln man DIR`: generated from the command line's definition.

use std::process::Command;

use crate::harness::{self, TempRoot, kiln_command, stderr, text};

fn completion(shell: &str) -> String {
    let out = kiln_command().args(["completion", shell]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    text(&out.stdout)
}

#[test]
fn completion_scripts_name_the_commands_but_not_the_internal_ones() {
    for (shell, marker) in [
        ("bash", "complete -F _kiln"),
        ("zsh", "#compdef kiln"),
        ("fish", "complete -c kiln"),
    ] {
        let script = completion(shell);
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("build"), "{shell}");
        assert!(!script.contains("__sandbox"), "{shell}");
        assert!(!script.contains("__monitor"), "{shell}");
    }
    let out = kiln_command()
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// What bash completes after `words` with the script loaded.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let current = words.last().unwrap();
    let previous = words[words.len() - 2];
    let program = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _kiln kiln {current} {previous}; \
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        words.len() - 1,
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    text(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_and_flags() {
    if !harness::have("/bin/bash") {
        return;
    }
    let dir = TempRoot::new();
    let script = dir.path().join("kiln.bash");
    std::fs::write(&script, completion("bash")).unwrap();
    assert_eq!(
        bash_completes(&script, &["kiln", "bu"]),
        ["build", "builder"]
    );
    assert_eq!(
        bash_completes(&script, &["kiln", "build", "--progr"]),
        ["--progress"]
    );
    assert_eq!(
        bash_completes(&script, &["kiln", "build", "--progress", "pl"]),
        ["plain"]
    );
}

#[test]
fn man_writes_a_page_per_command() {
    let dir = TempRoot::new();
    let pages = dir.path().join("man/man1");
    let out = kiln_command().arg("man").arg(&pages).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for page in [
        "kiln.1",
        "kiln-build.1",
        "kiln-image-ls.1",
        "kiln-completion.1",
    ] {
        assert!(names.iter().any(|n| n == page), "{page} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("__")),
        "no page for internal commands: {names:?}"
    );
    let build = std::fs::read_to_string(pages.join("kiln-build.1")).unwrap();
    assert!(build.starts_with(".ie \\n(.g .ds Aq"), "roff:\n{build}");
    assert!(build.contains(".TH kiln-build 1"), "{build}");
    assert!(build.contains("\\-\\-progress"), "{build}");
    // A directory that cannot be made is an error, not a panic.
    let blocked = dir.path().join("file");
    std::fs::write(&blocked, "").unwrap();
    let out = kiln_command()
        .arg("man")
        .arg(blocked.join("sub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("error: creating "),
        "{}",
        stderr(&out)
    );
}
