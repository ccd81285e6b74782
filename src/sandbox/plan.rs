//! The sandbox as data: which namespaces the outer child creates and which
//! mounts the init makes inside the root, in order. Built without any syscall
//! (so tests can check it without root); `child` executes it.

use std::path::{Path, PathBuf};

use super::spec::{NetworkMode, Spec, StepMount};
use crate::sys::mount::MountAttrs;
use crate::sys::namespace::Namespaces;

/// What to create at a missing mountpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
    /// A directory or a file, like the bind source.
    LikeSource,
}

/// Where a mount's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A host path (trusted: kiln's own files, `-v` sources, `/dev/null`, `/sys`).
    Host(PathBuf),
    /// The target itself, re-mounted with new attributes (e.g. `/proc/sys` ro).
    Itself,
    /// `path` inside the host directory `root`, resolved as if `root` were `/`
    /// (untrusted content: the build context, a layer, an overlay of layers).
    Within { root: PathBuf, path: PathBuf },
}

/// One step inside the root. Paths are relative to the container root and
/// resolved with `RESOLVE_IN_ROOT`. `create: None` skips the step when the
/// target is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Mount {
        fstype: String,
        options: Vec<(String, String)>,
        attrs: MountAttrs,
        target: PathBuf,
        create: Option<Create>,
    },
    Bind {
        source: Source,
        target: PathBuf,
        recursive: bool,
        attrs: MountAttrs,
        create: Option<Create>,
    },
    Mknod {
        path: PathBuf,
        major: u32,
        minor: u32,
        mode: u32,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        target: String,
        path: PathBuf,
    },
    /// An overlay mounted on a host path of the state directory (in the init's own mount
    /// namespace), for a later `Bind` from `Source::Within` it.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: Option<(PathBuf, PathBuf)>,
        target: PathBuf,
    },
}

/// The whole setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Created by the outer child before forking the init (mount is created
    /// by the init itself, so the outer child keeps the host's mount view).
    pub namespaces: Namespaces,
    pub steps: Vec<Step>,
}

const NOSUID_NODEV_NOEXEC: MountAttrs = MountAttrs {
    readonly: false,
    nosuid: true,
    nodev: true,
    noexec: true,
};
const READONLY: MountAttrs = MountAttrs {
    readonly: true,
    nosuid: true,
    nodev: true,
    noexec: true,
};

/// Device nodes of `/dev`: (name, major, minor).
pub const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// `/proc` entries made read-only, and those hidden (as Docker does).
const PROC_READONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
const PROC_MASKED_FILES: [&str; 5] = [
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/sched_debug",
];
const PROC_MASKED_DIRS: [&str; 2] = ["proc/acpi", "proc/scsi"];

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `path` inside the container, relative, without `..` tricks: the child
/// resolves it in the root anyway; this only normalises the spelling.
pub fn in_root(path: &str) -> PathBuf {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Builds the plan for `spec`; `state_dir` holds the generated `/etc` files.
/// What the host offers that the plan depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    /// The kernel has cgroup namespaces.
    pub cgroup_ns: bool,
    /// `/sys/fs/cgroup` is a cgroup v2 hierarchy.
    pub cgroup2: bool,
    /// kiln runs in a user namespace (without root), where device nodes cannot be made.
    pub user_namespace: bool,
}

impl Host {
    pub fn detect() -> Host {
        Host {
            cgroup_ns: crate::sys::namespace::cgroup_ns_supported(),
            cgroup2: crate::sys::namespace::cgroup2_unified(),
            user_namespace: crate::sys::userns::in_user_namespace(),
        }
    }
}

