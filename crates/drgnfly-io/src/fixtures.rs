//! Locating the shared test data (`../shared/data` beside the checkout) from tests in any crate.
//!
//! `DRGNFLY_TEST_DATA` overrides the location. When a file is missing the test is skipped with a printed
//! notice, unless `DRGNFLY_REQUIRE_FIXTURES=1` (set by `.ci/run`), which turns the absence into a failure.

use std::path::PathBuf;

/// The shared data directory (may not exist on a user's clone).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("DRGNFLY_TEST_DATA") {
        Some(p) => PathBuf::from(p),
        // crates/drgnfly-io → repository root → its sibling `shared/data`.
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// Path of fixture `rel` (e.g. `"cryodrgn/hand.mrcs"`), or `None` with a notice when it is absent.
///
/// # Panics
/// When the fixture is absent and `DRGNFLY_REQUIRE_FIXTURES` is set: CI must never skip silently.
pub fn fixture(rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        return Some(p);
    }
    let required = std::env::var("DRGNFLY_REQUIRE_FIXTURES").is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("required fixture {} is missing (DRGNFLY_REQUIRE_FIXTURES is set)", p.display());
    }
    eprintln!(
        "SKIPPED: fixture {} not found (set DRGNFLY_TEST_DATA to the shared data directory)",
        p.display()
    );
    None
}

/// `let path = fixture_or_skip!("cryodrgn/hand.mrcs");` returns from the test when the file is absent.
#[macro_export]
macro_rules! fixture_or_skip {
    ($rel:expr) => {
        match $crate::fixtures::fixture($rel) {
            Some(p) => p,
            None => return,
        }
    };
}

/// `count` mutants of a valid file, seeded: a few bytes set to random or boundary values (0, −1, 2³¹−1,
/// 2³¹, huge floats, NaN as little-endian words, aimed at headers), truncations, inserted, deleted and
/// duplicated runs, and for text a field replaced by `nan`, `-1`, `1e308` or a very long number. The
/// property tests feed them to every reader: an error is fine, a panic or an abort is a bug.
pub fn mutants(original: &[u8], seed: u64, count: usize) -> Vec<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let words: [[u8; 4]; 6] = [
        0i32.to_le_bytes(),
        (-1i32).to_le_bytes(),
        i32::MAX.to_le_bytes(),
        i32::MIN.to_le_bytes(),
        f32::MAX.to_le_bytes(),
        f32::NAN.to_le_bytes(),
    ];
    let texts: [&[u8]; 5] = [b"nan", b"-1", b"1e308", b"99999999999999999999999", b""];
    (0..count)
        .map(|_| {
            let mut b = original.to_vec();
            let len = b.len().max(1);
            match rng.random_range(0..7) {
                0 => {
                    for _ in 0..rng.random_range(1..=8) {
                        let at = rng.random_range(0..len);
                        if at < b.len() {
                            b[at] = rng.random();
                        }
                    }
                }
                1 => {
                    // Boundary words, mostly within the first KiB (MRC, npy and .cs headers live there).
                    let limit = if rng.random_bool(0.8) { len.min(1024) } else { len };
                    let at = rng.random_range(0..limit) & !3;
                    let w = words[rng.random_range(0..words.len())];
                    for (k, byte) in w.iter().enumerate() {
                        if let Some(slot) = b.get_mut(at + k) {
                            *slot = *byte;
                        }
                    }
                }
                2 => b.truncate(rng.random_range(0..len)),
                3 => {
                    let at = rng.random_range(0..=b.len());
                    let run: Vec<u8> = (0..rng.random_range(1..64)).map(|_| rng.random()).collect();
                    b.splice(at..at, run);
                }
                4 => {
                    let at = rng.random_range(0..len);
                    let end = (at + rng.random_range(1..256)).min(b.len());
                    if at < end {
                        b.drain(at..end);
                    }
                }
                5 => {
                    let at = rng.random_range(0..len);
                    let end = (at + rng.random_range(1..256)).min(b.len());
                    if at < end {
                        let run = b[at..end].to_vec();
                        b.splice(at..at, run);
                    }
                }
                _ => {
                    // Replace one whitespace-delimited field (text formats).
                    let starts: Vec<usize> = (1..b.len())
                        .filter(|&i| b[i - 1].is_ascii_whitespace() && !b[i].is_ascii_whitespace())
                        .collect();
                    if let Some(&at) = starts.get(rng.random_range(0..starts.len().max(1))) {
                        let end = (at..b.len()).find(|&i| b[i].is_ascii_whitespace()).unwrap_or(b.len());
                        let t = texts[rng.random_range(0..texts.len())];
                        b.splice(at..end, t.iter().copied());
                    }
                }
            }
            b
        })
        .collect()
}

/// Feed `per_file` [`mutants`] of each of `files` to `read` (as a file of the same name); a panic is a bug.
/// Panics at the end listing every panicking mutant, whose inputs are kept for the bug report.
pub fn assert_survives_mutants(
    name: &str,
    files: &[PathBuf],
    per_file: usize,
    read: impl Fn(&std::path::Path),
) {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let dir = std::env::temp_dir().join(format!("drgnfly-mutants-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut panics = Vec::new();
    for (k, src) in files.iter().enumerate() {
        let original = std::fs::read(src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        let file_name = src.file_name().expect("a file name").to_owned();
        for (m, bytes) in mutants(&original, k as u64, per_file).into_iter().enumerate() {
            let path = dir.join(&file_name);
            std::fs::write(&path, &bytes).expect("writing a mutant");
            if catch_unwind(AssertUnwindSafe(|| read(&path))).is_err() {
                let keep = dir.join(format!("panic-{m}-{}", file_name.to_string_lossy()));
                std::fs::copy(&path, keep).expect("keeping a mutant");
                panics.push(format!("{} mutant {m}", src.display()));
            }
        }
    }
    if !panics.is_empty() {
        panic!("{name}: {} panics ({}); inputs kept in {}", panics.len(), panics.join(", "), dir.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{name}: {} mutants of {} files, no panic", files.len() * per_file, files.len());
}
