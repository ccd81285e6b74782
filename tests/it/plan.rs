//! Planning: golden dumps under `testdata/plan/<case>/` (`Dockerfile`, optional
//! `args`, `expected`; `BLESS=1` rewrites `expected`) and targeted checks.
//!
//! `args` lines: `target NAME`, `build-arg K=V`, `label K=V`, `platform P`,
//! `no-cache-filter NAME`.

use std::fs;
use std::path::Path;

use kiln::plan::{
    self, Definition, Error, History, ImageConfig, ImageResolver, Options, Plan, Platform,
    ResolveError, ResolvedImage,
};

use crate::harness::stages;

/// Serves a few made-up images and records every lookup.
#[derive(Default)]
struct FakeResolver {
    calls: Vec<String>,
}

fn normalise(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = if digest.is_none() && !name[last_slash..].contains(':') {
        format!("{name}:latest")
    } else {
        name.to_string()
    };
    let first = name.split('/').next().unwrap_or_default();
    let qualified = if !name.contains('/') {
        format!("docker.io/library/{name}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        name
    } else {
        format!("docker.io/{name}")
    };
    match digest {
        Some(digest) => format!("{qualified}@{digest}"),
        None => qualified,
    }
}

/// A stable fake digest: FNV-1a of the text, repeated to 64 hex digits.
fn fake_digest(text: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("sha256:{}", format!("{hash:016x}").repeat(4))
}

fn history(created_by: &str, empty_layer: bool) -> History {
    History {
        created_by: created_by.to_string(),
        empty_layer,
        ..History::default()
    }
}

impl ImageResolver for FakeResolver {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ResolveError> {
        self.calls.push(format!("{reference} {platform}"));
        let normalised = normalise(reference);
        let repository = normalised
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .split([':', '@'])
            .next()
            .unwrap_or_default()
            .to_string();
        let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string();
        let mut config = ImageConfig {
            env: vec![path],
            cmd: Some(vec!["sh".to_string()]),
            ..ImageConfig::default()
        };
        let mut author = None;
        match repository.as_str() {
            "busybox" | "alpine" | "golang" | "debian" => {}
            "noenv" => {
                config.env.clear();
                config.working_dir = "/srv/".to_string();
                config.user = "app".to_string();
                config.entrypoint = Some(vec!["/entry".to_string()]);
                author = Some("someone".to_string());
            }
            "onbuild-base" => {
                config.env.push("APP=/app".to_string());
                config.on_build = vec![
                    "RUN echo triggered in $APP".to_string(),
                    "COPY --from=helper /tool /usr/bin/tool".to_string(),
                    "WORKDIR $APP".to_string(),
                ];
            }
            "bad-onbuild" => config.on_build = vec!["FROM x".to_string()],
            _ => return Err(format!("pull access denied for {repository}").into()),
        }
        Ok(ResolvedImage {
            manifest_digest: fake_digest(&normalised),
            reference_normalised: normalised.clone(),
            config,
            history: vec![
                history("/bin/sh -c #(nop) ADD file:rootfs in / ", false),
                history("/bin/sh -c #(nop)  CMD [\"sh\"]", true),
            ],
            diff_ids: vec![fake_digest(&format!("{normalised} layer"))],
            author,
            platform: None,
        })
    }
}

fn amd64() -> Platform {
    Platform::parse("linux/amd64").unwrap()
}

fn options() -> Options {
    Options {
        target_platform: amd64(),
        build_platform: amd64(),
        ..Options::default()
    }
}

fn plan_with(text: &str, options: &Options) -> (Result<Plan, Error>, Vec<String>) {
    let mut resolver = FakeResolver::default();
    let result = plan::build(&stages(text), options, &mut resolver);
    (result, resolver.calls)
}

fn plan_ok(text: &str, options: &Options) -> Plan {
    plan_with(text, options).0.unwrap_or_else(|e| panic!("{e}"))
}

fn options_from(args: &str) -> Options {
    let mut options = options();
    for line in args.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let pair = || {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            (k.to_string(), v.to_string())
        };
        match key {
            "target" => options.target = Some(value.to_string()),
            "build-arg" => {
                let (k, v) = pair();
                options.build_args.insert(k, v);
            }
            "label" => {
                let (k, v) = pair();
                options.labels.insert(k, v);
            }
            "platform" => options.target_platform = Platform::parse(value).unwrap(),
            "no-cache-filter" => options.no_cache_filter.push(value.to_string()),
            other => panic!("unknown args line {other:?}"),
        }
    }
    options
}

