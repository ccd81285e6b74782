//! Cost of one sandboxed step: fresh upper + work dirs, namespaces, overlay
//! mount over the busybox image, /proc /dev /sys /etc mounts, pivot_root,
//! exec of `/bin/true`, wait, cleanup (state dir, created mountpoints, rm of
//! upper/work). Prints median and p90 over 200 runs per network mode.
//!
//! `cargo bench --bench sandbox` (root only; prints why it skips otherwise).
//! Like tests/sandbox.rs this binary is its own `__sandbox` child, so the
//! number includes exec'ing a kiln-sized binary.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln::sandbox::{NetworkMode, Rootfs, Sandbox, SpawnOptions, Spec};

fn runs() -> usize {
    std::env::var("KILN_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sandbox") {
        std::process::exit(match kiln::sandbox::child_main(Path::new(&args[2])) {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 1,
        });
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(String::from));
    if uid.as_deref() != Some("0") {
        println!("sandbox bench skipped: needs root (namespaces, overlay mounts)");
        return;
    }
    if !Path::new("/bin/busybox").exists() {
        println!("sandbox bench skipped: /bin/busybox missing (apt-get install busybox-static)");
        return;
    }
    let image = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-image");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox/make-image.sh");
    let made = std::process::Command::new("bash")
        .arg(&script)
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let lower = image.join("rootfs");
    // Upper/work dirs go to $KILN_BENCH_DIR when set (e.g. /dev/shm, to take the
    // ext4 journal and discards of a busy disk out of the number), else $TMPDIR.
    let scratch_root = std::env::var_os("KILN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir_in(&scratch_root)
        .unwrap();
    println!("upper/work dirs under {}", scratch_root.display());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (network, shared) in [
        (NetworkMode::Host, false),
        (NetworkMode::None, false),
        (NetworkMode::None, true),
    ] {
        let cpu_before = cpu_ticks();
        let times = runtime.block_on(measure(&lower, scratch.path(), network, shared));
        let cpu = (cpu_ticks() - cpu_before) as f64 * 10.0 / (times.len() + 10) as f64;
        let label = match (network, shared) {
            (NetworkMode::Host, _) => "host",
            (NetworkMode::None, false) => "none (new netns per step)",
            (NetworkMode::None, true) => "none (shared empty netns)",
            // Not measured here: bridges need kiln's namespace and a network record.
            (NetworkMode::Bridge, _) => "bridge",
        };
        report(label, times, cpu);
    }
}

async fn measure(
    lower: &Path,
    scratch: &Path,
    network: NetworkMode,
    shared: bool,
) -> Vec<Duration> {
    let options = SpawnOptions {
        exe: Some(std::env::current_exe().unwrap()),
        share_empty_net_ns: shared,
        ..SpawnOptions::default()
    };
    let runs = runs();
    let mut times = Vec::with_capacity(runs);
    for run in 0..runs + 10 {
        let start = Instant::now();
        let step = scratch.join(format!("step-{run}"));
        let upper = step.join("upper");
        let work = step.join("work");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir(&work).unwrap();
        let rootfs = Rootfs::Overlay {
            lowers: vec![PathBuf::from(lower)],
            upper,
            work,
        };
        let spec = Spec::new(rootfs, vec!["/bin/true".into()]).with_network("bench", network);
        let mut running = Sandbox::spawn(&spec, &options).unwrap();
        let status = running.wait().await.unwrap();
        assert_eq!(status.code, 0, "{:?}", status.setup_error);
        std::fs::remove_dir_all(&step).unwrap();
        // The first runs warm the page cache and the allocator.
        if run >= 10 {
            times.push(start.elapsed());
        }
    }
    times
}

/// utime + stime + cutime + cstime of this process, in 10 ms ticks: CPU
/// spent by the bench and every reaped sandbox process, which (unlike wall
/// time) does not grow when other work competes for the 2 cores.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14..=17 of stat(5); `fields[0]` is field 3 (state).
    fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().unwrap())
        .sum()
}

fn report(network: &str, mut times: Vec<Duration>, cpu_ms: f64) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "sandboxed /bin/true, network {network}: median {:.2} ms, p90 {:.2} ms, min {:.2} ms, \
         CPU {cpu_ms:.2} ms/step ({} runs)",
        at(0.5).as_secs_f64() * 1e3,
        at(0.9).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times.len()
    );
}
