//! The pieces every bounded mutation fuzz of the lab shares: the seeded
//! generator ([`Rng`]), the run size from the environment
//! ([`seed_and_cases`]: `XLB_FUZZ_SEED` in hex, `XLB_FUZZ_CASES`), the
//! byte-level mutations that know nothing of the input's format (bit
//! flips, byte values, truncation, extension, splices between seeds,
//! inserted and deleted runs), one case run with its panic caught
//! ([`run_case`]), the loop over the cases ([`hunt`]) and a watchdog for
//! a case that never ends ([`Watchdog`]).
//!
//! Format-specific mutations (header fields, lines of a config) stay with
//! their fuzz and call these for the rest. A run is reproducible from its
//! seed: the same seed and case count give the same inputs.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// xorshift64*: small, fast, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`; `n` must not be 0.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The value of the environment variable `name` parsed by `parse`, or
/// `default` when it is not set; a value that does not parse panics.
pub fn env_or<T>(name: &str, default: T, parse: impl Fn(&str) -> Option<T>) -> T {
    std::env::var(name)
        .ok()
        .map(|v| parse(&v).unwrap_or_else(|| panic!("{name}={v}: not a number")))
        .unwrap_or(default)
}

/// The seed (`XLB_FUZZ_SEED`, hex, `0x` optional) and the number of cases
/// (`XLB_FUZZ_CASES`) of a run, or the fuzz's defaults: for longer hunts
/// or to replay a reported case.
pub fn seed_and_cases(seed: u64, cases: usize) -> (u64, usize) {
    let seed = env_or("XLB_FUZZ_SEED", seed, |v| {
        u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
    });
    let cases = env_or("XLB_FUZZ_CASES", cases, |v| v.parse().ok());
    (seed, cases)
}

/// Flips one bit of `f[p]`.
pub fn flip_bit(rng: &mut Rng, f: &mut [u8], p: usize) {
    f[p] ^= 1 << rng.below(8);
}

/// Cuts `f` to a random length of at least `min` (and at most its own;
/// nothing when it is shorter).
pub fn truncate(rng: &mut Rng, f: &mut Vec<u8>, min: usize) {
    if f.len() >= min {
        let len = min + rng.below(f.len() - min + 1);
        f.truncate(len);
    }
}

/// Appends random bytes, `f` staying within `max_len`: up to 64 most of
/// the time, up to all the room left one time in 8.
pub fn extend(rng: &mut Rng, f: &mut Vec<u8>, max_len: usize) {
    let room = max_len.saturating_sub(f.len());
    if room > 0 {
        let cap = if rng.chance(8) { room } else { room.min(64) };
        let n = 1 + rng.below(cap);
        f.extend((0..n).map(|_| rng.byte()));
    }
}

/// Copies a piece (up to 40 bytes) of one of `seeds` over `f` at the same
/// offset: a field of one valid input in the frame of another.
pub fn splice(rng: &mut Rng, f: &mut [u8], seeds: &[Vec<u8>]) {
    let other = rng.pick(seeds);
    let shorter = other.len().min(f.len());
    if shorter == 0 {
        return;
    }
    let start = rng.below(shorter);
    let end = (start + 1 + rng.below(40)).min(shorter);
    f[start..end].copy_from_slice(&other[start..end]);
}

/// Inserts a run (up to 16 bytes) of one of `seeds`, or of random bytes,
/// at a random place, `f` staying within `max_len`.
pub fn insert(rng: &mut Rng, f: &mut Vec<u8>, seeds: &[Vec<u8>], max_len: usize) {
    let at = rng.below(f.len() + 1);
    let other = rng.pick(seeds);
    let run: Vec<u8> = if rng.chance(2) && !other.is_empty() {
        let start = rng.below(other.len());
        let end = (start + 1 + rng.below(16)).min(other.len());
        other[start..end].to_vec()
    } else {
        (0..1 + rng.below(16)).map(|_| rng.byte()).collect()
    };
    if f.len() + run.len() <= max_len {
        f.splice(at..at, run);
    }
}

/// Deletes a run of up to 16 bytes at a random place.
pub fn delete(rng: &mut Rng, f: &mut Vec<u8>) {
    if !f.is_empty() {
        let start = rng.below(f.len());
        let end = (start + 1 + rng.below(16)).min(f.len());
        f.drain(start..end);
    }
}

