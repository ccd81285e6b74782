//! Syntax nodes to typed instructions, split into stages (layer L2: pure).
//!
//! This layer checks everything that can be checked without build arguments:
//! keywords, argument counts, which flags an instruction takes and the values of
//! flags that hold no variables. Variable expansion happens when the build is
//! planned, because it needs the build arguments.

mod error;
mod flags;
pub mod mount;
mod outline;
mod suggest;
pub mod values;

use std::time::Duration;

pub use error::Error;
use flags::{Flags, Kind};
pub use mount::{Mount, MountSpec, MountType, Sharing};
pub use outline::{StageArgs, UsedArg, outline};
pub use suggest::closest;
pub use values::Chmod;

use crate::syntax::{Dockerfile, Heredoc, Node, Span};

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

/// A typed instruction. Strings are as written: quotes and variables are handled
/// when the build is planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell(Vec<String>),
    Env(Vec<KeyValue>),
    Label(Vec<KeyValue>),
    Arg(Vec<ArgDecl>),
    Maintainer(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Copy(Copy),
    Add(Add),
    Onbuild(Onbuild),
}

/// `FROM [--platform=P] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    /// Lower-cased stage name.
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// A command in exec form (`["a","b"]`) or shell form (one string, run by SHELL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub args: Vec<String>,
    /// True for the shell form.
    pub prepend_shell: bool,
}

/// Network mode of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    Default,
    None,
    Host,
}

/// Security mode of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    Sandbox,
    Insecure,
}

/// `RUN [--mount=…]… [--network=…] [--security=…] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    pub mounts: Vec<MountSpec>,
    pub network: Option<Network>,
    pub security: Option<Security>,
    /// Heredoc bodies: scripts and files for the command.
    pub heredocs: Vec<Heredoc>,
}

/// One `key=value` of ENV or LABEL, value as written (quotes included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub legacy: bool,
}

/// One name of an ARG line, with its default as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// HEALTHCHECK options and test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable an inherited healthcheck.
    None,
    Check {
        /// `["CMD", args…]` (exec form) or `["CMD-SHELL", command]` (shell form).
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A path or pattern (in the context, a stage, an image, or a URL for ADD).
    Path(String),
    /// An inline file from a heredoc.
    Heredoc(Heredoc),
}

/// Flags COPY and ADD share, with the sources and destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub sources: Vec<Source>,
    pub dest: String,
    pub chown: Option<String>,
    /// `--chmod` as written; checked when it holds no variable.
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
}

/// `COPY [--from=…] [--parents] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub transfer: Transfer,
    pub from: Option<String>,
    pub parents: bool,
}

/// `ADD [--checksum=…] [--keep-git-dir] [--unpack] …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Add {
    pub transfer: Transfer,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

/// `ONBUILD instruction`: a trigger stored in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    pub trigger: Box<Instruction>,
    /// The trigger's text as written (what the image config records).
    pub expression: String,
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub instruction: Instruction,
    /// The keyword as written.
    pub keyword: String,
    /// The logical line as written (continuations joined).
    pub original: String,
    pub span: Span,
    /// The comment block right above the instruction (doc comment).
    pub description: Option<String>,
}

/// One `FROM` and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: usize,
    /// Lower-cased `AS` name.
    pub name: Option<String>,
    /// The base as written: an image reference, `scratch`, or an earlier stage.
    pub base: String,
    pub platform: Option<String>,
    /// The FROM line.
    pub from: Command,
    /// Instructions after FROM.
    pub commands: Vec<Command>,
}

impl Stage {
    /// The comment block right above FROM.
    pub fn description(&self) -> Option<&str> {
        self.from.description.as_deref()
    }

    /// The name `--target` and progress output use: the AS name, else the index.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// A Dockerfile split into stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stages {
    /// ARG lines before the first FROM.
    pub global_args: Vec<Command>,
    pub stages: Vec<Stage>,
}

impl Stages {
    /// A stage by name (case-insensitive) or index.
    pub fn find(&self, reference: &str) -> Option<&Stage> {
        let lower = reference.to_lowercase();
        self.stages
            .iter()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                reference
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| self.stages.get(index))
            })
    }
}

