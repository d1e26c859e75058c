// Included by the build scripts of the crates whose tests read the shared test data.
//
// When the data directory (`DRGNFLY_TEST_DATA`, default `../shared/data` beside the checkout) does not
// exist, sets `cfg(shared_data_absent)`: the tests that need it carry
// `#[cfg_attr(shared_data_absent, ignore = "...")]`, so `cargo test` lists them as ignored, with the reason,
// and counts them in its summary. With `DRGNFLY_REQUIRE_FIXTURES=1` (CI) a missing directory stops the
// build instead. A single missing file inside an existing directory is still reported by
// `drgnfly_io::fixtures::fixture` at run time.

fn shared_data_cfg() {
    println!("cargo::rustc-check-cfg=cfg(shared_data_absent)");
    println!("cargo::rerun-if-env-changed=DRGNFLY_TEST_DATA");
    println!("cargo::rerun-if-env-changed=DRGNFLY_REQUIRE_FIXTURES");
    let dir = match std::env::var_os("DRGNFLY_TEST_DATA") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
            .join("../../../shared/data"),
    };
    if dir.is_dir() {
        // Notice the data going away (the tests would then skip at run time with a notice).
        println!("cargo::rerun-if-changed={}", dir.display());
        return;
    }
    let required = std::env::var("DRGNFLY_REQUIRE_FIXTURES").is_ok_and(|v| !v.is_empty() && v != "0");
    if required {
        panic!("shared test data not found at {} (DRGNFLY_REQUIRE_FIXTURES is set)", dir.display());
    }
    println!(
        "cargo::warning=shared test data not found at {}: the tests that need it are marked ignored \
         (set DRGNFLY_TEST_DATA to its directory, which also re-checks)",
        dir.display()
    );
    println!("cargo::rustc-cfg=shared_data_absent");
}
