//! Installing a seccomp filter on the calling thread (`sandbox::seccomp` builds the BPF
//! program), and the kernel version a profile's `minKernel` is compared with.

use super::error::{Result, SysError};

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instruction {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `SECCOMP_FILTER_FLAG_LOG`: the kernel logs every action of the filter but ALLOW.
pub const FLAG_LOG: u32 = 2;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: installing the filter does not turn on the
/// speculative store bypass mitigation for the process.
pub const FLAG_SPEC_ALLOW: u32 = 4;

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Installs `program` as a seccomp filter of this thread (inherited across fork and
/// execve). Needs no_new_privs or CAP_SYS_ADMIN.
pub fn install(program: &[Instruction], flags: u32) -> Result<()> {
    let mut filter: Vec<libc::sock_filter> = program
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let len = u16::try_from(filter.len()).map_err(|_| SysError::Invalid {
        call: "seccomp",
        reason: format!("a filter of {} instructions is too long", filter.len()),
    })?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, alive across the call; the kernel copies the
    // program and only reads through the pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(SysError::call("seccomp", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The running kernel's version and major revision (`6.8` of `6.8.0-45-generic`).
pub fn kernel_version() -> Option<(u32, u32)> {
    let uname = rustix::system::uname();
    let release = uname.release().to_str().ok()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let version = parts.next()?.parse().ok()?;
    let major = parts.next()?.parse().ok()?;
    Some((version, major))
}
