//! A deterministic, stable-Rust fuzz driver for the `netstack-fuzz` targets: mutates the seed
//! corpus (and random inputs) with a seeded PRNG and runs every target for a bounded time.
//! It has no coverage feedback (that needs nightly and cargo-fuzz); it exists so that every
//! environment, CI included, runs the same target functions and properties.
//!
//! ```text
//! cargo run --release --no-default-features --example stable_driver -- \
//!     [--seconds N] [--target NAME] [--seed S] [--corpus DIR]
//! cargo run --release --no-default-features --example stable_driver -- --replay TARGET FILE
//! cargo run --release --no-default-features --example stable_driver -- --make-corpus DIR
//! ```
//! A failing input is written to `fuzz/artifacts/<target>/crash-<hash>` and the driver exits
//! with status 1; replay it with `--replay` or `cargo fuzz run <target> <file>`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netstack_fuzz::{seeds, TARGETS};

/// xorshift64*: reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const MAX_LEN: usize = 4096;

/// One to eight random edits of `base`, sometimes spliced with `other`.
fn mutate(rng: &mut Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..=rng.below(8) {
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 if !v.is_empty() => {
                // Interesting values: 0, 1, 0x7f, 0x80, 0xff.
                let i = rng.below(v.len());
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5)];
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16) + 1;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i) + 1;
                v.drain(i..i + n.min(32));
            }
            5 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (rng.below(v.len() - i) + 1).min(64);
                let copy = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, copy);
            }
            6 if !other.is_empty() => {
                let i = rng.below(v.len() + 1);
                let j = rng.below(other.len());
                v.truncate(i);
                v.extend_from_slice(&other[j..]);
            }
            _ => {
                let n = rng.below(64) + 1;
                v.extend((0..n).map(|_| rng.next() as u8));
            }
        }
    }
    v.truncate(MAX_LEN);
    v
}

fn load_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs `f(input)`; on a panic writes the input to the artifacts directory and returns false.
fn run_one(name: &str, f: fn(&[u8]), input: &[u8], artifacts: &Path) -> bool {
    if std::panic::catch_unwind(|| f(input)).is_ok() {
        return true;
    }
    let dir = artifacts.join(name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("crash-{:016x}", fnv(input)));
    match std::fs::write(&path, input) {
        Ok(()) => eprintln!("{name}: FAILED; input written to {}", path.display()),
        Err(e) => eprintln!("{name}: FAILED; could not write the input ({e}): {input:?}"),
    }
    false
}

fn main() -> ExitCode {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seconds = 60u64;
    let mut only: Option<String> = None;
    let mut seed = 1u64;
    let mut corpus = fuzz_dir.join("corpus");
    let artifacts = fuzz_dir.join("artifacts");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("missing value after an option");
        match arg.as_str() {
            "--seconds" => seconds = value().parse().expect("--seconds N"),
            "--target" => only = Some(value()),
            "--seed" => seed = value().parse().expect("--seed S"),
            "--corpus" => corpus = PathBuf::from(value()),
            "--make-corpus" => {
                let dir = PathBuf::from(value());
                for (name, _) in TARGETS {
                    let d = dir.join(name);
                    std::fs::create_dir_all(&d).expect("create corpus directory");
                    for s in seeds(name) {
                        std::fs::write(d.join(format!("seed-{:016x}", fnv(&s))), &s)
                            .expect("write seed");
                    }
                }
                return ExitCode::SUCCESS;
            }
            "--replay" => {
                let name = value();
                let file = value();
                let f = TARGETS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .expect("unknown target")
                    .1;
                let input = std::fs::read(&file).expect("read the input");
                f(&input);
                println!("{name}: {file} passes");
                return ExitCode::SUCCESS;
            }
            other => panic!("unknown argument {other:?}"),
        }
    }
    let mut ok = true;
    for (name, f) in TARGETS {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let mut pool = load_corpus(&corpus.join(name));
        pool.extend(seeds(name));
        let mut rng = Rng(seed ^ fnv(name.as_bytes()) | 1);
        let started = Instant::now();
        let limit = Duration::from_secs(seconds);
        let mut execs = 0u64;
        let mut bytes = 0u64;
        // Every seed once as is, then mutations until the time is up.
        for input in pool.clone() {
            execs += 1;
            bytes += input.len() as u64;
            ok &= run_one(name, f, &input, &artifacts);
        }
        while ok && started.elapsed() < limit {
            let base = &pool[rng.below(pool.len())];
            let other = &pool[rng.below(pool.len())];
            let input = if rng.below(16) == 0 {
                let n = rng.below(MAX_LEN);
                (0..n).map(|_| rng.next() as u8).collect()
            } else {
                mutate(&mut rng, base, other)
            };
            execs += 1;
            bytes += input.len() as u64;
            ok &= run_one(name, f, &input, &artifacts);
        }
        println!(
            "{name}: {execs} inputs ({bytes} bytes) in {:.1} s, seed {seed}: {}",
            started.elapsed().as_secs_f64(),
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            break;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
