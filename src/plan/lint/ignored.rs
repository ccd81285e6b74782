//! CopyIgnoredFile: a COPY or ADD from the context naming a file `.dockerignore` leaves
//! out.

use super::Emitter;
use super::rules::COPY_IGNORED_FILE;
use crate::gocompat::{go_path_clean, go_quote};
use crate::instruction::{Command, Instruction, Source};

/// The context's `.dockerignore`, as the rule needs it (the matcher lives with the
/// context, in a lower-level module of its own).
pub trait IgnoreRules {
    /// moby's `MatchesOrParentMatches`: `path` or a directory above it is left out.
    fn excludes(&self, path: &str) -> bool;
    /// Some pattern (`!…`) takes paths back in.
    fn has_exceptions(&self) -> bool;
    /// The patterns that leave paths out, cleaned.
    fn excluding_patterns(&self) -> Vec<String>;
}

/// Checks the sources of `command` when it copies from the context.
pub(super) fn check(command: &Command, ignore: &dyn IgnoreRules, out: &mut Emitter) {
    // With exceptions, whether a path is left out cannot be told from the patterns alone:
    // a directory may be excluded and a file in it taken back.
    if ignore.has_exceptions() {
        return;
    }
    let (verb, sources) = match &command.instruction {
        Instruction::Copy(copy) if copy.from.is_none() => ("Copy", &copy.transfer.sources),
        Instruction::Add(add) => ("Add", &add.transfer.sources),
        _ => return,
    };
    for source in sources {
        let Source::Path(path) = source else {
            continue;
        };
        // Remote sources are not in the context; a variable is only known once expanded.
        if path.contains("://") || path.starts_with("git@") || path.contains('$') {
            continue;
        }
        let path = go_path_clean(path);
        // `.` and `/` are the whole context: only patterns leaving out every entry count.
        if (path == "." || path == "/") && !excludes_every_entry(ignore) {
            continue;
        }
        if ignore.excludes(&path) {
            out.emit(
                &COPY_IGNORED_FILE,
                &command.doc_comments,
                command.span,
                format!(
                    "Attempting to {verb} file {} that is excluded by .dockerignore",
                    go_quote(&path)
                ),
            );
        }
    }
}

fn excludes_every_entry(ignore: &dyn IgnoreRules) -> bool {
    ignore
        .excluding_patterns()
        .iter()
        .any(|p| matches!(p.as_str(), "*" | "**" | "**/*"))
}
