//! A short chaos run as part of the test suite: `warden-chaos` against a
//! 3-member ensemble for ~45 s of faults, once with a fixed seed and once
//! with a random one (printed, for replay). Both must pass every check,
//! with operations checked and several faults injected.
//!
//! Needs the `warden` binary beside `warden-chaos` (target/debug/warden):
//! `cargo test --workspace` and `tests/run.sh` build it; for this crate
//! alone run `cargo build -p warden` first.

use std::path::PathBuf;
use std::process::Command;

const DURATION_SECS: &str = "45";

fn warden_bin() -> PathBuf {
    let chaos = PathBuf::from(env!("CARGO_BIN_EXE_warden-chaos"));
    chaos.parent().unwrap().join("warden")
}

/// The number after `prefix` on the first line containing it.
fn number_after(out: &str, prefix: &str) -> u64 {
    let at = out.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in output:\n{out}"));
    out[at + prefix.len()..].chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().unwrap()
}

fn run(seed: u64) {
    let bin = warden_bin();
    assert!(bin.exists(), "{} is missing: run `cargo build -p warden` first", bin.display());
    println!("chaos run with seed {seed} (replay: cargo run -p warden-chaos -- --seed {seed} --duration {DURATION_SECS})");
    let out = Command::new(env!("CARGO_BIN_EXE_warden-chaos"))
        .args(["--seed", &seed.to_string(), "--duration", DURATION_SECS, "--warden-bin"])
        .arg(&bin)
        .output()
        .expect("run warden-chaos");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "seed {seed}: warden-chaos failed ({}):\n{text}", out.status);
    assert!(text.contains("RESULT: PASS"), "{text}");
    let ok = number_after(&text, "ops ok ");
    let faults = number_after(&text, "faults injected: ");
    assert!(ok > 0, "seed {seed}: no operation succeeded");
    assert!(faults >= 3, "seed {seed}: only {faults} faults injected");
    assert!(text.contains("register ops linearizable"), "{text}");
}

#[test]
fn fixed_seed() {
    run(42);
}

#[test]
fn random_seed() {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    run(t.as_nanos() as u64 ^ (std::process::id() as u64) << 20);
}