pub fn build(spec: &Spec, state_dir: &Path, host: Host) -> Plan {
    let new_net = spec.network != NetworkMode::Host;
    let namespaces = Namespaces {
        mount: false,
        uts: true,
        ipc: true,
        pid: true,
        net: new_net,
        cgroup: host.cgroup_ns,
    };
    let mut steps = Vec::new();
    steps.extend(proc_steps());
    steps.extend(dev_steps(host.user_namespace));
    steps.push(sys_step(new_net));
    if host.cgroup_ns && host.cgroup2 {
        // As Docker: the container's own cgroup2, read-only, rooted at its cgroup.
        steps.push(Step::Mount {
            fstype: "cgroup2".into(),
            options: Vec::new(),
            attrs: READONLY,
            target: "sys/fs/cgroup".into(),
            create: None,
        });
    }
    steps.extend(etc_file_steps(state_dir));
    steps.extend(user_mount_steps(spec, state_dir));
    Plan { namespaces, steps }
}

/// `/proc`: a procfs of the new pid namespace, with the sensitive parts read-only or hidden.
fn proc_steps() -> Vec<Step> {
    let mut steps = vec![Step::Mount {
        fstype: "proc".into(),
        options: Vec::new(),
        attrs: NOSUID_NODEV_NOEXEC,
        target: "proc".into(),
        create: Some(Create::Dir),
    }];
    for path in PROC_READONLY {
        steps.push(Step::Bind {
            source: Source::Itself,
            target: path.into(),
            recursive: false,
            attrs: READONLY,
            create: None,
        });
    }
    for path in PROC_MASKED_FILES {
        steps.push(Step::Bind {
            source: Source::Host("/dev/null".into()),
            target: path.into(),
            recursive: false,
            // Not nodev: reading the masked file must reach /dev/null.
            attrs: MountAttrs {
                nodev: false,
                ..READONLY
            },
            create: None,
        });
    }
    for path in PROC_MASKED_DIRS {
        steps.push(Step::Mount {
            fstype: "tmpfs".into(),
            options: Vec::new(),
            attrs: READONLY,
            target: path.into(),
            create: None,
        });
    }
    steps
}

/// `/dev`: a small tmpfs with mknod'ed nodes (root outside a user namespace may mknod; it
/// costs no mount per node, unlike binding the host's nodes), then `pts`, `shm`, `mqueue`
/// and the usual symlinks.
/// `/dev`: a tmpfs with Docker's device nodes (bound from the host's in a user namespace,
/// which may not make them), devpts, shm and mqueue.
fn dev_steps(user_namespace: bool) -> Vec<Step> {
    let nosuid_noexec = MountAttrs {
        readonly: false,
        nosuid: true,
        nodev: false,
        noexec: true,
    };
    let mut steps = vec![Step::Mount {
        fstype: "tmpfs".into(),
        options: opts(&[("mode", "755"), ("size", "65536k")]),
        attrs: nosuid_noexec,
        target: "dev".into(),
        create: Some(Create::Dir),
    }];
    for (name, major, minor) in DEVICES {
        let path = PathBuf::from("dev").join(name);
        steps.push(if user_namespace {
            Step::Bind {
                source: Source::Host(PathBuf::from("/dev").join(name)),
                target: path,
                recursive: false,
                attrs: nosuid_noexec,
                create: Some(Create::File),
            }
        } else {
            Step::Mknod {
                path,
                major,
                minor,
                mode: 0o666,
            }
        });
    }
    for (dir, mode) in [
        ("dev/pts", 0o755),
        ("dev/shm", 0o1777),
        ("dev/mqueue", 0o1777),
    ] {
        steps.push(Step::Mkdir {
            path: dir.into(),
            mode,
        });
    }
    steps.push(Step::Mount {
        fstype: "devpts".into(),
        options: opts(&[("newinstance", ""), ("ptmxmode", "0666"), ("mode", "0620")]),
        attrs: nosuid_noexec,
        target: "dev/pts".into(),
        create: None,
    });
    steps.push(Step::Mount {
        fstype: "tmpfs".into(),
        options: opts(&[("mode", "1777"), ("size", "65536k")]),
        attrs: NOSUID_NODEV_NOEXEC,
        target: "dev/shm".into(),
        create: None,
    });
    steps.push(Step::Mount {
        fstype: "mqueue".into(),
        options: Vec::new(),
        attrs: NOSUID_NODEV_NOEXEC,
        target: "dev/mqueue".into(),
        create: None,
    });
    for (target, path) in [
        ("pts/ptmx", "dev/ptmx"),
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ] {
        steps.push(Step::Symlink {
            target: target.into(),
            path: path.into(),
        });
    }
    steps
}

