//! Positional encodings of 3D lattice coordinates (cryoDRGN `positional_encoding_geom`, reference §3.3).
//!
//! Coordinates c ∈ [−0.5, 0.5]³ are lattice frequencies (extent 0.5). With D_lat the odd lattice size,
//! D2 = D_lat/2 (integer division, = D/2) and K = `pe_dim`, the angular frequencies for j = 0…K−1 and
//! t = j/(K−1) are
//!
//! | kind | f_j | range |
//! |---|---|---|
//! | `geom_ft` | D·π·(2/D)^t | Dπ … 2π |
//! | `geom_full` | D·π·(1/(D·π))^t | Dπ … 1 |
//! | `geom_lowf` | D2·(1/D2)^t | D/2 … 1 |
//! | `geom_nohighf` | D2·(2π/D2)^t | D/2 … 2π |
//! | `linear_lowf` | 1, 2, …, D2 (K must equal D2) | |
//!
//! (D = 2·D2.) Feature order for these: x block [sin(c_x f_0 … f_{K−1}), cos(c_x f_0 … f_{K−1})], then the y
//! block, then the z block: 6K features. `gaussian` uses a frozen matrix B (3K×3) ~ N(0, feat_sigma²), stored as
//! the tensor `rand_freqs` (cryoDRGN's `decoder.rand_freqs`), and gives [sin(D2·B c) (3K), cos(D2·B c) (3K)].
//! `none` passes the 3 coordinates through. The latent z is appended raw by the decoder, so the decoder input
//! width is [`PositionalEncoding::out_dim`] + zdim (6K + zdim, or 3 + zdim for `none`).

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which positional encoding, with cryoDRGN's spellings (`--pe-type`, config key `pe_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeType {
    /// Geometric series D·π … 2π.
    GeomFt,
    /// Geometric series D·π … 1.
    GeomFull,
    /// Geometric series D/2 … 1.
    GeomLowf,
    /// Geometric series D/2 … 2π.
    GeomNohighf,
    /// Integers 1 … D/2.
    LinearLowf,
    /// Random Fourier features with σ = feat_sigma (cryoDRGN's default).
    Gaussian,
    /// Raw coordinates.
    None,
}

impl PeType {
    /// Every kind, in cryoDRGN's `--pe-type` choices order.
    pub const ALL: [PeType; 7] = [
        PeType::GeomFt,
        PeType::GeomFull,
        PeType::GeomLowf,
        PeType::GeomNohighf,
        PeType::LinearLowf,
        PeType::Gaussian,
        PeType::None,
    ];

    /// cryoDRGN's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PeType::GeomFt => "geom_ft",
            PeType::GeomFull => "geom_full",
            PeType::GeomLowf => "geom_lowf",
            PeType::GeomNohighf => "geom_nohighf",
            PeType::LinearLowf => "linear_lowf",
            PeType::Gaussian => "gaussian",
            PeType::None => "none",
        }
    }
}

impl fmt::Display for PeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PeType::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            let choices: Vec<_> = PeType::ALL.iter().map(|k| k.as_str()).collect();
            Error::config("pe_type", format!("unknown value `{s}`; choose one of {}", choices.join(", ")))
        })
    }
}

/// How the encoding maps coordinates to features.
#[derive(Clone, Debug)]
enum Frequencies {
    /// Per-axis angular frequencies, shape (K,).
    PerAxis(Tensor),
    /// Frozen random directions B (3K, 3), detached but sharing storage with the parameter, so loading
    /// a checkpoint into the store after construction updates it; and the scale D2.
    Gaussian(Tensor, f64),
    /// No encoding.
    Identity,
}

/// A positional encoding of (…, 3) coordinates into (…, [`Self::out_dim`]) features.
#[derive(Clone, Debug)]
pub struct PositionalEncoding {
    kind: PeType,
    pe_dim: usize,
    freqs: Frequencies,
}