/// Types every instruction of `file` and splits them into stages. Returns every
/// problem found, in source order, not just the first.
pub fn parse(file: &Dockerfile) -> Result<Stages, Vec<Error>> {
    let mut errors = Vec::new();
    let mut global_args = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();

    for node in &file.instructions {
        let command = match parse_command(node) {
            Ok(command) => command,
            Err(error) => {
                errors.push(error);
                // Keep the stage structure even when FROM is malformed, so later
                // instructions are not all reported as outside a stage.
                if node.keyword.eq_ignore_ascii_case("FROM") {
                    stages.push(placeholder_stage(node, stages.len()));
                }
                continue;
            }
        };
        match &command.instruction {
            Instruction::From(from) => {
                if let Some(name) = &from.name
                    && let Some(first) = stages.iter().find(|s| s.name.as_ref() == Some(name))
                {
                    errors.push(Error::DuplicateStageName {
                        name: name.clone(),
                        first_line: first.from.span.start.line,
                        span: command.span,
                    });
                }
                stages.push(Stage {
                    index: stages.len(),
                    name: from.name.clone(),
                    base: from.image.clone(),
                    platform: from.platform.clone(),
                    from: command,
                    commands: Vec::new(),
                });
            }
            _ => match stages.last_mut() {
                Some(stage) => stage.commands.push(command),
                None if matches!(command.instruction, Instruction::Arg(_)) => {
                    global_args.push(command)
                }
                None => errors.push(Error::NoStage {
                    keyword: command.keyword.to_uppercase(),
                    span: command.span,
                }),
            },
        }
    }
    if stages.is_empty() && errors.is_empty() {
        let span = file.instructions.last().map(|n| n.span).unwrap_or_default();
        errors.push(Error::NoStages { span });
    }
    if errors.is_empty() {
        Ok(Stages {
            global_args,
            stages,
        })
    } else {
        Err(errors)
    }
}

fn placeholder_stage(node: &Node, index: usize) -> Stage {
    let from = Command {
        instruction: Instruction::From(From {
            image: String::new(),
            name: None,
            platform: None,
        }),
        keyword: node.keyword.clone(),
        original: node.original.clone(),
        span: node.span,
        description: None,
    };
    Stage {
        index,
        name: None,
        base: String::new(),
        platform: None,
        from,
        commands: Vec::new(),
    }
}

fn description(node: &Node) -> Option<String> {
    (!node.doc_comments.is_empty()).then(|| node.doc_comments.join(" "))
}

/// Types one syntax node.
pub fn parse_command(node: &Node) -> Result<Command, Error> {
    Ok(Command {
        instruction: parse_instruction(node)?,
        keyword: node.keyword.clone(),
        original: node.original.clone(),
        span: node.span,
        description: description(node),
    })
}