/// One to three of the format-free mutations above, at positions anywhere
/// in the input, with byte values from `interesting` half of the time a
/// byte is set: for parsers with no fixed layout (text, short headers).
/// The result has at most `max_len` bytes (if the input had).
pub fn mutate_bytes(
    rng: &mut Rng,
    input: &[u8],
    seeds: &[Vec<u8>],
    interesting: &[u8],
    max_len: usize,
) -> Vec<u8> {
    let mut f = input.to_vec();
    for _ in 0..1 + rng.below(3) {
        match rng.below(8) {
            0 | 1 if !f.is_empty() => {
                let p = rng.below(f.len());
                flip_bit(rng, &mut f, p);
            }
            2 | 3 if !f.is_empty() => {
                let p = rng.below(f.len());
                f[p] = if rng.chance(2) {
                    *rng.pick(interesting)
                } else {
                    rng.byte()
                };
            }
            4 => truncate(rng, &mut f, 0),
            5 => extend(rng, &mut f, max_len),
            6 => splice(rng, &mut f, seeds),
            _ => {
                if rng.chance(2) {
                    insert(rng, &mut f, seeds, max_len);
                } else {
                    delete(rng, &mut f);
                }
            }
        }
    }
    f
}

/// Runs one case, its panic (if any) caught and turned into an `Err`
/// carrying the panic message, so one bad input is reported with the
/// others instead of ending the run.
pub fn run_case<T>(case: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(case)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// What a run of cases found.
pub struct Hunted {
    /// One line per case that broke a property, with its input.
    pub violations: Vec<String>,
    /// How many inputs the checks accepted.
    pub accepted: usize,
    pub cases: usize,
    pub elapsed: Duration,
}

impl Hunted {
    /// The run in one line: `what: N cases (seed S) in T; A accepted`.
    pub fn summary(&self, what: &str, seed: u64) -> String {
        format!(
            "{what}: {} cases (seed {seed:#x}) in {:?}; {} accepted",
            self.cases, self.elapsed, self.accepted
        )
    }
}

/// Runs `cases` cases: each input made by `make` from `rng`, named by
/// `describe` (for the watchdog, if any, and for reports) and checked by
/// `check` with its panic caught ([`run_case`]). `check` says whether the
/// input was accepted; an `Err` is a violation, reported with the case
/// number and the input.
pub fn hunt<I>(
    rng: &mut Rng,
    cases: usize,
    dog: Option<&Watchdog>,
    mut make: impl FnMut(&mut Rng) -> I,
    describe: impl Fn(&I) -> String,
    mut check: impl FnMut(&I) -> Result<bool, String>,
) -> Hunted {
    let started = Instant::now();
    let (mut violations, mut accepted) = (Vec::new(), 0);
    for n in 0..cases {
        let input = make(rng);
        if let Some(dog) = dog {
            dog.at(|| format!("case {n}: {}", describe(&input)));
        }
        match run_case(|| check(&input)) {
            Ok(ok) => accepted += usize::from(ok),
            Err(e) => violations.push(format!("case {n}: {e}\n  {}", describe(&input))),
        }
    }
    Hunted {
        violations,
        accepted,
        cases,
        elapsed: started.elapsed(),
    }
}

/// A run on its own thread, the test thread watching it: a case that
/// runs longer than a time limit fails the test with the input it was on
/// (which the run keeps up to date with [`Watchdog::at`]) instead of
/// hanging it.
#[derive(Clone, Default)]
pub struct Watchdog {
    /// The number of cases started, and the input of the last one.
    current: Arc<Mutex<(u64, String)>>,
}

impl Watchdog {
    /// Records the input of the case about to run.
    pub fn at(&self, describe: impl FnOnce() -> String) {
        let input = describe();
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        *current = (current.0 + 1, input);
    }

    /// Runs `run` on a thread of its own and returns its result, or panics
    /// naming the current case when one case takes more than `case_limit`
    /// (between one and two limits: the run is looked at once a limit; the
    /// thread is left behind).
    pub fn run<T: Send + 'static>(
        &self,
        case_limit: Duration,
        run: impl FnOnce(Watchdog) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = mpsc::channel();
        let me = self.clone();
        std::thread::spawn(move || {
            let _ = tx.send(run(me));
        });
        let mut seen = u64::MAX;
        loop {
            match rx.recv_timeout(case_limit) {
                Ok(t) => return t,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                    if current.0 == seen {
                        panic!("a case ran for more than {case_limit:?}: {}", current.1);
                    }
                    seen = current.0;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the run's thread panicked outside a case")
                }
            }
        }
    }
}

/// Bytes in hex, for reports.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Fails with the first `show` violations (and how many there were) when
/// there are any.
pub fn assert_none(what: &str, seed: u64, violations: &[String], show: usize) {
    assert!(
        violations.is_empty(),
        "{what}: {} violations (seed {seed:#x}); the first ones:\n{}",
        violations.len(),
        violations
            .iter()
            .take(show)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
