//! `.dockerignore` parsing and matching with the semantics of moby/patternmatcher v0.6.1, the
//! library BuildKit uses; `COPY --exclude` uses the same matcher.
//!
//! A pattern is classified as exact / prefix (`dir/**`) / suffix (`**/name`) / regex, and
//! regex patterns are translated to a regex the way moby does, quirks included (a `^` outside
//! a class is an anchor). Syntax is checked with Go's `filepath.Match` rules when the matcher
//! is built; a pattern that passes that check but whose regex does not compile (for example
//! `[Local-Only]`, a reversed range) fails every time it is evaluated, as upstream.

use regex::Regex;

use super::Error;
use super::glob::go_match;
use crate::gocompat::go_path_clean;

/// `ignorefile.ReadAll`: turns the text of a `.dockerignore` file into matcher patterns.
pub struct IgnoreFile;

impl IgnoreFile {
    /// Parses `.dockerignore` text: strips a BOM, skips `#` lines (column 1 only, before
    /// trimming) and blank lines, trims, cleans each pattern and drops one leading `/`.
    /// A lone `!` is kept; [`PatternMatcher::new`] rejects it.
    pub fn parse(text: &str) -> Vec<String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for line in text.split('\n') {
            // bufio.ScanLines drops one trailing CR.
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = String::new();
            if !pattern.is_empty() {
                cleaned = go_path_clean(pattern);
                if cleaned.len() > 1 && cleaned.starts_with('/') {
                    cleaned.remove(0);
                }
            }
            if invert {
                cleaned.insert(0, '!');
            }
            patterns.push(cleaned);
        }
        patterns
    }

    /// Like [`IgnoreFile::parse`] for raw bytes; invalid UTF-8 is replaced, not rejected.
    pub fn parse_bytes(bytes: &[u8]) -> Vec<String> {
        Self::parse(&String::from_utf8_lossy(bytes))
    }

    /// The ignore file BuildKit would use for `dockerfile` (a path relative to the context):
    /// `<Dockerfile>.dockerignore` beside the Dockerfile if it exists, else `.dockerignore`.
    pub fn locate(context_root: &std::path::Path, dockerfile: &str) -> Option<std::path::PathBuf> {
        let specific = context_root.join(format!("{dockerfile}.dockerignore"));
        if specific.is_file() {
            return Some(specific);
        }
        let general = context_root.join(".dockerignore");
        general.is_file().then_some(general)
    }

    /// The patterns of the ignore file BuildKit would use for `dockerfile` (see
    /// [`IgnoreFile::locate`]), compiled; `None` when there is no such file.
    pub fn load(
        context_root: &std::path::Path,
        dockerfile: &str,
    ) -> Result<Option<PatternMatcher>, Error> {
        let Some(path) = Self::locate(context_root, dockerfile) else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path, source })?;
        PatternMatcher::new(Self::parse_bytes(&bytes)).map(Some)
    }
}

/// How one pattern is matched (moby's `matchType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    Exact,
    /// `dir/**`: the path starts with `dir/`.
    Prefix,
    /// `**/name` or `**name`: the path ends with the rest.
    Suffix,
    Regex,
}

#[derive(Debug, Clone)]
enum Compiled {
    Exact,
    Prefix,
    Suffix,
    Regex(Regex),
    /// Passed the syntax check but the regex does not compile; fails whenever evaluated.
    Invalid,
}

#[derive(Debug, Clone)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    regex_source: String,
    match_type: MatchType,
    compiled: Compiled,
}

/// One pattern as the matcher understands it, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternInfo {
    pub pattern: String,
    pub exclusion: bool,
    pub match_type: MatchType,
    /// The regex the pattern was translated to, for [`MatchType::Regex`].
    pub regex: Option<String>,
}

