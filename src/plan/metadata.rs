//! The image-config instructions (BuildKit's `dispatchEnv`, `dispatchLabel`,
//! `dispatchCmd`, …): ENV, LABEL, CMD, ENTRYPOINT, SHELL, MAINTAINER, EXPOSE, VOLUME,
//! USER, WORKDIR, STOPSIGNAL and HEALTHCHECK. Each changes the stage's config and adds a
//! history entry; WORKDIR also makes the directory.

use std::collections::BTreeSet;

use super::Error;
use super::builder::Planner;
use super::image::{Empty, HealthConfig};
use super::op::{Definition, FileOp, Mkdir};
use super::paths::normalise_workdir;
use super::state::StageState;
use crate::gocompat::{go_list, go_quote_list};
use crate::instruction::{Command, CommandLine, Healthcheck, KeyValue};
use crate::syntax::Span;

impl Planner<'_> {
    /// The key/value pairs of ENV or LABEL, all expanded with the environment from
    /// before the instruction.
    fn expand_pairs(
        &self,
        state: &StageState,
        pairs: &[KeyValue],
        span: Span,
    ) -> Result<Vec<(String, String)>, Error> {
        let env = state.env_pairs();
        let mut expanded = Vec::new();
        for pair in pairs {
            expanded.push((
                self.expand_with(&pair.key, &env, span)?,
                self.expand_with(&pair.value, &env, span)?,
            ));
        }
        Ok(expanded)
    }

    pub(super) fn dispatch_env(
        &mut self,
        state: &mut StageState,
        pairs: &[KeyValue],
        span: Span,
    ) -> Result<(), Error> {
        let mut text = String::from("ENV");
        for (key, value) in self.expand_pairs(state, pairs, span)? {
            state.set_env(&key, &value);
            state.config.set_env(&key, &value);
            text.push_str(&format!(" {key}={value}"));
        }
        state.commit(text, None);
        Ok(())
    }

    pub(super) fn dispatch_label(
        &mut self,
        state: &mut StageState,
        pairs: &[KeyValue],
        span: Span,
    ) -> Result<(), Error> {
        let mut text = String::from("LABEL");
        for (key, value) in self.expand_pairs(state, pairs, span)? {
            text.push_str(&format!(" {key}={value}"));
            state.config.labels.insert(key, value);
        }
        state.commit(text, None);
        Ok(())
    }

    pub(super) fn dispatch_expose(
        &mut self,
        state: &mut StageState,
        words: &[String],
        span: Span,
    ) -> Result<(), Error> {
        let env = state.env_pairs();
        let mut ports = BTreeSet::new();
        for word in words {
            let split = self
                .lexer
                .process_words(word, &env)
                .map_err(|e| Error::Expansion {
                    word: word.clone(),
                    message: e.message,
                    span,
                })?;
            for spec in split {
                ports.extend(parse_port_spec(&spec).map_err(|m| Error::invalid(m, span))?);
            }
        }
        let text: Vec<String> = ports.iter().map(|p| format!("{p}:{{}}")).collect();
        for port in ports {
            state.config.exposed_ports.insert(port, Empty {});
        }
        state.commit(format!("EXPOSE map[{}]", text.join(" ")), None);
        Ok(())
    }

    pub(super) fn dispatch_volume(
        &mut self,
        state: &mut StageState,
        volumes: &[String],
        span: Span,
    ) -> Result<(), Error> {
        let mut expanded = Vec::new();
        for volume in volumes {
            let value = self.expand(state, volume, span)?;
            if value.is_empty() {
                return Err(Error::invalid(
                    "VOLUME specified can not be an empty string",
                    span,
                ));
            }
            expanded.push(value);
        }
        for volume in &expanded {
            state.config.volumes.insert(volume.clone(), Empty {});
        }
        state.commit(format!("VOLUME {}", go_list(&expanded)), None);
        Ok(())
    }

    pub(super) fn dispatch_user(
        &mut self,
        state: &mut StageState,
        user: &str,
        span: Span,
    ) -> Result<(), Error> {
        let user = self.expand(state, user, span)?;
        state.user = user.clone();
        state.config.user = user.clone();
        state.commit(format!("USER {user}"), None);
        Ok(())
    }

    pub(super) fn dispatch_stop_signal(
        &mut self,
        state: &mut StageState,
        signal: &str,
        span: Span,
    ) -> Result<(), Error> {
        let signal = self.expand(state, signal, span)?;
        check_signal(&signal).map_err(|m| Error::invalid(m, span))?;
        state.config.stop_signal = signal.clone();
        state.commit(format!("STOPSIGNAL {signal}"), None);
        Ok(())
    }

    /// WORKDIR: the config's working directory, and (but for `/`) a step that makes it.
    pub(super) fn dispatch_workdir(
        &mut self,
        state: &mut StageState,
        command: &Command,
        path: &str,
        onbuild: bool,
    ) -> Result<(), Error> {
        let span = command.span;
        let path = self.expand(state, path, span)?;
        let workdir = normalise_workdir(&state.config.working_dir, &path)
            .map_err(|m| Error::invalid(format!("normalizing workdir: {m}"), span))?;
        state.config.working_dir = workdir.clone();
        state.workdir = workdir.clone();
        if workdir == "/" {
            state.commit(format!("WORKDIR {workdir}"), None);
            return Ok(());
        }
        let display = self.display(state, &command.original, false);
        let name = state.step_name(&display, onbuild);
        let metadata = state.metadata(name, span, onbuild);
        let node = self.add_op(
            Definition::File(FileOp::Mkdir(Mkdir {
                path: workdir.clone(),
                owner: state.config.user.clone(),
                mode: 0o755,
                make_parents: true,
            })),
            vec![state.rootfs],
            metadata,
        );
        state.rootfs = node;
        state.commit(format!("WORKDIR {workdir}"), Some(node));
        Ok(())
    }
}

