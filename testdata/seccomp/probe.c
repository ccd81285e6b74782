/* Calls syscalls that Docker's default seccomp profile refuses, with arguments the kernel
 * itself rejects with an error other than EPERM, and prints "NAME ERRNO" for each (0 when
 * the call succeeded). Under the profile they fail with EPERM (clone3: ENOSYS); without
 * a filter the kernel's own answer shows. Built static by the tests (cc -static), so it
 * runs in the busybox image. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static void report(const char *name, long rc) {
    printf("%s %d\n", name, rc < 0 ? errno : 0);
}

int main(void) {
    /* An unknown keyctl operation: EOPNOTSUPP from the kernel. */
    report("keyctl", syscall(SYS_keyctl, -1L, 0L, 0L, 0L, 0L));
    /* No key type: EFAULT. */
    report("add_key", syscall(SYS_add_key, NULL, NULL, NULL, 0L, 0L));
    /* No attribute: EFAULT. */
    report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0L, -1L, -1L, 0L));
    /* An unknown command: EINVAL. */
    report("bpf", syscall(SYS_bpf, 0xfffL, NULL, 0L));
    /* No arguments: EINVAL (the filter's ENOSYS sends libc back to clone). */
    report("clone3", syscall(SYS_clone3, NULL, 0L));
    report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    /* ADDR_NO_RANDOMIZE is not among the personalities the profile allows. */
    report("personality", syscall(SYS_personality, 0x0040000L));
    /* Last: on success the process is in a new user namespace. */
    report("unshare_user", unshare(CLONE_NEWUSER));
    return 0;
}
