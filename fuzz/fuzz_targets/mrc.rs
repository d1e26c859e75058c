#![no_main]
#[path = "common.rs"]
mod common;
use drgnfly_io::mrc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "x.mrc");
    if let Ok(s) = mrc::MrcStack::open(&p) {
        let _ = s.read_image(0);
        let _ = s.read_image(s.len().saturating_sub(1));
    }
    let _ = mrc::read_volume(&p);
    let _ = mrc::read_header(&p);
});
