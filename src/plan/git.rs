//! ADD's git sources (BuildKit's `dfgitutil.ParseGitRef`): `https://host/repo.git#ref:dir`,
//! `git://…`, `ssh://…` and `git@host:repo.git`, with the ref and subdirectory in the
//! fragment (`#ref:subdir`) or in the query (`?ref=…&subdir=…&tag=…&branch=…&checksum=…&
//! keep-git-dir=…&submodules=…`).

use crate::gocompat::go_path_clean as clean;

/// A git source, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GitRef {
    /// The repository as git is given it: the URL without its fragment and query.
    pub remote: String,
    /// A branch, tag, full ref or commit; empty for the default branch.
    pub reference: String,
    /// A directory of the repository, relative, cleaned; empty for the root.
    pub subdir: String,
    /// `checksum=`/`commit=`: the commit (or a prefix of it) the ref must resolve to.
    pub checksum: Option<String>,
    /// `keep-git-dir=`, when given.
    pub keep_git_dir: Option<bool>,
    /// `submodules=`, when given.
    pub submodules: Option<bool>,
}

/// Whether `source` names a git repository: a `git://` or `ssh://` URL, an SCP-style
/// `git@host:path`, or an HTTP(S) URL whose path ends in `.git`.
pub(crate) fn is_git_source(source: &str) -> bool {
    if source.starts_with("git@") || source.starts_with("git://") || source.starts_with("ssh://") {
        return true;
    }
    if source.starts_with("http://") || source.starts_with("https://") {
        let path = source.split(['#', '?']).next().unwrap_or(source);
        return path.ends_with(".git");
    }
    false
}

impl GitRef {
    /// Parses a source [`is_git_source`] accepted; the message says what is wrong.
    pub(super) fn parse(source: &str) -> Result<GitRef, String> {
        let (rest, fragment) = match source.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (source, None),
        };
        let (remote, query) = match rest.split_once('?') {
            Some((remote, query)) => (remote, Some(query)),
            None => (rest, None),
        };
        let mut git = GitRef {
            remote: remote.to_string(),
            reference: String::new(),
            subdir: String::new(),
            checksum: None,
            keep_git_dir: None,
            submodules: None,
        };
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
            git.reference = reference.to_string();
            git.subdir = clean_subdir(subdir);
        }
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            git.load_query(query)?;
        }
        Ok(git)
    }

    /// The query form's options, with BuildKit's conflict rules.
    fn load_query(&mut self, query: &str) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        let (mut tag, mut branch) = (None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if !seen.insert(key.to_string()) {
                return Err(format!("query {key:?} has multiple values"));
            }
            let flag = |value: &str| -> Result<bool, String> {
                match value {
                    "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                    _ => Err(format!("invalid {key} value: {value:?}")),
                }
            };
            if value.is_empty() && !matches!(&*key, "submodules" | "keep-git-dir") {
                return Err(format!("query {key:?} has no value"));
            }
            match &*key {
                "ref" => self.set_reference(&value)?,
                "tag" => tag = Some(value.to_string()),
                "branch" => branch = Some(value.to_string()),
                "subdir" => {
                    if !self.subdir.is_empty() && self.subdir != clean_subdir(&value) {
                        return Err(format!("subdir conflicts: {:?} vs {value:?}", self.subdir));
                    }
                    self.subdir = clean_subdir(&value);
                }
                "checksum" | "commit" => self.checksum = Some(value.to_string()),
                "keep-git-dir" => self.keep_git_dir = Some(flag(&value)?),
                "submodules" => self.submodules = Some(flag(&value)?),
                _ => return Err(format!("unexpected query {key:?}")),
            }
        }
        if let Some(tag) = tag {
            if branch.is_some() {
                return Err("branch conflicts with tag".to_string());
            }
            self.set_reference(&qualified("refs/tags/", &tag))?;
        }
        if let Some(branch) = branch {
            self.set_reference(&qualified("refs/heads/", &branch))?;
        }
        Ok(())
    }

    fn set_reference(&mut self, reference: &str) -> Result<(), String> {
        if !self.reference.is_empty() && self.reference != reference {
            return Err(format!(
                "ref conflicts: {:?} vs {reference:?}",
                self.reference
            ));
        }
        self.reference = reference.to_string();
        Ok(())
    }
}

fn qualified(prefix: &str, name: &str) -> String {
    if name.starts_with(prefix) {
        name.to_string()
    } else {
        format!("{prefix}{name}")
    }
}

/// `path.Join("/", subdir)` without the leading `/`.
fn clean_subdir(subdir: &str) -> String {
    clean(&format!("/{subdir}"))
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert!(is_git_source("https://github.com/moby/buildkit.git#v0.1"));
        assert!(is_git_source("git@github.com:moby/buildkit.git"));
        assert!(is_git_source("git://host/repo"));
        assert!(!is_git_source("https://example.com/file"));
        assert!(!is_git_source("https://example.com/file?x=.git"));
    }

    #[test]
    fn fragments() {
        let git = GitRef::parse("https://host/r.git#v1.2:docs/../src/").unwrap();
        assert_eq!(git.remote, "https://host/r.git");
        assert_eq!(git.reference, "v1.2");
        assert_eq!(git.subdir, "src");
        let git = GitRef::parse("git@host:org/r.git#main").unwrap();
        assert_eq!(
            (
                git.remote.as_str(),
                git.reference.as_str(),
                git.subdir.as_str()
            ),
            ("git@host:org/r.git", "main", "")
        );
        let git = GitRef::parse("git://host/r.git#:sub").unwrap();
        assert_eq!((git.reference.as_str(), git.subdir.as_str()), ("", "sub"));
    }

    #[test]
    fn queries() {
        let git =
            GitRef::parse("https://host/r.git?tag=v1&subdir=a&checksum=abc&keep-git-dir").unwrap();
        assert_eq!(git.remote, "https://host/r.git");
        assert_eq!(git.reference, "refs/tags/v1");
        assert_eq!(git.subdir, "a");
        assert_eq!(git.checksum.as_deref(), Some("abc"));
        assert_eq!(git.keep_git_dir, Some(true));
        let git = GitRef::parse("https://host/r.git?branch=dev&submodules=false").unwrap();
        assert_eq!(git.reference, "refs/heads/dev");
        assert_eq!(git.submodules, Some(false));
        for bad in [
            "https://host/r.git?tag=a&branch=b",
            "https://host/r.git?ref=a&ref=b",
            "https://host/r.git?nope=1",
            "https://host/r.git?ref=",
            "https://host/r.git?submodules=maybe",
        ] {
            assert!(GitRef::parse(bad).is_err(), "{bad}");
        }
        assert!(GitRef::parse("https://host/r.git?ref=a#b").is_err());
    }
}