impl PositionalEncoding {
    /// Build the encoding for lattice size `lattice_size` (D_lat = D + 1, odd) with K = `pe_dim` frequencies.
    /// For `gaussian`, `rand_freqs` (3K×3) is fetched from `vb` under the name `rand_freqs`
    /// (initialised N(0, feat_sigma²) in a fresh [`crate::ParamStore`], or loaded from a checkpoint) and
    /// detached, so it is saved with the model but never trained, as in cryoDRGN.
    pub fn new(
        kind: PeType,
        lattice_size: usize,
        pe_dim: usize,
        feat_sigma: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if lattice_size < 3 || lattice_size.is_multiple_of(2) {
            return Err(Error::config(
                "lattice D",
                format!("must be odd (image D + 1) and ≥ 3, got {lattice_size}"),
            ));
        }
        let d2 = lattice_size / 2;
        let dev = vb.device().clone();
        let freqs = match kind {
            PeType::None => Frequencies::Identity,
            PeType::Gaussian => {
                if pe_dim == 0 {
                    return Err(Error::config("pe_dim", "must be at least 1 for gaussian"));
                }
                if !(feat_sigma.is_finite() && feat_sigma > 0.0) {
                    return Err(Error::config("feat_sigma", format!("must be positive, got {feat_sigma}")));
                }
                let b = vb.get_with_hints(
                    (3 * pe_dim, 3),
                    "rand_freqs",
                    Init::Randn { mean: 0.0, stdev: feat_sigma },
                )?;
                Frequencies::Gaussian(b.detach(), d2 as f64)
            }
            PeType::LinearLowf => {
                if pe_dim != d2 {
                    return Err(Error::config(
                        "pe_dim",
                        format!("linear_lowf always uses D/2 = {d2} frequencies; set pe_dim to {d2} or leave it at its default"),
                    ));
                }
                Frequencies::PerAxis(per_axis(kind, d2, pe_dim, &dev)?)
            }
            _ => {
                if pe_dim < 2 {
                    return Err(Error::config(
                        "pe_dim",
                        format!("geometric encodings need at least 2 frequencies, got {pe_dim}"),
                    ));
                }
                Frequencies::PerAxis(per_axis(kind, d2, pe_dim, &dev)?)
            }
        };
        Ok(Self { kind, pe_dim, freqs })
    }

    /// The kind.
    pub fn kind(&self) -> PeType {
        self.kind
    }

    /// The encoding's constants for the fused network ([`crate::fused`]); `None` for `none`.
    pub(crate) fn fused_encoding(&self) -> Result<Option<crate::fused::Encoding>> {
        use crate::fused::Encoding;
        let values = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>();
        Ok(match &self.freqs {
            Frequencies::Identity => None,
            Frequencies::PerAxis(f) => Some(Encoding::PerAxis(values(f)?)),
            // Scaled exactly as `forward` scales it, so both paths see the same frequencies.
            Frequencies::Gaussian(b, d2) => Some(Encoding::Gaussian(values(&(b * *d2)?)?)),
        })
    }

    /// Number of features per point: 6·pe_dim, or 3 for `none`.
    pub fn out_dim(&self) -> usize {
        match self.freqs {
            Frequencies::Identity => 3,
            _ => 6 * self.pe_dim,
        }
    }

    /// Encode `coords` of shape (…, 3) into (…, out_dim) features (see the module docs for the order).
    pub fn forward(&self, coords: &Tensor) -> Result<Tensor> {
        let dims = coords.dims();
        if dims.last() != Some(&3) {
            return Err(Error::shape("positional encoding coords", "(…, 3)", dims));
        }
        let lead = &dims[..dims.len() - 1];
        let n: usize = lead.iter().product();
        let flat = coords.reshape((n, 3))?;
        let features = match &self.freqs {
            Frequencies::Identity => return Ok(coords.clone()),
            Frequencies::PerAxis(f) => {
                // (n, 3, 1) · (1, 1, K) → (n, 3, K); [sin | cos] along K keeps each axis' block together.
                let k = flat.unsqueeze(2)?.broadcast_mul(&f.reshape((1, 1, self.pe_dim))?)?;
                Tensor::cat(&[k.sin()?, k.cos()?], 2)?
            }
            Frequencies::Gaussian(b, d2) => {
                // k = D2 · B c for every random direction: (n, 3) @ (3, 3K).
                let k = flat.matmul(&(b * *d2)?.t()?)?;
                Tensor::cat(&[k.sin()?, k.cos()?], D::Minus1)?
            }
        };
        let mut out_shape = lead.to_vec();
        out_shape.push(self.out_dim());
        Ok(features.reshape(out_shape)?)
    }
}

