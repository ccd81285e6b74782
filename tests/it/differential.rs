//! The differential corpus (`testdata/differential/`, described in its README): each case is
//! built with kiln and the image's normalised listing compared with the one docker 20.10's
//! BuildKit produced from the same Dockerfile and context. The expected listings are committed
//! (`regenerate.sh` remakes them), so this needs no docker. A case listed in
//! `known-differences.txt` must differ (the list stays honest); any other case must match,
//! and a case without an expected listing fails. Privileged (the builds run): skipped with
//! the reason otherwise, failing under `CI`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

use crate::harness::{self, TempRoot, sha256_hex, stderr};

/// Concurrent builds: the cases are small, most of a build's time is waiting on processes.
const WORKERS: usize = 4;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/differential")
}

/// The case directories' names, sorted.
fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus().join("cases"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `known-differences.txt`: `case: reason` per line, `#` comments.
fn known_differences() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(corpus().join("known-differences.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (case, reason) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("known-differences.txt: no `case: reason` in {line:?}"));
            (case.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

/// Makes the case's build context in `dest`: a copy of `context/`, then `context.sh` run
/// inside it (what git cannot hold: links, modes, empty directories, owners).
fn make_context(case: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    if case.join("context").is_dir() {
        let status = Command::new("cp")
            .arg("-a")
            .arg(case.join("context/."))
            .arg(dest)
            .status()
            .unwrap();
        assert!(status.success(), "copying {}/context", case.display());
    }
    if case.join("context.sh").exists() {
        let out = Command::new("sh")
            .arg("-eu")
            .arg(case.join("context.sh"))
            .current_dir(dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}/context.sh: {}",
            case.display(),
            stderr(&out)
        );
    }
}

/// The case's extra build flags (`args`: one argument per line).
fn build_flags(case: &Path) -> Vec<String> {
    std::fs::read_to_string(case.join("args"))
        .map(|text| text.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The normalised listing of a `docker save` archive

/// The listing of the image in the docker archive `archive` (README: "The listing").
/// Layers whose diff_id is `base_diff_id` are named, not listed.
fn listing(archive: &[u8], base_diff_id: &str) -> String {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    // docker saves a layer that another one repeats as a symlink to it.
    let mut links: Vec<(String, String)> = Vec::new();
    let mut tar = tar::Archive::new(archive);
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                files.insert(path, content);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().unwrap().unwrap();
                let target = Path::new(&path).parent().unwrap().join(target);
                let target: PathBuf = target.components().fold(PathBuf::new(), |mut out, c| {
                    match c {
                        std::path::Component::ParentDir => {
                            out.pop();
                        }
                        other => out.push(other),
                    }
                    out
                });
                links.push((path, target.to_string_lossy().into_owned()));
            }
            _ => {}
        }
    }
    for (path, target) in links {
        let content = files[&target].clone();
        files.insert(path, content);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let manifest = &manifest[0];
    let config: Value =
        serde_json::from_slice(&files[manifest["Config"].as_str().unwrap()]).unwrap();

    let mut out = Vec::new();
    for key in ["architecture", "os", "variant"] {
        if let Some(value) = config.get(key) {
            out.push(format!("{key} {value}"));
        }
    }
    flatten("config", &config["config"], &mut out);
    for (n, entry) in config["history"].as_array().unwrap().iter().enumerate() {
        let kind = if entry["empty_layer"].as_bool() == Some(true) {
            "empty_layer"
        } else {
            "layer"
        };
        out.push(format!("history[{n}] {kind}"));
    }
    for (n, layer) in manifest["Layers"].as_array().unwrap().iter().enumerate() {
        let tar = uncompressed(&files[layer.as_str().unwrap()]);
        let diff_id = format!("sha256:{}", sha256_hex(&tar));
        if diff_id == base_diff_id {
            out.push(format!("layer {n}: the base"));
            continue;
        }
        out.push(format!("layer {n}:"));
        out.extend(
            layer_entries(&tar)
                .into_iter()
                .map(|line| format!("  {line}")),
        );
    }
    out.push(String::new());
    out.join("\n")
}

fn uncompressed(blob: &[u8]) -> Vec<u8> {
    if blob.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        blob.to_vec()
    }
}

/// A JSON value as `path = scalar` lines, objects' keys sorted, nulls left out (an omitted
/// field and a null one mean the same to every reader of image configs).
fn flatten(path: &str, value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::Object(map) if !map.is_empty() => {
            let sorted: BTreeMap<_, _> = map.iter().collect();
            for (key, value) in sorted {
                flatten(&format!("{path}.{key}"), value, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (n, value) in items.iter().enumerate() {
                flatten(&format!("{path}[{n}]"), value, out);
            }
        }
        other => out.push(format!("{path} = {other}")),
    }
}

/// One line per entry of a layer tar, sorted by path: type, path, mode, owner, then size
/// and content digest (files) or target (links), then extended attributes' names.
fn layer_entries(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = absolute(&entry.path().unwrap().to_string_lossy());
        let header = entry.header();
        let mode = header.mode().unwrap() & 0o7777;
        let owner = format!("{}:{}", header.uid().unwrap(), header.gid().unwrap());
        let kind = header.entry_type();
        let link = entry
            .link_name()
            .unwrap()
            .map(|target| target.to_string_lossy().into_owned());
        let xattrs: Vec<String> = entry
            .pax_extensions()
            .unwrap()
            .into_iter()
            .flatten()
            .filter_map(|ext| {
                let ext = ext.unwrap();
                let key = ext.key().unwrap().strip_prefix("SCHILY.xattr.")?;
                Some(format!(" xattr:{key}={}", sha256_hex(ext.value_bytes())))
            })
            .collect();
        let detail = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                format!(
                    "file {path} {mode:04o} {owner} {} sha256:{}",
                    content.len(),
                    sha256_hex(&content)
                )
            }
            tar::EntryType::Directory => format!("dir {path} {mode:04o} {owner}"),
            tar::EntryType::Symlink => {
                format!("symlink {path} {mode:04o} {owner} -> {}", link.unwrap())
            }
            tar::EntryType::Link => format!(
                "hardlink {path} {mode:04o} {owner} => {}",
                absolute(&link.unwrap())
            ),
            tar::EntryType::Fifo => format!("fifo {path} {mode:04o} {owner}"),
            other => format!("{other:?} {path} {mode:04o} {owner}"),
        };
        out.push((path, format!("{detail}{}", xattrs.concat())));
    }
    // Sorted by path: the order of a layer's entries carries no meaning.
    out.sort();
    out.into_iter().map(|(_, line)| line).collect()
}

