#![no_main]
#[path = "common.rs"]
mod common;
use drgnfly_io::{cs, npy};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "x.cs");
    if let Ok(c) = cs::CsFile::open(&p) {
        let _ = c.blob_paths();
        let _ = c.blob_idx();
        let _ = c.box_size(None);
    }
    let _ = npy::NpyArray::open(&p);
});