/// The per-axis angular frequency table of a geometric or linear kind (module docs), as f32 (K,).
fn per_axis(kind: PeType, d2: usize, k: usize, dev: &Device) -> Result<Tensor> {
    use std::f64::consts::PI;
    let (dd, d2f) = ((2 * d2) as f64, d2 as f64);
    let f: Vec<f32> = (0..k)
        .map(|j| {
            let t = if k > 1 { j as f64 / (k - 1) as f64 } else { 0.0 };
            let f = match kind {
                PeType::GeomFt => dd * PI * (2.0 / dd).powf(t),
                PeType::GeomFull => dd * PI * (1.0 / (dd * PI)).powf(t),
                PeType::GeomLowf => d2f * (1.0 / d2f).powf(t),
                PeType::GeomNohighf => d2f * (2.0 * PI / d2f).powf(t),
                // linear_lowf (the only other caller): 1, 2, …, D2.
                _ => (j + 1) as f64,
            };
            f as f32
        })
        .collect();
    Ok(Tensor::from_vec(f, k, dev)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamStore;

    fn encode(kind: PeType, lattice: usize, k: usize, c: [f32; 3], store: &ParamStore) -> Result<Vec<f32>> {
        let pe = PositionalEncoding::new(kind, lattice, k, 0.5, store.var_builder())?;
        let x = Tensor::new(&[[c]], store.device())?;
        Ok(pe.forward(&x)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// Hand-written formula of the module docs for the geometric kinds.
    fn expected_geom(kind: PeType, lattice: usize, k: usize, c: [f32; 3]) -> Vec<f64> {
        use std::f64::consts::PI;
        let d2 = (lattice / 2) as f64;
        let dd = 2.0 * d2;
        let f = |j: usize| {
            let t = j as f64 / (k as f64 - 1.0);
            match kind {
                PeType::GeomFt => dd * PI * (2.0 / dd).powf(t),
                PeType::GeomFull => dd * PI * (1.0 / (dd * PI)).powf(t),
                PeType::GeomLowf => d2 * (1.0 / d2).powf(t),
                PeType::GeomNohighf => d2 * (2.0 * PI / d2).powf(t),
                _ => (j + 1) as f64,
            }
        };
        let mut out = Vec::new();
        for ca in c {
            out.extend((0..k).map(|j| (ca as f64 * f(j)).sin()));
            out.extend((0..k).map(|j| (ca as f64 * f(j)).cos()));
        }
        out
    }

    #[test]
    fn geometric_features_match_the_formula_and_order() -> Result<()> {
        let store = ParamStore::new(0, &Device::Cpu);
        let c = [0.3125f32, -0.125, 0.46875];
        for (kind, k) in [
            (PeType::GeomFt, 5),
            (PeType::GeomFull, 4),
            (PeType::GeomLowf, 6),
            (PeType::GeomNohighf, 3),
            (PeType::LinearLowf, 8),
        ] {
            let got = encode(kind, 17, k, c, &store)?;
            let want = expected_geom(kind, 17, k, c);
            assert_eq!(got.len(), 6 * k);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() < 2e-5, "{kind} feature {i}: {g} vs {w}");
            }
        }
        // Spot values: geom_ft at D_lat = 17 (D = 16): f_0 = 16π, f_{K-1} = 2π.
        let got = encode(PeType::GeomFt, 17, 5, [0.25, 0.0, 0.0], &store)?;
        assert!((got[0] - (4.0 * std::f32::consts::PI).sin()).abs() < 1e-5);
        assert!((got[4] - (0.5 * std::f32::consts::PI).sin()).abs() < 1e-6);
        assert!((got[9] - (0.5 * std::f32::consts::PI).cos()).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn gaussian_features_use_d2_times_rand_freqs() -> Result<()> {
        let store = ParamStore::new(11, &Device::Cpu);
        let c = [0.2f32, -0.4, 0.1];
        let got = encode(PeType::Gaussian, 33, 4, c, &store)?;
        let b = store.tensors()["rand_freqs"].to_vec2::<f32>()?;
        assert_eq!(b.len(), 12);
        let k: Vec<f64> =
            b.iter().map(|r| 16.0 * (0..3).map(|a| r[a] as f64 * c[a] as f64).sum::<f64>()).collect();
        let want: Vec<f64> = k.iter().map(|x| x.sin()).chain(k.iter().map(|x| x.cos())).collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((*g as f64 - w).abs() < 2e-5, "gaussian feature {i}: {g} vs {w}");
        }
        Ok(())
    }

    #[test]
    fn spellings_and_bad_settings() {
        for kind in PeType::ALL {
            assert_eq!(kind.as_str().parse::<PeType>().ok(), Some(kind));
        }
        assert!(matches!("fourier".parse::<PeType>(), Err(Error::Config { field: "pe_type", .. })));
        let vb = ParamStore::new(0, &Device::Cpu).var_builder();
        assert!(matches!(
            PositionalEncoding::new(PeType::LinearLowf, 65, 8, 0.5, vb.clone()),
            Err(Error::Config { field: "pe_dim", .. })
        ));
        assert!(matches!(PositionalEncoding::new(PeType::GeomFt, 64, 8, 0.5, vb), Err(Error::Config { .. })));
    }
}
