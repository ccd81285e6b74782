//! Typed instructions: what valid lines become, and where invalid ones are reported.

use std::time::Duration;

use kiln::instruction::{
    self, Chmod, CommandLine, Healthcheck, Instruction, MountType, Network, Source, Stages,
};
use kiln::syntax;

use crate::harness::stages;

/// The errors of `text` as `line:column: message`.
fn errors(text: &str) -> Vec<String> {
    let file = match syntax::parse(text.as_bytes()) {
        Ok(file) => file,
        Err(error) => {
            let start = error.span().start;
            return vec![format!("{}:{}: {error}", start.line, start.column)];
        }
    };
    match instruction::parse(&file) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}:{}: {e}", e.span().start.line, e.span().start.column))
            .collect(),
    }
}

fn only(stages: &Stages) -> Vec<&Instruction> {
    stages.stages[0]
        .commands
        .iter()
        .map(|c| &c.instruction)
        .collect()
}

#[test]
fn stages_by_name_and_index() {
    let parsed = stages(
        "# top\nARG BASE=busybox\n# build compiles things\nFROM $BASE AS Build\nRUN make\n\nFROM scratch\nCOPY --from=build /out /\n",
    );
    assert_eq!(parsed.global_args.len(), 1);
    assert_eq!(parsed.stages.len(), 2);
    let build = &parsed.stages[0];
    assert_eq!(build.name.as_deref(), Some("build"));
    assert_eq!(build.base, "$BASE");
    assert_eq!(build.description().as_deref(), Some("compiles things"));
    assert_eq!(build.from.span.start.line, 4);
    assert_eq!(parsed.find("BUILD").unwrap().index, 0);
    assert_eq!(parsed.find("1").unwrap().index, 1);
    assert_eq!(parsed.stages[1].display_name(), "stage-1");
    assert_eq!(parsed.dependencies(1), [0, 1]);
}

#[test]
fn run_forms_and_flags() {
    let parsed = stages(concat!(
        "FROM scratch\n",
        "RUN echo $HOME\n",
        "RUN [\"/bin/echo\", \"hi\"]\n",
        "RUN --network=none --mount=type=cache,target=/root/.cache,id=pip --mount=type=secret,id=tok make\n",
    ));
    let commands = only(&parsed);
    let Instruction::Run(shell) = commands[0] else {
        panic!()
    };
    assert_eq!(
        shell.command,
        CommandLine {
            args: vec!["echo $HOME".into()],
            prepend_shell: true
        }
    );
    let Instruction::Run(exec) = commands[1] else {
        panic!()
    };
    assert_eq!(exec.command.args, ["/bin/echo", "hi"]);
    assert!(!exec.command.prepend_shell);
    let Instruction::Run(flags) = commands[2] else {
        panic!()
    };
    assert_eq!(flags.network, Some(Network::None));
    let literal = &mut |v: &str| Ok(v.to_string());
    let cache = flags.mounts[0].resolve(literal, 0).unwrap();
    assert_eq!(cache.kind, MountType::Cache);
    assert_eq!(cache.id.as_deref(), Some("pip"));
    let secret = flags.mounts[1].resolve(literal, 0).unwrap();
    assert_eq!(secret.target, "/run/secrets/tok");
}

#[test]
fn copy_add_and_heredocs() {
    let parsed = stages(concat!(
        "FROM scratch\n",
        "COPY --chown=app:app --chmod=u=rwX,go=rX --link --parents --exclude=*.md --exclude=tmp a b /dst/\n",
        "ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --unpack=false https://example.com/x.tgz /x\n",
        "COPY <<EOF /etc/motd\nhello\nEOF\n",
    ));
    let commands = only(&parsed);
    let Instruction::Copy(copy) = commands[0] else {
        panic!()
    };
    assert_eq!(copy.transfer.chown.as_deref(), Some("app:app"));
    assert_eq!(
        Chmod::parse(copy.transfer.chmod.as_deref().unwrap()).unwrap(),
        Chmod::Symbolic("u=rwX,go=rX".into())
    );
    assert!(copy.transfer.link && copy.parents);
    assert_eq!(copy.transfer.exclude, ["*.md", "tmp"]);
    assert_eq!(copy.transfer.dest, "/dst/");
    let Instruction::Add(add) = commands[1] else {
        panic!()
    };
    assert_eq!(add.unpack, Some(false));
    let Instruction::Copy(heredoc) = commands[2] else {
        panic!()
    };
    let Source::Heredoc(body) = &heredoc.transfer.sources[0] else {
        panic!()
    };
    assert_eq!(body.content, "hello\n");
    assert_eq!(heredoc.transfer.dest, "/etc/motd");
}

