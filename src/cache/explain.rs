//! Turning two [`Explain`]s into one sentence that says why a step ran again.

use std::collections::BTreeMap;

use super::Explain;

/// How many file names a sentence lists before "…".
const NAMED_FILES: usize = 3;
/// Longest value quoted in a sentence (an ENV holding a script stays readable).
const MAX_VALUE_CHARS: usize = 60;

/// What changed between the inputs of an earlier run of a step and the current ones, most
/// telling first: base image, command, ENV/ARG/USER/WORKDIR/SHELL/network values, files,
/// mounts, anything else, and last a parent step that re-ran. `None` when nothing differs.
/// When several things changed the sentence names the first and counts the rest.
pub fn explain(previous: &Explain, current: &Explain) -> Option<String> {
    let mut changed: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    let names: std::collections::BTreeSet<&str> = previous
        .values
        .keys()
        .chain(current.values.keys())
        .map(String::as_str)
        .collect();
    for name in names {
        let old = previous.values.get(name).map(String::as_str);
        let new = current.values.get(name).map(String::as_str);
        if old != new {
            changed.push((name, old, new));
        }
    }
    let files = match (&previous.files, &current.files) {
        (Some(old), Some(new)) => files_sentence(old, new),
        _ => None,
    };

    // Candidates in priority order; each input named once.
    let mut sentences: Vec<String> = Vec::new();
    let mut push = |s: String| sentences.push(s);
    let find = |n: &str| changed.iter().find(|c| c.0 == n).copied();
    if let Some((_, old, new)) = find("base") {
        push(format!(
            "base image changed: {} → {}",
            short_digest(old),
            short_digest(new)
        ));
    }
    if find("command").is_some() {
        push("command changed".to_string());
    }
    let rank = |name: &str| -> Option<u8> {
        Some(if name.starts_with("env:") {
            0
        } else if name.starts_with("arg:") {
            1
        } else {
            match name {
                "user" => 2,
                "workdir" => 3,
                "shell" => 4,
                "network" => 5,
                _ => return None,
            }
        })
    };
    let mut valued: Vec<_> = changed.iter().filter(|c| rank(c.0).is_some()).collect();
    valued.sort_by_key(|c| rank(c.0));
    for (name, old, new) in valued {
        push(value_sentence(name, *old, *new));
    }
    match files {
        Some(sentence) => push(sentence),
        None if find("files").is_some() => push("files changed".to_string()),
        None => {}
    }
    if changed.iter().any(|c| c.0.starts_with("mount:")) {
        push("mounts changed".to_string());
    }
    for (name, _, _) in &changed {
        let known = rank(name).is_some()
            || matches!(*name, "base" | "command" | "files")
            || name.starts_with("mount:")
            || is_parent(name);
        if !known {
            push(format!("{name} changed"));
        }
    }
    if sentences.is_empty() {
        // Only the parents' keys differ: this step is unchanged, an input step re-ran.
        return changed
            .iter()
            .any(|c| is_parent(c.0))
            .then(|| "parent step changed".to_string());
    }
    let more = sentences.len() - 1;
    let mut sentence = sentences.swap_remove(0);
    if more > 0 {
        let s = if more == 1 { "" } else { "s" };
        sentence.push_str(&format!(" (and {more} more change{s})"));
    }
    Some(sentence)
}

fn is_parent(name: &str) -> bool {
    name == "parent" || name.starts_with("parent:")
}

fn value_sentence(name: &str, old: Option<&str>, new: Option<&str>) -> String {
    let label = if let Some(var) = name.strip_prefix("env:") {
        format!("ENV {var}")
    } else if let Some(var) = name.strip_prefix("arg:") {
        format!("ARG {var}")
    } else if name == "network" {
        "network".to_string()
    } else {
        name.to_uppercase()
    };
    match (old, new) {
        (Some(old), Some(new)) => format!("{label} changed: {} → {}", quote(old), quote(new)),
        (None, Some(new)) => format!("{label} added: {}", quote(new)),
        (Some(old), None) => format!("{label} removed (was {})", quote(old)),
        (None, None) => format!("{label} changed"),
    }
}

fn quote(value: &str) -> String {
    if value.chars().count() > MAX_VALUE_CHARS {
        let cut: String = value.chars().take(MAX_VALUE_CHARS).collect();
        format!("{:?}…", cut)
    } else {
        format!("{value:?}")
    }
}

/// `sha256:0123456789ab…`: enough to tell digests apart in a sentence.
fn short_digest(digest: Option<&str>) -> String {
    let Some(digest) = digest else {
        return "none".to_string();
    };
    match digest.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}…", &hex[..12]),
        _ => digest.to_string(),
    }
}

/// `3 files changed: a, b, c; 1 file added: d`, or `None` when the maps are equal.
fn files_sentence(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Option<String> {
    let mut changed = Vec::new();
    let mut added = Vec::new();
    for (path, digest) in new {
        match old.get(path) {
            Some(d) if d != digest => changed.push(path.as_str()),
            Some(_) => {}
            None => added.push(path.as_str()),
        }
    }
    let removed: Vec<&str> = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .map(String::as_str)
        .collect();
    let parts: Vec<String> = [(changed, "changed"), (added, "added"), (removed, "removed")]
        .into_iter()
        .filter(|(paths, _)| !paths.is_empty())
        .map(|(paths, verb)| {
            let noun = if paths.len() == 1 { "file" } else { "files" };
            let mut names = paths[..paths.len().min(NAMED_FILES)].join(", ");
            if paths.len() > NAMED_FILES {
                names.push_str(", …");
            }
            format!("{} {noun} {verb}: {names}", paths.len())
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}
