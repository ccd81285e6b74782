//! One syntax node to one typed instruction: keywords, argument counts, flags, and the
//! values of flags that hold no variables.

use std::time::Duration;

use super::flags::{Flags, Kind};
use super::{
    Add, ArgDecl, Chmod, Command, CommandLine, Copy, Error, From, Healthcheck, Instruction,
    KeyValue, MountSpec, Network, Onbuild, Run, Security, Source, Transfer, suggest, values,
};
use crate::gocompat::go_lowercase;
use crate::syntax::{Heredoc, Node, Span, parse_heredoc_word};

/// Every instruction a Dockerfile may hold.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Types one syntax node.
pub fn parse_command(node: &Node) -> Result<Command, Error> {
    Ok(Command {
        instruction: parse_instruction(node)?,
        keyword: node.keyword.clone(),
        original: node.original.clone(),
        span: node.span,
        doc_comments: node.doc_comments.clone(),
    })
}

fn parse_instruction(node: &Node) -> Result<Instruction, Error> {
    let no_flags = || Flags::parse(&node.flags, &[]);
    let instruction = match node.keyword_lower().as_str() {
        "from" => Instruction::From(parse_from(node)?),
        "run" => Instruction::Run(parse_run(node)?),
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_line(node))
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_line(node))
        }
        "shell" => {
            no_flags()?;
            if !node.json {
                return Err(args_error(
                    node,
                    "SHELL requires the arguments to be in JSON form",
                ));
            }
            if node.args.is_empty() {
                return Err(args_error(node, "SHELL requires at least one argument"));
            }
            Instruction::Shell(arg_values(node))
        }
        "env" => {
            no_flags()?;
            Instruction::Env(key_values(node, "ENV")?)
        }
        "label" => {
            no_flags()?;
            Instruction::Label(key_values(node, "LABEL")?)
        }
        "arg" => {
            no_flags()?;
            Instruction::Arg(parse_arg(node)?)
        }
        "maintainer" => {
            no_flags()?;
            Instruction::Maintainer(exactly_one(node, "MAINTAINER")?)
        }
        "expose" => {
            no_flags()?;
            // Ports are checked after expansion (quotes and variables), when planned.
            at_least_one(node, "EXPOSE")?;
            Instruction::Expose(arg_values(node))
        }
        "volume" => {
            no_flags()?;
            at_least_one(node, "VOLUME")?;
            if let Some(empty) = node.args.iter().find(|a| a.value.trim().is_empty()) {
                return Err(Error::arguments(
                    "VOLUME specified can not be an empty string",
                    empty.span,
                ));
            }
            Instruction::Volume(arg_values(node))
        }
        "user" => {
            no_flags()?;
            Instruction::User(exactly_one(node, "USER")?)
        }
        "workdir" => {
            no_flags()?;
            Instruction::Workdir(exactly_one(node, "WORKDIR")?)
        }
        "stopsignal" => {
            no_flags()?;
            Instruction::StopSignal(exactly_one(node, "STOPSIGNAL")?)
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(node)?),
        "copy" => Instruction::Copy(parse_copy(node)?),
        "add" => Instruction::Add(parse_add(node)?),
        "onbuild" => Instruction::Onbuild(parse_onbuild(node)?),
        _ => {
            return Err(Error::UnknownInstruction {
                keyword: node.keyword.clone(),
                suggestion: suggest::closest(&node.keyword, KEYWORDS.iter().copied())
                    .map(str::to_string),
                span: node.keyword_span,
            });
        }
    };
    Ok(instruction)
}

fn args_error(node: &Node, message: &str) -> Error {
    Error::arguments(message, args_span(node))
}

/// The span of the arguments, or of the keyword when there are none.
fn args_span(node: &Node) -> Span {
    match (node.args.first(), node.args.last()) {
        (Some(first), Some(last)) => Span::new(first.span.start, last.span.end),
        _ => node.keyword_span,
    }
}

fn arg_values(node: &Node) -> Vec<String> {
    node.args.iter().map(|arg| arg.value.clone()).collect()
}

fn at_least_one(node: &Node, keyword: &str) -> Result<(), Error> {
    if node.args.is_empty() {
        return Err(args_error(
            node,
            &format!("{keyword} requires at least one argument"),
        ));
    }
    Ok(())
}

fn exactly_one(node: &Node, keyword: &str) -> Result<String, Error> {
    match node.args.as_slice() {
        [arg] if !arg.value.is_empty() => Ok(arg.value.clone()),
        _ => Err(args_error(
            node,
            &format!("{keyword} requires exactly one argument"),
        )),
    }
}

fn command_line(node: &Node) -> CommandLine {
    CommandLine {
        args: arg_values(node),
        prepend_shell: !node.json,
    }
}

