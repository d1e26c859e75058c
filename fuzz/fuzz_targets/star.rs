#![no_main]
#[path = "common.rs"]
mod common;
use drgnfly_io::{relion, source, star};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "x.star");
    let _ = star::StarFile::open(&p);
    let _ = relion::RelionParticles::open(&p);
    let _ = source::read_stack_list(&p);
});