#[test]
fn metadata_instructions() {
    let parsed = stages(concat!(
        "FROM scratch\n",
        "ENV A=1 B=\"two words\"\n",
        "ENV LEGACY value with spaces\n",
        "LABEL org.example=yes\n",
        "ARG X Y=2\n",
        "HEALTHCHECK --interval=5s --retries=3 CMD [\"/check\", \"-q\"]\n",
        "HEALTHCHECK CMD curl -f http://localhost/\n",
        "HEALTHCHECK NONE\n",
        "SHELL [\"/bin/bash\", \"-c\"]\n",
        "STOPSIGNAL SIGKILL\n",
        "ONBUILD RUN echo triggered\n",
        "EXPOSE 80 53/udp 8000-8010\n",
        "VOLUME [\"/data\", \"/logs\"]\n",
        "USER app:app\n",
        "WORKDIR /srv\n",
        "MAINTAINER someone\n",
        "CMD [\"serve\"]\n",
        "ENTRYPOINT exec app\n",
    ));
    let commands = only(&parsed);
    let Instruction::Env(env) = commands[0] else {
        panic!()
    };
    assert_eq!(
        (env[1].key.as_str(), env[1].value.as_str()),
        ("B", "\"two words\"")
    );
    let Instruction::Env(legacy) = commands[1] else {
        panic!()
    };
    assert!(legacy[0].legacy);
    assert_eq!(legacy[0].value, "value with spaces");
    let Instruction::Arg(args) = commands[3] else {
        panic!()
    };
    assert_eq!(args[0].default, None);
    assert_eq!(args[1].default.as_deref(), Some("2"));
    let Instruction::Healthcheck(Healthcheck::Check {
        test,
        interval,
        retries,
        ..
    }) = commands[4]
    else {
        panic!()
    };
    assert_eq!(test, &["CMD", "/check", "-q"]);
    assert_eq!(*interval, Some(Duration::from_secs(5)));
    assert_eq!(*retries, Some(3));
    let Instruction::Healthcheck(Healthcheck::Check { test, .. }) = commands[5] else {
        panic!()
    };
    assert_eq!(test, &["CMD-SHELL", "curl -f http://localhost/"]);
    assert_eq!(commands[6], &Instruction::Healthcheck(Healthcheck::None));
    assert_eq!(
        commands[7],
        &Instruction::Shell(vec!["/bin/bash".into(), "-c".into()])
    );
    let Instruction::Onbuild(onbuild) = commands[9] else {
        panic!()
    };
    assert_eq!(onbuild.keyword, "RUN");
    assert_eq!(onbuild.expression, "RUN echo triggered");
    assert_eq!(commands[13], &Instruction::Workdir("/srv".into()));
    let Instruction::Entrypoint(entrypoint) = commands[16] else {
        panic!()
    };
    assert!(entrypoint.prepend_shell);
}

