//! The typed instructions, as written: quotes and variables are handled when the build is
//! planned.

use std::time::Duration;

use super::MountSpec;
use crate::syntax::{Heredoc, Span};

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