fn parse_from(node: &Node) -> Result<From, Error> {
    let flags = Flags::parse(&node.flags, &[("platform", Kind::Value)])?;
    let (image, name) = match node.args.as_slice() {
        [image] => (image, None),
        [image, as_word, name] if as_word.value.eq_ignore_ascii_case("as") => {
            let lower = go_lowercase(&name.value);
            if !values::valid_stage_name(&lower) {
                return Err(Error::arguments(
                    format!(
                        "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                        name.value
                    ),
                    name.span,
                ));
            }
            (image, Some(lower))
        }
        _ => {
            return Err(args_error(
                node,
                "FROM requires either one or three arguments: FROM image [AS name]",
            ));
        }
    };
    Ok(From {
        image: image.value.clone(),
        name,
        platform: flags.string("platform").map(|given| given.value),
    })
}

fn parse_run(node: &Node) -> Result<Run, Error> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("mount", Kind::List),
            ("network", Kind::Value),
            ("security", Kind::Value),
        ],
    )?;
    let mounts = flags
        .list("mount")
        .into_iter()
        .map(|given| {
            MountSpec::new(&given.value).map_err(|message| Error::InvalidMount {
                message: message.into(),
                span: given.span,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let network = match flags.string("network") {
        None => None,
        Some(given) => Some(match given.value.as_str() {
            "default" => Network::Default,
            "none" => Network::None,
            "host" => Network::Host,
            other => {
                return Err(Error::flag_value(
                    format!("network mode {other:?} not supported (use default, none or host)"),
                    given.span,
                ));
            }
        }),
    };
    let security = match flags.string("security") {
        None => None,
        Some(given) => Some(match given.value.as_str() {
            "sandbox" => Security::Sandbox,
            "insecure" => Security::Insecure,
            other => {
                return Err(Error::flag_value(
                    format!("security mode {other:?} not supported (use sandbox or insecure)"),
                    given.span,
                ));
            }
        }),
    };
    if node.args.is_empty() && node.heredocs.is_empty() {
        return Err(args_error(node, "RUN requires at least one argument"));
    }
    Ok(Run {
        command: command_line(node),
        mounts,
        network,
        security,
        heredocs: node.heredocs.clone(),
    })
}

fn key_values(node: &Node, keyword: &str) -> Result<Vec<KeyValue>, Error> {
    if node.args.is_empty() {
        return Err(args_error(
            node,
            &format!("{keyword} requires at least one argument"),
        ));
    }
    // The syntax layer yields triples: key, value, and "=" (or "" for the legacy form).
    let mut pairs = Vec::new();
    for triple in node.args.chunks(3) {
        match triple {
            [key, value, separator] => {
                if key.value.is_empty() {
                    return Err(Error::arguments(
                        format!("{keyword} names can not be blank"),
                        key.span,
                    ));
                }
                pairs.push(KeyValue {
                    key: key.value.clone(),
                    value: value.value.clone(),
                    legacy: separator.value.is_empty(),
                });
            }
            _ => {
                return Err(args_error(
                    node,
                    &format!("{keyword} must have two arguments"),
                ));
            }
        }
    }
    Ok(pairs)
}

fn parse_arg(node: &Node) -> Result<Vec<ArgDecl>, Error> {
    at_least_one(node, "ARG")?;
    node.args
        .iter()
        .map(|arg| {
            let (name, default) = match arg.value.split_once('=') {
                Some((name, default)) => (name, Some(default.to_string())),
                None => (arg.value.as_str(), None),
            };
            if name.is_empty() {
                return Err(Error::arguments("ARG names can not be blank", arg.span));
            }
            Ok(ArgDecl {
                name: name.to_string(),
                default,
            })
        })
        .collect()
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, Error> {
    let Some((kind, rest)) = node.args.split_first() else {
        return Err(args_error(
            node,
            "HEALTHCHECK requires at least one argument",
        ));
    };
    match go_lowercase(&kind.value).as_str() {
        "none" => {
            Flags::parse(&node.flags, &[])?;
            if !rest.is_empty() {
                return Err(args_error(node, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(Healthcheck::None)
        }
        "cmd" => {
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("interval", Kind::Value),
                    ("timeout", Kind::Value),
                    ("start-period", Kind::Value),
                    ("start-interval", Kind::Value),
                    ("retries", Kind::Value),
                ],
            )?;
            if rest.is_empty() || rest.iter().all(|arg| arg.value.is_empty()) && !node.json {
                return Err(args_error(node, "Missing command after HEALTHCHECK CMD"));
            }
            let test = if node.json {
                std::iter::once("CMD".to_string())
                    .chain(rest.iter().map(|arg| arg.value.clone()))
                    .collect()
            } else {
                let command: Vec<&str> = rest.iter().map(|arg| arg.value.as_str()).collect();
                vec!["CMD-SHELL".to_string(), command.join(" ")]
            };
            let duration_flag = |name: &str| -> Result<Option<Duration>, Error> {
                let Some(given) = flags.string(name) else {
                    return Ok(None);
                };
                let duration = values::parse_duration(&given.value)
                    .map_err(|m| Error::flag_value(format!("--{name}: {m}"), given.span))?;
                if !duration.is_zero() && duration < Duration::from_millis(1) {
                    return Err(Error::flag_value(
                        format!("--{name} cannot be less than 1ms"),
                        given.span,
                    ));
                }
                Ok(Some(duration))
            };
            let retries = match flags.string("retries") {
                None => None,
                Some(given) => {
                    let retries = given.value.parse::<i32>().map_err(|_| {
                        Error::flag_value(
                            format!("--retries: invalid number {:?}", given.value),
                            given.span,
                        )
                    })?;
                    Some(u32::try_from(retries).map_err(|_| {
                        Error::flag_value(
                            format!("--retries cannot be negative ({retries})"),
                            given.span,
                        )
                    })?)
                }
            };
            Ok(Healthcheck::Check {
                test,
                interval: duration_flag("interval")?,
                timeout: duration_flag("timeout")?,
                start_period: duration_flag("start-period")?,
                start_interval: duration_flag("start-interval")?,
                retries,
            })
        }
        _ => Err(Error::arguments(
            format!(
                "unknown type {:?} in HEALTHCHECK (try CMD or NONE)",
                kind.value
            ),
            kind.span,
        )),
    }
}

fn parse_transfer(node: &Node, keyword: &str, flags: &Flags) -> Result<Transfer, Error> {
    if node.args.len() < 2 {
        return Err(args_error(
            node,
            &format!(
                "{keyword} requires at least two arguments, but only {} provided: the destination could not be determined",
                node.args.len()
            ),
        ));
    }
    let (dest, sources) = node.args.split_last().expect("at least two arguments");
    if heredoc_named(node, &dest.value).is_some() {
        return Err(Error::arguments(
            format!("{keyword} cannot accept a heredoc as a destination"),
            dest.span,
        ));
    }
    let sources = sources
        .iter()
        .map(|arg| match heredoc_named(node, &arg.value) {
            Some(heredoc) => Source::Heredoc(heredoc.clone()),
            None => Source::Path(arg.value.clone()),
        })
        .collect();
    let chmod = flags.string("chmod");
    if let Some(given) = &chmod
        && !given.value.contains('$')
    {
        Chmod::parse(&given.value).map_err(|m| Error::flag_value(m, given.span))?;
    }
    Ok(Transfer {
        sources,
        dest: dest.value.clone(),
        chown: flags.string("chown").map(|given| given.value),
        chmod: chmod.map(|given| given.value),
        link: flags.bool("link").unwrap_or(false),
        exclude: flags.list("exclude").into_iter().map(|g| g.value).collect(),
    })
}

/// The heredoc that `word` (`<<EOF`, `<<-"EOF"`, …) opens on this instruction.
fn heredoc_named<'a>(node: &'a Node, word: &str) -> Option<&'a Heredoc> {
    if node.json {
        return None;
    }
    let opened = parse_heredoc_word(word).ok().flatten()?;
    node.heredocs
        .iter()
        .find(|heredoc| heredoc.name == opened.name)
}

fn parse_copy(node: &Node) -> Result<Copy, Error> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("from", Kind::Value),
            ("chown", Kind::Value),
            ("chmod", Kind::Value),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::List),
        ],
    )?;
    Ok(Copy {
        transfer: parse_transfer(node, "COPY", &flags)?,
        from: flags.string("from").map(|given| given.value),
        parents: flags.bool("parents").unwrap_or(false),
    })
}

