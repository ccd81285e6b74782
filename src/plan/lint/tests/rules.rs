//! The rules, one table each.

use super::{Expected, assert_findings, table};

#[test]
fn stage_name_and_from_as_casing() {
    table(&[
        (
            "\n# warning: stage name should be lowercase\n#\nFROM scratch AS BadStageName\n\n# warning: 'as' should match 'FROM' cmd casing.\n#\nFROM scratch as base2\n\nFROM scratch AS base3\n",
            &[
                (
                    "StageNameCasing",
                    4,
                    "Stage name 'BadStageName' should be lowercase",
                ),
                (
                    "FromAsCasing",
                    8,
                    "'as' and 'FROM' keywords' casing do not match",
                ),
            ],
        ),
        (
            "\n# warning: 'AS' should match 'from' cmd casing.\n#\nfrom scratch AS base\n\nfrom scratch as base2\n",
            &[(
                "FromAsCasing",
                4,
                "'AS' and 'from' keywords' casing do not match",
            )],
        ),
    ]);
}

#[test]
fn no_empty_continuation() {
    table(&[(
        "\nFROM scratch\n# warning: empty continuation line\nCOPY Dockerfile \\\n\n.\nCOPY Dockerfile \\\n.\n",
        &[("NoEmptyContinuation", 5, "Empty continuation line")],
    )]);
}

#[test]
fn consistent_instruction_casing() {
    const RULE: &str = "ConsistentInstructionCasing";
    table(&[
        (
            "\n# warning: 'FROM' should be either lowercased or uppercased\n#\nFrom scratch as base\nFROM scratch AS base2\n",
            &[(
                RULE,
                4,
                "Command 'From' should match the case of the command majority (uppercase)",
            )],
        ),
        (
            "\nFROM scratch\n# warning: 'copy' should match command majority's casing (uppercase)\ncopy Dockerfile /foo\nCOPY Dockerfile /bar\n",
            &[(
                RULE,
                4,
                "Command 'copy' should match the case of the command majority (uppercase)",
            )],
        ),
        (
            "\n# warning: 'frOM' should be either lowercased or uppercased\n#\nfrOM scratch as base\nfrom scratch as base2\n",
            &[(
                RULE,
                4,
                "Command 'frOM' should match the case of the command majority (lowercase)",
            )],
        ),
        (
            "\nfrom scratch\n# warning: 'COPY' should match command majority's casing (lowercase)\nCOPY Dockerfile /foo\ncopy Dockerfile /bar\n",
            &[(
                RULE,
                4,
                "Command 'COPY' should match the case of the command majority (lowercase)",
            )],
        ),
        (
            "\n# warning: 'from' should match command majority's casing (uppercase)\n#\nfrom scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\nCOPY Dockerfile /baz\n",
            &[(
                RULE,
                4,
                "Command 'from' should match the case of the command majority (uppercase)",
            )],
        ),
        (
            "\n# warning: 'FROM' should match command majority's casing (lowercase)\n#\nFROM scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\ncopy Dockerfile /baz\n",
            &[(
                RULE,
                4,
                "Command 'FROM' should match the case of the command majority (lowercase)",
            )],
        ),
        (
            "\nfrom scratch\ncopy Dockerfile /foo\ncopy Dockerfile /bar\n",
            &[],
        ),
        (
            "\nFROM scratch\nCOPY Dockerfile /foo\nCOPY Dockerfile /bar\n",
            &[],
        ),
        ("\nFROM alpine\nRUN <<'EOT'\nenv\nEOT\n", &[]),
    ]);
}

#[test]
fn duplicate_and_reserved_stage_names() {
    table(&[
        (
            "\nFROM scratch AS b\nFROM scratch AS b\n",
            &[(
                "DuplicateStageName",
                3,
                "Duplicate stage name \"b\", stage names should be unique",
            )],
        ),
        ("\nFROM scratch AS b1\nFROM scratch AS b2\n", &[]),
        (
            "\nFROM scratch AS scratch\nFROM scratch AS context\n",
            &[
                (
                    "ReservedStageName",
                    2,
                    "Stage name should not use the same name as reserved stage \"scratch\"",
                ),
                (
                    "ReservedStageName",
                    3,
                    "Stage name should not use the same name as reserved stage \"context\"",
                ),
            ],
        ),
        ("\nFROM scratch\nFROM scratch AS a\n", &[]),
    ]);
}

