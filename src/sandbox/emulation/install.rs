//! `kiln system binfmt --install`: Debian's qemu-user-static rules registered in
//! binfmt_misc with the `F` flag.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{DEBIAN_RULES_DIR, binfmt_dir, check_mounted};
use crate::sandbox::error::EmulationError;

/// What [`install`] did with one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// Registered now, with these flags.
    Added { name: String, flags: String },
    /// An entry of that name was registered already; it is left as it is.
    Present { name: String },
    /// Its interpreter is not installed, so it was left out.
    NoInterpreter { name: String, interpreter: PathBuf },
}

/// As root: mounts binfmt_misc when it is not, and registers every rule of Debian's
/// `qemu-user-static` ([`DEBIAN_RULES_DIR`]`/qemu-*.conf`) whose interpreter exists and
/// whose name is not registered yet, with the `F` flag added when it lacks it. Running it
/// again registers nothing new.
pub fn install() -> Result<Vec<Registration>, EmulationError> {
    if !crate::sys::is_root() {
        return Err(EmulationError::NotRoot);
    }
    let dir = binfmt_dir();
    if let Err(EmulationError::NotMounted { .. }) = check_mounted(&dir) {
        crate::sys::mount::mount_fs(
            "binfmt_misc",
            &[],
            crate::sys::mount::MountAttrs::default(),
            crate::sys::mount::Target::Path(&dir),
        )
        .map_err(|source| EmulationError::Mount {
            dir: dir.clone(),
            source,
        })?;
    }
    register_rules(Path::new(DEBIAN_RULES_DIR), &dir)
}

/// Registers the `qemu-*.conf` rules of `rules_dir` in binfmt_misc's `dir` (see
/// [`install`]).
fn register_rules(rules_dir: &Path, dir: &Path) -> Result<Vec<Registration>, EmulationError> {
    let no_rules = || EmulationError::NoQemuRules {
        dir: rules_dir.to_path_buf(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(rules_dir)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => no_rules(),
            _ => EmulationError::Read {
                path: rules_dir.to_path_buf(),
                source,
            },
        })?
        .filter_map(Result::ok)
        .map(|item| item.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("qemu-") && name.ends_with(".conf"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(no_rules());
    }
    let mut done = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| EmulationError::Read {
            path: file.clone(),
            source,
        })?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let rule = Rule::parse(line).ok_or_else(|| EmulationError::BadRule {
                path: file.clone(),
                line: number + 1,
                text: line.to_string(),
            })?;
            done.push(register(dir, &rule)?);
        }
    }
    Ok(done)
}

fn register(dir: &Path, rule: &Rule) -> Result<Registration, EmulationError> {
    let name = rule.name().to_string();
    if dir.join(&name).exists() {
        return Ok(Registration::Present { name });
    }
    let interpreter = PathBuf::from(rule.interpreter());
    if !interpreter.exists() {
        return Ok(Registration::NoInterpreter { name, interpreter });
    }
    let rule = rule.with_fix_binary();
    let register = dir.join("register");
    // The kernel takes one rule per write.
    let written = OpenOptions::new()
        .append(true)
        .open(&register)
        .and_then(|mut file| file.write_all(rule.line().as_bytes()));
    match written {
        Ok(()) => Ok(Registration::Added {
            name,
            flags: rule.flags().to_string(),
        }),
        // Registered meanwhile by someone else.
        Err(error) if error.raw_os_error() == Some(libc::EEXIST) => {
            Ok(Registration::Present { name })
        }
        Err(source) => Err(EmulationError::Register {
            name,
            path: register,
            source,
        }),
    }
}

/// A line of binfmt_misc's `register` format, `:name:type:offset:magic:mask:interpreter:flags`
/// (the first character is the separator; escapes stay as written, the kernel reads them).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    separator: char,
    /// name, type, offset, magic, mask, interpreter, flags.
    fields: [String; 7],
}

impl Rule {
    fn parse(line: &str) -> Option<Rule> {
        let separator = line.chars().next()?;
        let mut parts = line[separator.len_utf8()..].split(separator);
        let mut fields: [String; 7] = Default::default();
        for (i, field) in fields.iter_mut().enumerate() {
            match parts.next() {
                Some(part) => *field = part.to_string(),
                // The flags may be left out.
                None if i == 6 => {}
                None => return None,
            }
        }
        let name = &fields[0];
        if name.is_empty() || name.contains('/') || name == "register" || name == "status" {
            return None;
        }
        (!fields[5].is_empty()).then_some(Rule { separator, fields })
    }

    fn name(&self) -> &str {
        &self.fields[0]
    }

    fn interpreter(&self) -> &str {
        &self.fields[5]
    }

    fn flags(&self) -> &str {
        &self.fields[6]
    }

    fn with_fix_binary(&self) -> Rule {
        let mut rule = self.clone();
        if !rule.fields[6].contains('F') {
            rule.fields[6].push('F');
        }
        rule
    }

