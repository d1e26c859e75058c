#![no_main]
#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "config.yaml");
    let _ = drgnfly_nn::config::RunConfig::read(&p);
});