#[test]
fn json_args_recommended() {
    const MESSAGE: &str = "to prevent unintended behavior related to OS signals";
    let cmd = format!("JSON arguments recommended for CMD {MESSAGE}");
    let entrypoint = format!("JSON arguments recommended for ENTRYPOINT {MESSAGE}");
    table(&[
        (
            "\nFROM scratch\nCMD mycommand\n",
            &[("JSONArgsRecommended", 3, &cmd)],
        ),
        (
            "\nFROM scratch\nENTRYPOINT mycommand\n",
            &[("JSONArgsRecommended", 3, &entrypoint)],
        ),
        (
            "\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nCMD mycommand\n",
            &[],
        ),
        (
            "\nFROM scratch\nSHELL [\"/usr/bin/customshell\"]\nENTRYPOINT mycommand\n",
            &[],
        ),
        (
            "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nCMD mycommand\n",
            &[],
        ),
        (
            "\nFROM scratch AS base\nSHELL [\"/usr/bin/customshell\"]\n\nFROM base\nENTRYPOINT mycommand\n",
            &[],
        ),
        (
            "\nFROM scratch\n# check=skip=JSONArgsRecommended\nCMD mycommand\n",
            &[],
        ),
        // The base image's SHELL counts too.
        ("FROM pwsh\nCMD mycommand\n", &[]),
        (
            "\nFROM scratch\n# check=skip=JSONArgsRecommended\nENTRYPOINT mycommand\n",
            &[],
        ),
    ]);
}

#[test]
fn maintainer_deprecated() {
    table(&[
        (
            "\nFROM scratch\nMAINTAINER me@example.org\n",
            &[(
                "MaintainerDeprecated",
                3,
                "Maintainer instruction is deprecated in favor of using label",
            )],
        ),
        (
            "\nFROM scratch\nLABEL org.opencontainers.image.authors=\"me@example.org\"\n",
            &[],
        ),
        (
            "\nFROM scratch\n# check=skip=MaintainerDeprecated\nMAINTAINER me@example.org\n",
            &[],
        ),
    ]);
}

#[test]
fn undefined_arg_in_from() {
    const RULE: &str = "UndefinedArgInFrom";
    table(&[
        ("\nARG base=scratch\nFROM $base\nCOPY Dockerfile .\n", &[]),
        (
            "\nARG BUILDPLATFORM=linux/amd64\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "\nFROM --platform=$BUILDPLATFORM scratch\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "\nARG DEBUG\nFROM scratch${DEBUG}\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "\nARG DEBUG\nFROM scra${DEBUG:-tch}\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "\nARG DEBUG=\"\"\nFROM scratch${DEBUG-@bogus}\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "\nFROM --platform=$BULIDPLATFORM scratch\nCOPY Dockerfile .\n",
            &[(
                RULE,
                2,
                "FROM argument 'BULIDPLATFORM' is not declared (did you mean BUILDPLATFORM?)",
            )],
        ),
        (
            "\nARG MY_OS=linux\nARG MY_ARCH=amd64\nFROM --platform=linux/${MYARCH} busybox\nCOPY Dockerfile .\n",
            &[(
                RULE,
                4,
                "FROM argument 'MYARCH' is not declared (did you mean MY_ARCH?)",
            )],
        ),
        (
            "\nARG tag=latest\nFROM busybox:${tag}${version} AS b\nCOPY Dockerfile .\n",
            &[(RULE, 3, "FROM argument 'version' is not declared")],
        ),
    ]);
}

#[test]
fn workdir_relative_path() {
    table(&[
        (
            "\nFROM scratch\nWORKDIR app/\n",
            &[(
                "WorkdirRelativePath",
                3,
                "Relative workdir \"app/\" can have unexpected results if the base image changes",
            )],
        ),
        (
            "\nFROM scratch AS a\nWORKDIR /app\n\nFROM a AS b\nWORKDIR subdir/\n",
            &[],
        ),
        (
            "\nFROM scratch\n# check=skip=WorkdirRelativePath\nWORKDIR app/\n",
            &[],
        ),
    ]);
}

