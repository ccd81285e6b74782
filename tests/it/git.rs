//! `ADD` from git end to end, against `git daemon` and `git http-backend` on loopback
//! (harness/git.rs), and `ADD --unpack` of URLs and local archives. Privileged like the
//! other build tests (skipped with the reason otherwise, failing under `CI`).

use std::collections::BTreeMap;
use std::io::Write;

use base64::Engine;

use crate::build::Env;
use crate::harness::git::GitServer;
use crate::harness::registry::{FakeServer, Resp};
use crate::harness::stderr;

/// Commit `one` (tagged `v1`, annotated), then commit `two` on `main`; both published.
/// Returns their ids.
fn repository(server: &GitServer) -> (String, String) {
    server.write("a.txt", "one\n");
    server.write("sub/dir/f", "in sub\n");
    server.write("run.sh", "#!/bin/sh\n");
    let work = server.work();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a.txt", work.join("link")).unwrap();
    let first = server.commit("one");
    server.git(&["tag", "-a", "v1", "-m", "version 1"]);
    server.write("a.txt", "two\n");
    let second = server.commit("two");
    server.publish();
    (first, second)
}

fn names(layer: &BTreeMap<String, (u32, Vec<u8>)>) -> Vec<&str> {
    layer.keys().map(String::as_str).collect()
}

#[test]
fn add_from_git_by_branch_tag_commit_and_subdir() {
    let Some(env) = Env::new(false) else { return };
    let Some(server) = GitServer::start() else {
        return;
    };
    let (first, _) = repository(&server);
    let repo = format!("{}/repo.git", server.git_url);
    env.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD {repo} /main/\nADD {repo}#v1:sub /v1sub/\n\
             ADD --keep-git-dir {repo}#v1 /kept/\nADD --checksum={} {repo}#{first} /pinned/\n",
            &first[..7]
        ),
    );
    env.build_ok(&["-t", "git"]);
    let (manifest, _) = env.image("docker.io/library/git:latest");

    // The default branch, without .git; modes as a checkout with umask 022 makes them.
    let main = env.layer(&manifest, 0);
    assert_eq!(main["main/a.txt"], (0o644, b"two\n".to_vec()));
    assert_eq!(main["main/run.sh"].0, 0o755);
    assert_eq!(main["main/sub/dir/f"].1, b"in sub\n");
    assert!(main.contains_key("main/link"), "{:?}", names(&main));
    assert!(
        !main.keys().any(|name| name.contains(".git")),
        "{:?}",
        names(&main)
    );
    // The annotated tag's subdirectory: its contents only.
    let sub = env.layer(&manifest, 1);
    assert_eq!(sub["v1sub/dir/f"].1, b"in sub\n");
    assert!(!sub.contains_key("v1sub/a.txt"), "{:?}", names(&sub));
    // --keep-git-dir: a .git detached at the tag's commit.
    let kept = env.layer(&manifest, 2);
    assert_eq!(kept["kept/a.txt"].1, b"one\n");
    assert_eq!(kept["kept/.git/HEAD"].1, format!("{first}\n").into_bytes());
    // A commit id, checked against --checksum's prefix.
    assert_eq!(env.layer(&manifest, 3)["pinned/a.txt"].1, b"one\n");

    // Nothing changed upstream: every source and step is cached.
    let (_, log) = env.build_ok(&["-t", "git"]);
    assert_eq!(log.matches("CACHED").count(), 8, "{log}");

    // A new commit on main: that checkout is new, the tag's and the commit's are not.
    server.write("a.txt", "three\n");
    server.commit("three");
    server.publish();
    let (_, log) = env.build_ok(&["-t", "git"]);
    assert_eq!(log.matches("CACHED").count(), 3, "{log}");
    let (manifest, _) = env.image("docker.io/library/git:latest");
    assert_eq!(env.layer(&manifest, 0)["main/a.txt"].1, b"three\n");
    assert_eq!(env.layer(&manifest, 2)["kept/a.txt"].1, b"one\n");

    for (dockerfile, message) in [
        (
            format!("FROM scratch\nADD --checksum=deadbeef {repo}#v1 /x/\n"),
            "expected checksum to match deadbeef",
        ),
        (
            format!("FROM scratch\nADD {repo}#nope /x/\n"),
            "does not contain ref nope",
        ),
        (
            format!("FROM scratch\nADD {repo}#v1:missing /x/\n"),
            "subdir missing does not exist",
        ),
        (
            "FROM scratch\nADD git://127.0.0.1:1/repo.git /x/\n".to_string(),
            "git://127.0.0.1:1/repo.git",
        ),
    ] {
        env.write("Dockerfile", &dockerfile);
        let out = env.build(&[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(message), "{message}: {err}");
        assert!(err.contains("Dockerfile:2"), "{err}");
    }
}

