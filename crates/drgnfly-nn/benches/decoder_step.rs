//! One training step of the cryoDRGN decoder, on candle's generic path and with the fused CPU op (f32, and
//! with mixed precision): forward (Fourier decoder with the
//! half-space trick) + MSE + backward + Adam, for 8 images at D = 64 (3208 masked points each, 1604 decoded),
//! decoder 256×3 (or `DECODER_DIM`×3), zdim 8, gaussian PE with pe_dim 32 (input width 200).
//!
//! `cargo bench -p drgnfly-nn --bench decoder_step` (release); the PyTorch twin is `decoder_step.py` beside
//! this file. Prints the median over timed steps after warm-up, in wall time and in process CPU time (the
//! latter is robust to other load on the machine when run with one thread: `RAYON_NUM_THREADS=1`).

use std::time::Instant;

use candle_core::{Device, Tensor};
use drgnfly_nn::{Adam, AdamConfig, Decoder, DecoderConfig, ParamStore, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 8;
const LATTICE: usize = 65;
const ZDIM: usize = 8;

/// Masked lattice points (disc of radius 0.5 without DC) in raster order.
fn disc() -> Vec<[f32; 3]> {
    let c = (LATTICE / 2) as f32;
    let mut pts = Vec::new();
    for iy in 0..LATTICE {
        for ix in 0..LATTICE {
            let (x, y) = ((ix as f32 - c) / (2.0 * c), (iy as f32 - c) / (2.0 * c));
            if x * x + y * y <= 0.25 && (ix, iy) != (LATTICE / 2, LATTICE / 2) {
                pts.push([x, y, 0.0]);
            }
        }
    }
    pts
}

/// A uniformly random rotation matrix from a unit quaternion.
fn rotation(rng: &mut ChaCha8Rng) -> [[f32; 3]; 3] {
    let q: [f32; 4] = std::array::from_fn(|_| rng.random::<f32>() - 0.5);
    let n = q.iter().map(|v| v * v).sum::<f32>().sqrt();
    let [w, x, y, z] = q.map(|v| v / n);
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// CPU time of the whole process (all threads), in ms.
fn cpu_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 * 1e-6
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let pts = disc();
    let n = pts.len();
    let mut coords = Vec::with_capacity(BATCH * n * 3);
    for _ in 0..BATCH {
        let r = rotation(&mut rng);
        for p in &pts {
            coords.extend((0..3).map(|j| (0..3).map(|i| p[i] * r[i][j]).sum::<f32>()));
        }
    }
    let coords = Tensor::from_vec(coords, (BATCH, n, 3), &dev)?;
    let z = Tensor::from_vec(
        (0..BATCH * ZDIM).map(|_| rng.random::<f32>() - 0.5).collect(),
        (BATCH, ZDIM),
        &dev,
    )?;
    let target =
        Tensor::from_vec((0..BATCH * n).map(|_| rng.random::<f32>() - 0.5).collect(), (BATCH, n), &dev)?;

    let mut cfg = DecoderConfig::new(LATTICE, ZDIM);
    // `DECODER_DIM=1024` times cryoDRGN's large network instead.
    cfg.dim = std::env::var("DECODER_DIM").ok().and_then(|d| d.parse().ok()).unwrap_or(256);
    // `-- fused`, `-- bf16` or `-- generic` runs one path only (for profiling).
    let only = std::env::args().nth(1);
    for name in ["generic", "fused", "bf16"] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        cfg.mixed_precision = name == "bf16";
        let store = ParamStore::new(0, &dev);
        let decoder = Decoder::new(&cfg, store.var_builder())?;
        let decoder = if name == "generic" { decoder.with_generic_ops() } else { decoder };
        let mut adam = Adam::new(store.named_vars(), AdamConfig { lr: 1e-4, ..Default::default() })?;
        let step = |adam: &mut Adam| -> Result<f32> {
            let loss = (decoder.forward(&coords, Some(&z))? - &target)?.sqr()?.mean_all()?;
            adam.backward_step(&loss)?;
            Ok(loss.to_scalar::<f32>()?)
        };
        for _ in 0..3 {
            step(&mut adam)?;
        }
        let (mut times, mut cpu) = (Vec::new(), Vec::new());
        let mut loss = 0.0;
        for _ in 0..20 {
            let (t, c) = (Instant::now(), cpu_ms());
            loss = step(&mut adam)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            cpu.push(cpu_ms() - c);
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "{}: decoder {}x3, {BATCH} images x {n} masked points (half decoded), zdim {ZDIM}: \
             median {:.1} ms/step (min {:.1}, max {:.1}), CPU {:.1} ms/step, final loss {loss:.4}",
            match name {
                "generic" => "candle generic",
                "fused" => "fused op",
                _ => "fused op, mixed precision (bf16 products where the CPU has them)",
            },
            cfg.dim,
            times[times.len() / 2],
            times[0],
            times[times.len() - 1],
            cpu[cpu.len() / 2]
        );
    }
    Ok(())
}
