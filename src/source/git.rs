//! ADD's git sources, fetched with the `git` binary as BuildKit's git source does (its
//! `source/git`): the ref is resolved with `ls-remote` (branches win over tags, an annotated
//! tag peels to its commit), fetched with `--depth=1` into a scratch bare repository, and
//! its files checked out (`checkout --no-overlay <commit> -- .`) with umask 022, so files
//! are 0644 (0755 when executable) and directories 0755, with the checkout's mtimes.
//! Submodules are checked out too (`--depth=1`); with `keep_git_dir` (and no subdirectory)
//! the result holds a `.git` whose only history is the commit, with `origin` set to the
//! remote. git runs with no system or user configuration, never prompts, and gets
//! credentials only from [`Auth`].

use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::Error;

/// Credentials for one fetch.
#[derive(Debug, Default, Clone)]
pub struct Auth {
    /// The `Authorization` header value sent to an HTTP(S) remote.
    pub authorization: Option<String>,
    /// The SSH agent socket for an SSH remote.
    pub ssh_auth_sock: Option<PathBuf>,
}

impl Auth {
    /// `Authorization` for a `GIT_AUTH_TOKEN` secret, as BuildKit sends it.
    pub fn token(token: &[u8]) -> String {
        use base64::Engine;
        let mut credentials = b"x-access-token:".to_vec();
        credentials.extend_from_slice(token);
        format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }
}

/// What to fetch.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub remote: &'a str,
    /// A branch, tag, full ref or commit; the default branch when empty.
    pub reference: &'a str,
    /// The directory whose contents are the result; the root when empty.
    pub subdir: &'a str,
    /// A commit, or a prefix of one, the ref must resolve to.
    pub checksum: Option<&'a str>,
    pub keep_git_dir: bool,
    pub submodules: bool,
}

/// What the ref resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The ref to fetch: a full ref name (`refs/heads/main`) or a commit.
    pub reference: String,
    /// The object it names (an annotated tag's object for such a tag).
    pub object: String,
    /// The commit whose files the result holds: `object`, peeled.
    pub commit: String,
}

/// The `git` command line for one remote.
pub struct Git {
    remote: String,
    env: Vec<(String, String)>,
}

