//! `cargo xtask test`: setup, then fmt check, clippy (the host crates, and
//! the eBPF crate for bpfel with the nightly toolchain) and the test
//! suites, with stale `xlb-*` network namespaces swept before and checked
//! after.
//! Exits non-zero when any step fails or a test leaves a namespace behind.

use std::env;
use std::process::{Command, ExitStatus};
use std::time::Instant;

use anyhow::{Result, bail};

use crate::{cmd, setup};

/// Lab namespaces are named `xlb-<test>-<role>`.
const NETNS_PREFIX: &str = "xlb-";
/// fmt, clippy, clippy on the eBPF crate, tests.
const STEPS: u32 = 4;

/// Also lint and test the `xtask-lab` binary (`cargo xtask run`'s lab).
const LAB_FEATURE: &str = "xtask/lab";

pub fn test() -> Result<()> {
    if !cmd::is_root() {
        bail!(
            "cargo xtask test needs root: the lab tests create network namespaces \
             and attach XDP programs. Run it as root."
        );
    }
    setup::setup()?;

    let stale = sweep_namespaces()?;
    if stale.is_empty() {
        println!("test: stale {NETNS_PREFIX}* namespaces ... none");
    } else {
        println!(
            "test: stale {NETNS_PREFIX}* namespaces ... removed {}",
            stale.join(" ")
        );
    }

    let mut results: Vec<(&str, bool)> = Vec::new();

    let mut fmt = cmd::cargo()?;
    fmt.args(["fmt", "--all", "--", "--check"]);
    results.push(("fmt", step(1, "fmt", &mut fmt)?));

    let mut clippy = cmd::cargo()?;
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "xlb-ebpf",
        "--all-targets",
        "--features",
        LAB_FEATURE,
    ]);
    clippy.args(["--", "-D", "warnings"]);
    results.push(("clippy", step(2, "clippy", &mut clippy)?));

    // The eBPF crate builds for bpfel only, with the nightly toolchain.
    let mut clippy_ebpf = cmd::command("rustup")?;
    clippy_ebpf
        .current_dir(cmd::workspace_root().join("xdp-ebpf"))
        .args(["run", setup::NIGHTLY, "cargo", "clippy", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["--", "-D", "warnings"]);
    results.push(("clippy (eBPF)", step(3, "clippy (eBPF)", &mut clippy_ebpf)?));

    let mut tests = cmd::cargo()?;
    tests.args([
        "test",
        "--workspace",
        "--exclude",
        "xlb-ebpf",
        "--features",
        LAB_FEATURE,
        "--no-fail-fast",
    ]);
    if let Some(threads) = test_threads()? {
        tests.args(["--", "--test-threads", &threads.to_string()]);
    }
    let mut tally = Tally::default();
    results.push(("tests", step_counting(4, "tests", &mut tests, &mut tally)?));

    let left = sweep_namespaces()?;
    if left.is_empty() {
        println!("test: namespaces left behind ... none");
    } else {
        println!(
            "test: namespaces left behind ... FAILED: {} (removed now; tests must clean up)",
            left.join(" ")
        );
    }
    results.push(("netns cleanup", left.is_empty()));

    let passed = results.iter().all(|&(_, ok)| ok);
    let parts: Vec<String> = results
        .iter()
        .map(|&(name, ok)| format!("{name} {}", if ok { "ok" } else { "FAILED" }))
        .collect();
    let verdict = if passed { "ok" } else { "FAILED" };
    println!("test: summary: {} => {verdict}", parts.join(", "));
    // The plain closing line CI reads: every libtest result added up.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    if !passed {
        bail!("test failed");
    }
    Ok(())
}

/// Runs one step with progress lines; whether it passed.
fn step(number: u32, name: &str, command: &mut Command) -> Result<bool> {
    timed_step(number, name, command, |command| Ok(command.status()?))
}

/// Prints the step's command, runs it with `run` and prints the outcome
/// with the time it took; whether it passed.
fn timed_step(
    number: u32,
    name: &str,
    command: &mut Command,
    run: impl FnOnce(&mut Command) -> Result<ExitStatus>,
) -> Result<bool> {
    println!(
        "test: [{number}/{STEPS}] {name}: {}",
        cmd::describe(command)
    );
    let started = Instant::now();
    let status = run(command)?;
    let seconds = started.elapsed().as_secs_f32();
    if status.success() {
        println!("test: [{number}/{STEPS}] {name} ... ok ({seconds:.1}s)");
    } else {
        println!("test: [{number}/{STEPS}] {name} ... FAILED ({status}, {seconds:.1}s)");
    }
    Ok(status.success())
}

/// Test counts summed over every libtest "test result:" line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Adds `test result: ok. 8 passed; 0 failed; 1 ignored; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// Like [`step`], echoing the command's stdout while counting test results.
fn step_counting(
    number: u32,
    name: &str,
    command: &mut Command,
    tally: &mut Tally,
) -> Result<bool> {
    use std::io::{BufRead, BufReader};
    timed_step(number, name, command, |command| {
        let mut child = command.stdout(std::process::Stdio::piped()).spawn()?;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines() {
                let line = line?;
                println!("{line}");
                tally.add_line(&line);
            }
        }
        Ok(child.wait()?)
    })
}

/// `XLB_TEST_THREADS`, if set: the libtest `--test-threads` value.
fn test_threads() -> Result<Option<u32>> {
    let Some(value) = env::var_os("XLB_TEST_THREADS") else {
        return Ok(None);
    };
    match value.to_str().and_then(|v| v.trim().parse::<u32>().ok()) {
        Some(threads) if threads > 0 => Ok(Some(threads)),
        _ => bail!("XLB_TEST_THREADS must be a positive integer, not {value:?}"),
    }
}

/// Deletes every `xlb-*` network namespace; returns their names.
fn sweep_namespaces() -> Result<Vec<String>> {
    let list = cmd::output(cmd::command("ip")?.args(["netns", "list"]))?;
    let names: Vec<String> = list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(NETNS_PREFIX))
        .map(str::to_string)
        .collect();
    for name in &names {
        cmd::run(cmd::command("ip")?.args(["netns", "del", name]))?;
    }
    Ok(names)
}

#[cfg(test)]
mod tally_tests {
    use super::Tally;

    #[test]
    fn sums_libtest_result_lines() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 8 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        t.add_line("running 3 tests");
        assert_eq!(
            t,
            Tally {
                passed: 11,
                failed: 2,
                ignored: 1
            }
        );
    }
}
