//! A stage being planned (BuildKit's `dispatchState`): its build environment, image
//! config, step numbering, layers and history.

use petgraph::graph::NodeIndex;

use super::image::{History, ImageConfig, Platform};
use super::op::Metadata;
use super::{BaseImage, Layer};
use crate::syntax::Span;

const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// One variable of a stage's build environment.
#[derive(Debug, Clone)]
pub(super) struct EnvEntry {
    pub(super) key: String,
    pub(super) value: String,
    /// Last set by ENV (or the base image's Env), not by an ARG.
    pub(super) from_env: bool,
}

/// A stage being planned.
#[derive(Debug, Clone)]
pub(super) struct StageState {
    pub(super) index: usize,
    /// Shown in step names; empty when the build has a single stage.
    pub(super) label: String,
    pub(super) platform: Platform,
    pub(super) config: ImageConfig,
    pub(super) author: Option<String>,
    /// ARG and ENV values: what expansion sees and RUN gets.
    pub(super) env: Vec<EnvEntry>,
    /// Declared ARGs in order (with inherited ones), for `RUN |N k=v …` history.
    pub(super) build_args: Vec<(String, Option<String>)>,
    pub(super) workdir: String,
    pub(super) user: String,
    pub(super) rootfs: NodeIndex,
    pub(super) base: Option<BaseImage>,
    pub(super) layers: Vec<Layer>,
    pub(super) history: Vec<History>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(super) cmd_set: bool,
    pub(super) step: usize,
    pub(super) total: usize,
    pub(super) ignore_cache: bool,
}

impl StageState {
    pub(super) fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect()
    }

    pub(super) fn env_lines(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|e| format!("{}={}", e.key, e.value))
            .collect()
    }

    /// ARG with a value: sets it, over an earlier ENV of the name too (BuildKit's
    /// `dispatchArg` adds it to the state's env as `dispatchEnv` does; only the image
    /// config keeps the ENV's value). An ENV after the ARG wins in turn.
    pub(super) fn set_arg(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                entry.value = value.to_string();
                entry.from_env = false;
            }
            None => self.env.push(EnvEntry {
                key: key.to_string(),
                value: value.to_string(),
                from_env: false,
            }),
        }
    }

    pub(super) fn set_env(&mut self, key: &str, value: &str) {
        match self.env.iter_mut().find(|e| e.key == key) {
            Some(entry) => {
                entry.value = value.to_string();
                entry.from_env = true;
            }
            None => self.env.push(EnvEntry {
                key: key.to_string(),
                value: value.to_string(),
                from_env: true,
            }),
        }
    }

    /// BuildKit's `prefixCommand`: `[stage 2/5] RUN …`.
    pub(super) fn step_name(&mut self, text: &str, onbuild: bool) -> String {
        if self.total == 0 {
            return text.to_string();
        }
        self.step += 1;
        let width = self.total.to_string().len();
        let mut out = String::from("[");
        if !self.label.is_empty() {
            out.push_str(&self.label);
            out.push(' ');
        }
        out.push_str(&format!("{:>width$}/{}] ", self.step, self.total));
        if onbuild {
            out.push_str("ONBUILD ");
        }
        out + text
    }

    pub(super) fn metadata(&self, name: String, span: Span, onbuild: bool) -> Metadata {
        Metadata {
            name,
            stage: Some(self.label.clone()).filter(|l| !l.is_empty()),
            span: Some(span),
            ignore_cache: self.ignore_cache,
            onbuild,
        }
    }

    /// Appends a history entry; `layer` is the op whose diff is the layer.
    pub(super) fn commit(&mut self, created_by: String, layer: Option<NodeIndex>) {
        let history_index = self.history.len();
        self.history
            .push(History::buildkit(created_by, layer.is_some()));
        if let Some(node) = layer {
            self.layers.push(Layer {
                node,
                history_index,
            });
        }
    }

    fn shell(&self) -> Vec<String> {
        if self.config.shell.is_empty() {
            DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
        } else {
            self.config.shell.clone()
        }
    }

    /// BuildKit's `withShell`: SHELL + the command joined into one word.
    pub(super) fn with_shell(&self, args: &[String]) -> Vec<String> {
        let mut argv = self.shell();
        argv.push(args.join(" "));
        argv
    }
}