impl Git {
    pub fn new(remote: &str, auth: &Auth) -> Git {
        let mut env: Vec<(String, String)> = [
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("HOME", "/dev/null"),
            ("LC_ALL", "C"),
            (
                "GIT_SSH_COMMAND",
                "ssh -F /dev/null -o StrictHostKeyChecking=no",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let inherited = [
            "PATH",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "all_proxy",
        ];
        for name in inherited {
            if let Ok(value) = std::env::var(name) {
                env.push((name.to_string(), value));
            }
        }
        // Through the environment, not `-c`: the header stays out of the process list.
        if let Some(authorization) = &auth.authorization {
            env.extend([
                ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
                (
                    "GIT_CONFIG_KEY_0".to_string(),
                    format!("http.{remote}.extraheader"),
                ),
                (
                    "GIT_CONFIG_VALUE_0".to_string(),
                    format!("Authorization: {authorization}"),
                ),
            ]);
        }
        if let Some(sock) = &auth.ssh_auth_sock {
            env.push(("SSH_AUTH_SOCK".to_string(), sock.display().to_string()));
        }
        Git {
            remote: remote.to_string(),
            env,
        }
    }

    /// Runs `git [--git-dir DIR] [--work-tree DIR] ARGS` in `cwd`; its standard output.
    async fn run(&self, dirs: Dirs<'_>, args: &[&str]) -> Result<Vec<u8>, Error> {
        // git creates files by the umask: 022 gives BuildKit's modes whatever kiln's is.
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .args(["-c", "umask 022 && exec git \"$@\"", "git"])
            .args(["-c", "protocol.file.allow=user"]);
        if let Some(dir) = dirs.git_dir {
            command.arg("--git-dir").arg(dir);
        }
        if let Some(dir) = dirs.work_tree {
            command.arg("--work-tree").arg(dir).current_dir(dir);
        }
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = command
            .output()
            .await
            .map_err(|source| Error::GitSpawn { source })?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        if output.status.code() == Some(127) {
            return Err(Error::GitMissing);
        }
        let redacted = redact(&self.remote);
        Err(Error::GitCommand {
            command: args.first().copied().unwrap_or_default().to_string(),
            remote: redacted.clone(),
            stderr: String::from_utf8_lossy(&output.stderr)
                .trim()
                .replace(&self.remote, &redacted),
        })
    }

    fn fail(&self, message: String) -> Error {
        Error::Git {
            remote: redact(&self.remote),
            message,
        }
    }

    /// Resolves the request's ref to a commit (BuildKit's `resolveMetadataFromURL`).
    pub async fn resolve(&self, request: &Request<'_>) -> Result<Resolved, Error> {
        let checksum = request.checksum.unwrap_or_default();
        if is_commit(request.reference) {
            if !request.reference.starts_with(checksum) {
                return Err(self.fail(format!(
                    "expected checksum to match {checksum}, got {}",
                    request.reference
                )));
            }
            return Ok(Resolved {
                reference: request.reference.to_string(),
                object: request.reference.to_string(),
                commit: request.reference.to_string(),
            });
        }
        let reference = if request.reference.is_empty() {
            self.default_branch().await?
        } else {
            request.reference.to_string()
        };
        let peeled = format!("{reference}^{{}}");
        let listing = self
            .run(
                Dirs::NONE,
                &["ls-remote", "--", &self.remote, &reference, &peeled],
            )
            .await?;
        let listing = String::from_utf8_lossy(&listing);
        let resolved = match_ref(&listing, &reference)
            .ok_or_else(|| self.fail(format!("repository does not contain ref {reference}")))?;
        if !resolved.object.starts_with(checksum) && !resolved.commit.starts_with(checksum) {
            return Err(self.fail(format!(
                "expected checksum to match {checksum}, got {}",
                resolved.commit
            )));
        }
        Ok(resolved)
    }

    async fn default_branch(&self) -> Result<String, Error> {
        let out = self
            .run(Dirs::NONE, &["ls-remote", "--symref", &self.remote, "HEAD"])
            .await?;
        String::from_utf8_lossy(&out)
            .lines()
            .find_map(|line| {
                let (symref, name) = line.strip_prefix("ref: ")?.split_once('\t')?;
                (name == "HEAD" && symref.starts_with("refs/")).then(|| symref.to_string())
            })
            .ok_or_else(|| self.fail("could not find the default branch".to_string()))
    }

    /// Fetches `resolved` and puts its files (the request's subdirectory) in `fs`, an
    /// empty directory; `scratch` is an empty directory the caller removes afterwards.
    pub async fn checkout(
        &self,
        request: &Request<'_>,
        resolved: &Resolved,
        scratch: &Path,
        fs: &Path,
    ) -> Result<(), Error> {
        let bare = scratch.join("repo.git");
        let bare_dir = Dirs::git(&bare);
        let bare_path = path_str(&bare)?;
        let mut init = vec!["-c", "init.defaultBranch=master", "init", "--bare", "-q"];
        if resolved.object.len() == 64 {
            init.push("--object-format=sha256");
        }
        init.push(bare_path);
        self.run(Dirs::NONE, &init).await?;
        self.run(bare_dir, &["remote", "add", "origin", &self.remote])
            .await?;
        self.fetch(bare_dir, resolved).await?;

        let keep = request.keep_git_dir && request.subdir.is_empty();
        let tree = if request.subdir.is_empty() {
            fs.to_path_buf()
        } else {
            scratch.join("checkout")
        };
        std::fs::create_dir_all(&tree).map_err(io("create", &tree))?;
        let git_dir = if keep {
            self.clone_into(&bare, resolved, fs).await?;
            fs.join(".git")
        } else {
            let dirs = Dirs {
                git_dir: Some(&bare),
                work_tree: Some(&tree),
            };
            self.run(
                dirs,
                &[
                    "checkout",
                    "-q",
                    "--no-overlay",
                    &resolved.object,
                    "--",
                    ".",
                ],
            )
            .await?;
            bare.clone()
        };
        if request.submodules && tree.join(".gitmodules").exists() {
            let dirs = Dirs {
                git_dir: Some(&git_dir),
                work_tree: Some(&tree),
            };
            self.run(
                dirs,
                &[
                    "submodule",
                    "update",
                    "-q",
                    "--init",
                    "--recursive",
                    "--depth=1",
                ],
            )
            .await?;
        }
        if !request.subdir.is_empty() {
            self.move_subdir(&tree, request.subdir, fs)?;
        }
        Ok(())
    }

    /// Fetches the resolved ref (one commit deep) into the bare repository.
    async fn fetch(&self, bare: Dirs<'_>, resolved: &Resolved) -> Result<(), Error> {
        if is_commit(&resolved.reference) {
            // Servers speaking protocol v2 give any commit; older ones only refs' history.
            let shallow = [
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                "origin",
                &resolved.reference,
            ];
            if self.run(bare, &shallow).await.is_err() {
                self.run(bare, &["fetch", "-q", "--tags", "origin"]).await?;
            }
            let object = format!("{}^{{commit}}", resolved.reference);
            return self.run(bare, &["cat-file", "-e", &object]).await.map(drop);
        }
        let refspec = format!("{0}:{0}", resolved.reference);
        let fetch = [
            "fetch",
            "-q",
            "--depth=1",
            "--no-tags",
            "--force",
            "origin",
            "--",
            &refspec,
        ];
        self.run(bare, &fetch).await?;
        let fetched = self.run(bare, &["rev-parse", &resolved.reference]).await?;
        if String::from_utf8_lossy(&fetched).trim() != resolved.object {
            return Err(self.fail(format!(
                "{} moved to another commit while it was fetched",
                resolved.reference
            )));
        }
        Ok(())
    }

    /// `--keep-git-dir`: a repository in `fs` holding just the commit, checked out
    /// detached, its `origin` the remote.
    async fn clone_into(&self, bare: &Path, resolved: &Resolved, fs: &Path) -> Result<(), Error> {
        let git_dir = fs.join(".git");
        let dirs = Dirs {
            git_dir: Some(&git_dir),
            work_tree: Some(fs),
        };
        let mut init = vec!["-c", "init.defaultBranch=master", "init", "-q"];
        if resolved.object.len() == 64 {
            init.push("--object-format=sha256");
        }
        self.run(dirs, &init).await?;
        // file:// rather than a path: git's local-clone shortcuts are not used.
        let origin = format!("file://{}", path_str(bare)?);
        self.run(dirs, &["remote", "add", "origin", &origin])
            .await?;
        let pull = if is_commit(&resolved.reference) {
            let pinned = "refs/kiln/checkout";
            self.run(
                Dirs::git(bare),
                &["update-ref", pinned, &resolved.reference],
            )
            .await?;
            pinned.to_string()
        } else {
            format!("{0}:{0}", resolved.reference)
        };
        self.run(
            dirs,
            &["fetch", "-q", "-u", "--depth=1", "--", "origin", &pull],
        )
        .await?;
        self.run(dirs, &["checkout", "-q", "FETCH_HEAD"]).await?;
        self.run(
            dirs,
            &["remote", "set-url", "origin", &redact(&self.remote)],
        )
        .await?;
        self.run(dirs, &["reflog", "expire", "--all", "--expire=now"])
            .await?;
        let fetch_head = git_dir.join("FETCH_HEAD");
        match std::fs::remove_file(&fetch_head) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &fetch_head)(e)),
            _ => Ok(()),
        }
    }

    /// Moves the entries of `tree/subdir` into `fs`. Every component of `subdir` must be a
    /// directory (not a link), so nothing outside the checkout can be reached.
    fn move_subdir(&self, tree: &Path, subdir: &str, fs: &Path) -> Result<(), Error> {
        let mut dir = tree.to_path_buf();
        for component in subdir.split('/') {
            dir.push(component);
            match std::fs::symlink_metadata(&dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(
                        self.fail(format!("subdir {subdir}: {component} is not a directory"))
                    );
                }
                Err(_) => return Err(self.fail(format!("subdir {subdir} does not exist"))),
            }
        }
        for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            let target = fs.join(entry.file_name());
            std::fs::rename(entry.path(), &target).map_err(io("move", &entry.path()))?;
        }
        Ok(())
    }
}

