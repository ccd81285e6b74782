//! Images kiln builds compared with what docker 20.10's BuildKit built from the same
//! Dockerfile and context (the expectations below are its output, read with `docker save`),
//! or, for syntax it cannot parse, what current BuildKit's own tests assert: COPY of a
//! symlink source, `**` in `COPY --parents`, and the layers and history of each
//! instruction; and, where current BuildKit's source does otherwise than docker 20.10
//! (`testdata/differential/known-differences.txt`), what that source does: ADD --chown of
//! an archive, and the layers its overlay differ writes. Privileged (the builds run):
//! skipped with the reason otherwise, failing under `CI`.

use std::io::Read;
use std::os::unix::fs::symlink;

use serde_json::Value;

use crate::build::Env;
use crate::harness::stderr;

/// The entries of each uncompressed layer of `name` (the layers kiln built, and a base
/// image's loaded from a docker archive), one line per entry: `path/` for a directory, `path -> target` for a symlink, `path = content`
/// for a file.
fn built_layers(env: &Env, name: &str) -> Vec<Vec<String>> {
    layer_tars(env, name)
        .iter()
        .map(|tar| layer_entries(tar))
        .collect()
}

/// The uncompressed layers of `name`: the ones kiln built, and a base image's loaded from
/// a docker archive.
fn layer_tars(env: &Env, name: &str) -> Vec<Vec<u8>> {
    let (manifest, _) = env.image(name);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|layer| layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar")
        .map(|layer| env.blob(layer["digest"].as_str().unwrap()))
        .collect()
}

