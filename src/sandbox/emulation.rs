//! Binaries of another architecture, run through user-mode emulation registered in the
//! kernel's binfmt_misc (Debian's `qemu-user-static`).
//!
//! The sandbox needs nothing of its own for them: when a foreign ELF is executed, the
//! kernel finds the binfmt_misc entry whose magic matches its header and runs the entry's
//! interpreter. Only an entry with the `F` (fix-binary) flag works inside the sandbox: its
//! interpreter was opened when it was registered, so it need not exist in the build's
//! root filesystem. [`emulator_for`] finds such an entry, or says what is missing and how
//! to fix it; [`install`] registers Debian's entries with that flag.

mod install;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::EmulationError;

pub use install::{Registration, install};

/// Points the emulator lookup at another directory than [`BINFMT_DIR`] (tests use an
/// empty one).
pub const BINFMT_DIR_ENV: &str = "KILN_BINFMT_DIR";

/// Where binfmt_misc is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// Where Debian's `qemu-user-static` puts its rules (`qemu-<cpu>.conf`, in the format of
/// binfmt_misc's `register` file).
pub const DEBIAN_RULES_DIR: &str = "/usr/lib/binfmt.d";

/// The platforms `kiln system binfmt` reports (as `docker buildx ls` lists emulators):
/// (architecture, variant).
pub const PLATFORMS: &[(&str, Option<&str>)] = &[
    ("amd64", None),
    ("arm64", None),
    ("riscv64", None),
    ("ppc64le", None),
    ("s390x", None),
    ("386", None),
    ("mips64le", None),
    ("mips64", None),
    ("loong64", None),
    ("arm", Some("v7")),
    ("arm", Some("v6")),
];

/// A binfmt_misc entry that runs a foreign architecture's binaries inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    /// The entry's name (`qemu-aarch64`).
    pub name: String,
    pub interpreter: PathBuf,
    /// binfmt_misc's flags, as it lists them (`POF`).
    pub flags: String,
}

/// The directory binfmt_misc is looked for in: `$KILN_BINFMT_DIR`, else [`BINFMT_DIR`].
pub fn binfmt_dir() -> PathBuf {
    std::env::var_os(BINFMT_DIR_ENV).map_or_else(|| PathBuf::from(BINFMT_DIR), PathBuf::from)
}

/// binfmt_misc's directory ([`binfmt_dir`]) when it is mounted and enabled.
pub fn binfmt_misc() -> Result<PathBuf, EmulationError> {
    let dir = binfmt_dir();
    check_mounted(&dir)?;
    Ok(dir)
}

/// The emulator that runs binaries of the OCI architecture `arch` (`arm64`, `arm`,
/// `s390x`, …) inside the sandbox: an enabled binfmt_misc entry matching the header of
/// such an ELF executable, with the `F` flag. `variant` only names the platform in errors
/// (every variant of an architecture shares one ELF machine). The caller decides that
/// `arch` is foreign ([`runs_natively`]).
pub fn emulator_for(arch: &str, variant: Option<&str>) -> Result<Emulator, EmulationError> {
    emulator_in(&binfmt_dir(), arch, variant)
}

/// Whether this machine runs binaries of the OCI architecture `arch` without an emulator:
/// its own architecture, and the 32-bit one its kernel and CPU may also run (`386` on
/// amd64, `arm` on arm64), which is tried once per process with a tiny program.
pub fn runs_natively(arch: &str) -> bool {
    let (Some(wanted), Some(host)) = (Elf::of(arch), host_elf()) else {
        return false;
    };
    if wanted == host {
        return true;
    }
    let Some(program) = compat_program(host, wanted) else {
        return false;
    };
    // A host has at most one compatible architecture, so one answer is kept.
    static RUNS: OnceLock<bool> = OnceLock::new();
    *RUNS.get_or_init(|| crate::sys::binfmt::runs(&program).unwrap_or(false))
}