#[test]
fn errors_point_at_the_problem() {
    let cases: &[(&str, &str)] = &[
        (
            "FROM scratch\nFNTRYPOINT [\"x\"]\n",
            "2:1: unknown instruction: FNTRYPOINT (did you mean ENTRYPOINT?)",
        ),
        (
            "FROM scratch\nRUN --mont=type=cache,target=/x true\n",
            "2:5: unknown flag: --mont (did you mean --mount?)",
        ),
        (
            "FROM scratch\nCOPY --from=a --from=b x y\n",
            "2:15: duplicate flag specified: --from",
        ),
        (
            "FROM scratch\nCOPY --link=maybe x y\n",
            "2:6: expecting boolean value for flag --link, not: maybe",
        ),
        (
            "FROM scratch\nADD --parents x y\n",
            "2:5: unknown flag: --parents",
        ),
        (
            "FROM scratch\nCMD --doit [\"a\"]\n",
            "2:5: unknown flag: --doit",
        ),
        (
            "FROM scratch\nRUN --network=bridge true\n",
            "2:5: network mode \"bridge\" not supported",
        ),
        (
            "FROM scratch\nRUN --mount=type=cache true\n",
            "2:5: mount target is required for cache mounts",
        ),
        (
            "FROM scratch\nRUN --mount=type=bind,target=/x,tagret=/y true\n",
            "2:5: unexpected key 'tagret'",
        ),
        (
            "FROM scratch\nCOPY --chmod=abc x y\n",
            "2:6: invalid chmod value",
        ),
        (
            "FROM scratch\nADD --checksum=sha256:abc x y\n",
            "2:5: invalid checksum",
        ),
        (
            "FROM scratch\nHEALTHCHECK --interval=5 CMD true\n",
            "2:13: --interval: invalid duration",
        ),
        (
            "FROM scratch\nHEALTHCHECK --retries=-1 CMD true\n",
            "2:13: --retries cannot be negative",
        ),
        (
            "FROM scratch\nHEALTHCHECK CONNECT TCP 7000\n",
            "2:13: unknown type \"CONNECT\" in HEALTHCHECK",
        ),
        (
            "FROM scratch\nHEALTHCHECK NONE extra\n",
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM scratch\nSHELL /bin/sh -c\n",
            "2:7: SHELL requires the arguments to be in JSON form",
        ),
        (
            "FROM scratch\nCOPY onlyone\n",
            "2:6: COPY requires at least two arguments",
        ),
        (
            "FROM scratch\nUSER\n",
            "2:1: USER requires exactly one argument",
        ),
        (
            "FROM scratch\nONBUILD FROM x\n",
            "2:9: FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM scratch AS 1st\n",
            "1:17: invalid name for build stage",
        ),
        (
            "FROM a b\n",
            "1:6: FROM requires either one or three arguments",
        ),
        (
            "FROM scratch\nONBUILD ONBUILD RUN x\n",
            "2:9: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM scratch\nCOPY <<A <<B\nx\nA\ny\nB\n",
            "COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM scratch\nCOPY ---link a b\n",
            "2:6: unknown flag: ---link",
        ),
        (
            "FROM scratch\nRUN --network=sandbox true\n",
            "network mode \"sandbox\" not supported",
        ),
        (
            "FROM scratch\nHEALTHCHECK --retries=5000000000 CMD true\n",
            "--retries: invalid number",
        ),
        (
            "RUN true\nFROM scratch\n",
            "1:1: no build stage in current context",
        ),
        ("ARG A=1\n", "dockerfile contains no stages to build"),
    ];
    let mut failures = Vec::new();
    for (text, expected) in cases {
        let found = errors(text);
        if !found.iter().any(|e| e.contains(expected)) {
            failures.push(format!(
                "{text:?}\n  expected {expected:?}\n  found    {found:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported() {
    let found = errors("FROM scratch\nFOO bar\nRUN --bad true\nCOPY x\n");
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("2:1:"));
    assert!(found[1].starts_with("3:5:"));
    assert!(found[2].starts_with("4:6:"));
}

#[test]
fn variables_wait_for_expansion() {
    // Values holding variables are checked when the build is planned.
    let parsed = stages(
        "FROM scratch\nARG M=0644\nCOPY --chmod=$M a b\nRUN --mount=type=cache,target=$DIR,uid=$U true\nEXPOSE $PORTS\n",
    );
    assert_eq!(parsed.stages[0].commands.len(), 4);
}

#[test]
fn duplicate_stage_names_warn_and_the_later_wins() {
    let parsed = stages("FROM busybox AS x\nFROM scratch AS x\nFROM x\n");
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].message.contains("DuplicateStageName"));
    assert_eq!(parsed.find("x").unwrap().index, 1);
    assert_eq!(parsed.find_before("x", 1).unwrap().index, 0);
    assert_eq!(parsed.dependencies(2), [1, 2]);
}

#[test]
fn onbuild_keeps_heredoc_bodies_and_defers_parsing() {
    let parsed =
        stages("FROM scratch\nONBUILD RUN <<EOF\necho hi\nEOF\nONBUILD COPY --bogus a b\n");
    let commands = only(&parsed);
    let Instruction::Onbuild(with_heredoc) = commands[0] else {
        panic!()
    };
    assert_eq!(with_heredoc.expression, "RUN <<EOF\necho hi\nEOF");
    let Instruction::Onbuild(unchecked) = commands[1] else {
        panic!()
    };
    assert_eq!(unchecked.expression, "COPY --bogus a b");
}

#[test]
fn heredoc_sources_pair_by_name() {
    let parsed = stages("FROM scratch\nCOPY <<B <<A /dir/\nbee\nB\nay\nA\n");
    let Instruction::Copy(copy) = only(&parsed)[0] else {
        panic!()
    };
    let names: Vec<_> = copy
        .transfer
        .sources
        .iter()
        .map(|source| match source {
            Source::Heredoc(heredoc) => (heredoc.name.as_str(), heredoc.content.as_str()),
            Source::Path(path) => (path.as_str(), ""),
        })
        .collect();
    assert_eq!(names, [("B", "bee\n"), ("A", "ay\n")]);
}