/// The entries of a layer as `path mode uid:gid`, sorted (`path/` for a directory).
fn owned_entries(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut out: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            format!(
                "{} {:o} {}:{}",
                entry.path().unwrap().display(),
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

fn layer_entries(tar: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path.trim_end_matches('/').to_string();
        let line = match entry.header().entry_type() {
            tar::EntryType::Directory => format!("{path}/"),
            tar::EntryType::Symlink => {
                let target = entry.link_name().unwrap().unwrap();
                format!("{path} -> {}", target.display())
            }
            tar::EntryType::Regular => {
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                let content = String::from_utf8_lossy(&content);
                format!("{path} = {}", content.trim_end())
                    .trim_end()
                    .to_string()
            }
            other => panic!("{path}: unexpected entry type {other:?}"),
        };
        out.push(line);
    }
    out.sort();
    out
}

fn link(env: &Env, target: &str, path: &str) {
    let path = env.context().join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    symlink(target, path).unwrap();
}

#[test]
fn symlink_sources_are_followed_links_inside_stay_links() {
    let Some(env) = Env::new(false) else { return };
    env.write("a.txt", "file-a");
    env.write("dir/f", "in-dir");
    link(&env, "f", "dir/inner-link");
    link(&env, "a.txt", "link-file");
    link(&env, "dir", "link-dir");
    env.write("tree/real/target.txt", "r");
    link(&env, "target.txt", "tree/real/rel-link");
    link(&env, "../../a.txt", "tree/real/up-link");
    link(&env, "/a.txt", "abs-link");
    env.write(
        "Dockerfile",
        "FROM scratch\nCOPY link-file /f1\nCOPY link-dir /d1\nCOPY tree/real/rel-link /x\n\
         COPY tree/real/up-link /y\nCOPY abs-link /z\nCOPY link-dir /d2/\n\
         COPY link-file /d3/\nCOPY link-* /d4/\nADD link-file /a1\nADD link-dir /a2\n",
    );
    env.build_ok(&["-t", "links"]);
    // What BuildKit made, layer by layer.
    let expected: Vec<Vec<&str>> = vec![
        vec!["f1 = file-a"],
        vec!["d1/", "d1/f = in-dir", "d1/inner-link -> f"],
        vec!["x = r"],
        vec!["y = file-a"],
        vec!["z = file-a"],
        vec!["d2/", "d2/f = in-dir", "d2/inner-link -> f"],
        vec!["d3/", "d3/link-file = file-a"],
        vec![
            "d4/",
            "d4/f = in-dir",
            "d4/inner-link -> f",
            "d4/link-file = file-a",
        ],
        vec!["a1 = file-a"],
        vec!["a2/", "a2/f = in-dir", "a2/inner-link -> f"],
    ];
    assert_eq!(
        built_layers(&env, "docker.io/library/links:latest"),
        expected
    );

    // A link to what `.dockerignore` hides, or to nothing, fails as in BuildKit
    // (`"/hidden" not found`).
    env.write("hidden/h", "h");
    env.write(".dockerignore", "hidden\n");
    link(&env, "hidden", "to-hidden");
    link(&env, "nowhere", "dangling");
    for (source, target) in [("to-hidden", "hidden"), ("dangling", "nowhere")] {
        env.write("Dockerfile", &format!("FROM scratch\nCOPY {source} /t\n"));
        let out = env.build(&[]);
        assert!(!out.status.success(), "COPY {source} built");
        let log = stderr(&out);
        assert!(
            log.contains(&format!("excluded by .dockerignore: {target}")),
            "{log}"
        );
    }
}

#[test]
fn parents_double_star_matches_any_number_of_directories() {
    let Some(env) = Env::new(true) else { return };
    env.write("src/a.txt", "a");
    env.write("src/x/b.txt", "b");
    env.write("src/x/y/c.txt", "c");
    env.write("src/x/n.md", "n");
    // The stage part is BuildKit's testCopyParents ("doublewildcard"); docker 20.10
    // cannot parse `--parents`. `COPY src/**/*.txt` without it matches `**` as `*`, one
    // directory, as docker 20.10 does (only src/x/b.txt).
    env.write(
        "Dockerfile",
        "FROM busybox AS base\n\
         RUN mkdir -p /test/a/b/c/d/e /test/a/b2/c/d/e && touch /test/a/b/c/d/foo \
         /test/a/b/c/d/e/bay /test/a/b2/c/d/e/bar\n\
         FROM scratch\nCOPY --parents src/**/*.txt /dst/\nCOPY src/**/*.txt /one/\n\
         COPY --from=base --parents /test/a/b*/./c/**/e /out/\n",
    );
    env.build_ok(&["-t", "parents"]);
    let expected: Vec<Vec<&str>> = vec![
        vec![
            "dst/",
            "dst/src/",
            "dst/src/a.txt = a",
            "dst/src/x/",
            "dst/src/x/b.txt = b",
            "dst/src/x/y/",
            "dst/src/x/y/c.txt = c",
        ],
        vec!["one/", "one/b.txt = b"],
        vec![
            "out/",
            "out/c/",
            "out/c/d/",
            "out/c/d/e/",
            "out/c/d/e/bar =",
            "out/c/d/e/bay =",
        ],
    ];
    assert_eq!(
        built_layers(&env, "docker.io/library/parents:latest"),
        expected
    );
}

#[test]
fn layers_and_history_follow_buildkit_instruction_by_instruction() {
    let Some(env) = Env::new(true) else { return };
    env.write("f", "f");
    std::fs::create_dir_all(env.context().join("emptydir")).unwrap();
    env.write(
        "Dockerfile",
        "FROM busybox\nWORKDIR /tmp\nWORKDIR /newdir\nWORKDIR /newdir\nWORKDIR sub\n\
         ENV A=1\nLABEL a=b\nARG X=1\nRUN true\nCOPY emptydir /e\nCOPY emptydir /\n\
         COPY f /f\nCOPY f /f\nEXPOSE 80\nUSER root\nVOLUME /v\nSHELL [\"/bin/sh\",\"-c\"]\n\
         STOPSIGNAL SIGTERM\nHEALTHCHECK CMD true\nONBUILD RUN true\nENTRYPOINT [\"sh\"]\n\
         CMD [\"-c\",\"true\"]\nRUN echo hi > /tmp/hi\nWORKDIR /\nMAINTAINER me\n\
         RUN rm /tmp/hi\n",
    );
    env.build_ok(&["-t", "history"]);
    let (manifest, config) = env.image("docker.io/library/history:latest");
    // docker 20.10's BuildKit: (layer?, created_by) of each entry after the base image's.
    // ONBUILD has no entry; a WORKDIR that exists and a RUN that changes nothing still
    // make a layer (empty); `WORKDIR /` makes none.
    let expected = [
        (true, "WORKDIR /tmp"),
        (true, "WORKDIR /newdir"),
        (true, "WORKDIR /newdir"),
        (true, "WORKDIR /newdir/sub"),
        (false, "ENV A=1"),
        (false, "LABEL a=b"),
        (false, "ARG X=1"),
        (true, "RUN |1 X=1 /bin/sh -c true # buildkit"),
        (true, "COPY emptydir /e # buildkit"),
        (true, "COPY emptydir / # buildkit"),
        (true, "COPY f /f # buildkit"),
        (true, "COPY f /f # buildkit"),
        (false, "EXPOSE map[80/tcp:{}]"),
        (false, "USER root"),
        (false, "VOLUME [/v]"),
        (false, "SHELL [/bin/sh -c]"),
        (false, "STOPSIGNAL SIGTERM"),
        (false, "HEALTHCHECK"),
        (false, "ENTRYPOINT [\"sh\"]"),
        (false, "CMD [\"-c\" \"true\"]"),
        (true, "RUN |1 X=1 /bin/sh -c echo hi > /tmp/hi # buildkit"),
        (false, "WORKDIR /"),
        (false, "MAINTAINER me"),
        (true, "RUN |1 X=1 /bin/sh -c rm /tmp/hi # buildkit"),
    ];
    let history = config["history"].as_array().unwrap();
    let ours = &history[history.len() - expected.len()..];
    let got: Vec<(bool, String)> = ours
        .iter()
        .map(|h| {
            let layer = !h["empty_layer"].as_bool().unwrap_or(false);
            (layer, h["created_by"].as_str().unwrap().to_string())
        })
        .collect();
    for ((layer, created_by), (want_layer, want)) in got.iter().zip(expected) {
        assert!(
            created_by.starts_with(want) && *layer == want_layer,
            "{created_by:?} (layer: {layer}), expected {want:?} (layer: {want_layer})\n{got:#?}"
        );
    }
    // One layer per history entry that says so, base image included.
    let with_layer = |entries: &[Value]| {
        entries
            .iter()
            .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
            .count()
    };
    let layers = manifest["layers"].as_array().unwrap().len();
    assert_eq!(layers, with_layer(history));
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().unwrap().len(),
        layers
    );
    assert_eq!(with_layer(ours), 11);
    // The layers of the WORKDIRs that existed and of `RUN true` are empty tars.
    let built = built_layers(&env, "docker.io/library/history:latest");
    let built = &built[built.len() - 11..];
    let workdir_tmp = &built[0];
    let workdir_again = &built[2];
    let run_true = &built[4];
    for layer in [workdir_tmp, workdir_again, run_true] {
        assert!(layer.is_empty(), "{layer:?}");
    }
    assert_eq!(built[1], ["newdir/"]);
}

