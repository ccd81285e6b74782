//! The module layering of `docs/architecture.md`, checked mechanically: a module may
//! only use modules of lower layers, and `unsafe` appears only in `sys`.

use std::fs;
use std::path::Path;

/// Each module with the kiln modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("oci", &[]),
    ("gocompat", &[]),
    ("progress", &[]),
    ("sys", &[]),
    ("syntax", &["gocompat"]),
    ("shell", &[]),
    ("instruction", &["gocompat", "syntax", "shell"]),
    (
        "plan",
        &["oci", "gocompat", "syntax", "shell", "instruction"],
    ),
    ("registry", &["oci", "progress"]),
    ("source", &["oci", "gocompat", "plan"]),
    ("cache", &["oci", "store"]),
    ("store", &["oci", "sys"]),
    ("snapshot", &["oci", "sys", "store"]),
    ("sandbox", &["sys"]),
    (
        "image",
        &["oci", "sys", "progress", "store", "snapshot", "registry"],
    ),
    (
        "container",
        &[
            "oci", "gocompat", "sys", "store", "snapshot", "sandbox", "image",
        ],
    ),
    (
        "fileop",
        &[
            "oci",
            "sys",
            "store",
            "snapshot",
            "source",
            "instruction",
            "plan",
        ],
    ),
    // L5: the scheduler and the exporter tie the stages below together.
    (
        "solve",
        &[
            "oci", "gocompat", "sys", "progress", "syntax", "plan", "registry", "source", "cache",
            "store", "snapshot", "sandbox", "image", "fileop",
        ],
    ),
    ("export", &["oci", "plan", "cache", "store", "snapshot"]),
    // L6: the whole build lifecycle as one call, shared by the command line and the daemon.
    (
        "build",
        &[
            "oci",
            "progress",
            "syntax",
            "instruction",
            "plan",
            "registry",
            "source",
            "cache",
            "store",
            "image",
            "solve",
            "export",
        ],
    ),
    // The command line may use everything.
    (
        "cli",
        &[
            "oci",
            "gocompat",
            "sys",
            "progress",
            "syntax",
            "shell",
            "instruction",
            "plan",
            "registry",
            "source",
            "cache",
            "store",
            "snapshot",
            "sandbox",
            "image",
            "fileop",
            "container",
            "solve",
            "export",
            "build",
        ],
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_only_use_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known: Vec<&str> = ALLOWED.iter().map(|(module, _)| *module).collect();
    let mut violations = Vec::new();
    for (module, allowed) in ALLOWED {
        let mut files = Vec::new();
        // A small module may be a single file.
        let single = src.join(format!("{module}.rs"));
        if single.is_file() {
            files.push(single);
        } else {
            rust_files(&src.join(module), &mut files);
        }
        assert!(!files.is_empty(), "module {module} has no files");
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for (number, line) in text.lines().enumerate() {
                for other in &known {
                    let used = line.contains(&format!("crate::{other}::"))
                        || line.contains(&format!("crate::{other};"))
                        || line.contains(&format!("crate::{{{other}"));
                    if used && other != module && !allowed.contains(other) {
                        violations.push(format!(
                            "{}:{}: {module} uses {other}",
                            file.display(),
                            number + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn unsafe_only_in_sys() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| !file.starts_with(src.join("sys")))
        .filter(|file| {
            fs::read_to_string(file)
                .unwrap()
                .lines()
                .any(|line| line.trim_start().starts_with("unsafe ") || line.contains(" unsafe {"))
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "unsafe outside sys: {offenders:?}");
}
