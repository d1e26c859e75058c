//! Golden tests against cryoDRGN's own outputs.
//!
//! The constants below were printed by `tests/golden/make_reference.py` (see `tests/golden/README.md`) with
//! cryodrgn 4.3.1, torch 2.15.0+cu132 (run on the CPU), numpy 2.4.6:
//!
//! ```text
//! python crates/drgnfly-nn/tests/golden/make_reference.py ../shared/data/cryodrgn
//! ```
//!
//! - `HET_*`: the trained HetOnlyVAE `shared/data/cryodrgn/het_weights.pkl` (config `het_config.yaml`:
//!   D_lat 65, zdim 8, hartley, gaussian PE with pe_dim 8, 8-wide layers, qlayers 2, players 3).
//! - `FT_*`: a seeded `FTPositionalDecoder(3 + 2, 17, 2, 16, ReLU, gaussian, pe_dim 4, σ 0.5)` saved by the
//!   same script as `tests/golden/ft_decoder.pt`.
//!
//! Tolerance: 1e-5 relative to the largest magnitude of each compared set (f32 arithmetic in a different
//! summation order).

// The constants are pasted verbatim as Python printed them (10 significant digits).
#![allow(clippy::excessive_precision)]

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use drgnfly_nn::{
    read_cryodrgn_weights, DataNorm, Decoder, DecoderConfig, Domain, EncoderConfig, HetOnlyVae, ParamStore,
    PeType, Result,
};

// cryodrgn 4.3.1, torch 2.15.0+cu132, numpy 2.4.6
const HET_DECODER: [f32; 10] = [
    -4.536638737e+00,
    -3.894684613e-01,
    1.570542157e-01,
    -2.553963363e-01,
    1.459099650e-01,
    -4.588806629e+00,
    -5.513200760e-01,
    1.746319979e-01,
    -3.918221295e-01,
    1.894062161e-01,
];
const HET_MU: [f32; 16] = [
    -3.599824309e-01,
    -1.938878894e-01,
    2.237754315e-02,
    -2.368285507e-01,
    -1.596442759e-01,
    -2.236242443e-01,
    -1.756879687e-01,
    7.428562641e-02,
    -3.585721552e-01,
    -1.966591626e-01,
    -3.746140748e-02,
    -1.616332084e-01,
    -9.660801291e-02,
    -2.387643754e-01,
    -1.654575169e-01,
    6.430387497e-03,
];
const HET_LOGVAR: [f32; 16] = [
    -2.447428405e-01,
    3.720667064e-01,
    -1.210491508e-01,
    -4.499123991e-02,
    2.727508247e-01,
    -1.940149814e-01,
    -7.135570049e-02,
    -3.342869878e-01,
    -2.038046122e-01,
    3.621749282e-01,
    -9.749047458e-02,
    5.433727801e-02,
    3.153825402e-01,
    -1.710419059e-01,
    -1.369068921e-01,
    -3.292399049e-01,
];
const HET_VOLUME_PROBE: [f32; 6] = [
    -4.283793640e+02,
    -1.609918404e+01,
    -5.223875999e+00,
    -6.720722961e+01,
    -8.019385529e+01,
    -4.075105286e+02,
];
const HET_VOLUME_PROBE_AT: [(usize, usize, usize); 6] =
    [(32, 32, 32), (0, 0, 0), (10, 20, 30), (40, 33, 2), (63, 1, 47), (31, 32, 33)];
const HET_VOLUME_SUM: f64 = -1.003502381e+06;
const HET_VOLUME_SUMSQ: f64 = 2.555719473e+08;
// FT slice: 196 points; rotation R = Rz(0.7) Rx(0.4) (float32)
const FT_ROT: [f32; 9] = [
    7.648422122e-01,
    -5.933637619e-01,
    2.508701682e-01,
    6.442176700e-01,
    7.044663429e-01,
    -2.978435755e-01,
    0.000000000e+00,
    3.894183338e-01,
    9.210609794e-01,
];
const FT_SLICE_PROBE: [f32; 8] = [
    1.173285544e-01,
    2.191463858e-02,
    7.193535566e-02,
    -1.263994277e-01,
    3.198161423e-01,
    3.200207651e-01,
    -2.443479896e-01,
    3.122876585e-01,
];
const FT_SLICE_PROBE_AT: [usize; 8] = [0, 1, 50, 100, 109, 110, 150, 195];
const FT_SLICE_SUMSQ: f64 = 8.173420283e+00;
const FT_VOLUME_PROBE: [f32; 6] =
    [1.233549953e+00, 5.000000000e-01, 9.589130282e-01, 6.053761244e-01, 5.000000000e-01, 6.226825118e-01];
