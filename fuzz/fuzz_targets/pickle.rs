#![no_main]
#[path = "common.rs"]
mod common;
use drgnfly_io::{pickle, selection};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "x.pkl");
    let _ = pickle::load_all(&p);
    let _ = pickle::load_ctf(&p);
    let _ = pickle::load_poses(&p);
    let _ = pickle::load_latents(&p);
    let _ = selection::Selection::load(&p);
});