/// As under BuildKit (runc), a RUN's command is PID 1 of its namespace.
#[test]
fn run_command_is_pid_1() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\nRUN echo $$ > /pid && tr '\\0' ' ' < /proc/1/cmdline > /cmdline && true\n",
    );
    let out = env.build(&["-t", "pid"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let layers = built_layers(&env, "docker.io/library/pid:latest");
    let last = layers.last().unwrap();
    assert!(last.contains(&"pid = 1".to_string()), "{last:?}");
    assert!(
        last.iter()
            .any(|l| l.starts_with("cmdline = /bin/sh -c echo $$")),
        "{last:?}"
    );
}

/// Current BuildKit's `unpack` (solver/llbsolver/file/unpack.go) makes the missing
/// destination with `copy.MkdirAll` and the chowner, and extracts with `ChownOpts`: with
/// `--chown` every entry and the new destination get the owner (docker 20.10's BuildKit
/// kept the archive's owners); without, the archive's owners stay.
#[test]
fn add_chown_of_an_archive_owns_its_entries_and_the_new_destination() {
    let Some(env) = Env::new(true) else { return };
    env.write("src/a/f", "a");
    env.write("src/b", "b");
    let status = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=1234", "--group=5678", "-C"])
        .arg(env.context().join("src"))
        .arg("-cf")
        .arg(env.context().join("owned.tar"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    env.write(
        "Dockerfile",
        "FROM busybox\nADD owned.tar /owned/\nADD --chown=7:8 owned.tar /chowned/\n",
    );
    env.build_ok(&["-t", "tar-owners"]);
    let layers = layer_tars(&env, "docker.io/library/tar-owners:latest");
    let built: Vec<Vec<String>> = layers[layers.len() - 2..]
        .iter()
        .map(|tar| owned_entries(tar))
        .collect();
    assert_eq!(
        built,
        [
            vec![
                "owned/ 755 0:0",
                "owned/a/ 755 1234:5678",
                "owned/a/f 644 1234:5678",
                "owned/b 644 1234:5678",
            ],
            vec![
                "chowned/ 755 7:8",
                "chowned/a/ 755 7:8",
                "chowned/a/f 644 7:8",
                "chowned/b 644 7:8",
            ],
        ]
    );
}

/// Current BuildKit writes a layer with its overlay differ (util/overlay/overlay_linux.go,
/// containerd's `ChangeWriter`): an entry the step left as it was below (a directory whose
/// only change is its mtime, a file rewritten as it was) is not in it, whiteouts have
/// mode 0, an opaque directory becomes a whiteout per name it hid; mount points of RUN
/// are removed after the run (executor/stubs.go). docker 20.10 archived the whole upper.
#[test]
fn layers_hold_what_buildkits_overlay_differ_writes() {
    let Some(env) = Env::new(true) else { return };
    env.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN mkdir -p /d/keep && echo a > /d/a && echo k > /d/keep/k\n\
         RUN rm -rf /d && mkdir /d && echo b > /d/b\n\
         RUN touch /usr/x && rm /usr/x\n\
         RUN chmod 700 /etc\n\
         RUN --mount=type=tmpfs,target=/var/cache/app --mount=type=bind,target=/mnt/data true\n\
         RUN rm /bin/vi\n\
         RUN rm /etc/group && mkdir /etc/group && echo i > /etc/group/inner\n\
         COPY --from=busybox /bin/busybox /bin/busybox\n",
    );
    env.build_ok(&["-t", "differ"]);
    let layers = layer_tars(&env, "docker.io/library/differ:latest");
    let built: Vec<Vec<String>> = layers[layers.len() - 8..]
        .iter()
        .map(|tar| owned_entries(tar))
        .collect();
    let expected: [&[&str]; 8] = [
        &[
            "d/ 755 0:0",
            "d/a 644 0:0",
            "d/keep/ 755 0:0",
            "d/keep/k 644 0:0",
        ],
        &[
            "d/ 755 0:0",
            "d/.wh.a 0 0:0",
            "d/.wh.keep 0 0:0",
            "d/b 644 0:0",
        ],
        &[],
        // The mount point /etc/hostname was made in /etc and removed: the mode stays.
        &["etc/ 700 0:0"],
        &[],
        &["bin/ 755 0:0", "bin/.wh.vi 0 0:0"],
        &[
            "etc/ 700 0:0",
            "etc/group/ 755 0:0",
            "etc/group/inner 644 0:0",
        ],
        &[],
    ];
    assert_eq!(built, expected);
}