const FT_VOLUME_PROBE_AT: [(usize, usize, usize); 6] =
    [(8, 8, 8), (0, 0, 0), (8, 3, 12), (2, 7, 9), (12, 15, 4), (8, 12, 4)];
const FT_VOLUME_SUM: f64 = 2.100478909e+03;
const FT_VOLUME_SUMSQ: f64 = 1.242993900e+03;

const Z: [[f32; 8]; 2] =
    [[0.5, -1.0, 0.25, 2.0, -0.75, 0.0, 1.5, -0.3], [-1.2, 0.8, 0.0, -0.4, 0.9, 1.1, -2.0, 0.6]];

/// Assert |got − want| ≤ 1e-5 · max|want| elementwise, reporting the first mismatch.
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let (i, worst) = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .enumerate()
        .fold((0, 0f32), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
    assert!(
        worst <= 1e-5 * scale,
        "{what}: max |Δ| = {worst} at {i} (got {}, want {}), scale {scale}",
        got[i],
        want[i]
    );
}

fn assert_rel(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol * want.abs(), "{what}: got {got}, want {want}");
}

fn het_configs() -> (EncoderConfig, DecoderConfig) {
    let mut enc = EncoderConfig::new(3208, 8);
    (enc.layers, enc.dim) = (2, 8);
    let mut dec = DecoderConfig::new(65, 8);
    (dec.layers, dec.dim, dec.pe_type, dec.pe_dim, dec.domain) =
        (3, 8, PeType::Gaussian, Some(8), Domain::Hartley);
    (enc, dec)
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn het_weights_decode_encode_and_volume_match_cryodrgn() -> Result<()> {
    // fixture_or_skip! returns `()`, so use the function form in a test returning Result.
    let Some(path) = drgnfly_io::fixtures::fixture("cryodrgn/het_weights.pkl") else { return Ok(()) };
    let dev = Device::Cpu;
    let weights = read_cryodrgn_weights(&path)?;
    let (enc_cfg, dec_cfg) = het_configs();

    // Every tensor of the checkpoint maps onto our model by name and shape (strict both ways).
    let store = ParamStore::new(0, &dev);
    HetOnlyVae::new(&enc_cfg, &dec_cfg, store.var_builder())?;
    store.load_state(&weights, &path)?;

    let vae = HetOnlyVae::new(&enc_cfg, &dec_cfg, VarBuilder::from_tensors(weights, DType::F32, &dev))?;

    let coords = Tensor::new(
        &[[0.0f32, 0.0, 0.0], [0.1, -0.2, 0.3], [-0.5, 0.25, 0.0], [0.375, 0.4, -0.15], [0.0, -0.03125, 0.5]],
        &dev,
    )?;
    let coords = coords.unsqueeze(0)?.repeat((2, 1, 1))?;
    let z = Tensor::new(&Z, &dev)?;
    let h = vae.decoder.forward(&coords, Some(&z))?.flatten_all()?.to_vec1::<f32>()?;
    assert_close("decoder outputs", &h, &HET_DECODER);

    let imgs: Vec<f32> = (0..3208)
        .map(|j| 0.5 * (0.37 * j as f32).sin())
        .chain((0..3208).map(|j| 0.5 * (0.37 * j as f32 + 1.0).sin() + 0.1 * (0.05 * j as f32).cos()))
        .collect();
    let (mu, logvar) = vae.encoder.forward(&Tensor::from_vec(imgs, (2, 3208), &dev)?)?;
    assert_close("encoder mu", &mu.flatten_all()?.to_vec1::<f32>()?, &HET_MU);
    assert_close("encoder logvar", &logvar.flatten_all()?.to_vec1::<f32>()?, &HET_LOGVAR);

    let vol = vae.decoder.eval_volume(&Z[0], 65, 0.5, DataNorm { mean: 0.0, std: 94.4266 })?;
    assert_eq!(vol.d, 64);
    let probe: Vec<f32> =
        HET_VOLUME_PROBE_AT.iter().map(|&(z, y, x)| vol.values[(z * 64 + y) * 64 + x]).collect();
    assert_close("volume probes", &probe, &HET_VOLUME_PROBE);
    let sum: f64 = vol.values.iter().map(|&v| v as f64).sum();
    let sumsq: f64 = vol.values.iter().map(|&v| (v as f64).powi(2)).sum();
    // The sum mixes signs (cancellation), so compare it on the scale of Σ|v| ~ √(N·Σv²).
    let scale = (vol.values.len() as f64 * HET_VOLUME_SUMSQ).sqrt();
    assert!((sum - HET_VOLUME_SUM).abs() <= 1e-5 * scale, "volume sum {sum} vs {HET_VOLUME_SUM}");
    assert_rel("volume Σv²", sumsq, HET_VOLUME_SUMSQ, 1e-5);
    Ok(())
}

fn ft_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/ft_decoder.pt")
}