#[test]
fn multiple_instructions_disallowed() {
    const RULE: &str = "MultipleInstructionsDisallowed";
    let message = |name: &str| {
        format!(
            "Multiple {name} instructions should not be used in the same stage because only the last one will be used"
        )
    };
    let (entrypoint, cmd, healthcheck) = (
        message("ENTRYPOINT"),
        message("CMD"),
        message("HEALTHCHECK"),
    );
    table(&[
        (
            "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            &[
                (RULE, 3, &entrypoint),
                (RULE, 5, &cmd),
                (RULE, 7, &healthcheck),
            ],
        ),
        (
            "\nFROM scratch\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\nCOPY <<EOF /a.txt\nHello, World!\nEOF\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            &[
                (RULE, 3, &entrypoint),
                (RULE, 4, &cmd),
                (RULE, 5, &healthcheck),
            ],
        ),
        (
            "\nFROM scratch AS a\nENTRYPOINT [\"/myapp\"]\nCMD [\"/myapp\"]\nHEALTHCHECK CMD [\"/myapp\"]\n\nFROM a AS b\nENTRYPOINT [\"/myotherapp\"]\nCMD [\"/myotherapp\"]\nHEALTHCHECK CMD [\"/myotherapp\"]\n",
            &[],
        ),
    ]);
}

#[test]
fn legacy_key_value_format() {
    const RULE: &str = "LegacyKeyValueFormat";
    const ENV: &str = "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format";
    const LABEL: &str =
        "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format";
    table(&[
        (
            "\nFROM scratch\nENV testkey value\nLABEL key value\n",
            &[(RULE, 3, ENV), (RULE, 4, LABEL)],
        ),
        ("\nFROM scratch\nENV testkey=value\nLABEL key=value\n", &[]),
        // Also in a stage the target does not need: the check covers every stage.
        (
            "\nFROM scratch AS a\n\nFROM a AS b\nENV testkey value\nLABEL key value\n\nFROM a AS c\n",
            &[(RULE, 5, ENV), (RULE, 6, LABEL)],
        ),
        (
            "\nFROM scratch\n# check=skip=LegacyKeyValueFormat\nENV testkey value\n# check=skip=LegacyKeyValueFormat\nLABEL key value\n",
            &[],
        ),
    ]);
}

