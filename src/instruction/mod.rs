//! Syntax nodes to typed instructions, split into stages (layer L2: pure).
//!
//! This layer checks everything that can be checked without build arguments:
//! keywords, argument counts, which flags an instruction takes and the values of
//! flags that hold no variables. Variable expansion happens when the build is
//! planned, because it needs the build arguments.

mod convert;
mod error;
mod flags;
pub mod mount;
mod outline;
mod stages;
mod suggest;
mod types;
pub mod values;

pub use convert::{KEYWORDS, parse_command};
pub use error::{Error, InvalidValue};
pub use mount::{Mount, MountSpec, MountType, Sharing};
pub use outline::{StageArgs, UsedArg, outline};
pub use stages::{Stage, Stages, parse};
pub use suggest::closest;
pub use types::{
    Add, ArgDecl, Command, CommandLine, Copy, From, Healthcheck, Instruction, KeyValue, Network,
    Onbuild, Run, Security, Source, Transfer,
};
pub use values::Chmod;