/// The per-pattern results for a directory, passed down to its children during a walk so
/// that ancestors are not matched again (moby's `MatchInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of ignore patterns; the last applicable one wins.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Builds a matcher (moby `New`): trims and cleans each pattern, skips empty ones, takes
    /// a leading `!` as an exclusion, and rejects malformed globs with [`Error::BadPattern`].
    pub fn new<I, S>(patterns: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut matcher = PatternMatcher::default();
        for raw in patterns {
            let trimmed = raw.as_ref().trim();
            if trimmed.is_empty() {
                continue;
            }
            let mut cleaned = go_path_clean(trimmed);
            let exclusion = cleaned.starts_with('!');
            if exclusion {
                if cleaned.len() == 1 {
                    return Err(Error::IllegalExclusion);
                }
                cleaned.remove(0);
                matcher.exclusions = true;
            }
            if go_match(&cleaned, ".").is_err() {
                return Err(Error::BadPattern {
                    pattern: raw.as_ref().to_string(),
                });
            }
            matcher.patterns.push(Pattern::compile(cleaned, exclusion));
        }
        Ok(matcher)
    }

    /// Whether any pattern is an exclusion (`!`). If not, an ignored directory can be skipped
    /// without walking it; if so, something inside it may be re-included.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub fn patterns(&self) -> Vec<PatternInfo> {
        self.patterns
            .iter()
            .map(|p| PatternInfo {
                pattern: p.cleaned.clone(),
                exclusion: p.exclusion,
                match_type: p.match_type,
                regex: (p.match_type == MatchType::Regex).then(|| p.regex_source.clone()),
            })
            .collect()
    }

    /// Whether `path` (slash-separated, relative to the context root) is ignored: the path
    /// is cleaned first and `.` is never ignored, as moby's package-level functions do.
    pub fn matches(&self, path: &str) -> Result<bool, Error> {
        let cleaned = go_path_clean(path);
        if cleaned == "." {
            return Ok(false);
        }
        self.matches_or_parent_matches(&cleaned)
    }

    /// moby `MatchesOrParentMatches`: a pattern hits when it matches the path or any of its
    /// ancestor directories. The path is used as given (not cleaned).
    pub fn matches_or_parent_matches(&self, path: &str) -> Result<bool, Error> {
        let mut matched = false;
        for pattern in &self.patterns {
            // An inclusion only matters while unmatched, an exclusion only while matched.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.matches(path)? || pattern.matches_an_ancestor(path);
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// moby `MatchesUsingParentResults`: like [`Self::matches_or_parent_matches`], but the
    /// caller passes the [`MatchInfo`] returned for the parent directory (or the default for
    /// a top-level entry), and gets this path's to pass to its children.
    pub fn matches_using_parent_results(
        &self,
        path: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), Error> {
        let parent_matched = &parent.parent_matched;
        if !parent_matched.is_empty() && parent_matched.len() != self.patterns.len() {
            return Err(Error::MatchInfoMismatch);
        }
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent_matched.get(index).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches(path)?;
                // Without parent results, fall back to testing every ancestor.
                if !hit && parent_matched.is_empty() {
                    hit = pattern.matches_an_ancestor(path);
                }
            }
            info.parent_matched[index] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((matched, info))
    }
}

impl Pattern {
    fn compile(cleaned: String, exclusion: bool) -> Pattern {
        let (match_type, regex_source) = translate(&cleaned);
        let compiled = match match_type {
            MatchType::Exact => Compiled::Exact,
            MatchType::Prefix => Compiled::Prefix,
            MatchType::Suffix => Compiled::Suffix,
            MatchType::Regex => match Regex::new(&regex_source) {
                Ok(regex) => Compiled::Regex(regex),
                Err(_) => Compiled::Invalid,
            },
        };
        Pattern {
            cleaned,
            exclusion,
            regex_source,
            match_type,
            compiled,
        }
    }

