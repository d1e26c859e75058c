//! Diagnostic: can the CNN encoder learn rotations from projections? Projects a map (an MRC file, or the
//! hinge phantom) at random poses (with noise at an SNR), prepares them as the trainers do
//! (`CnnEncoder::input`: standardised and centred) and trains the
//! encoder's rotation head alone on ‖R̂ − R‖²_F, printing the running loss (6 is chance).
//!
//! `cargo run --release -p drgnfly-nn --example pose_regression -- [MAP.mrc] [steps] [lr] [max shift px]
//! [SNR, 0: noiseless] [starting SNR]`
//! (with a starting SNR the noise grows geometrically from it to SNR over the first half of the steps)

use candle_core::{Device, Tensor};
use drgnfly_em::project::Projector;
use drgnfly_em::simulate::{simulate, SimConfig, States};
use drgnfly_nn::rotation::{rotation_matrices, RotationParam};
use drgnfly_nn::{Adam, AdamConfig, CnnConfig, CnnEncoder, ParamStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (volume, d) = match args.get(1).filter(|a| a.ends_with(".mrc")) {
        Some(path) => {
            let m = drgnfly_io::mrc::read_volume(path)?;
            (m.data, m.shape[0])
        }
        None => (drgnfly_em::phantom::HingePhantom::new(32)?.volume(0.0)?, 32),
    };
    let steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(600);
    let lr: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1e-3);
    let max_shift: f32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let snr: f64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let snr_start: f64 = args.get(6).and_then(|s| s.parse().ok()).filter(|s: &f64| *s > 0.0).unwrap_or(snr);
    let projector = Projector::new(&volume, d, 1)?;
    let store = ParamStore::new(1, &Device::Cpu);
    let enc = CnnEncoder::new(&CnnConfig::small(d, 0), store.var_builder())?;
    let mut adam = Adam::new(store.named_vars(), AdamConfig { lr, ..Default::default() })?;
    let b = 32;
    let mut window = Vec::new();
    for step in 0..steps {
        let cfg =
            SimConfig { chunk: b, seed: step as u64, max_shift_px: max_shift, ..SimConfig::new(b, 1.0) };
        let progress = (2.0 * step as f64 / steps as f64).min(1.0);
        let snr_now = snr_start * (snr / snr_start).powf(progress);
        let cfg = SimConfig { snr: (snr > 0.0).then_some(snr_now), ..cfg };
        let (mut images, mut truth) = (Vec::new(), Vec::new());
        simulate::<drgnfly_em::Error>(
            &cfg,
            &States::Projectors { projectors: std::slice::from_ref(&projector), weights: vec![1.0] },
            |c| {
                images.extend_from_slice(c.images);
                truth.extend_from_slice(c.truth);
                Ok(())
            },
        )?;
        let (x, _) = enc.input(&images, &Device::Cpu)?;
        let r: Vec<f32> = truth.iter().flat_map(|t| t.rot.iter().flatten().map(|&v| v as f32)).collect();
        let r = Tensor::from_vec(r, (b, 3, 3), &Device::Cpu)?;
        let pred = rotation_matrices(&enc.forward(&x)?.rotation, RotationParam::SixD)?;
        let loss = ((pred - r)?.sqr()?.sum_all()? / b as f64)?;
        window.push(loss.to_scalar::<f32>()?);
        adam.backward_step(&loss)?;
        if (step + 1) % 50 == 0 {
            println!("step {}: ‖ΔR‖²_F {:.3}", step + 1, window.iter().sum::<f32>() / window.len() as f32);
            window.clear();
        }
    }
    Ok(())
}
