//! `--call check` and the checks of a build: BuildKit's lint rules over the parsed
//! Dockerfile, with the context's `.dockerignore` and the base images already in the
//! store; and the plan made without pulling, for the problems only planning finds.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use super::dockerfile::{Diagnostic, ParsedDockerfile};
use super::error::BuildError;
use crate::plan::lint::{self, BaseImages, IgnoreRules};
use crate::plan::{self, ImageResolver, Platform, ResolveError, ResolvedImage};
use crate::solve::StoreResolver;
use crate::source::{IgnoreFile, PatternMatcher};
use crate::store::Store;

/// What the checks need besides the Dockerfile.
#[derive(Clone, Copy)]
pub struct CheckOptions<'a> {
    pub build_args: &'a BTreeMap<String, String>,
    /// `--platform`; this machine's when `None`.
    pub platform: Option<&'a Platform>,
    pub target: Option<&'a str>,
    /// The context directory, for `.dockerignore`; `None` when there is no context.
    pub context: Option<&'a Path>,
    /// The Dockerfile's name relative to the context (for `<name>.dockerignore`).
    pub dockerfile_name: &'a str,
    /// The image store, for base images already pulled; never pulls.
    pub store: Option<&'a Store>,
    /// Check every stage, not only those the target needs (`--call check` without
    /// `--target`).
    pub every_stage: bool,
}

impl CheckOptions<'_> {
    fn target_platform(&self) -> Platform {
        self.platform.cloned().unwrap_or_else(Platform::host)
    }
}

impl IgnoreRules for PatternMatcher {
    fn excludes(&self, path: &str) -> bool {
        self.matches_or_parent_matches(path).unwrap_or(false)
    }

    fn has_exceptions(&self) -> bool {
        self.exclusions()
    }

    fn excluding_patterns(&self) -> Vec<String> {
        self.patterns()
            .into_iter()
            .filter(|p| !p.exclusion)
            .map(|p| p.pattern)
            .collect()
    }
}

/// The store's images, looked up by name; nothing is pulled.
struct StoredImages(RefCell<StoreResolver<'static>>);

impl StoredImages {
    fn new(store: &Store) -> StoredImages {
        StoredImages(RefCell::new(StoreResolver::new(store.clone(), None)))
    }
}

impl BaseImages for StoredImages {
    fn find(&self, reference: &str, platform: &Platform) -> Option<ResolvedImage> {
        self.0.borrow_mut().resolve(reference, platform).ok()
    }
}

/// For planning without pulling: a stored image as it is, any other as an empty one.
struct WithoutPulling(Option<StoredImages>);

impl ImageResolver for WithoutPulling {
    fn resolve(
        &mut self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ResolveError> {
        let stored = self.0.as_ref().and_then(|s| s.find(reference, platform));
        Ok(stored.unwrap_or_else(|| ResolvedImage {
            reference_normalised: reference.to_string(),
            ..ResolvedImage::default()
        }))
    }
}

impl ParsedDockerfile {
    /// Runs BuildKit's lint rules, configured by `# check=` or
    /// `BUILDKIT_DOCKERFILE_CHECK`.
    pub fn lint(&self, options: &CheckOptions) -> Result<lint::Report, BuildError> {
        let ignore = match options.context {
            Some(dir) => IgnoreFile::load(dir, options.dockerfile_name)?,
            None => None,
        };
        let images = options.store.map(StoredImages::new);
        let target_platform = options.target_platform();
        let report = lint::check(&lint::Input {
            file: &self.syntax,
            stages: &self.stages,
            build_args: options.build_args,
            target_platform: &target_platform,
            build_platform: &Platform::host(),
            target: options.target,
            every_stage: options.every_stage,
            ignore: ignore.as_ref().map(|m| m as &dyn IgnoreRules),
            images: images.as_ref().map(|i| i as &dyn BaseImages),
        })?;
        Ok(report)
    }

    /// What planning finds wrong (an unknown target, a stage index or name that does not
    /// exist, a base that expands to nothing…), planning without pulling: the target's
    /// plan, or with no `--target` the plan of every stage that can be a target.
    pub fn plan_problems(&self, options: &CheckOptions) -> Vec<Diagnostic> {
        let targets: Vec<Option<String>> = match options.target {
            Some(target) => vec![Some(target.to_string())],
            None => std::iter::once(None)
                .chain(self.stages.stages.iter().map(|s| s.name.clone()))
                .collect(),
        };
        let mut resolver = WithoutPulling(options.store.map(StoredImages::new));
        let mut problems: Vec<Diagnostic> = Vec::new();
        for target in targets {
            let plan_options = plan::Options {
                target: target.clone(),
                build_args: options.build_args.clone(),
                target_platform: options.target_platform(),
                escape: self.escape,
                dockerfile_name: options.dockerfile_name.to_string(),
                ..plan::Options::default()
            };
            if let Err(error) = plan::build(&self.stages, &plan_options, &mut resolver) {
                let problem = Diagnostic::from_plan(&error);
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        problems
    }
}
