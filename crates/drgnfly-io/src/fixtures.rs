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
