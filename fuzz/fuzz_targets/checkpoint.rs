#![no_main]
#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let p = common::as_file(data, "weights.1.safetensors");
    let _ = drgnfly_nn::read_checkpoint(&p, &candle_core::Device::Cpu);
    let _ = drgnfly_nn::read_cryodrgn_weights(&p);
});