#[test]
fn submodules_are_checked_out_unless_skipped() {
    let Some(env) = Env::new(false) else { return };
    let Some(server) = GitServer::start() else {
        return;
    };
    let library = server.publish_other("lib", &[("lib.txt", "library\n")]);
    server.write("a.txt", "main\n");
    server.git(&["submodule", "add", "-q", &library, "lib"]);
    server.commit("with a submodule");
    server.publish();
    let repo = format!("{}/repo.git", server.git_url);
    env.write(
        "Dockerfile",
        &format!("FROM scratch\nADD {repo} /with/\nADD {repo}?submodules=false /without/\n"),
    );
    env.build_ok(&["-t", "submodules"]);
    let (manifest, _) = env.image("docker.io/library/submodules:latest");
    let with = env.layer(&manifest, 0);
    assert_eq!(
        with["with/lib/lib.txt"].1,
        b"library\n",
        "{:?}",
        names(&with)
    );
    assert!(with.contains_key("with/.gitmodules"), "{:?}", names(&with));
    let without = env.layer(&manifest, 1);
    assert_eq!(without["without/a.txt"].1, b"main\n");
    assert!(
        !without.keys().any(|name| name.contains("lib.txt")),
        "{:?}",
        names(&without)
    );
}

#[test]
fn add_from_smart_http_with_a_token_or_header_secret() {
    let Some(env) = Env::new(false) else { return };
    let Some(server) = GitServer::start() else {
        return;
    };
    let (first, _) = repository(&server);
    let credentials = base64::engine::general_purpose::STANDARD.encode("x-access-token:s3cret");
    let authorization = format!("basic {credentials}");
    *server.required_auth.lock().unwrap() = Some(authorization.clone());
    let host = server.http_url.trim_start_matches("http://").to_string();
    env.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD {}/repo.git#v1:sub /s/\n",
            server.http_url
        ),
    );
    let out = env.build(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "without credentials: {}",
        stderr(&out)
    );

    let token = env.context().join("../token");
    std::fs::File::create(&token)
        .unwrap()
        .write_all(b"s3cret")
        .unwrap();
    let secret = format!("id=GIT_AUTH_TOKEN.{host},src={}", token.display());
    env.build_ok(&["-t", "http", "--secret", &secret]);
    let (manifest, _) = env.image("docker.io/library/http:latest");
    assert_eq!(env.layer(&manifest, 0)["s/dir/f"].1, b"in sub\n");
    let requests = server.http_requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/repo.git/info/refs?service=git-upload-pack")),
        "{requests:?}"
    );

    // The whole header as GIT_AUTH_HEADER, for a commit not fetched before.
    let header = env.context().join("../header");
    std::fs::write(&header, &authorization).unwrap();
    let secret = format!("id=GIT_AUTH_HEADER.{host},src={}", header.display());
    env.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD {}/repo.git#{first} /c/\n",
            server.http_url
        ),
    );
    env.build_ok(&["-t", "http", "--secret", &secret]);
    let (manifest, _) = env.image("docker.io/library/http:latest");
    assert_eq!(env.layer(&manifest, 0)["c/a.txt"].1, b"one\n");
}

/// A tar (gzip-compressed when asked) holding `inner.txt`.
fn archive(gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "inner.txt", &b"inner\n"[..])
        .unwrap();
    let tar = builder.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn add_unpack_for_urls_and_local_archives() {
    let Some(env) = Env::new(false) else { return };
    let served = archive(true);
    let server = FakeServer::start(move |_| Resp::new(200).body(served.clone()));
    let url = format!("http://{}/a.tar.gz", server.addr);
    std::fs::write(env.context().join("local.tar"), archive(false)).unwrap();
    env.write(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD {url} /remote/\nADD --unpack=true {url} /unpacked/\n\
             ADD local.tar /local/\nADD --unpack=false local.tar /kept/\n"
        ),
    );
    env.build_ok(&["-t", "unpack"]);
    let (manifest, _) = env.image("docker.io/library/unpack:latest");
    // A remote archive is kept as downloaded unless --unpack=true.
    assert_eq!(env.layer(&manifest, 0)["remote/a.tar.gz"].1, archive(true));
    assert_eq!(env.layer(&manifest, 1)["unpacked/inner.txt"].1, b"inner\n");
    // A local one is extracted unless --unpack=false.
    assert_eq!(env.layer(&manifest, 2)["local/inner.txt"].1, b"inner\n");
    assert_eq!(env.layer(&manifest, 3)["kept/local.tar"].1, archive(false));
}
