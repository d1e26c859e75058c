//! Particle simulation: volumes (or atom frames) → noisy, CTF-modulated, shifted projections, streamed in
//! chunks with their ground truth.
//!
//! Per particle `i` (all randomness from a ChaCha8 stream of `(seed, i)`, so results do not depend on the
//! chunk size or the thread count):
//! 1. state `s`: drawn from the mixture weights (or uniform over frames);
//! 2. pose `R`: uniform on SO(3) ([`crate::rotation::random`]) unless poses are given;
//! 3. shift `t`: uniform in `[−m, m]²` px; `t` is **the shift that centres the image** (the pose.pkl
//!    convention, §2.5): the image is the centred projection moved by `−t`, so translating it by `+t`
//!    ([`crate::translate`]) centres it again;
//! 4. CTF: defocus U uniform in `[min, max]` Å, V = U − `astigmatism·u` (u uniform in [0, 1]), angle
//!    uniform in [0°, 180°), fixed kV, Cs, w, phase shift; or the parameters of a real dataset's ctf.pkl
//!    ([`CtfSource::Rows`]): row `i` for particle `i` when there is one row per particle, else a row drawn
//!    uniformly (the dataset's defocus distribution), at the simulation's pixel size;
//! 5. image `= −(P ⊛ CTF)` shifted by `−t`, computed in Hartley space
//!    (`H′ = CTF·(cos(2πk·t)·H(k) − sin(2πk·t)·H(−k))`) and inverse-transformed;
//! 6. noise: white Gaussian with `σ² = var(clean images)/SNR`, the variance taken over all pixels of the
//!    first chunk's clean images and kept for the whole run (the `add_noise` approach of cryoDRGN-style
//!    simulators, with a bounded sample). The shift of step 5 is a Fourier (periodic) shift, under which
//!    white noise keeps its distribution, so adding noise after the shift is the same as adding it before
//!    (as the HetACUMN benchmarks do).
//!
//! **Contrast.** Raw particles have inverted contrast: the stored image is `−(projection ⊛ CTF)`. With
//! cryoDRGN's CTF (negative at zero frequency, `−w`) that makes protein bright at low frequency, as in
//! RELION-extracted particles, and cryoDRGN's default `invert_data` turns it back into
//! `projection ⊛ CTF`, which is what training compares `decoder × CTF` to. (cryoDRGN issue #65: white RELION
//! particles backprojected with the default inversion and `--ctf` give the right contrast.) Without CTF
//! the stored image is `−projection`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::ctf::CtfParams;
use crate::project::Projector;
use crate::rotation::random::random_rotation;
use crate::rotation::Mat3;
use crate::{Error, Result};

/// Where the states come from.
pub enum States<'a> {
    /// Prepared projectors, one per state, drawn with probabilities ∝ `weights`.
    Projectors {
        /// One projector per state (all of side `D`).
        projectors: &'a [Projector],
        /// Mixture weights (≥ 0, not all 0); normalised here.
        weights: Vec<f64>,
    },
    /// States too many to hold (hundreds of frames of an atomic trajectory rendered by [`crate::density`],
    /// thousands of phantom states), drawn with probabilities ∝ `weights` and built on demand, `group` at a
    /// time: the particles are rendered state group by state group into `store`, then read back in
    /// particle order for the noise and the sink. Each projector is built once whatever the number of
    /// particles, and memory is `group` projectors plus one chunk of images.
    OnDemand {
        /// Side `D` of every state's projector.
        d: usize,
        /// Mixture weights, one per state (≥ 0, not all 0); normalised here.
        weights: Vec<f64>,
        /// Builds the projector of state `k`.
        make: &'a (dyn Fn(usize) -> Result<Projector> + Sync),
        /// Projectors held at once (at least 1).
        group: usize,
        /// Room for the clean images between the two passes (`n × D²` values).
        store: &'a dyn ImageStore,
    },
}

/// Random-access room for `n` images of `D²` values, written in any order and read back in order (a
/// scratch file for large runs, [`MemoryStore`] in tests).
pub trait ImageStore: Sync {
    /// Stores `image` (`D²` values) as image `index`.
    fn put(&self, index: usize, image: &[f32]) -> Result<()>;
    /// Reads images `start..start + images.len() / D²` into `images`.
    fn get(&self, start: usize, images: &mut [f32]) -> Result<()>;
}

