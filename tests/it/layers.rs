//! The module layering of `docs/architecture.md`, checked mechanically: a module may only
//! use what its row of the layer table names, and `unsafe` appears only in `sys`.

use std::fs;
use std::path::Path;

/// One row of the layer table in `docs/architecture.md`.
struct Row {
    layer: u32,
    module: String,
    /// `None`: everything (the command line).
    allowed: Option<Vec<String>>,
}

/// The layer table of `docs/architecture.md` (`| L4 | `cache` | `oci`, `store` |`): the
/// documentation is the one statement of who may import whom.
fn layer_table() -> Vec<Row> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md");
    let text = fs::read_to_string(&doc).unwrap();
    let section = text
        .split("\n## Layers\n")
        .nth(1)
        .expect("docs/architecture.md has a Layers section");
    let names = |cell: &str| -> Vec<String> {
        cell.split(',')
            .map(|name| name.trim().trim_matches('`').to_string())
            .filter(|name| !name.is_empty())
            .collect()
    };
    let rows: Vec<Row> = section
        .lines()
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
            let layer = cells.first()?.trim().strip_prefix('L')?.parse().ok()?;
            let allowed = cells.get(2).map_or("", |c| c.trim());
            Some(Row {
                layer,
                module: names(cells.get(1)?).into_iter().next()?,
                allowed: (allowed != "everything").then(|| names(allowed)),
            })
        })
        .collect();
    assert!(
        rows.len() > 10,
        "the Layers table of {} is missing",
        doc.display()
    );
    rows
}

/// The kiln modules a file imports (`crate::name…` and `crate::{a, b::c, …}`).
fn imports(text: &str) -> Vec<(usize, String)> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let line = text[..at].matches('\n').count() + 1;
        // Doc links in comments are not imports.
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        if text[line_start..at].trim_start().starts_with("//") {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group only: `{a::{x, y}, b}` names a and b.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push((line, ident(&item)));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || item.is_empty() {
                    item.push(c);
                }
            }
            out.push((line, ident(&item)));
        } else {
            out.push((line, ident(rest)));
        }
    }
    out.retain(|(_, name)| !name.is_empty() && name != "self");
    out
}

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
fn modules_only_use_what_the_layer_table_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let table = layer_table();
    let layer_of = |module: &str| table.iter().find(|r| r.module == module).map(|r| r.layer);
    let mut violations = Vec::new();
    // Every module of the crate has a row.
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name != "lib" && name != "main" && layer_of(&name).is_none() {
            violations.push(format!("src/{name} has no row in the layer table"));
        }
    }
    for row in &table {
        // A row names only modules of its own layer or below.
        for other in row.allowed.iter().flatten() {
            match layer_of(other) {
                None => violations.push(format!("{}: unknown module {other}", row.module)),
                Some(layer) if layer > row.layer => violations.push(format!(
                    "{} (L{}) may not import {other} (L{layer})",
                    row.module, row.layer
                )),
                Some(_) => {}
            }
        }
        let mut files = Vec::new();
        // A small module may be a single file.
        let single = src.join(format!("{}.rs", row.module));
        if single.is_file() {
            files.push(single);
        } else {
            rust_files(&src.join(&row.module), &mut files);
        }
        assert!(!files.is_empty(), "module {} has no files", row.module);
        let Some(allowed) = &row.allowed else {
            continue;
        };
        for file in files {
            let text = fs::read_to_string(&file).unwrap();
            for (line, other) in imports(&text) {
                if other != row.module && !allowed.contains(&other) {
                    violations.push(format!(
                        "{}:{line}: {} uses {other}",
                        file.display(),
                        row.module
                    ));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_import_scanner_sees_groups() {
    let found: Vec<String> = imports(
        "use crate::oci::Digest;\nuse crate::{\n    store::{self, Store},\n    sys,\n};\nlet x = crate::plan::build();",
    )
    .into_iter()
    .map(|(_, name)| name)
    .collect();
    assert_eq!(found, ["oci", "store", "sys", "plan"]);
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