    fn matches(&self, path: &str) -> Result<bool, Error> {
        Ok(match &self.compiled {
            Compiled::Exact => path == self.cleaned,
            Compiled::Prefix => {
                let prefix = self.cleaned.strip_suffix("**").unwrap_or(&self.cleaned);
                path.starts_with(prefix)
            }
            Compiled::Suffix => {
                let suffix = self.cleaned.get(2..).unwrap_or("");
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Compiled::Regex(regex) => regex.is_match(path),
            Compiled::Invalid => {
                return Err(Error::BadPattern {
                    pattern: self.cleaned.clone(),
                });
            }
        })
    }

    /// Tests the ancestors `a`, `a/b`, … of `path` (errors ignored, as upstream).
    fn matches_an_ancestor(&self, path: &str) -> bool {
        let parent = match path.rfind('/') {
            Some(0) => "/",
            Some(i) => &path[..i],
            None => return false,
        };
        let parent = go_path_clean(parent);
        if parent == "." {
            return false;
        }
        let mut end = 0;
        let bytes = parent.as_bytes();
        loop {
            let next = bytes[end..]
                .iter()
                .position(|&b| b == b'/')
                .map(|i| end + i);
            let prefix = &parent[..next.unwrap_or(parent.len())];
            if self.matches(prefix).unwrap_or(false) {
                return true;
            }
            match next {
                Some(i) => end = i + 1,
                None => return false,
            }
        }
    }
}

/// moby's `compile`: the match type and, for regex patterns, the regex source.
fn translate(pattern: &str) -> (MatchType, String) {
    let mut regex = String::from("^");
    let mut match_type = MatchType::Exact;
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    let mut index = 0;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is treated as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    // Trailing `**` accepts everything below, as .gitignore does.
                    if match_type == MatchType::Exact {
                        match_type = MatchType::Prefix;
                    } else {
                        regex.push_str(".*");
                        match_type = MatchType::Regex;
                    }
                } else {
                    // Any number of directories, including none.
                    regex.push_str("(.*/)?");
                    match_type = MatchType::Regex;
                }
                if index == 0 {
                    match_type = MatchType::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                match_type = MatchType::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                match_type = MatchType::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regex.push('\\');
                regex.push(c);
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    push_escaped(&mut regex, escaped);
                    match_type = MatchType::Regex;
                }
                None => regex.push_str("\\\\"),
            },
            '[' if in_class => {
                // Go's regex takes `[` in a class literally (except `[:name:]`); Rust's
                // would open a nested class.
                let rest: String = chars.clone().collect();
                let posix = rest
                    .strip_prefix(':')
                    .and_then(|r| r.find(":]").map(|end| r[..end].chars().count() + 3));
                if let Some(class_chars) = posix {
                    regex.push('[');
                    for _ in 0..class_chars {
                        if let Some(n) = chars.next() {
                            regex.push(n);
                        }
                    }
                } else {
                    regex.push_str("\\[");
                }
            }
            '[' => {
                regex.push('[');
                in_class = true;
                match_type = MatchType::Regex;
            }
            ']' => {
                regex.push(']');
                in_class = false;
                match_type = MatchType::Regex;
            }
            // Class set operators in Rust's regex (`&&`, `~~`), plain characters in Go's.
            '&' | '~' if in_class => {
                regex.push('\\');
                regex.push(c);
            }
            other => regex.push(other),
        }
        index += 1;
    }
    if match_type == MatchType::Regex {
        regex.push('$');
        (match_type, regex)
    } else {
        (match_type, String::new())
    }
}

/// `\x` in a pattern becomes `\x` in the regex as moby does (so `\d` is a digit class there
/// too); punctuation without a meaning in Rust's regex is emitted plainly.
fn push_escaped(regex: &mut String, escaped: char) {
    if escaped.is_ascii_alphanumeric() || regex_syntax_meta(escaped) {
        regex.push('\\');
    }
    regex.push(escaped);
}

fn regex_syntax_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_like_moby() {
        assert_eq!(translate("**/dir2/*").1, "^(.*/)?dir2/[^/]*$");
        assert_eq!(translate("dir/**").0, MatchType::Prefix);
        assert_eq!(translate("**").0, MatchType::Suffix);
    }

    #[test]
    fn walk_info_skips_ancestors() {
        let m = PatternMatcher::new(["docs", "!docs/README.md"]).unwrap();
        let (dir, info) = m
            .matches_using_parent_results("docs", &MatchInfo::default())
            .unwrap();
        assert!(dir);
        let (file, _) = m
            .matches_using_parent_results("docs/README.md", &info)
            .unwrap();
        assert!(!file);
        assert!(m.exclusions());
    }
}