/// `linux/ARCH[/VARIANT]`, for messages.
fn platform_name(arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(variant) => format!("linux/{arch}/{variant}"),
        None => format!("linux/{arch}"),
    }
}

fn check_mounted(dir: &Path) -> Result<(), EmulationError> {
    let status_path = dir.join("status");
    match std::fs::read_to_string(&status_path) {
        Ok(status) if status.trim() == "disabled" => Err(EmulationError::BinfmtDisabled {
            dir: dir.to_path_buf(),
        }),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(EmulationError::NotMounted {
            dir: dir.to_path_buf(),
        }),
        Err(source) => Err(EmulationError::Read {
            path: status_path,
            source,
        }),
    }
}

fn emulator_in(dir: &Path, arch: &str, variant: Option<&str>) -> Result<Emulator, EmulationError> {
    let platform = platform_name(arch, variant);
    let elf = Elf::of(arch).ok_or_else(|| EmulationError::UnknownArchitecture {
        platform: platform.clone(),
    })?;
    check_mounted(dir)?;
    let header = elf.header();
    let matching: Vec<Entry> = entries(dir)?
        .into_iter()
        .filter(|entry| entry.matches(&header))
        .collect();
    // The kernel takes the newest enabled entry that matches, an order the directory does
    // not show: every enabled one must work.
    if let Some(entry) = matching.iter().find(|e| e.enabled && !e.fix_binary()) {
        return Err(EmulationError::NoFixBinary {
            platform,
            flags: entry.flags.clone(),
            path: dir.join(&entry.name),
            entry: entry.name.clone(),
        });
    }
    if let Some(entry) = matching.iter().find(|e| e.enabled) {
        return Ok(Emulator {
            name: entry.name.clone(),
            interpreter: entry.interpreter.clone(),
            flags: entry.flags.clone(),
        });
    }
    match matching.first() {
        Some(entry) => Err(EmulationError::EntryDisabled {
            platform,
            path: dir.join(&entry.name),
            entry: entry.name.clone(),
        }),
        None => Err(EmulationError::NoEntry {
            platform,
            dir: dir.to_path_buf(),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// ELF headers

const EM_386: u16 = 3;
const EM_MIPS: u16 = 8;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_ARM: u16 = 40;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;
const EM_LOONGARCH: u16 = 258;
/// `e_type` of an executable.
const ET_EXEC: u16 = 2;
/// `EF_ARM_EABI_VER5`: arm64 kernels run only EABI binaries in 32-bit mode.
const EF_ARM_EABI5: u32 = 0x0500_0000;

/// What binfmt_misc tells executables apart by: the ELF machine, class and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Elf {
    machine: u16,
    class64: bool,
    big_endian: bool,
}

impl Elf {
    /// The ELF kind of the OCI architecture `arch`.
    fn of(arch: &str) -> Option<Elf> {
        let (machine, class64, big_endian) = match arch {
            "amd64" => (EM_X86_64, true, false),
            "386" => (EM_386, false, false),
            "arm64" => (EM_AARCH64, true, false),
            "arm" => (EM_ARM, false, false),
            "ppc64le" => (EM_PPC64, true, false),
            "ppc64" => (EM_PPC64, true, true),
            "s390x" => (EM_S390, true, true),
            "riscv64" => (EM_RISCV, true, false),
            "mips64le" => (EM_MIPS, true, false),
            "mips64" => (EM_MIPS, true, true),
            "mipsle" => (EM_MIPS, false, false),
            "mips" => (EM_MIPS, false, true),
            "loong64" => (EM_LOONGARCH, true, false),
            _ => return None,
        };
        Some(Elf {
            machine,
            class64,
            big_endian,
        })
    }

    /// The kind of the ELF whose first bytes are `header`.
    fn from_header(header: &[u8]) -> Option<Elf> {
        if header.len() < 20 || header[..4] != *b"\x7fELF" {
            return None;
        }
        let big_endian = header[5] == 2;
        let machine = [header[18], header[19]];
        Some(Elf {
            machine: if big_endian {
                u16::from_be_bytes(machine)
            } else {
                u16::from_le_bytes(machine)
            },
            class64: header[4] == 2,
            big_endian,
        })
    }

    /// The first 64 bytes of an executable of this kind: what binfmt_misc's magic and
    /// mask are compared with.
    fn header(self) -> [u8; 64] {
        let mut header = [0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = if self.class64 { 2 } else { 1 };
        header[5] = if self.big_endian { 2 } else { 1 };
        header[6] = 1;
        let u16_bytes = |value: u16| {
            if self.big_endian {
                value.to_be_bytes()
            } else {
                value.to_le_bytes()
            }
        };
        header[16..18].copy_from_slice(&u16_bytes(ET_EXEC));
        header[18..20].copy_from_slice(&u16_bytes(self.machine));
        // e_version
        header[20..24].copy_from_slice(&if self.big_endian {
            1u32.to_be_bytes()
        } else {
            1u32.to_le_bytes()
        });
        header
    }
}

/// The ELF kind of this process's executable.
fn host_elf() -> Option<Elf> {
    static HOST: OnceLock<Option<Elf>> = OnceLock::new();
    *HOST.get_or_init(|| {
        let mut header = [0u8; 20];
        let mut exe = std::fs::File::open("/proc/self/exe").ok()?;
        io::Read::read_exact(&mut exe, &mut header).ok()?;
        Elf::from_header(&header)
    })
}

/// A program of `wanted`, the 32-bit architecture a `host` kernel may run too, that
/// exits 0.
fn compat_program(host: Elf, wanted: Elf) -> Option<Vec<u8>> {
    match (host.machine, wanted) {
        (
            EM_X86_64,
            Elf {
                machine: EM_386, ..
            },
        ) => {
            // xor ebx, ebx; xor eax, eax; inc eax (exit); int 0x80
            Some(tiny_elf32(
                EM_386,
                0,
                &[0x31, 0xdb, 0x31, 0xc0, 0x40, 0xcd, 0x80],
            ))
        }
        (
            EM_AARCH64,
            Elf {
                machine: EM_ARM, ..
            },
        ) => {
            // mov r0, #0; mov r7, #1 (exit); svc #0
            let code = [0xe3a0_0000u32, 0xe3a0_7001, 0xef00_0000];
            let code: Vec<u8> = code.iter().flat_map(|word| word.to_le_bytes()).collect();
            Some(tiny_elf32(EM_ARM, EF_ARM_EABI5, &code))
        }
        _ => None,
    }
}

/// A little-endian 32-bit ELF executable of `machine` running `code`: the ELF header,
/// one loadable segment (the whole file) and the code.
fn tiny_elf32(machine: u16, flags: u32, code: &[u8]) -> Vec<u8> {
    const BASE: u32 = 0x0040_0000;
    const HEADERS: u32 = 52 + 32;
    let size = HEADERS + code.len() as u32;
    let mut out = Vec::with_capacity(size as usize);
    out.extend_from_slice(b"\x7fELF\x01\x01\x01\x00");
    out.extend_from_slice(&[0; 8]);
    for half in [ET_EXEC, machine] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    // e_version, e_entry, e_phoff, e_shoff, e_flags
    for word in [1, BASE + HEADERS, 52, 0, flags] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
    for half in [52u16, 32, 1, 0, 0, 0] {
        out.extend_from_slice(&half.to_le_bytes());
    }
    // PT_LOAD at offset 0, read and execute, page aligned.
    for word in [1, 0, BASE, BASE, size, size, 5, 0x1000] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(code);
    out
}

// ---------------------------------------------------------------------------------------
// binfmt_misc entries

/// One registered entry, as its file in binfmt_misc's directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    enabled: bool,
    interpreter: PathBuf,
    flags: String,
    offset: usize,
    /// `None` for an entry matching a file name extension.
    magic: Option<Vec<u8>>,
    mask: Option<Vec<u8>>,
}

impl Entry {
    /// Reads the kernel's listing: `enabled`, `interpreter PATH`, `flags: POF`,
    /// `offset N`, `magic HEX`, `mask HEX` (or `extension .EXT`).
    fn parse(name: &str, text: &str) -> Entry {
        let mut entry = Entry {
            name: name.to_string(),
            enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: None,
            mask: None,
        };
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "enabled" => entry.enabled = true,
                "interpreter" => entry.interpreter = PathBuf::from(value),
                "flags:" => entry.flags = value.trim().to_string(),
                "offset" => entry.offset = value.trim().parse().unwrap_or(0),
                "magic" => entry.magic = hex(value.trim()),
                "mask" => entry.mask = hex(value.trim()),
                _ => {}
            }
        }
        entry
    }

    fn fix_binary(&self) -> bool {
        self.flags.contains('F')
    }

    /// Whether the kernel would give a file starting with `header` to this entry (when
    /// enabled): each magic byte equals the file's under the mask.
    fn matches(&self, header: &[u8]) -> bool {
        let Some(magic) = &self.magic else {
            return false;
        };
        let Some(file) = header.get(self.offset..self.offset + magic.len()) else {
            return false;
        };
        file.iter().zip(magic).enumerate().all(|(i, (byte, want))| {
            let mask = self.mask.as_ref().and_then(|m| m.get(i)).copied();
            (byte ^ want) & mask.unwrap_or(0xff) == 0
        })
    }
}

/// Bytes written as lower-case hex pairs.
fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Every entry registered in `dir`.
fn entries(dir: &Path) -> Result<Vec<Entry>, EmulationError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmulationError::Read { path, source }
    };
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(read_error(dir))? {
        let item = item.map_err(read_error(dir))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if name == "register" || name == "status" {
            continue;
        }
        match std::fs::read_to_string(item.path()) {
            Ok(text) => found.push(Entry::parse(&name, &text)),
            // Removed since the directory was listed.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(EmulationError::Read {
                    path: item.path(),
                    source,
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const AARCH64_RULE: &str = r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP";

    /// An entry as the kernel lists Debian's qemu-aarch64.
    pub(super) fn aarch64_listing(state: &str, flags: &str) -> String {
        format!(
            "{state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\n\
             offset 0\nmagic 7f454c460201010000000000000000000200b700\n\
             mask ffffffffffffff00fffffffffffffffffeffffff\n"
        )
    }

    /// A binfmt_misc directory holding `entries` (name, listing).
    pub(super) fn binfmt(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("register"), "").unwrap();
        for (name, listing) in entries {
            std::fs::write(dir.path().join(name), listing).unwrap();
        }
        dir
    }

    #[test]
    fn finds_the_enabled_fix_binary_entry() {
        let listing = aarch64_listing("enabled", "POF");
        let python = "enabled\ninterpreter /usr/bin/python3\nflags: \noffset 0\nmagic a70d0d0a\n";
        let dir = binfmt(&[("qemu-aarch64", &listing), ("python3.11", python)]);
        let emulator = emulator_in(dir.path(), "arm64", None).unwrap();
        assert_eq!(
            emulator,
            Emulator {
                name: "qemu-aarch64".into(),
                interpreter: "/usr/libexec/qemu-binfmt/aarch64-binfmt-P".into(),
                flags: "POF".into(),
            }
        );
        // Neither entry matches another machine, class or byte order.
        for arch in ["arm", "amd64", "s390x", "riscv64"] {
            let error = emulator_in(dir.path(), arch, None).unwrap_err();
            assert!(
                matches!(&error, EmulationError::NoEntry { platform, .. } if *platform == format!("linux/{arch}")),
                "{arch}: {error}"
            );
        }
    }

    #[test]
    fn says_what_is_missing_and_how_to_fix_it() {
        let empty = tempfile::tempdir().unwrap();
        let error = emulator_in(empty.path(), "arm64", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::NotMounted { .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains(&format!(
                "mount -t binfmt_misc binfmt_misc {}",
                empty.path().display()
            )),
            "{error}"
        );

        let dir = binfmt(&[]);
        let error = emulator_in(dir.path(), "arm", Some("v7")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("linux/arm/v7"), "{message}");
        assert!(
            message.contains("apt-get install qemu-user-static"),
            "{message}"
        );
        assert!(
            message.contains("kiln system binfmt --install"),
            "{message}"
        );

        let disabled = aarch64_listing("disabled", "POF");
        let dir = binfmt(&[("qemu-aarch64", &disabled)]);
        let error = emulator_in(dir.path(), "arm64", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::EntryDisabled { .. }),
            "{error}"
        );
        let enable = format!("echo 1 > {}", dir.path().join("qemu-aarch64").display());
        assert!(error.to_string().contains(&enable), "{error}");

        let no_fix = aarch64_listing("enabled", "PO");
        let dir = binfmt(&[("qemu-aarch64", &no_fix)]);
        let error = emulator_in(dir.path(), "arm64", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::NoFixBinary { .. }),
            "{error}"
        );
        let remove = format!("echo -1 > {}", dir.path().join("qemu-aarch64").display());
        assert!(error.to_string().contains(&remove), "{error}");

        // A working entry does not help while another the kernel may pick lacks F.
        let good = aarch64_listing("enabled", "OCF");
        let dir = binfmt(&[("qemu-aarch64", &no_fix), ("z-aarch64", &good)]);
        let error = emulator_in(dir.path(), "arm64", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::NoFixBinary { .. }),
            "{error}"
        );

        let dir = binfmt(&[]);
        std::fs::write(dir.path().join("status"), "disabled\n").unwrap();
        let error = emulator_in(dir.path(), "arm64", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::BinfmtDisabled { .. }),
            "{error}"
        );

        let error = emulator_in(dir.path(), "sparc", None).unwrap_err();
        assert!(
            matches!(error, EmulationError::UnknownArchitecture { .. }),
            "{error}"
        );
    }

    #[test]
    fn the_host_runs_its_own_binaries() {
        let host = host_elf().expect("this executable is an ELF");
        let own = PLATFORMS
            .iter()
            .find(|(arch, _)| Elf::of(arch) == Some(host))
            .map(|(arch, _)| *arch);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(own, Some("amd64"));
        #[cfg(target_arch = "aarch64")]
        assert_eq!(own, Some("arm64"));
        if let Some(own) = own {
            assert!(runs_natively(own));
        }
        assert!(!runs_natively("sparc"));
    }

    #[test]
    fn compat_programs_are_valid_elf_executables() {
        let amd64 = Elf::of("amd64").unwrap();
        let i386 = compat_program(amd64, Elf::of("386").unwrap()).unwrap();
        assert_eq!(Elf::from_header(&i386), Elf::of("386"));
        let arm = compat_program(Elf::of("arm64").unwrap(), Elf::of("arm").unwrap()).unwrap();
        assert_eq!(Elf::from_header(&arm), Elf::of("arm"));
        assert_eq!(compat_program(amd64, Elf::of("arm64").unwrap()), None);
        // An amd64 kernel with 32-bit support (every distribution's: vsyscall32 is one of
        // its settings) runs it.
        #[cfg(target_arch = "x86_64")]
        if std::path::Path::new("/proc/sys/abi/vsyscall32").exists() {
            assert!(crate::sys::binfmt::runs(&i386).unwrap());
            assert!(runs_natively("386"));
        }
    }

    #[test]
    fn programs_the_kernel_refuses_do_not_run() {
        use crate::sys::binfmt::runs;
        assert!(runs(b"#!/bin/true\n").unwrap());
        assert!(!runs(b"#!/bin/false\n").unwrap());
        assert!(!runs(b"\x7fELF not really").unwrap());
    }
}
