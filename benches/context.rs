//! Context hashing micro benchmark: 20,000 files of 1–4 KiB in 200 directories plus two
//! 50 MiB files. Times a cold digest (no stat cache: every file read and hashed) and a warm
//! no-op digest (stat cache hit: a stat walk only). The page cache is warm in both.
//!
//! `cargo bench --bench context`

use std::fs;
use std::time::{Duration, Instant};

use kiln::source::{Context, StatCache};

const DIRS: usize = 200;
const FILES: usize = 20_000;
const BIG_FILES: usize = 2;
const BIG_SIZE: usize = 50 << 20;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("context");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut buffer = vec![0u8; 4096];
    for d in 0..DIRS {
        fs::create_dir_all(root.join(format!("d{d:03}"))).expect("mkdir");
    }
    for f in 0..FILES {
        let size = 1024 + (next() % 3073) as usize;
        for chunk in buffer[..size].chunks_mut(8) {
            let bytes = next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let path = root.join(format!("d{:03}/f{f:05}.bin", f % DIRS));
        fs::write(path, &buffer[..size]).expect("write");
    }
    let big: Vec<u8> = (0..BIG_SIZE).map(|i| (i % 251) as u8).collect();
    for b in 0..BIG_FILES {
        fs::write(root.join(format!("big{b}.bin")), &big).expect("write big");
    }
    let total_files = FILES + BIG_FILES;
    let total_mib = (FILES * 2560 + BIG_FILES * BIG_SIZE) as f64 / (1 << 20) as f64;
    // Let the newest mtimes age past the "racy clean" window so the cache accepts them.
    std::thread::sleep(Duration::from_millis(200));

    let ctx = Context::open(&root, None).expect("open context");
    let report = |label: &str, elapsed: Duration, hashed: usize, cached: usize| {
        let ms = elapsed.as_secs_f64() * 1e3;
        println!(
            "{label:<34} {ms:9.1} ms  {:>10.0} files/s  (hashed {hashed}, from cache {cached})",
            total_files as f64 / elapsed.as_secs_f64()
        );
    };
    println!("context: {total_files} files, ~{total_mib:.0} MiB, page cache warm");

    let start = Instant::now();
    let selection = ctx.select(&["."], &[]).expect("select");
    report("walk + stat (select)", start.elapsed(), 0, 0);

    let start = Instant::now();
    let cold = ctx.digest(&selection, None).expect("cold digest");
    report(
        "cold digest (no stat cache)",
        start.elapsed(),
        cold.stats.files_hashed,
        0,
    );

    let cache = StatCache::open(&dir.path().join("cache-v1/context-stat.redb"));
    let start = Instant::now();
    let fill = ctx
        .digest(&selection, Some(&cache))
        .expect("filling digest");
    report(
        "cold digest + stat cache fill",
        start.elapsed(),
        fill.stats.files_hashed,
        fill.stats.files_from_cache,
    );

    let start = Instant::now();
    let warm = ctx.digest(&selection, Some(&cache)).expect("warm digest");
    report(
        "warm digest only (stat cache hit)",
        start.elapsed(),
        warm.stats.files_hashed,
        warm.stats.files_from_cache,
    );

    let start = Instant::now();
    let selection = ctx.select(&["."], &[]).expect("select");
    let warm = ctx.digest(&selection, Some(&cache)).expect("warm digest");
    report(
        "warm no-op (select + cached digest)",
        start.elapsed(),
        warm.stats.files_hashed,
        warm.stats.files_from_cache,
    );
    assert_eq!(warm.digest, cold.digest);
    println!("digest {}", warm.digest);
}