/// `/sys` read-only: a sysfs of our own net namespace, or the host's (bound, since a fresh
/// sysfs would show the host's network devices anyway).
fn sys_step(new_net: bool) -> Step {
    if new_net {
        Step::Mount {
            fstype: "sysfs".into(),
            options: Vec::new(),
            attrs: READONLY,
            target: "sys".into(),
            create: Some(Create::Dir),
        }
    } else {
        Step::Bind {
            source: Source::Host("/sys".into()),
            target: "sys".into(),
            recursive: true,
            attrs: READONLY,
            create: Some(Create::Dir),
        }
    }
}

/// The generated `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, bound read-only
/// from `state_dir` so they never reach the layer.
fn etc_file_steps(state_dir: &Path) -> Vec<Step> {
    ["hosts", "resolv.conf", "hostname"]
        .into_iter()
        .map(|name| Step::Bind {
            source: Source::Host(state_dir.join(name)),
            target: PathBuf::from("etc").join(name),
            recursive: false,
            attrs: READONLY,
            create: Some(Create::File),
        })
        .collect()
}

/// The volumes and the step's own mounts, parents before children (BuildKit sorts them by
/// target).
fn user_mount_steps(spec: &Spec, state_dir: &Path) -> Vec<Step> {
    let depth = |destination: &str| in_root(destination).components().count();
    let mut planned: Vec<(usize, Vec<Step>)> = Vec::new();
    for mount in &spec.mounts {
        planned.push((
            depth(&mount.destination),
            vec![Step::Bind {
                source: Source::Host(mount.source.clone()),
                target: in_root(&mount.destination),
                recursive: true,
                attrs: MountAttrs {
                    readonly: mount.readonly,
                    ..MountAttrs::default()
                },
                create: Some(Create::LikeSource),
            }],
        ));
    }
    for (index, mount) in spec.step_mounts.iter().enumerate() {
        planned.push((
            depth(mount.destination()),
            step_mount_steps(index, mount, state_dir),
        ));
    }
    // Stable: mounts at the same depth keep their order.
    planned.sort_by_key(|(depth, _)| *depth);
    planned.into_iter().flat_map(|(_, steps)| steps).collect()
}

