//! Forward and backward of the CNN encoder (`drgnfly_nn::cnn`) on candle's CPU convolutions: the small
//! default and ResNet-18, at D = 64 and 128, batch 32, float32. Prints the median step time after warm-up
//! and the convolutions' throughput (2 × multiply-adds per second; backward counts twice the forward's).
//!
//! `cargo bench -p drgnfly-nn --bench cnn_step` (release; `RAYON_NUM_THREADS` sets the threads); the PyTorch
//! twin is `cnn_step.py` beside this file.

use std::time::Instant;

use candle_core::{Device, Tensor};
use drgnfly_nn::{CnnConfig, CnnEncoder, ParamStore, Result};

const BATCH: usize = 32;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    println!("| layout | D | batch | forward ms | forward+backward ms | conv GFLOP/s (fwd) | conv GFLOP/s (fwd+bwd) | images/s (fwd+bwd) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, cfg, reps) in [
        ("small", CnnConfig::small(64, 8), 7),
        ("small", CnnConfig::small(128, 8), 5),
        ("resnet18", CnnConfig::resnet18(64, 8), 3),
        ("resnet18", CnnConfig::resnet18(128, 8), 3),
    ] {
        let store = ParamStore::new(0, &dev);
        let enc = CnnEncoder::new(&cfg, store.var_builder())?;
        let x = Tensor::randn(0f32, 1.0, (BATCH, cfg.d, cfg.d), &dev)?;
        let loss = |out: drgnfly_nn::CnnOutput| -> Result<Tensor> {
            let z = out.z.map(|(m, v)| m.sqr()?.sum_all()? + v.sum_all()?).transpose()?;
            let l = (out.rotation.sqr()?.sum_all()? + out.shift.sqr()?.sum_all()?)?;
            Ok(match z {
                Some(z) => (l + z)?,
                None => l,
            })
        };
        let (mut fwd, mut both) = (Vec::new(), Vec::new());
        for rep in 0..reps + 1 {
            let t0 = Instant::now();
            let l = loss(enc.forward(&x)?)?;
            let t1 = t0.elapsed().as_secs_f64();
            let g = l.backward()?;
            let t2 = t0.elapsed().as_secs_f64();
            assert!(g.get(&store.named_vars()[0].1).is_some());
            if rep > 0 {
                fwd.push(t1);
                both.push(t2);
            }
        }
        let (f, b) = (median(fwd), median(both));
        let flops = 2.0 * cfg.forward_macs() as f64 * BATCH as f64;
        println!(
            "| {name} | {} | {BATCH} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} |",
            cfg.d,
            f * 1e3,
            b * 1e3,
            flops / f / 1e9,
            3.0 * flops / b / 1e9,
            BATCH as f64 / b
        );
    }
    Ok(())
}