#[test]
fn redundant_target_platform_and_constant_platform() {
    table(&[
        (
            "\nFROM --platform=$TARGETPLATFORM scratch\n",
            &[(
                "RedundantTargetPlatform",
                2,
                "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            )],
        ),
        (
            "\nFROM --platform=${TARGETPLATFORM} scratch\n",
            &[(
                "RedundantTargetPlatform",
                2,
                "Setting platform to predefined ${TARGETPLATFORM} in FROM is redundant as this is the default behavior",
            )],
        ),
        (
            "\n# check=skip=RedundantTargetPlatform\nFROM --platform=$TARGETPLATFORM scratch\n",
            &[],
        ),
        (
            "\nFROM --platform=linux/amd64 scratch\n",
            &[(
                "FromPlatformFlagConstDisallowed",
                2,
                "FROM --platform flag should not use constant value \"linux/amd64\"",
            )],
        ),
        (
            "\nFROM --platform=linux/amd64 scratch AS my_amd64_stage\n",
            &[],
        ),
        ("\nFROM --platform=linux/amd64 scratch AS linux\n", &[]),
    ]);
}

#[test]
fn invalid_default_arg_in_from() {
    const RULE: &str = "InvalidDefaultArgInFrom";
    let cases: &[(&str, (&str, &str), Expected)] = &[
        (
            "\nARG VERSION\nFROM busybox:$VERSION\n",
            ("VERSION", "latest"),
            &[(
                RULE,
                3,
                "Default value for ARG busybox:$VERSION results in empty or invalid base image name",
            )],
        ),
        (
            "\nARG IMAGE\nFROM $IMAGE\n",
            ("IMAGE", "busybox:latest"),
            &[(
                RULE,
                3,
                "Default value for ARG $IMAGE results in empty or invalid base image name",
            )],
        ),
        (
            "\nARG SFX=\"box:\"\nFROM busy${SFX}\n",
            ("SFX", "box:latest"),
            &[(
                RULE,
                3,
                "Default value for ARG busy${SFX} results in empty or invalid base image name",
            )],
        ),
        (
            "\nARG VERSION=\"latest\"\nFROM busybox:${VERSION}\n",
            ("VERSION", "latest"),
            &[],
        ),
        (
            "\nARG BUSYBOX_VARIANT=\"\"\nFROM busybox:stable${BUSYBOX_VARIANT}\n",
            ("BUSYBOX_VARIANT", "-musl"),
            &[],
        ),
        (
            "\n\tARG BUSYBOX_VARIANT\n\tFROM busybox:stable${BUSYBOX_VARIANT}\n\t",
            ("BUSYBOX_VARIANT", "-musl"),
            &[],
        ),
    ];
    for (dockerfile, build_arg, expected) in cases {
        assert_findings(dockerfile, &[*build_arg], expected);
    }
}

#[test]
fn secrets_used_in_arg_or_env() {
    const RULE: &str = "SecretsUsedInArgOrEnv";
    let message =
        |what: &str| format!("Do not use ARG or ENV instructions for sensitive data ({what})");
    let expected: Vec<(usize, String)> = vec![
        (4, message("ARG \"SECRET_PASSPHRASE\"")),
        (5, message("ENV \"SUPER_Secret\"")),
        (6, message("ENV \"password\"")),
        (6, message("ENV \"secret\"")),
        (7, message("ARG \"auth\"")),
        (7, message("ARG \"super_duper_secret_token\"")),
        (8, message("ENV \"apikey\"")),
        (9, message("ENV \"git_key\"")),
    ];
    let expected: Vec<(&str, usize, &str)> = expected
        .iter()
        .map(|(line, m)| (RULE, *line, m.as_str()))
        .collect();
    assert_findings(
        "\n# check=skip=InvalidDefinitionDescription\nFROM scratch\nARG SECRET_PASSPHRASE\nENV SUPER_Secret=foo\nENV password=bar secret=baz\nARG super_duper_secret_token=foo auth=bar\nENV apikey=bar sunflower=foo\nENV git_key=\nENV PUBLIC_KEY=\nARG public_token\nARG SECRET_PASSPHRASE_FILE\nENV password_file=bar secret_File=baz\nARG AUTH_MODULE_VERSION\n# check=skip=SecretsUsedInArgOrEnv // allow secret in environment\nENV password=bar\n# check=skip=SecretsUsedInArgOrEnv // allow secret in arg\nARG password\n# check=skip=all // is local to only this instruction\nENV alternate_password=bar\n# check=skip=all // is local to only this instruction\nARG alternate_password\n",
        &[],
        &expected,
    );
}

#[test]
fn expose_rules() {
    table(&[
        (
            "\nFROM scratch\nEXPOSE 80/TcP 8080/TCP 8080/udp\n",
            &[
                (
                    "ExposeProtoCasing",
                    3,
                    "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase",
                ),
                (
                    "ExposeProtoCasing",
                    3,
                    "Defined protocol '8080/TCP' in EXPOSE instruction should be lowercase",
                ),
            ],
        ),
        (
            "\nFROM scratch\nEXPOSE 127.0.0.1:80:80 [::1]:8080:8080 5000:5000 8000\n",
            &[
                (
                    "ExposeInvalidFormat",
                    3,
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'",
                ),
                (
                    "ExposeInvalidFormat",
                    3,
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '[::1]:8080:8080'",
                ),
                (
                    "ExposeInvalidFormat",
                    3,
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '5000:5000'",
                ),
            ],
        ),
    ]);
}

#[test]
fn invalid_definition_description_is_experimental() {
    const RULE: &str = "InvalidDefinitionDescription";
    table(&[
        (
            "# check=skip=all;experimental=InvalidDefinitionDescription\n# foo this is the foo\nARG foo=bar\n\n# base this is the base image\nFROM scratch AS base\n\n# version this is the version number\nARG version=latest\n\n# baz this is the baz\nARG foo=baz bar=qux baz=quux\n#\nARG bit=bat\n\n# comment for something other than ARG or FROM\nCOPY Dockerfile .\n",
            &[],
        ),
        (
            "# check=experimental=InvalidDefinitionDescription\n# bar this is the bar\nARG foo=bar\n# BasE this is the BasE image\nFROM scratch AS base\n# definitely a bad comment\nARG version=latest\n# definitely a bad comment\nARG foo=baz bar=qux baz=quux\n",
            &[
                (
                    RULE,
                    3,
                    "Comment for ARG should follow the format: `# foo <description>`",
                ),
                (
                    RULE,
                    5,
                    "Comment for FROM should follow the format: `# base <description>`",
                ),
                (
                    RULE,
                    7,
                    "Comment for ARG should follow the format: `# version <description>`",
                ),
                (
                    RULE,
                    9,
                    "Comment for ARG should follow the format: `# <arg_key> <description>`",
                ),
            ],
        ),
        // Not experimental-enabled: not run.
        ("# bar this is the bar\nARG foo=bar\nFROM scratch\n", &[]),
    ]);
}