/// An [`ImageStore`] in memory.
pub struct MemoryStore {
    image_len: usize,
    data: std::sync::Mutex<Vec<f32>>,
}

impl MemoryStore {
    /// Room for `n` images of `d × d`.
    pub fn new(n: usize, d: usize) -> Self {
        Self { image_len: d * d, data: std::sync::Mutex::new(vec![0.0; n * d * d]) }
    }
}

impl ImageStore for MemoryStore {
    fn put(&self, index: usize, image: &[f32]) -> Result<()> {
        let mut data = self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = index * self.image_len;
        data.get_mut(at..at + image.len())
            .ok_or_else(|| store_range_error(index, image.len()))?
            .copy_from_slice(image);
        Ok(())
    }

    fn get(&self, start: usize, images: &mut [f32]) -> Result<()> {
        let data = self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = start * self.image_len;
        images.copy_from_slice(
            data.get(at..at + images.len()).ok_or_else(|| store_range_error(start, images.len()))?,
        );
        Ok(())
    }
}

fn store_range_error(index: usize, len: usize) -> Error {
    Error::Shape {
        op: "image store",
        expected: "images inside the store".into(),
        got: format!("{len} values at image {index}"),
    }
}

/// CTF parameter distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtfDistribution {
    /// Smallest defocus U, Å.
    pub defocus_min_a: f32,
    /// Largest defocus U, Å.
    pub defocus_max_a: f32,
    /// Largest `U − V`, Å.
    pub astigmatism_a: f32,
    /// Voltage, kV.
    pub voltage_kv: f32,
    /// Spherical aberration, mm.
    pub cs_mm: f32,
    /// Amplitude contrast.
    pub amp_contrast: f32,
    /// Phase shift, degrees.
    pub phase_shift_deg: f32,
}

impl Default for CtfDistribution {
    /// 1–2.5 µm underfocus, up to 500 Å astigmatism, 300 kV, Cs 2.7 mm, w = 0.1.
    fn default() -> Self {
        Self {
            defocus_min_a: 10_000.0,
            defocus_max_a: 25_000.0,
            astigmatism_a: 500.0,
            voltage_kv: 300.0,
            cs_mm: 2.7,
            amp_contrast: 0.1,
            phase_shift_deg: 0.0,
        }
    }
}

/// Where each particle's CTF comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CtfSource {
    /// Drawn from a distribution.
    Random(CtfDistribution),
    /// Rows of a real dataset (e.g. its ctf.pkl): row `i` for particle `i` when there are exactly `n`
    /// rows, else a uniformly drawn row. The rows' pixel size is replaced by the simulation's.
    Rows(Vec<CtfParams>),
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of particles.
    pub n: usize,
    /// Pixel size, Å (for the CTF and the ctf.pkl rows).
    pub apix: f32,
    /// Signal-to-noise ratio (signal variance / noise variance); `None` = noiseless.
    pub snr: Option<f64>,
    /// CTF source; `None` = no CTF (the image is `−projection`).
    pub ctf: Option<CtfSource>,
    /// Shifts are uniform in `[−m, m]²` px.
    pub max_shift_px: f32,
    /// Given rotations (one per particle) instead of uniform random ones.
    pub rotations: Option<Vec<Mat3>>,
    /// Particles per chunk (memory: `chunk × D² × 4` bytes of images).
    pub chunk: usize,
    /// Seed of all random draws.
    pub seed: u64,
}

impl SimConfig {
    /// `n` particles, noiseless, no CTF, no shifts, random poses, chunks of 1000, seed 0.
    pub fn new(n: usize, apix: f32) -> Self {
        Self { n, apix, snr: None, ctf: None, max_shift_px: 0.0, rotations: None, chunk: 1000, seed: 0 }
    }
}

/// Ground truth of one particle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParticleTruth {
    /// State (mixture component or frame index).
    pub state: usize,
    /// Pose rotation.
    pub rot: Mat3,
    /// The shift (px) that centres the image (pose.pkl stores `shift_px / D`).
    pub shift_px: [f32; 2],
    /// CTF parameters, when simulated.
    pub ctf: Option<CtfParams>,
}

