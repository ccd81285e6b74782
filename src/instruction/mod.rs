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

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

pub use error::Error;
use flags::{Flags, Kind};
pub use mount::{Mount, MountSpec, MountType, Sharing};
pub use outline::{StageArgs, UsedArg, outline};
pub use suggest::closest;
pub use values::Chmod;

use crate::gocompat::go_lowercase;
use crate::syntax::{Dockerfile, Heredoc, Node, Span, Warning, parse_heredoc_word};

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

/// `ONBUILD instruction`: a trigger stored in the image. Like BuildKit, the trigger
/// is only checked for its keyword here; it is parsed when a child stage runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onbuild {
    /// The trigger's keyword in upper case (`RUN`, `COPY`, …).
    pub keyword: String,
    /// The trigger's text as the image config records it: the line after ONBUILD,
    /// followed by each heredoc's body and terminator.
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
    /// The comment lines right above the instruction (doc comments).
    pub doc_comments: Vec<String>,
}

impl Command {
    /// The description of `name` in the doc comments, as buildx finds it: the rest
    /// of the first comment line that starts with `name` and a space.
    pub fn description_of(&self, name: &str) -> Option<String> {
        if name.is_empty() {
            return None;
        }
        let prefix = format!("{name} ");
        self.doc_comments
            .iter()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(str::to_string)
    }
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
    /// The description from the comment above FROM (`# name does things`).
    pub fn description(&self) -> Option<String> {
        self.from.description_of(self.name.as_deref()?)
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
    /// Problems that do not stop the build (a stage name used twice).
    pub warnings: Vec<Warning>,
}

impl Stages {
    /// A stage by name (case-insensitive) or index, as the whole file sees it.
    pub fn find(&self, reference: &str) -> Option<&Stage> {
        self.find_before(reference, self.stages.len())
    }

    /// A stage by name or index among the stages before `before`: what an
    /// instruction of stage `before` can refer to. When a name is used twice the
    /// later stage wins, as in BuildKit.
    pub fn find_before(&self, reference: &str, before: usize) -> Option<&Stage> {
        let earlier = &self.stages[..before.min(self.stages.len())];
        let lower = go_lowercase(reference);
        earlier
            .iter()
            .rev()
            .find(|stage| stage.name.as_deref() == Some(lower.as_str()))
            .or_else(|| {
                reference
                    .parse::<usize>()
                    .ok()
                    .and_then(|index| earlier.get(index))
            })
    }
}

/// Types every instruction of `file` and splits them into stages. Returns every
/// problem found, in source order, not just the first.
pub fn parse(file: &Dockerfile) -> Result<Stages, Vec<Error>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut global_args = Vec::new();
    let mut first_line_of_name = HashMap::new();
    let mut stages: Vec<Stage> = Vec::new();

    for node in &file.instructions {
        let command = match parse_command(node) {
            Ok(command) => command,
            Err(error) => {
                errors.push(error);
                // Keep the stage structure even when FROM is malformed, so later
                // instructions are not all reported as outside a stage.
                if node.keyword_lower() == "from" {
                    stages.push(placeholder_stage(node, stages.len()));
                }
                continue;
            }
        };
        match &command.instruction {
            Instruction::From(from) => {
                // A map, not a scan of earlier stages: files with thousands of
                // stages stay linear.
                if let Some(name) = &from.name {
                    match first_line_of_name.entry(name.clone()) {
                        Entry::Occupied(first) => warnings.push(Warning {
                            message: format!(
                                "DuplicateStageName: stage name {name:?} is also used at line {}; references resolve to the latest stage",
                                first.get()
                            ),
                            span: command.span,
                        }),
                        Entry::Vacant(slot) => {
                            slot.insert(command.span.start.line);
                        }
                    }
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
            warnings,
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
        doc_comments: Vec::new(),
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
                message,
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

/// `<<EOF`, `<<-EOF`, `3<<"EOF"`: a word that opens a heredoc.
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
