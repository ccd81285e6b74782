/// Why the checks could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `# check=` or `BUILDKIT_DOCKERFILE_CHECK` is not `skip=…;error=…;experimental=…`.
    #[error("failed to parse check options: invalid check option {option:?}")]
    Option { option: String },
    /// `error=` is not a boolean.
    #[error(
        "failed to parse check options: failed to parse check option {option:?}: {value:?} is not a boolean"
    )]
    Boolean { option: String, value: String },
}