impl ParticleTruth {
    /// The cryoDRGN ctf.pkl row `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]`, when a CTF was simulated.
    pub fn ctf_row(&self, d: usize) -> Option<[f32; 9]> {
        self.ctf.map(|c| {
            [
                d as f32,
                c.angpix,
                c.defocus_u_a,
                c.defocus_v_a,
                c.defocus_angle_deg,
                c.voltage_kv,
                c.cs_mm,
                c.amp_contrast,
                c.phase_shift_deg,
            ]
        })
    }
}

/// One chunk of simulated particles, handed to the sink in order.
#[derive(Debug)]
pub struct SimChunk<'a> {
    /// Index of the first particle of the chunk.
    pub start: usize,
    /// Images `(B, D, D)`, raw contrast (see the [module docs](self)).
    pub images: &'a [f32],
    /// Ground truth per image.
    pub truth: &'a [ParticleTruth],
}

/// Summary of a finished simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimSummary {
    /// Particles produced.
    pub n: usize,
    /// Variance of the clean images (first chunk).
    pub signal_variance: f64,
    /// Noise standard deviation used (0 when noiseless).
    pub noise_sigma: f64,
}

/// Runs the simulation, calling `sink` with each chunk in order. Box side `D` comes from the projectors.
/// Memory is one chunk of images plus the projectors held (all of them, or one group of
/// [`States::OnDemand`], whose run also keeps the `n` particles' ground truth). Errors from `sink` stop
/// the run. Both kinds of states give the same images for the same configuration.
pub fn simulate<E: From<Error>>(
    cfg: &SimConfig,
    states: &States<'_>,
    mut sink: impl FnMut(&SimChunk<'_>) -> Result<(), E>,
) -> Result<SimSummary, E> {
    let (n_states, cumulative) = check(cfg, states)?;
    let d = match states {
        States::Projectors { projectors, .. } => projectors.first().map_or(0, Projector::size),
        States::OnDemand { d, .. } => *d,
    };
    let lattice = HalfLattice::new(d);
    let chunk = cfg.chunk.max(1);
    let mut images = vec![0.0f32; chunk.min(cfg.n) * d * d];
    let mut noise = Noise::new(cfg.snr);
    match states {
        States::Projectors { projectors, .. } => {
            let held: Vec<Option<&Projector>> = projectors.iter().map(Some).collect();
            for start in (0..cfg.n).step_by(chunk) {
                let b = chunk.min(cfg.n - start);
                let truth: Vec<ParticleTruth> =
                    (start..start + b).map(|i| draw(cfg, i, n_states, &cumulative)).collect();
                let imgs = &mut images[..b * d * d];
                render(&lattice, &held, &truth, imgs)?;
                noise.add(cfg.seed, start, imgs, d);
                sink(&SimChunk { start, images: imgs, truth: &truth })?;
            }
        }
        States::OnDemand { make, group, store, .. } => {
            let truth: Vec<ParticleTruth> =
                (0..cfg.n).into_par_iter().map(|i| draw(cfg, i, n_states, &cumulative)).collect();
            let mut order: Vec<usize> = (0..cfg.n).collect();
            order.sort_by_key(|&i| truth[i].state);
            let group = (*group).max(1);
            let mut rest = &order[..];
            for first in (0..n_states).step_by(group) {
                let last = (first + group).min(n_states);
                let here = rest.partition_point(|&i| truth[i].state < last);
                let (these, later) = rest.split_at(here);
                rest = later;
                if these.is_empty() {
                    continue;
                }
                let mut used = vec![false; n_states];
                these.iter().for_each(|&i| used[truth[i].state] = true);
                let built: Vec<Option<Projector>> = (0..n_states)
                    .into_par_iter()
                    .map(|k| if used[k] { make(k).map(Some) } else { Ok(None) })
                    .collect::<Result<_>>()?;
                let held: Vec<Option<&Projector>> = built.iter().map(Option::as_ref).collect();
                for batch in these.chunks(chunk) {
                    let batch_truth: Vec<ParticleTruth> = batch.iter().map(|&i| truth[i]).collect();
                    let imgs = &mut images[..batch.len() * d * d];
                    render(&lattice, &held, &batch_truth, imgs)?;
                    batch
                        .par_iter()
                        .zip(imgs.par_chunks(d * d))
                        .try_for_each(|(&i, img)| store.put(i, img))?;
                }
            }
            for start in (0..cfg.n).step_by(chunk) {
                let b = chunk.min(cfg.n - start);
                let imgs = &mut images[..b * d * d];
                store.get(start, imgs)?;
                noise.add(cfg.seed, start, imgs, d);
                sink(&SimChunk { start, images: imgs, truth: &truth[start..start + b] })?;
            }
        }
    }
    Ok(SimSummary {
        n: cfg.n,
        signal_variance: noise.signal_variance,
        noise_sigma: noise.sigma.unwrap_or(0.0),
    })
}

/// Clean images of `truth` (one per particle, in order) into `images`; `projectors[s]` is state `s`'s.
fn render(
    lattice: &HalfLattice,
    projectors: &[Option<&Projector>],
    truth: &[ParticleTruth],
    images: &mut [f32],
) -> Result<()> {
    let d = lattice.d;
    images.par_chunks_mut(d * d).zip(truth.par_iter()).try_for_each_init(
        || {
            (
                projectors.iter().flatten().next().map(|p| p.make_scratch()),
                vec![0.0f32; d * d],
                vec![0.0f32; d * d],
            )
        },
        |(scratch, ht, ctf), (img, t)| -> Result<()> {
            let (Some(p), Some(scratch)) = (projectors[t.state], scratch.as_mut()) else {
                return Err(Error::Param {
                    name: "state",
                    value: t.state.to_string(),
                    why: "no projector for this state".into(),
                });
            };
            if p.size() != d {
                return Err(Error::Shape {
                    op: "simulate",
                    expected: format!("projectors of side {d}"),
                    got: format!("state {} of side {}", t.state, p.size()),
                });
            }
            p.ht_slice(&t.rot, ht)?;
            match t.ctf {
                Some(c) => c.compute(&lattice.freqs, ctf)?,
                None => ctf.iter_mut().for_each(|v| *v = 1.0),
            }
            lattice.shift_and_modulate(ht, ctf, [-t.shift_px[0], -t.shift_px[1]], img);
            p.plan().iht2_center(img, scratch)
        },
    )
}

/// The white noise of the run: its σ is fixed by the first chunk's clean images (`var / SNR`).
struct Noise {
    snr: Option<f64>,
    sigma: Option<f64>,
    signal_variance: f64,
}

impl Noise {
    fn new(snr: Option<f64>) -> Self {
        Self { snr, sigma: snr.is_none().then_some(0.0), signal_variance: 0.0 }
    }

    /// Adds noise to the clean images of particles `start..` (each from its own stream).
    fn add(&mut self, seed: u64, start: usize, images: &mut [f32], d: usize) {
        if self.sigma.is_none() {
            let n = images.len() as f64;
            let mean = images.iter().map(|&v| v as f64).sum::<f64>() / n;
            self.signal_variance = images.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            self.sigma = self.snr.map(|snr| (self.signal_variance / snr).sqrt());
        }
        let sigma = self.sigma.unwrap_or(0.0) as f32;
        if sigma > 0.0 {
            images.par_chunks_mut(d * d).enumerate().for_each(|(j, img)| {
                let mut rng = particle_rng(seed, start + j, 1);
                img.iter_mut().for_each(|v| {
                    let z: f32 = StandardNormal.sample(&mut rng);
                    *v += sigma * z;
                });
            });
        }
    }
}

/// Mixture weights of `n_states` discrete states from the user's `--weights`: 1 each when none are
/// given, otherwise the given ones normalised to sum 1 (one per state, each ≥ 0, positive sum).
///
/// Errors: [`Error::Param`] naming `--weights` when the count differs from `n_states` or a weight is
/// negative or not finite, or they sum to 0.
pub fn mixture_weights(given: &[f64], n_states: usize) -> Result<Vec<f64>> {
    if given.is_empty() {
        return Ok(vec![1.0; n_states]);
    }
    if given.len() != n_states {
        return Err(Error::Param {
            name: "--weights",
            value: format!("{} values", given.len()),
            why: format!("there are {n_states} states; give one weight per state"),
        });
    }
    let total: f64 = given.iter().sum();
    if given.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || total <= 0.0 {
        return Err(Error::Param {
            name: "--weights",
            value: format!("{given:?}"),
            why: "weights must be ≥ 0 with a positive sum".into(),
        });
    }
    Ok(given.iter().map(|w| w / total).collect())
}

/// Validates the configuration; returns the number of states and the cumulative state probabilities.
fn check(cfg: &SimConfig, states: &States<'_>) -> Result<(usize, Vec<f64>)> {
    let bad =
        |name: &'static str, value: String, why: &str| Err(Error::Param { name, value, why: why.into() });
    if let Some(snr) = cfg.snr {
        if !(snr.is_finite() && snr > 0.0) {
            return bad("SNR", snr.to_string(), "must be > 0 (omit it for noiseless images)");
        }
    }
    if !(cfg.apix.is_finite() && cfg.apix > 0.0) {
        return bad("pixel size (Å)", cfg.apix.to_string(), "must be > 0");
    }
    if !(cfg.max_shift_px.is_finite() && cfg.max_shift_px >= 0.0) {
        return bad("max shift (px)", cfg.max_shift_px.to_string(), "must be ≥ 0");
    }
    if let Some(r) = &cfg.rotations {
        if r.len() != cfg.n {
            return bad(
                "rotations",
                format!("{} given", r.len()),
                &format!("need one per particle ({})", cfg.n),
            );
        }
    }
    match &cfg.ctf {
        Some(CtfSource::Random(c)) => {
            if !(c.defocus_min_a <= c.defocus_max_a && c.astigmatism_a >= 0.0) {
                return bad(
                    "defocus range",
                    format!("{}–{} Å", c.defocus_min_a, c.defocus_max_a),
                    "needs min ≤ max and astigmatism ≥ 0",
                );
            }
            ctf_params(c, cfg.apix, c.defocus_min_a, c.defocus_min_a, 0.0).validate()?;
        }
        Some(CtfSource::Rows(rows)) => {
            if rows.is_empty() {
                return bad("CTF rows", "0".into(), "need at least one row to draw from");
            }
            for r in rows {
                CtfParams { angpix: cfg.apix, ..*r }.validate()?;
            }
        }
        None => {}
    }
    let (count, weights) = match states {
        States::Projectors { projectors, weights } => (projectors.len(), weights),
        States::OnDemand { weights, .. } => (weights.len(), weights),
    };
    if count == 0 || weights.len() != count {
        return bad(
            "states",
            format!("{count} states, {} weights", weights.len()),
            "need ≥ 1 state and one weight each",
        );
    }
    let total: f64 = weights.iter().sum();
    if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || total <= 0.0 {
        return bad("mixture weights", format!("{weights:?}"), "must be ≥ 0 with a positive sum");
    }
    let mut acc = 0.0;
    Ok((
        count,
        weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect(),
    ))
}

fn ctf_params(c: &CtfDistribution, apix: f32, u: f32, v: f32, angle: f32) -> CtfParams {
    CtfParams {
        angpix: apix,
        defocus_u_a: u,
        defocus_v_a: v,
        defocus_angle_deg: angle,
        voltage_kv: c.voltage_kv,
        cs_mm: c.cs_mm,
        amp_contrast: c.amp_contrast,
        phase_shift_deg: c.phase_shift_deg,
        bfactor: None,
        scale: 1.0,
    }
}

/// The random stream of particle `i`: stream 0 for its parameters, 1 for its noise.
fn particle_rng(seed: u64, i: usize, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(2 * i as u64 + stream);
    rng
}

fn draw(cfg: &SimConfig, i: usize, n_states: usize, cumulative: &[f64]) -> ParticleTruth {
    let mut rng = particle_rng(cfg.seed, i, 0);
    let u: f64 = rng.random();
    let state = cumulative.iter().position(|&c| u < c).unwrap_or(n_states - 1);
    let rot = match &cfg.rotations {
        Some(r) => r[i],
        None => random_rotation(&mut rng),
    };
    let m = cfg.max_shift_px;
    let shift_px = if m > 0.0 { [rng.random_range(-m..=m), rng.random_range(-m..=m)] } else { [0.0, 0.0] };
    let ctf = cfg.ctf.as_ref().map(|source| match source {
        CtfSource::Random(c) => {
            let u = c.defocus_min_a + (c.defocus_max_a - c.defocus_min_a) * rng.random::<f32>();
            let v = u - c.astigmatism_a * rng.random::<f32>();
            ctf_params(c, cfg.apix, u, v, 180.0 * rng.random::<f32>())
        }
        CtfSource::Rows(rows) => {
            let row = if rows.len() == cfg.n { i } else { rng.random_range(0..rows.len()) };
            CtfParams { angpix: cfg.apix, ..rows[row] }
        }
    });
    ParticleTruth { state, rot, shift_px, ctf }
}

/// Frequencies of the `D × D` centred grid and the mirror index for `H(−k)`.
struct HalfLattice {
    d: usize,
    freqs: Vec<f32>,
}

impl HalfLattice {
    fn new(d: usize) -> Self {
        let h = (d / 2) as f32;
        let freqs = (0..d * d)
            .flat_map(|i| [((i % d) as f32 - h) / d as f32, ((i / d) as f32 - h) / d as f32])
            .collect();
        Self { d, freqs }
    }

    /// `out = −CTF·(HT shifted by s)`: `H′(k) = cos(2πk·s)H(k) + sin(2πk·s)H(−k)` (image moved by `+s`), with
    /// `−k` at `((D − y) mod D, (D − x) mod D)` on the periodic `D × D` grid, then the contrast inversion.
    fn shift_and_modulate(&self, ht: &[f32], ctf: &[f32], s: [f32; 2], out: &mut [f32]) {
        let d = self.d;
        let tau = std::f32::consts::TAU;
        for (i, o) in out.iter_mut().enumerate() {
            let (y, x) = (i / d, i % d);
            let mirror = ((d - y) % d) * d + (d - x) % d;
            let (kx, ky) = (self.freqs[2 * i], self.freqs[2 * i + 1]);
            let (sn, cs) = (tau * (kx * s[0] + ky * s[1])).sin_cos();
            *o = -ctf[i] * (cs * ht[i] + sn * ht[mirror]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backproject::{BackprojectConfig, Backprojector};
    use crate::fsc::fsc;
    use crate::hartley::{symmetrize_ht, HartleyPlan};
    use crate::phantom::HingePhantom;
    use crate::pose::Pose;

    #[test]
    fn mixture_weights_default_normalise_and_reject() {
        assert_eq!(mixture_weights(&[], 3).unwrap(), vec![1.0; 3]);
        assert_eq!(mixture_weights(&[1.0, 3.0], 2).unwrap(), vec![0.25, 0.75]);
        assert!(matches!(mixture_weights(&[1.0, 2.0], 1), Err(Error::Param { name: "--weights", .. })));
        assert!(matches!(mixture_weights(&[1.0, -1.0], 2), Err(Error::Param { .. })));
        assert!(matches!(mixture_weights(&[0.0, 0.0], 2), Err(Error::Param { .. })));
        assert!(matches!(mixture_weights(&[f64::NAN, 1.0], 2), Err(Error::Param { .. })));
    }

    fn sym_hts(imgs: &[f32], d: usize) -> Vec<f32> {
        let mut ht = imgs.to_vec();
        HartleyPlan::new(d).unwrap().ht2_center_batch(&mut ht).unwrap();
        let mut out = vec![0.0; imgs.len() / (d * d) * (d + 1) * (d + 1)];
        symmetrize_ht(&ht, d, &mut out).unwrap();
        out
    }

    /// Simulates and backprojects (images inverted as cryoDRGN's default, poses, shifts, CTF `mul`).
    fn round_trip(cfg: &SimConfig, truth: &[f32], d: usize) -> (Vec<f64>, SimSummary) {
        let proj = [Projector::new(truth, d, 2).unwrap()];
        let states = States::Projectors { projectors: &proj, weights: vec![1.0] };
        let bp =
            Backprojector::new(BackprojectConfig { half_maps: false, ..BackprojectConfig::new(d) }).unwrap();
        let mut acc = bp.accumulator();
        let summary = simulate::<Error>(cfg, &states, |c| {
            let inverted: Vec<f32> = c.images.iter().map(|v| -v).collect();
            let poses: Vec<Pose> =
                c.truth.iter().map(|t| Pose { rot: t.rot, shift_px: t.shift_px }).collect();
            let ctf: Option<Vec<CtfParams>> = c.truth.iter().map(|t| t.ctf).collect();
            bp.add_batch(&mut acc, &sym_hts(&inverted, d), &poses, ctf.as_deref())
        })
        .unwrap();
        (fsc(&bp.finish(&acc).unwrap().volume, truth, d, None).unwrap().fsc, summary)
    }

    fn ctf_config(n: usize) -> SimConfig {
        SimConfig {
            ctf: Some(CtfSource::Random(CtfDistribution {
                defocus_min_a: 5_000.0,
                defocus_max_a: 15_000.0,
                ..Default::default()
            })),
            max_shift_px: 3.0,
            chunk: 700,
            seed: 7,
            ..SimConfig::new(n, 3.0)
        }
    }

    #[test]
    fn noiseless_ctf_stack_backprojects_to_the_volume() {
        let d = 32;
        let truth = HingePhantom::new(d).unwrap().volume(0.5).unwrap();
        let (curve, s) = round_trip(&ctf_config(2000), &truth, d);
        assert_eq!(s.noise_sigma, 0.0);
        // Shells up to 0.8 Nyquist (0.4 px⁻¹ = shell 12 at D = 32); positive: the contrast convention holds.
        assert!(curve[..=12].iter().all(|&c| c >= 0.9), "FSC {curve:?}");
    }

    #[test]
    fn more_noisy_images_give_a_better_map() {
        let d = 32;
        let truth = HingePhantom::new(d).unwrap().volume(0.0).unwrap();
        let mean = |c: &[f64]| c[1..12].iter().sum::<f64>() / 11.0;
        let few = round_trip(&SimConfig { snr: Some(0.1), ..ctf_config(200) }, &truth, d).0;
        let (many, s) = round_trip(&SimConfig { snr: Some(0.1), ..ctf_config(2000) }, &truth, d);
        assert!((s.noise_sigma.powi(2) * 0.1 - s.signal_variance).abs() < 1e-6 * s.signal_variance);
        assert!(mean(&many) > mean(&few) + 0.1, "{} vs {}", mean(&many), mean(&few));
    }

    #[test]
    fn shift_convention_and_determinism() {
        // One blob at the centre, no CTF: the raw image is −projection moved by −t, so its darkest pixel sits
        // at centre − t; chunking does not change any image.
        let d = 32;
        let blob = [crate::density::GaussianBlob { center: [0.0; 3], sigma: 1.5, amplitude: 100.0 }];
        let vol = crate::density::render_blobs(&blob, d, 1.0).unwrap();
        let proj = [Projector::new(&vol, d, 2).unwrap()];
        let states = States::Projectors { projectors: &proj, weights: vec![1.0] };
        let collect = |chunk: usize| {
            let cfg = SimConfig { max_shift_px: 5.0, chunk, seed: 3, ..SimConfig::new(5, 1.0) };
            let mut out = (vec![], vec![]);
            simulate::<Error>(&cfg, &states, |c| {
                out.0.extend_from_slice(c.images);
                out.1.extend_from_slice(c.truth);
                Ok(())
            })
            .unwrap();
            out
        };
        let (imgs, truth) = collect(5);
        assert_eq!(collect(2).0, imgs);
        for (img, t) in imgs.chunks_exact(d * d).zip(&truth) {
            let at = img.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            let (x, y) = ((at % d) as f32 - 16.0, (at / d) as f32 - 16.0);
            assert!(
                (x + t.shift_px[0]).abs() <= 0.5 && (y + t.shift_px[1]).abs() <= 0.5,
                "min at ({x}, {y}), t = {:?}",
                t.shift_px
            );
        }
    }

    #[test]
    fn ctf_rows_are_taken_in_order_or_drawn_from_the_dataset() {
        let d = 16;
        let vol = HingePhantom::new(d).unwrap().volume(0.0).unwrap();
        let proj = [Projector::new(&vol, d, 1).unwrap()];
        let states = States::Projectors { projectors: &proj, weights: vec![1.0] };
        let rows: Vec<CtfParams> = (0..5)
            .map(|k| ctf_params(&CtfDistribution::default(), 1.0, 1e4 + 1e3 * k as f32, 9e3, 10.0 * k as f32))
            .collect();
        let truth_of = |n: usize, rows: Vec<CtfParams>| {
            let cfg = SimConfig { ctf: Some(CtfSource::Rows(rows)), ..SimConfig::new(n, 2.5) };
            let mut out = vec![];
            simulate::<Error>(&cfg, &states, |c| {
                out.extend(c.truth.iter().map(|t| t.ctf.unwrap()));
                Ok(())
            })
            .map(|_| out)
        };
        // One row per particle: row i for particle i, at the simulation's pixel size.
        let same = truth_of(5, rows.clone()).unwrap();
        for (got, want) in same.iter().zip(&rows) {
            assert_eq!(*got, CtfParams { angpix: 2.5, ..*want });
        }
        // More particles than rows: every particle gets one of the rows, and all rows are used.
        let drawn = truth_of(200, rows.clone()).unwrap();
        let used: Vec<usize> =
            drawn.iter().map(|c| rows.iter().position(|r| r.defocus_u_a == c.defocus_u_a).unwrap()).collect();
        assert!((0..5).all(|k| used.contains(&k)), "{used:?}");
        assert!(matches!(truth_of(3, vec![]), Err(Error::Param { .. })));
    }

    #[test]
    fn mixture_weights_and_on_demand_states() {
        let d = 16;
        let ph = HingePhantom::new(d).unwrap();
        let make = |k: usize| Projector::new(&ph.volume(ph.state(k, 3)?)?, d, 1);
        let store = MemoryStore::new(1200, d);
        let states = States::OnDemand { d, weights: vec![1.0; 3], make: &make, group: 2, store: &store };
        let mut counts = [0usize; 3];
        let cfg = SimConfig { chunk: 400, ..SimConfig::new(1200, 2.0) };
        simulate::<Error>(&cfg, &states, |c| {
            c.truth.iter().for_each(|t| counts[t.state] += 1);
            Ok(())
        })
        .unwrap();
        assert!(counts.iter().all(|&c| (330..470).contains(&c)), "{counts:?}");
        let p: Vec<Projector> = (0..2).map(|k| make(k).unwrap()).collect();
        let states = States::Projectors { projectors: &p, weights: vec![1.0, 3.0] };
        let mut ones = 0;
        simulate::<Error>(&cfg, &states, |c| {
            ones += c.truth.iter().filter(|t| t.state == 1).count();
            Ok(())
        })
        .unwrap();
        assert!((840..960).contains(&ones), "{ones} of 1200 in state 1 (expected 900)");
        assert!(matches!(
            simulate::<Error>(&SimConfig { snr: Some(0.0), ..cfg.clone() }, &states, |_| Ok(())),
            Err(Error::Param { .. })
        ));
        let store = MemoryStore::new(10, d);
        let missing = States::OnDemand { d, weights: vec![], make: &make, group: 1, store: &store };
        assert!(matches!(simulate::<Error>(&cfg, &missing, |_| Ok(())), Err(Error::Param { .. })));
        let t = ParticleTruth {
            state: 0,
            rot: crate::rotation::IDENTITY,
            shift_px: [0.0; 2],
            ctf: Some(ctf_params(&CtfDistribution::default(), 2.0, 1e4, 9e3, 30.0)),
        };
        assert_eq!(t.ctf_row(64).unwrap(), [64.0, 2.0, 1e4, 9e3, 30.0, 300.0, 2.7, 0.1, 0.0]);
    }

    /// States built on demand, a group at a time and rendered state by state, give the very images of
    /// held projectors: same draws, same noise streams, same σ.
    #[test]
    fn on_demand_states_give_the_images_of_held_ones() {
        let d = 16;
        let ph = HingePhantom::new(d).unwrap();
        let make = |k: usize| Projector::new(&ph.volume(ph.state(k, 5)?)?, d, 1);
        let held: Vec<Projector> = (0..5).map(|k| make(k).unwrap()).collect();
        let weights = vec![1.0, 2.0, 0.0, 1.0, 3.0];
        let cfg = SimConfig { snr: Some(0.5), chunk: 37, ..ctf_config(150) };
        let run = |states: &States<'_>| {
            let mut out = (vec![], vec![]);
            let s = simulate::<Error>(&cfg, states, |c| {
                out.0.extend_from_slice(c.images);
                out.1.extend_from_slice(c.truth);
                Ok(())
            })
            .unwrap();
            (out, s)
        };
        let want = run(&States::Projectors { projectors: &held, weights: weights.clone() });
        for group in [1, 2, 5] {
            let store = MemoryStore::new(cfg.n, d);
            let got =
                run(&States::OnDemand { d, weights: weights.clone(), make: &make, group, store: &store });
            assert!(got.0 .1 == want.0 .1, "group {group}: ground truth differs");
            assert!(got.0 .0 == want.0 .0, "group {group}: images differ");
            assert_eq!(got.1, want.1);
        }
    }
}