/// `--git-dir` and `--work-tree`, each when given.
#[derive(Clone, Copy)]
struct Dirs<'a> {
    git_dir: Option<&'a Path>,
    work_tree: Option<&'a Path>,
}

impl<'a> Dirs<'a> {
    const NONE: Dirs<'static> = Dirs {
        git_dir: None,
        work_tree: None,
    };

    fn git(dir: &'a Path) -> Dirs<'a> {
        Dirs {
            git_dir: Some(dir),
            work_tree: None,
        }
    }
}

/// The object `reference` names in an `ls-remote` listing, preferring as `git checkout`
/// does: an exact full ref, then a branch, then a tag (peeled when annotated).
fn match_ref(listing: &str, reference: &str) -> Option<Resolved> {
    let bare = reference.strip_prefix("refs/").unwrap_or(reference);
    let full = format!("refs/{bare}");
    let head = format!(
        "refs/heads/{}",
        reference.strip_prefix("refs/heads/").unwrap_or(reference)
    );
    let tag = format!(
        "refs/tags/{}",
        reference.strip_prefix("refs/tags/").unwrap_or(reference)
    );
    let peeled_tag = format!("{tag}^{{}}");
    let find = |name: &str| {
        listing.lines().find_map(|line| {
            let (sha, listed) = line.split_once('\t')?;
            (listed == name).then(|| sha.to_string())
        })
    };
    let (used, object) = if let Some(sha) = find(&full) {
        (full, sha)
    } else if let Some(sha) = find(&head) {
        (head, sha)
    } else {
        (tag.clone(), find(&tag)?)
    };
    if !is_commit(&object) {
        return None;
    }
    let commit = if used == tag {
        find(&peeled_tag).unwrap_or_else(|| object.clone())
    } else {
        object.clone()
    };
    Some(Resolved {
        reference: used,
        object,
        commit,
    })
}