fn parse_instruction(node: &Node) -> Result<Instruction, Error> {
    let keyword = node.keyword.to_uppercase();
    let no_flags = || Flags::parse(&node.flags, &[]);
    let instruction = match keyword.as_str() {
        "FROM" => Instruction::From(parse_from(node)?),
        "RUN" => Instruction::Run(parse_run(node)?),
        "CMD" => {
            no_flags()?;
            Instruction::Cmd(command_line(node))
        }
        "ENTRYPOINT" => {
            no_flags()?;
            Instruction::Entrypoint(command_line(node))
        }
        "SHELL" => {
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
        "ENV" => {
            no_flags()?;
            Instruction::Env(key_values(node, "ENV")?)
        }
        "LABEL" => {
            no_flags()?;
            Instruction::Label(key_values(node, "LABEL")?)
        }
        "ARG" => {
            no_flags()?;
            Instruction::Arg(parse_arg(node)?)
        }
        "MAINTAINER" => {
            no_flags()?;
            Instruction::Maintainer(exactly_one(node, "MAINTAINER")?)
        }
        "EXPOSE" => {
            no_flags()?;
            at_least_one(node, "EXPOSE")?;
            for arg in &node.args {
                if !arg.value.contains('$') {
                    check_port(&arg.value).map_err(|m| Error::arguments(m, arg.span))?;
                }
            }
            Instruction::Expose(arg_values(node))
        }
        "VOLUME" => {
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
        "USER" => {
            no_flags()?;
            Instruction::User(exactly_one(node, "USER")?)
        }
        "WORKDIR" => {
            no_flags()?;
            Instruction::Workdir(exactly_one(node, "WORKDIR")?)
        }
        "STOPSIGNAL" => {
            no_flags()?;
            Instruction::StopSignal(exactly_one(node, "STOPSIGNAL")?)
        }
        "HEALTHCHECK" => Instruction::Healthcheck(parse_healthcheck(node)?),
        "COPY" => Instruction::Copy(parse_copy(node)?),
        "ADD" => Instruction::Add(parse_add(node)?),
        "ONBUILD" => Instruction::Onbuild(parse_onbuild(node)?),
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
    let flags = Flags::parse(&node.flags, &[("platform", Kind::String)])?;
    let (image, name) = match node.args.as_slice() {
        [image] => (image, None),
        [image, as_word, name] if as_word.value.eq_ignore_ascii_case("as") => {
            let lower = name.value.to_lowercase();
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
        [_, as_word, _] => {
            return Err(Error::arguments(
                format!("expected AS, found {:?}", as_word.value),
                as_word.span,
            ));
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
            ("network", Kind::String),
            ("security", Kind::String),
        ],
    )?;
    let mounts = flags
        .list("mount")
        .into_iter()
        .map(|given| {
            MountSpec::new(&given.value).map_err(|message| Error::InvalidMount {
                message,
                span: given.span,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let network = match flags.string("network") {
        None => None,
        Some(given) => Some(match given.value.as_str() {
            "default" | "sandbox" => Network::Default,
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
    match kind.value.to_uppercase().as_str() {
        "NONE" => {
            Flags::parse(&node.flags, &[])?;
            if !rest.is_empty() {
                return Err(args_error(node, "HEALTHCHECK NONE takes no arguments"));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = Flags::parse(
                &node.flags,
                &[
                    ("interval", Kind::String),
                    ("timeout", Kind::String),
                    ("start-period", Kind::String),
                    ("start-interval", Kind::String),
                    ("retries", Kind::String),
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
            let interval = |name: &str| -> Result<Option<Duration>, Error> {
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
                Some(given) => Some(
                    given
                        .value
                        .parse::<i64>()
                        .map_err(|_| {
                            Error::flag_value(
                                format!("--retries: invalid number {:?}", given.value),
                                given.span,
                            )
                        })
                        .and_then(|n| {
                            u32::try_from(n).map_err(|_| {
                                Error::flag_value(
                                    format!("--retries cannot be negative ({n})"),
                                    given.span,
                                )
                            })
                        })?,
                ),
            };
            Ok(Healthcheck::Check {
                test,
                interval: interval("interval")?,
                timeout: interval("timeout")?,
                start_period: interval("start-period")?,
                start_interval: interval("start-interval")?,
                retries,
            })
        }
        other => Err(Error::arguments(
            format!("unknown type {other:?} in HEALTHCHECK (try CMD or NONE)"),
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
    let mut heredocs = node.heredocs.iter();
    let sources = sources
        .iter()
        .map(|arg| {
            if !node.json
                && is_heredoc_word(&arg.value)
                && let Some(heredoc) = heredocs.next()
            {
                Source::Heredoc(heredoc.clone())
            } else {
                Source::Path(arg.value.clone())
            }
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

/// `<<EOF`, `<<-EOF`, `3<<"EOF"`: a word that opens a heredoc.
fn is_heredoc_word(word: &str) -> bool {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    after_fd.len() > 2 && after_fd.starts_with("<<")
}

fn parse_copy(node: &Node) -> Result<Copy, Error> {
    let flags = Flags::parse(
        &node.flags,
        &[
            ("from", Kind::String),
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("parents", Kind::Bool),
            ("exclude", Kind::List),
        ],
    )?;
    if let Some(from) = flags.string("from")
        && from.value.is_empty()
    {
        return Err(Error::flag_value(
            "--from requires a stage, index or image",
            from.span,
        ));
    }
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
            ("chown", Kind::String),
            ("chmod", Kind::String),
            ("link", Kind::Bool),
            ("exclude", Kind::List),
            ("keep-git-dir", Kind::Bool),
            ("checksum", Kind::String),
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
    let inner_keyword = inner.keyword.to_uppercase();
    if matches!(inner_keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(Error::arguments(
            format!("{inner_keyword} isn't allowed as an ONBUILD trigger"),
            inner.keyword_span,
        ));
    }
    Ok(Onbuild {
        trigger: Box::new(parse_instruction(inner)?),
        expression: inner.original.clone(),
    })
}

/// `80`, `80/tcp`, `53/udp`, `8000-8010/sctp`.
fn check_port(text: &str) -> Result<(), String> {
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    if !matches!(
        protocol.to_ascii_lowercase().as_str(),
        "tcp" | "udp" | "sctp"
    ) {
        return Err(format!("invalid proto {protocol:?} in EXPOSE {text}"));
    }
    let (low, high) = ports.split_once('-').unwrap_or((ports, ports));
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid port {text:?} in EXPOSE"))
    };
    if parse(low)? > parse(high)? {
        return Err(format!("invalid port range {text:?} in EXPOSE"));
    }
    Ok(())
}