    fn line(&self) -> String {
        let separator = self.separator.to_string();
        format!("{separator}{}", self.fields.join(&separator))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::emulation::tests::{AARCH64_RULE, aarch64_listing, binfmt};
    use crate::sandbox::emulation::{Elf, Entry};

    #[test]
    fn headers_match_debian_rules() {
        // Debian's qemu-user-static rules (magic, mask) for each architecture.
        let rules = [
            ("arm64", AARCH64_RULE.to_string()),
            ("arm", r":qemu-arm:M::\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/x:OPF".into()),
            ("s390x", r":qemu-s390x:M::\x7f\x45\x4c\x46\x02\x02\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x16:\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff:/x:OPF".into()),
            ("ppc64le", r":qemu-ppc64le:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x15\x00:\xff\xff\xff\xff\xff\xff\xff\xfc\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\x00:/x:OPF".into()),
            ("riscv64", r":qemu-riscv64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xf3\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/x:OPF".into()),
            ("mips64le", r":qemu-mips64el:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x08\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xfe\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/x:OPF".into()),
        ];
        // The kernel lists a rule's magic and mask as hex.
        let listing = |rule: &Rule| {
            let unescape = |field: &str| -> String {
                field.split("\\x").filter(|byte| !byte.is_empty()).collect()
            };
            format!(
                "enabled\ninterpreter {}\nflags: {}\noffset 0\nmagic {}\nmask {}\n",
                rule.interpreter(),
                rule.flags(),
                unescape(&rule.fields[3]),
                unescape(&rule.fields[4]),
            )
        };
        for (arch, line) in &rules {
            let rule = Rule::parse(line).unwrap();
            let entry = Entry::parse(rule.name(), &listing(&rule));
            for (other, _) in &rules {
                let header = Elf::of(other).unwrap().header();
                assert_eq!(
                    entry.matches(&header),
                    arch == other,
                    "{arch} rule, {other} header"
                );
            }
        }
    }

    #[test]
    fn registers_rules_with_the_fix_binary_flag_once() {
        let rules = tempfile::tempdir().unwrap();
        let interpreter = rules.path().join("qemu-aarch64-static");
        std::fs::write(&interpreter, "").unwrap();
        let aarch64 = AARCH64_RULE.replace(
            "/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
            interpreter.to_str().unwrap(),
        );
        std::fs::write(
            rules.path().join("qemu-aarch64.conf"),
            format!("# rule\n{aarch64}\n"),
        )
        .unwrap();
        std::fs::write(
            rules.path().join("qemu-gone.conf"),
            ":qemu-gone:M::\\x7f:\\xff:/no/such/qemu:F\n",
        )
        .unwrap();
        std::fs::write(
            rules.path().join("python3.conf"),
            ":python3:M::\\xa7::/usr/bin/python3:\n",
        )
        .unwrap();
        let dir = binfmt(&[("qemu-present", "enabled\n")]);
        std::fs::write(
            rules.path().join("qemu-present.conf"),
            ":qemu-present:M::\\x7f:\\xff:/bin/sh:\n",
        )
        .unwrap();

        let done = register_rules(rules.path(), dir.path()).unwrap();
        assert_eq!(
            done,
            [
                Registration::Added {
                    name: "qemu-aarch64".into(),
                    flags: "OPF".into()
                },
                Registration::NoInterpreter {
                    name: "qemu-gone".into(),
                    interpreter: "/no/such/qemu".into()
                },
                Registration::Present {
                    name: "qemu-present".into()
                },
            ]
        );
        let written = std::fs::read_to_string(dir.path().join("register")).unwrap();
        assert_eq!(written, format!("{aarch64}F"));

        // Registered (as the kernel would list it), it is left alone.
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            aarch64_listing("enabled", "OPF"),
        )
        .unwrap();
        let again = register_rules(rules.path(), dir.path()).unwrap();
        assert!(matches!(&again[0], Registration::Present { name } if name == "qemu-aarch64"));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("register")).unwrap(),
            written
        );

        let none = tempfile::tempdir().unwrap();
        let error = register_rules(&none.path().join("missing"), dir.path()).unwrap_err();
        assert!(
            matches!(error, EmulationError::NoQemuRules { .. }),
            "{error}"
        );
        let error = register_rules(none.path(), dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("apt-get install qemu-user-static"),
            "{error}"
        );
        std::fs::write(none.path().join("qemu-bad.conf"), ":qemu-bad:M\n").unwrap();
        let error = register_rules(none.path(), dir.path()).unwrap_err();
        assert!(
            matches!(error, EmulationError::BadRule { line: 1, .. }),
            "{error}"
        );
    }

    #[test]
    fn rules_keep_their_separator_and_escapes() {
        let rule = Rule::parse(r"|x|M|0|\x7f\x3a|\xff\xff|/bin/qemu").unwrap();
        assert_eq!(rule.name(), "x");
        assert_eq!(rule.flags(), "");
        assert_eq!(
            rule.with_fix_binary().line(),
            r"|x|M|0|\x7f\x3a|\xff\xff|/bin/qemu|F"
        );
        for bad in [
            "",
            ":",
            "::M::\\x7f::/bin/q:",
            ":register:M::\\x7f::/bin/q:",
            ":a/b:M::\\x7f::/bin/q:",
            ":x:M::\\x7f:::F",
        ] {
            assert_eq!(Rule::parse(bad), None, "{bad}");
        }
    }
}