fn run_case(dir: &Path) -> Result<(), String> {
    let dockerfile = fs::read_to_string(dir.join("Dockerfile")).map_err(|e| e.to_string())?;
    let args = fs::read_to_string(dir.join("args")).unwrap_or_default();
    let options = options_from(&args);
    let (result, calls) = plan_with(&dockerfile, &options);
    let mut actual = match result {
        Ok(plan) => plan::dump(&plan),
        Err(error) => {
            let start = error.span().start;
            format!("error: {error} @{}:{}\n", start.line, start.column)
        }
    };
    actual.push_str("resolved:\n");
    for call in calls {
        actual.push_str(&format!("  {call}\n"));
    }
    let expected_path = dir.join("expected");
    if std::env::var_os("BLESS").is_some() {
        fs::write(&expected_path, &actual).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let expected = fs::read_to_string(&expected_path)
        .map_err(|_| format!("{}: no expected file (run with BLESS=1)", dir.display()))?;
    if expected != actual {
        return Err(format!(
            "{}: dump differs\n--- expected\n{expected}\n--- actual\n{actual}",
            dir.display()
        ));
    }
    Ok(())
}

#[test]
fn golden_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .expect("testdata/plan")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "golden cases missing");
    let failures: Vec<String> = dirs.iter().filter_map(|d| run_case(d).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- targeted checks -------------------------------------------------------

fn exec_nodes(plan: &Plan) -> Vec<&plan::Exec> {
    plan.graph
        .node_weights()
        .filter_map(|op| match &op.definition {
            Definition::Exec(exec) => Some(exec),
            _ => None,
        })
        .collect()
}

fn last_exec_key(text: &str) -> Vec<u8> {
    let plan = plan_ok(text, &options());
    let node = plan
        .graph
        .node_indices()
        .rfind(|n| matches!(plan.graph[*n].definition, Definition::Exec(_)))
        .expect("an exec");
    plan.graph[node].definition.cache_definition()
}

#[test]
fn run_key_follows_what_run_sees() {
    let base = last_exec_key("FROM busybox\nENV GOFLAGS=-v\nLABEL a=1\nRUN make\n");
    let env_changed = last_exec_key("FROM busybox\nENV GOFLAGS=-x\nLABEL a=1\nRUN make\n");
    let label_changed = last_exec_key("FROM busybox\nENV GOFLAGS=-v\nLABEL a=2\nRUN make\n");
    let cmd_added =
        last_exec_key("FROM busybox\nENV GOFLAGS=-v\nLABEL a=1\nCMD [\"x\"]\nRUN make\n");
    let user_changed = last_exec_key("FROM busybox\nENV GOFLAGS=-v\nUSER 1000\nRUN make\n");
    assert_ne!(base, env_changed, "ENV used by RUN changes the key");
    assert_eq!(base, label_changed, "LABEL does not change the RUN key");
    assert_eq!(base, cmd_added, "CMD does not change the RUN key");
    assert_ne!(base, user_changed, "USER changes the RUN key");
}

#[test]
fn explanation_inputs_name_their_origin() {
    let plan = plan_ok(
        "FROM busybox\nARG VERSION=1\nENV GOFLAGS=-v\nWORKDIR /src\nRUN make\n",
        &options(),
    );
    let exec = exec_nodes(&plan)[0];
    assert_eq!(exec.explain["arg:VERSION"], "1");
    assert_eq!(exec.explain["env:GOFLAGS"], "-v");
    assert_eq!(exec.explain["workdir"], "/src");
    assert_eq!(exec.explain["command"], r#"["/bin/sh" "-c" "make"]"#);
}

#[test]
fn unused_stage_base_is_never_resolved() {
    let text = "FROM golang AS build\nRUN go build\nFROM debian AS unused\nRUN true\nFROM busybox\nCOPY --from=build /out /\n";
    let (plan, calls) = plan_with(text, &options());
    let plan = plan.unwrap();
    assert_eq!(calls, ["golang linux/amd64", "busybox linux/amd64"]);
    let planned: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
    assert_eq!(planned, [0, 2]);
    let (_, calls) = plan_with(text, &options_from("target build"));
    assert_eq!(calls, ["golang linux/amd64"]);
}

#[test]
fn required_variable_error_points_at_the_instruction() {
    let (result, _) = plan_with(
        "FROM busybox\nRUN true\nCOPY ${SRC:?required} /dst\n",
        &options(),
    );
    let error = result.unwrap_err();
    assert!(error.to_string().contains("SRC: required"), "{error}");
    assert_eq!(error.span().start.line, 3);
}

#[test]
fn unknown_target_suggests_a_stage() {
    let (result, calls) = plan_with(
        "FROM busybox AS build\nFROM busybox AS test\n",
        &options_from("target biuld"),
    );
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "target stage \"biuld\" could not be found (did you mean build?)"
    );
    assert!(calls.is_empty());
}

#[test]
fn identical_ops_across_stages_are_one_node() {
    let plan = plan_ok(
        "FROM busybox AS a\nRUN apk add x\nFROM busybox AS b\nRUN apk add x\nRUN b\nFROM scratch\nCOPY --from=a /x /a\nCOPY --from=b /x /b\n",
        &options(),
    );
    let runs = exec_nodes(&plan)
        .iter()
        .filter(|e| e.argv.last().is_some_and(|c| c == "apk add x"))
        .count();
    assert_eq!(runs, 1);
    let images = plan
        .graph
        .node_weights()
        .filter(|op| op.definition.kind() == "image")
        .count();
    assert_eq!(images, 1);
}

#[test]
fn proxy_args_stay_out_of_key_and_history() {
    let text = "FROM busybox\nRUN wget x\n";
    let plain = plan_ok(text, &options());
    let proxied = plan_ok(
        text,
        &options_from("build-arg HTTP_PROXY=http://proxy:3128"),
    );
    let key = |plan: &Plan| {
        let node = plan.target;
        plan.graph[node].definition.cache_definition()
    };
    assert_eq!(key(&plain), key(&proxied));
    assert_eq!(plain.image.history, proxied.image.history);
    assert!(proxied.unused_build_args.is_empty());
    let exec = exec_nodes(&proxied)[0];
    assert_eq!(exec.proxy_env["HTTP_PROXY"], "http://proxy:3128");
    assert!(!exec.env.iter().any(|e| e.starts_with("HTTP_PROXY")));

    let declared = plan_ok(
        "FROM busybox\nARG HTTP_PROXY\nRUN wget x\n",
        &options_from("build-arg HTTP_PROXY=http://proxy:3128"),
    );
    assert_ne!(key(&plain), key(&declared));
    let last = declared.image.history.last().unwrap();
    assert_eq!(
        last.created_by,
        "RUN |1 HTTP_PROXY=http://proxy:3128 /bin/sh -c wget x # buildkit"
    );
}

#[test]
fn inputs_are_ordered() {
    let plan = plan_ok(
        "FROM golang AS build\nRUN make\nFROM busybox\nRUN --mount=from=build,target=/b --mount=type=bind,source=src,target=/s ls\n",
        &options(),
    );
    let inputs = plan.inputs(plan.target);
    assert_eq!(inputs.len(), 3);
    assert_eq!(plan.op(inputs[0]).definition.kind(), "image");
    assert_eq!(plan.op(inputs[1]).definition.kind(), "exec");
    assert_eq!(plan.op(inputs[2]).definition.kind(), "context");
}

/// `plan` is layer L3: it may use `oci`, `gocompat`, `syntax`, `shell` and `instruction` only.
#[test]
fn plan_uses_only_lower_layers() {
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan")];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let allowed = ["oci", "gocompat", "syntax", "shell", "instruction", "plan"];
    for path in files {
        let text = fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            for (start, _) in line.match_indices("crate::") {
                let rest = &line[start + "crate::".len()..];
                let module: String = rest
                    .trim_start_matches('{')
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    allowed.contains(&module.as_str()),
                    "{}:{}: plan uses {module}",
                    path.display(),
                    number + 1
                );
            }
        }
        for forbidden in ["std::fs", "std::net", "tokio", "std::process"] {
            assert!(
                !text.contains(forbidden),
                "{}: uses {forbidden}",
                path.display()
            );
        }
    }
}