fn parse_add(node: &Node) -> Result<Add, Error> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("chown", Kind::Value),
            ("chmod", Kind::Value),
            ("link", Kind::Bool),
            ("exclude", Kind::List),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::Value),
            ("unpack", Kind::Bool),
        ],
    )?;
    let checksum = flags.string("checksum");
    if let Some(given) = &checksum
        && !given.value.contains('$')
    {
        values::parse_checksum(&given.value).map_err(|m| Error::flag_value(m, given.span))?;
    }
    Ok(Add {
        transfer: parse_transfer(node, "ADD", &flags)?,
        checksum: checksum.map(|given| given.value),
        keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
        unpack: flags.bool("unpack"),
    })
}

fn parse_onbuild(node: &Node) -> Result<Onbuild, Error> {
    Flags::parse(&node.flags, &[])?;
    let Some(inner) = &node.onbuild else {
        return Err(args_error(node, "ONBUILD requires at least one argument"));
    };
    let keyword = inner.keyword_lower().to_uppercase();
    match keyword.as_str() {
        "ONBUILD" => {
            return Err(Error::arguments(
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                inner.keyword_span,
            ));
        }
        "FROM" | "MAINTAINER" => {
            return Err(Error::arguments(
                format!("{keyword} isn't allowed as an ONBUILD trigger"),
                inner.keyword_span,
            ));
        }
        _ => {}
    }
    // The image records the trigger with its heredoc bodies, as BuildKit does.
    let mut expression = inner.original.clone();
    for heredoc in &inner.heredocs {
        expression.push('\n');
        expression.push_str(&heredoc.content);
        expression.push_str(&heredoc.name);
    }
    Ok(Onbuild {
        keyword,
        expression,
    })
}