/// One mount of a RUN step (`--mount`): a bind from inside a directory, an overlay (mounted
/// on `state_dir/mount-<index>`, then bound), or a tmpfs.
fn step_mount_steps(index: usize, mount: &StepMount, state_dir: &Path) -> Vec<Step> {
    let target = in_root(mount.destination());
    match mount {
        StepMount::Within {
            root,
            path,
            readonly,
            ..
        } => vec![Step::Bind {
            source: Source::Within {
                root: root.clone(),
                path: in_root(path),
            },
            target,
            recursive: true,
            attrs: MountAttrs {
                readonly: *readonly,
                ..MountAttrs::default()
            },
            create: Some(Create::LikeSource),
        }],
        StepMount::Overlay {
            lowers,
            upper,
            path,
            ..
        } => {
            let mountpoint = state_dir.join(format!("mount-{index}"));
            vec![
                Step::Overlay {
                    lowers: lowers.clone(),
                    upper: upper.clone(),
                    target: mountpoint.clone(),
                },
                Step::Bind {
                    source: Source::Within {
                        root: mountpoint,
                        path: in_root(path),
                    },
                    target,
                    recursive: true,
                    attrs: MountAttrs {
                        readonly: upper.is_none(),
                        ..MountAttrs::default()
                    },
                    create: Some(Create::LikeSource),
                },
            ]
        }
        StepMount::Tmpfs { size, mode, .. } => {
            let mut options = Vec::new();
            if let Some(size) = size {
                options.push(("size".to_string(), size.to_string()));
            }
            options.push(("mode".to_string(), format!("{:o}", mode.unwrap_or(0o1777))));
            vec![Step::Mount {
                fstype: "tmpfs".into(),
                options,
                attrs: MountAttrs {
                    nosuid: true,
                    nodev: true,
                    ..MountAttrs::default()
                },
                target,
                create: Some(Create::Dir),
            }]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{BindMount, Rootfs};
    use std::path::Path;

    fn spec(network: NetworkMode) -> Spec {
        let rootfs = Rootfs::Dir { path: "/r".into() };
        Spec::new(rootfs, vec!["true".into()]).with_network("box", network)
    }

    fn targets(plan: &Plan) -> Vec<String> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount { fstype, target, .. } => {
                    Some(format!("{fstype}:{}", target.display()))
                }
                Step::Bind { target, .. } => Some(format!("bind:{}", target.display())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn host_network_shares_the_net_namespace_and_binds_sys() {
        let plan = build(&spec(NetworkMode::Host), "/state".as_ref(), Host::default());
        assert_eq!(
            plan.namespaces,
            Namespaces {
                mount: false,
                uts: true,
                ipc: true,
                pid: true,
                net: false,
                cgroup: false,
            }
        );
        let t = targets(&plan);
        assert!(t.contains(&"bind:sys".to_string()), "{t:?}");
        assert!(!t.iter().any(|m| m.starts_with("sysfs")));
    }

    #[test]
    fn a_cgroup_namespace_gets_its_own_cgroup2_over_sys() {
        let v2 = Host {
            cgroup_ns: true,
            cgroup2: true,
            user_namespace: false,
        };
        let plan = build(&spec(NetworkMode::Host), "/state".as_ref(), v2);
        assert!(plan.namespaces.cgroup);
        let t = targets(&plan);
        let sys = t.iter().position(|m| m == "bind:sys").unwrap();
        assert_eq!(t[sys + 1], "cgroup2:sys/fs/cgroup", "{t:?}");
        // cgroup v1: the namespace alone (the host's hierarchies stay bound under /sys).
        let v1 = Host {
            cgroup2: false,
            ..v2
        };
        // Without root, Docker's devices are the host's, bound.
        let rootless = Host {
            user_namespace: true,
            ..v2
        };
        let plan = build(&spec(NetworkMode::Host), "/state".as_ref(), rootless);
        assert!(targets(&plan).contains(&"bind:dev/null".to_string()));
        assert!(!plan.steps.iter().any(|s| matches!(s, Step::Mknod { .. })));
        let plan = build(&spec(NetworkMode::Host), "/state".as_ref(), v1);
        assert!(plan.namespaces.cgroup);
        assert!(!targets(&plan).iter().any(|m| m.starts_with("cgroup2")));
    }

    #[test]
    fn no_network_gets_a_new_net_namespace_and_its_own_sysfs() {
        let plan = build(&spec(NetworkMode::None), "/state".as_ref(), Host::default());
        assert!(plan.namespaces.net);
        assert!(targets(&plan).contains(&"sysfs:sys".to_string()));
        assert!(plan.steps.iter().any(|s| matches!(s,
            Step::Mount { fstype, attrs, .. } if fstype == "sysfs" && attrs.readonly)));
    }

    #[test]
    fn dev_proc_and_etc_files_are_planned_in_order() {
        let plan = build(&spec(NetworkMode::Host), "/state".as_ref(), Host::default());
        let t = targets(&plan);
        let pos = |m: &str| {
            t.iter()
                .position(|x| x == m)
                .unwrap_or_else(|| panic!("{m} missing: {t:?}"))
        };
        assert!(pos("proc:proc") < pos("bind:proc/sys"));
        assert!(pos("tmpfs:dev") < pos("devpts:dev/pts"));
        assert!(pos("tmpfs:dev") < pos("tmpfs:dev/shm"));
        assert!(pos("mqueue:dev/mqueue") > pos("tmpfs:dev"));
        for name in ["hosts", "resolv.conf", "hostname"] {
            let step = plan
                .steps
                .iter()
                .find(|s| {
                    matches!(s,
                Step::Bind { target, .. } if *target == PathBuf::from("etc").join(name))
                })
                .unwrap();
            let Step::Bind {
                source,
                attrs,
                create,
                ..
            } = step
            else {
                unreachable!()
            };
            assert_eq!(*source, Source::Host(PathBuf::from("/state").join(name)));
            assert!(attrs.readonly);
            assert_eq!(*create, Some(Create::File));
        }
        let devpts = plan.steps.iter().find_map(|s| match s {
            Step::Mount {
                fstype, options, ..
            } if fstype == "devpts" => Some(options.clone()),
            _ => None,
        });
        assert_eq!(
            devpts,
            Some(opts(&[
                ("newinstance", ""),
                ("ptmxmode", "0666"),
                ("mode", "0620")
            ]))
        );
        let nodes: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Mknod { .. }))
            .collect();
        assert_eq!(nodes.len(), 6);
        assert!(plan.steps.contains(&Step::Symlink {
            target: "pts/ptmx".into(),
            path: "dev/ptmx".into()
        }));
    }

    #[test]
    fn volumes_become_binds_with_their_mode() {
        let mut s = spec(NetworkMode::Host);
        s.mounts.push(BindMount {
            source: "/src".into(),
            destination: "/work//out/".into(),
            readonly: true,
        });
        let plan = build(&s, "/state".as_ref(), Host::default());
        let last = plan.steps.last().unwrap();
        assert_eq!(
            *last,
            Step::Bind {
                source: Source::Host("/src".into()),
                target: "work/out".into(),
                recursive: true,
                attrs: MountAttrs {
                    readonly: true,
                    ..MountAttrs::default()
                },
                create: Some(Create::LikeSource),
            }
        );
    }

    #[test]
    fn step_mounts_are_planned_parents_first() {
        let mut s = spec(NetworkMode::Host);
        s.step_mounts.push(StepMount::Tmpfs {
            destination: "/a/b/c".into(),
            size: Some(4096),
            mode: None,
        });
        s.step_mounts.push(StepMount::Overlay {
            lowers: vec!["/l1".into(), "/l0".into()],
            upper: None,
            path: "/sub/../x".into(),
            destination: "/a".into(),
        });
        s.step_mounts.push(StepMount::Within {
            root: "/ctx".into(),
            path: "/".into(),
            destination: "/a/b".into(),
            readonly: true,
        });
        let plan = build(&s, "/state".as_ref(), Host::default());
        let n = plan.steps.len();
        let tail = &plan.steps[n - 4..];
        assert_eq!(
            tail[0],
            Step::Overlay {
                lowers: vec!["/l1".into(), "/l0".into()],
                upper: None,
                target: "/state/mount-1".into(),
            }
        );
        assert!(
            matches!(&tail[1], Step::Bind { source: Source::Within { root, .. }, target, attrs, .. }
            if root == Path::new("/state/mount-1") && target == Path::new("a") && attrs.readonly)
        );
        assert!(
            matches!(&tail[2], Step::Bind { source: Source::Within { root, .. }, target, .. }
            if root == Path::new("/ctx") && target == Path::new("a/b"))
        );
        assert!(
            matches!(&tail[3], Step::Mount { fstype, options, target, .. }
            if fstype == "tmpfs" && target == Path::new("a/b/c")
                && options.contains(&("size".to_string(), "4096".to_string())))
        );
    }

    #[test]
    fn in_root_normalises_paths() {
        assert_eq!(in_root("/a/./b//c/"), PathBuf::from("a/b/c"));
        assert_eq!(in_root("/"), PathBuf::new());
    }
}