/// A full SHA-1 or SHA-256 commit id.
pub fn is_commit(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64)
        && reference
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The remote with any password in it replaced, for messages and the kept `.git`.
pub fn redact(remote: &str) -> String {
    match url::Url::parse(remote) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("xxxxx"));
            url.to_string()
        }
        _ => remote.to_string(),
    }
}

fn path_str(path: &Path) -> Result<&str, Error> {
    path.to_str().ok_or_else(|| Error::GitIo {
        what: "use",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not UTF-8"),
    })
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::GitIo { what, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    #[test]
    fn refs_resolve_as_checkout_prefers() {
        let listing = format!(
            "{A}\trefs/heads/v1\n{B}\trefs/tags/v1\n{C}\trefs/tags/v1^{{}}\n{B}\trefs/tags/v2\n{C}\trefs/tags/v2^{{}}\n"
        );
        let branch = match_ref(&listing, "v1").unwrap();
        assert_eq!(
            (branch.reference.as_str(), branch.commit.as_str()),
            ("refs/heads/v1", A)
        );
        let tag = match_ref(&listing, "v2").unwrap();
        assert_eq!(tag.reference, "refs/tags/v2");
        assert_eq!((tag.object.as_str(), tag.commit.as_str()), (B, C));
        let full = match_ref(&listing, "refs/tags/v1").unwrap();
        assert_eq!((full.object.as_str(), full.commit.as_str()), (B, C));
        assert!(match_ref(&listing, "v3").is_none());
    }

    #[test]
    fn commits_tokens_and_redaction() {
        assert!(is_commit(A));
        assert!(!is_commit("1111"));
        assert!(!is_commit(&A.to_uppercase().replace('1', "A")));
        assert_eq!(Auth::token(b"tok"), "basic eC1hY2Nlc3MtdG9rZW46dG9r");
        assert_eq!(
            redact("https://user:secret@host/r.git"),
            "https://user:xxxxx@host/r.git"
        );
        assert_eq!(redact("git@host:r.git"), "git@host:r.git");
    }
}
