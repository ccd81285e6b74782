//! Path and URL helpers with Go's `path` semantics.

use super::git::is_git_source;
use crate::gocompat::go_path_clean;

/// `system.NormalizeWorkdir`: absolute and cleaned; relative paths join the
/// current working directory.
pub(crate) fn normalise_workdir(current: &str, requested: &str) -> Result<String, String> {
    if requested.is_empty() {
        return Err("cannot normalize nothing".to_string());
    }
    if requested.starts_with('/') {
        return Ok(go_path_clean(requested));
    }
    Ok(go_path_clean(&format!("/{current}/{requested}")))
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
    let base = go_path_clean(path);
    match base.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdirs() {
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
        assert!(is_http_source("https://example.com/file"));
        assert!(!is_http_source("https://github.com/moby/buildkit.git"));
    }
}
