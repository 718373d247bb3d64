//! `cargo xtask fuzz`: runs every fuzz target of `fuzz/` for a bounded time.
//!
//! Two engines run the same target functions (`fuzz/src/lib.rs`):
//! * `libfuzzer`: `cargo +nightly fuzz run` (coverage-guided, sanitizers); needs a nightly
//!   toolchain and `cargo install cargo-fuzz`. New corpus entries go to
//!   `<target dir>/fuzz-corpus/<target>/`, so the committed seed corpus stays small.
//! * `stable`: the deterministic driver `fuzz/examples/stable_driver.rs` (seeded mutations of the
//!   seed corpus, no coverage feedback), which builds with the stable toolchain; CI uses it.
//!
//! `auto` (the default) picks `libfuzzer` when `cargo +nightly fuzz` works, `stable` otherwise.
//! A failing input is saved under `fuzz/artifacts/<target>/`.

use std::process::Command;
use std::time::Instant;

use clap::{Args, ValueEnum};

/// The fuzz targets, in the order they run.
const TARGETS: &[&str] = &["ingress_bytes", "tcp_packets", "tcp_app_ops"];

/// Which fuzzing engine runs the targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// `libfuzzer` if `cargo +nightly fuzz` is available, else `stable`.
    Auto,
    /// cargo-fuzz (libFuzzer) on the nightly toolchain.
    Libfuzzer,
    /// The stable-Rust deterministic driver.
    Stable,
}

/// Options of `cargo xtask fuzz`.
#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds to fuzz each target.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Fuzzing engine.
    #[arg(long, value_enum, default_value_t = Engine::Auto)]
    engine: Engine,
    /// Run only this target (default: all).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    target: Option<String>,
    /// Seed of the stable driver's random generator (runs are reproducible per seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Whether `cargo +nightly fuzz` can run here.
fn libfuzzer_available() -> bool {
    Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the fuzz targets as `args` asks.
pub fn run(args: FuzzArgs) -> Result<(), String> {
    let root = super::workspace_root();
    let engine = match args.engine {
        Engine::Auto if libfuzzer_available() => Engine::Libfuzzer,
        Engine::Auto => Engine::Stable,
        other => other,
    };
    let targets: Vec<&str> = match &args.target {
        Some(t) => vec![t.as_str()],
        None => TARGETS.to_vec(),
    };
    let started = Instant::now();
    match engine {
        Engine::Libfuzzer => {
            let scratch = super::target_dir().join("fuzz-corpus");
            for target in &targets {
                let new_corpus = scratch.join(target);
                std::fs::create_dir_all(&new_corpus)
                    .map_err(|e| format!("creating {}: {e}", new_corpus.display()))?;
                let seeds = root.join("fuzz").join("corpus").join(target);
                println!("==> cargo +nightly fuzz run {target} ({} s)", args.seconds);
                // The rustup proxy `cargo` (not $CARGO, the stable binary) understands +nightly.
                let status = Command::new("cargo")
                    .current_dir(&root)
                    .env_remove("RUSTUP_TOOLCHAIN")
                    .args(["+nightly", "fuzz", "run", target])
                    .arg(&new_corpus)
                    .arg(&seeds)
                    .arg("--")
                    .arg(format!("-max_total_time={}", args.seconds))
                    .status()
                    .map_err(|e| format!("running cargo fuzz: {e}"))?;
                if !status.success() {
                    return Err(format!(
                        "fuzz target {target} failed ({status}); the input is in fuzz/artifacts/{target}/"
                    ));
                }
            }
        }
        Engine::Stable | Engine::Auto => {
            let mut cmd = Command::new(super::cargo());
            cmd.current_dir(&root)
                .args([
                    "run",
                    "--release",
                    "--no-default-features",
                    "--manifest-path",
                    "fuzz/Cargo.toml",
                    "--example",
                    "stable_driver",
                    "--",
                    "--seconds",
                ])
                .arg(args.seconds.to_string())
                .arg("--seed")
                .arg(args.seed.to_string());
            if let Some(t) = &args.target {
                cmd.args(["--target", t]);
            }
            println!(
                "==> stable fuzz driver: {} for {} s each",
                targets.join(", "),
                args.seconds
            );
            let status = cmd
                .status()
                .map_err(|e| format!("running the stable fuzz driver: {e}"))?;
            if !status.success() {
                return Err(format!(
                    "the stable fuzz driver failed ({status}); the input is in fuzz/artifacts/"
                ));
            }
        }
    }
    println!(
        "==> xtask fuzz ({engine:?}): {} target(s) passed in {:.1} s",
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