#[test]
fn fourier_decoder_slice_and_volume_match_cryodrgn() -> Result<()> {
    let dev = Device::Cpu;
    let weights = read_cryodrgn_weights(&ft_fixture())?;
    let mut cfg = DecoderConfig::new(17, 2);
    (cfg.layers, cfg.dim, cfg.pe_type, cfg.pe_dim, cfg.domain) =
        (2, 16, PeType::Gaussian, Some(4), Domain::Fourier);
    // The standalone decoder's names have no `decoder.` VAE prefix: rand_freqs, decoder.main.*.
    let dec = Decoder::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, &dev))?;

    // Disc of radius 8 on the 17-lattice without DC, raster order (cryoDRGN get_circular_mask(8)).
    let mut pts = Vec::new();
    for iy in 0..17 {
        for ix in 0..17 {
            let (x, y) = ((ix as f32 - 8.0) / 16.0, (iy as f32 - 8.0) / 16.0);
            if x * x + y * y <= 0.25 && (ix, iy) != (8, 8) {
                pts.extend_from_slice(&[x, y, 0.0]);
            }
        }
    }
    let n = pts.len() / 3;
    assert_eq!(n, 196);
    let rot = Tensor::from_slice(&FT_ROT, (3, 3), &dev)?;
    let coords = Tensor::from_vec(pts, (n, 3), &dev)?.matmul(&rot)?.unsqueeze(0)?;
    let z = Tensor::new(&[[0.3f32, -0.6]], &dev)?;
    let slice = dec.forward(&coords, Some(&z))?.flatten_all()?.to_vec1::<f32>()?;
    let probe: Vec<f32> = FT_SLICE_PROBE_AT.iter().map(|&i| slice[i]).collect();
    assert_close("Fourier slice probes", &probe, &FT_SLICE_PROBE);
    assert_rel("Fourier slice Σh²", slice.iter().map(|&v| (v as f64).powi(2)).sum(), FT_SLICE_SUMSQ, 1e-5);

    let vol = dec.eval_volume(&[0.3, -0.6], 17, 0.5, DataNorm { mean: 0.5, std: 2.0 })?;
    let probe: Vec<f32> =
        FT_VOLUME_PROBE_AT.iter().map(|&(z, y, x)| vol.values[(z * 16 + y) * 16 + x]).collect();
    assert_close("Fourier volume probes", &probe, &FT_VOLUME_PROBE);
    assert_rel("Fourier volume sum", vol.values.iter().map(|&v| v as f64).sum(), FT_VOLUME_SUM, 1e-5);
    assert_rel(
        "Fourier volume Σv²",
        vol.values.iter().map(|&v| (v as f64).powi(2)).sum(),
        FT_VOLUME_SUMSQ,
        1e-5,
    );
    Ok(())
}