/// A layer path as an absolute one: `./a/b/` → `/a/b`.
fn absolute(path: &str) -> String {
    let trimmed = path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    format!("/{trimmed}")
}

// ---------------------------------------------------------------------------------------
// Running the corpus

/// What kiln made of one case: its listing, or `build fails`.
fn kiln_listing(root: &Path, work: &Path, name: &str, base_diff_id: &str) -> String {
    let case = corpus().join("cases").join(name);
    let context = work.join(name);
    make_context(&case, &context);
    let tag = format!("differential-{name}");
    let mut args = vec![
        "build".to_string(),
        "--progress".to_string(),
        "plain".to_string(),
        "-f".to_string(),
        case.join("Dockerfile").to_string_lossy().into_owned(),
        "-t".to_string(),
        tag.clone(),
    ];
    args.extend(build_flags(&case));
    args.push(context.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = harness::kiln(root, &args);
    if !out.status.success() {
        let log = stderr(&out);
        let reason = log.lines().rev().find(|line| line.contains("ERROR"));
        return format!("build fails\n# kiln: {}", reason.unwrap_or_default());
    }
    let archive = work.join(format!("{name}.tar"));
    let out = harness::kiln(root, &["save", "-o", archive.to_str().unwrap(), &tag]);
    assert!(out.status.success(), "{name}: save: {}", stderr(&out));
    listing(&std::fs::read(&archive).unwrap(), base_diff_id)
}

/// The lines only in `expected` (`-`) and only in `actual` (`+`).
fn line_diff(expected: &str, actual: &str) -> String {
    let only = |a: &str, b: &str, sign: char| {
        let mut rest: Vec<&str> = b.lines().collect();
        let mut out = Vec::new();
        for line in a.lines() {
            match rest.iter().position(|other| *other == line) {
                Some(at) => {
                    rest.remove(at);
                }
                None => out.push(format!("{sign} {line}")),
            }
        }
        out
    };
    let mut out = only(expected, actual, '-');
    out.extend(only(actual, expected, '+'));
    out.join("\n")
}

#[test]
fn corpus_matches_buildkit() {
    if !harness::privileged() {
        return;
    }
    let Some(busybox) = harness::busybox() else {
        return;
    };
    let Some(archive) = busybox.docker_archive() else {
        return;
    };
    let dir = TempRoot::new();
    let root = dir.join("root");
    let work = dir.join("work");
    let out = harness::kiln(&root, &["load", "-i", archive.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));

    let names = case_names();
    let known = known_differences();
    for case in known.keys() {
        assert!(
            names.contains(case),
            "known-differences.txt names no case {case}"
        );
    }
    let queue = Mutex::new(names);
    let results = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let Some(name) = queue.lock().unwrap().pop() else {
                        return;
                    };
                    let actual = kiln_listing(&root, &work, &name, &busybox.diff_id);
                    results.lock().unwrap().insert(name, actual);
                }
            });
        }
    });

    let mut failures = Vec::new();
    for (name, actual) in results.into_inner().unwrap() {
        let expected_path = corpus().join("cases").join(&name).join("expected.txt");
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!("{name}: no expected.txt (run regenerate.sh)"));
            continue;
        };
        // kiln's failure reason (a comment) is for the reader, not compared.
        let actual_compared: String = actual
            .lines()
            .filter(|line| !line.starts_with("# kiln:"))
            .map(|line| format!("{line}\n"))
            .collect();
        let differs = expected != actual_compared;
        match (known.get(&name), differs) {
            (Some(reason), true) => {
                eprintln!(
                    "known difference {name}: {reason}\n{}",
                    line_diff(&expected, &actual)
                );
            }
            (Some(_), false) => failures.push(format!(
                "{name}: listed in known-differences.txt but matches BuildKit now; remove it"
            )),
            (None, true) => failures.push(format!(
                "{name}: differs from BuildKit (- BuildKit, + kiln):\n{}",
                line_diff(&expected, &actual)
            )),
            (None, false) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Writes each case's `expected.txt` from the archives `regenerate.sh` saved with docker
/// (`$KILN_DIFFERENTIAL_ARCHIVES/CASE.tar`, or `CASE.failed` when docker could not build it).
#[test]
#[ignore = "run by testdata/differential/regenerate.sh"]
fn expected_from_docker_archives() {
    let dir = PathBuf::from(
        std::env::var_os("KILN_DIFFERENTIAL_ARCHIVES").expect("KILN_DIFFERENTIAL_ARCHIVES"),
    );
    let busybox = harness::busybox().expect("the busybox image");
    for name in case_names() {
        let expected = if dir.join(format!("{name}.failed")).exists() {
            "build fails\n".to_string()
        } else {
            let archive = dir.join(format!("{name}.tar"));
            let Ok(bytes) = std::fs::read(&archive) else {
                continue;
            };
            listing(&bytes, &busybox.diff_id)
        };
        std::fs::write(
            corpus().join("cases").join(name).join("expected.txt"),
            expected,
        )
        .unwrap();
    }
}
