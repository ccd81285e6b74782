//! Path and URL helpers with Go's `path` semantics.

/// Go's `path.Clean`: lexical, `/`-separated.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `system.NormalizeWorkdir`: absolute and cleaned; relative paths join the
/// current working directory.
pub(crate) fn normalise_workdir(current: &str, requested: &str) -> Result<String, String> {
    if requested.is_empty() {
        return Err("cannot normalize nothing".to_string());
    }
    if requested.starts_with('/') {
        return Ok(clean(requested));
    }
    Ok(clean(&format!("/{current}/{requested}")))
}

/// Git sources BuildKit recognises in ADD (`gitutil.ParseGitRef`, simplified).
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

/// An HTTP(S) URL that is not a git repository.
pub(crate) fn is_http_source(source: &str) -> bool {
    (source.starts_with("http://") || source.starts_with("https://")) && !is_git_source(source)
}

/// The file name ADD gives a download: the last URL path element, or
/// `__unnamed__`.
pub(crate) fn url_filename(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_query = after_scheme.split(['?', '#']).next().unwrap_or_default();
    let path = without_query
        .find('/')
        .map_or("", |slash| &without_query[slash..]);
    let base = clean(path);
    match base.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean("/a/b/../c/./d/"), "/a/c/d");
        assert_eq!(clean("/.."), "/");
        assert_eq!(clean("a/../.."), "..");
        assert_eq!(clean(""), ".");
        assert_eq!(
            normalise_workdir("/app", "src/..//lib").unwrap(),
            "/app/lib"
        );
        assert_eq!(normalise_workdir("", "x").unwrap(), "/x");
        assert_eq!(normalise_workdir("/app", "/").unwrap(), "/");
    }

    #[test]
    fn urls() {
        assert_eq!(
            url_filename("https://example.com/a/b.tar.gz?x=1"),
            "b.tar.gz"
        );
        assert_eq!(url_filename("https://example.com"), "__unnamed__");
        assert_eq!(url_filename("https://example.com/"), "__unnamed__");
        assert!(is_git_source("https://github.com/moby/buildkit.git#v0.1"));
        assert!(is_http_source("https://example.com/file"));
        assert!(!is_http_source("https://github.com/moby/buildkit.git"));
    }
}