pub(super) fn dispatch_cmd(state: &mut StageState, line: &CommandLine) {
    let args = command_args(state, line);
    state.commit(format!("CMD {}", go_quote_list(&args)), None);
    state.config.cmd = Some(args);
    state.config.args_escaped = true;
    state.cmd_set = true;
}

/// ENTRYPOINT: resets a CMD inherited from the base, keeps one set in this stage.
pub(super) fn dispatch_entrypoint(state: &mut StageState, line: &CommandLine) {
    let args = command_args(state, line);
    state.commit(format!("ENTRYPOINT {}", go_quote_list(&args)), None);
    state.config.entrypoint = Some(args);
    if !state.cmd_set {
        state.config.cmd = None;
    }
}

pub(super) fn dispatch_shell(state: &mut StageState, shell: &[String]) {
    state.config.shell = shell.to_vec();
    state.commit(format!("SHELL {}", go_list(shell)), None);
}

pub(super) fn dispatch_maintainer(state: &mut StageState, name: &str) {
    state.author = Some(name.to_string());
    state.commit(format!("MAINTAINER {name}"), None);
}

pub(super) fn dispatch_healthcheck(state: &mut StageState, check: &Healthcheck) {
    let health = health_config(check);
    state.commit(format!("HEALTHCHECK {}", health.go_text()), None);
    state.config.healthcheck = Some(health);
}

fn command_args(state: &StageState, line: &CommandLine) -> Vec<String> {
    if line.prepend_shell {
        state.with_shell(&line.args)
    } else {
        line.args.clone()
    }
}

fn health_config(check: &Healthcheck) -> HealthConfig {
    let nanos = |d: &Option<std::time::Duration>| {
        d.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    };
    match check {
        Healthcheck::None => HealthConfig {
            test: vec!["NONE".to_string()],
            ..HealthConfig::default()
        },
        Healthcheck::Check {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => HealthConfig {
            test: test.clone(),
            interval: nanos(interval),
            timeout: nanos(timeout),
            start_period: nanos(start_period),
            start_interval: nanos(start_interval),
            retries: retries.unwrap_or(0),
        },
    }
}

/// `nat.ParsePortSpec` for EXPOSE: `[ip:[hostPort]:]port[-port][/proto]`,
/// ranges expanded, protocol lower-cased.
fn parse_port_spec(spec: &str) -> Result<Vec<String>, String> {
    let (raw, protocol) = match spec.split_once('/') {
        Some((raw, protocol)) if !protocol.is_empty() => (raw, protocol.to_ascii_lowercase()),
        Some((raw, _)) => (raw, "tcp".to_string()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {protocol}"));
    }
    let container = raw.rsplit(':').next().unwrap_or(raw);
    let bad = || format!("invalid containerPort: {container}");
    let (low, high) = container.split_once('-').unwrap_or((container, container));
    let low: u16 = low.parse().map_err(|_| bad())?;
    let high: u16 = high.parse().map_err(|_| bad())?;
    if high < low {
        return Err(format!(
            "invalid range specified for container port: {container}"
        ));
    }
    Ok((low..=high)
        .map(|port| format!("{port}/{protocol}"))
        .collect())
}

/// `signal.ParseSignal`: a non-zero number or a Linux signal name.
fn check_signal(signal: &str) -> Result<(), String> {
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ", "RTMIN", "RTMAX",
    ];
    if let Ok(number) = signal.parse::<u32>() {
        return if number == 0 {
            Err(format!("invalid signal: {signal}"))
        } else {
            Ok(())
        };
    }
    let upper = signal.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = ["RTMIN+", "RTMAX-"].iter().any(|prefix| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
    });
    if NAMES.contains(&name) || realtime {
        Ok(())
    } else {
        Err(format!("invalid signal: {signal}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(parse_port_spec("127.0.0.1:80:8080").unwrap(), ["8080/tcp"]);
        assert!(parse_port_spec("80/xyz").is_err());
        assert!(parse_port_spec("http").is_err());
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "KILL"] {
            assert!(check_signal(ok).is_ok(), "{ok}");
        }
        for bad in ["0", "SIGFOO", "", "RTMIN+99"] {
            assert!(check_signal(bad).is_err(), "{bad}");
        }
    }
}
