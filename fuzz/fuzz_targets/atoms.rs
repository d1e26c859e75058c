#![no_main]
#[path = "common.rs"]
mod common;
use drgnfly_io::atoms;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "x.pdb");
    let _ = atoms::read_pdb(&p);
    let _ = atoms::read_mmcif(&p);
    let _ = atoms::read_element_list(&p);
});
