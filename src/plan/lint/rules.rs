//! BuildKit's Dockerfile build checks: names, descriptions and documentation pages, as
//! BuildKit's `linter/ruleset.go` defines them.

/// One check.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    /// The name `# check=skip=` and the output use (`StageNameCasing`).
    pub name: &'static str,
    /// What the rule asks for, in one sentence.
    pub description: &'static str,
    /// Runs only when `experimental=` names it (or says `all`).
    pub experimental: bool,
    /// The last part of the documentation address; empty when there is no page.
    slug: &'static str,
}

impl Rule {
    /// The rule's documentation page, when it has one.
    pub fn url(&self) -> Option<String> {
        (!self.slug.is_empty())
            .then(|| format!("https://docs.docker.com/go/dockerfile/rule/{}/", self.slug))
    }
}

const fn rule(name: &'static str, slug: &'static str, description: &'static str) -> Rule {
    Rule {
        name,
        description,
        experimental: false,
        slug,
    }
}

pub static STAGE_NAME_CASING: Rule = rule(
    "StageNameCasing",
    "stage-name-casing",
    "Stage names should be lowercase",
);
pub static FROM_AS_CASING: Rule = rule(
    "FromAsCasing",
    "from-as-casing",
    "The 'as' keyword should match the case of the 'from' keyword",
);
pub static NO_EMPTY_CONTINUATION: Rule = rule(
    "NoEmptyContinuation",
    "no-empty-continuation",
    "Empty continuation lines will become errors in a future release",
);
pub static CONSISTENT_INSTRUCTION_CASING: Rule = rule(
    "ConsistentInstructionCasing",
    "consistent-instruction-casing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
);
pub static DUPLICATE_STAGE_NAME: Rule = rule(
    "DuplicateStageName",
    "duplicate-stage-name",
    "Stage names should be unique",
);
pub static RESERVED_STAGE_NAME: Rule = rule(
    "ReservedStageName",
    "reserved-stage-name",
    "Reserved words should not be used as stage names",
);
pub static JSON_ARGS_RECOMMENDED: Rule = rule(
    "JSONArgsRecommended",
    "json-args-recommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
);
pub static MAINTAINER_DEPRECATED: Rule = rule(
    "MaintainerDeprecated",
    "maintainer-deprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
);
pub static UNDEFINED_ARG_IN_FROM: Rule = rule(
    "UndefinedArgInFrom",
    "undefined-arg-in-from",
    "FROM command must use declared ARGs",
);
pub static WORKDIR_RELATIVE_PATH: Rule = rule(
    "WorkdirRelativePath",
    "workdir-relative-path",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
);
pub static UNDEFINED_VAR: Rule = rule(
    "UndefinedVar",
    "undefined-var",
    "Variables should be defined before their use",
);
pub static MULTIPLE_INSTRUCTIONS_DISALLOWED: Rule = rule(
    "MultipleInstructionsDisallowed",
    "multiple-instructions-disallowed",
    "Multiple instructions of the same type should not be used in the same stage",
);
pub static LEGACY_KEY_VALUE_FORMAT: Rule = rule(
    "LegacyKeyValueFormat",
    "legacy-key-value-format",
    "Legacy key/value format with whitespace separator should not be used",
);
/// BuildKit gives this rule no documentation page.
pub static INVALID_BASE_IMAGE_PLATFORM: Rule = rule(
    "InvalidBaseImagePlatform",
    "",
    "Base image platform does not match expected target platform",
);
pub static REDUNDANT_TARGET_PLATFORM: Rule = rule(
    "RedundantTargetPlatform",
    "redundant-target-platform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
);
pub static SECRETS_USED_IN_ARG_OR_ENV: Rule = rule(
    "SecretsUsedInArgOrEnv",
    "secrets-used-in-arg-or-env",
    "Sensitive data should not be used in the ARG or ENV commands",
);
pub static INVALID_DEFAULT_ARG_IN_FROM: Rule = rule(
    "InvalidDefaultArgInFrom",
    "invalid-default-arg-in-from",
    "Default value for global ARG results in an empty or invalid base image name",
);
pub static FROM_PLATFORM_FLAG_CONST_DISALLOWED: Rule = rule(
    "FromPlatformFlagConstDisallowed",
    "from-platform-flag-const-disallowed",
    "FROM --platform flag should not use a constant value",
);
pub static COPY_IGNORED_FILE: Rule = rule(
    "CopyIgnoredFile",
    "copy-ignored-file",
    "Attempting to Copy file that is excluded by .dockerignore",
);
pub static INVALID_DEFINITION_DESCRIPTION: Rule = Rule {
    experimental: true,
    ..rule(
        "InvalidDefinitionDescription",
        "invalid-definition-description",
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
    )
};
pub static EXPOSE_PROTO_CASING: Rule = rule(
    "ExposeProtoCasing",
    "expose-proto-casing",
    "Protocol in EXPOSE instruction should be lowercase",
);
pub static EXPOSE_INVALID_FORMAT: Rule = rule(
    "ExposeInvalidFormat",
    "expose-invalid-format",
    "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
);