/// The cache definitions of RUN steps with every kind of mount and option, byte for byte:
/// a step cached before a change to the planner's types must still be found after it.
#[test]
fn exec_mount_cache_definitions_are_stable() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan-keys");
    let dockerfile = fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let plan = plan_ok(&dockerfile, &options());
    let actual: String = plan
        .graph
        .node_weights()
        .map(|op| {
            let mut line = String::from_utf8(op.definition.cache_definition()).unwrap();
            line.push('\n');
            line
        })
        .collect();
    let expected = fs::read_to_string(dir.join("expected")).unwrap();
    assert_eq!(actual, expected);
}

#[test]
fn resolve_error_keeps_the_resolver_error() {
    let (result, _) = plan_with("FROM unknown-image\n", &options());
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown-image: pull access denied for unknown-image"
    );
    let source = std::error::Error::source(&error).expect("the resolver's error");
    assert_eq!(source.to_string(), "pull access denied for unknown-image");
}

#[test]
fn source_date_epoch_from_build_arg_or_global_default() {
    let epoch = |text: &str, args: &str| plan_ok(text, &options_from(args)).source_date_epoch;
    let with_default = "ARG SOURCE_DATE_EPOCH=0017\nFROM busybox\nARG SOURCE_DATE_EPOCH\n\
                        RUN echo $SOURCE_DATE_EPOCH\n";
    assert_eq!(epoch("FROM busybox\n", ""), None);
    assert_eq!(epoch(with_default, ""), Some(17));
    // The stages see the value in its resolved form.
    let plan = plan_ok(with_default, &options());
    let run = &plan.image.history.last().unwrap().created_by;
    assert!(run.starts_with("RUN |1 SOURCE_DATE_EPOCH=17 "), "{run}");
    let env = &exec_nodes(&plan)[0].env;
    assert!(env.contains(&"SOURCE_DATE_EPOCH=17".to_string()), "{env:?}");
    // A build arg wins over the default; an empty one means none.
    assert_eq!(
        epoch(with_default, "build-arg SOURCE_DATE_EPOCH=5"),
        Some(5)
    );
    assert_eq!(epoch(with_default, "build-arg SOURCE_DATE_EPOCH="), None);
    // …and the stages do not see it at all.
    let plan = plan_ok(with_default, &options_from("build-arg SOURCE_DATE_EPOCH="));
    let env = &exec_nodes(&plan)[0].env;
    assert!(
        !env.iter().any(|e| e.starts_with("SOURCE_DATE_EPOCH")),
        "{env:?}"
    );
    assert_eq!(
        epoch("FROM busybox\n", "build-arg SOURCE_DATE_EPOCH=9"),
        Some(9)
    );
    // The default is expanded with the ARGs before it; an empty one means none.
    let expanded = "ARG T=1700000000\nARG SOURCE_DATE_EPOCH=$T\nFROM busybox\n";
    assert_eq!(epoch(expanded, ""), Some(1_700_000_000));
    assert_eq!(epoch("ARG SOURCE_DATE_EPOCH=\nFROM busybox\n", ""), None);
    // Only a global ARG sets it.
    assert_eq!(epoch("FROM busybox\nARG SOURCE_DATE_EPOCH=5\n", ""), None);

    let invalid = "FROM busybox\n";
    let (result, _) = plan_with(
        &format!("ARG SOURCE_DATE_EPOCH=not-a-timestamp\n{invalid}"),
        &options(),
    );
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid SOURCE_DATE_EPOCH: not-a-timestamp"
    );
    assert_eq!(error.span().start.line, 1);
    let (result, calls) = plan_with(invalid, &options_from("build-arg SOURCE_DATE_EPOCH=-1"));
    assert_eq!(
        result.unwrap_err().to_string(),
        "invalid SOURCE_DATE_EPOCH: -1"
    );
    assert!(
        calls.is_empty(),
        "resolved before the epoch was known: {calls:?}"
    );
}
