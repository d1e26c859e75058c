//! Image-formation physics and classical reconstruction.
//!
//! The tour: [`hartley::HartleyPlan`] (centred Hartley transforms, planned once, parallel over batches) and
//! [`fft::CenteredFft`]; the symmetrized Fourier [`lattice::Lattice`] with its circular masks;
//! [`window`] and [`mask`] (image windows, volume masks); the [`ctf::CtfParams`] CTF; [`rotation`]
//! conventions and pose metrics; [`pose::Pose`] (rotation + shift in pixels, and pose.pkl's
//! fraction ↔ pixel conversion); [`translate`] (phase shifts); [`grid`], cryoDRGN2's SO(3) and shift
//! pose-search grids; [`preprocess::Preprocessor`], the particle pipeline (window → invert → Hartley →
//! symmetrize → normalize); and [`cpu`], the bf16 matrix products (AVX-512 or AMX) that the search and the
//! decoder share.
//!
//! ```
//! use drgnfly_em::{hartley::{symmetrize_ht, HartleyPlan}, lattice::Lattice};
//! let d = 64;
//! let plan = HartleyPlan::new(d).unwrap();
//! let mut batch = vec![0.0f32; 3 * d * d]; // three images, (B, D, D)
//! plan.ht2_center_batch(&mut batch).unwrap();
//! let mut sym = vec![0.0f32; 3 * (d + 1) * (d + 1)];
//! symmetrize_ht(&batch, d, &mut sym).unwrap();
//! let mask = Lattice::new(d + 1, 0.5).unwrap().circular_mask((d / 2) as f32, true);
//! assert_eq!(mask.len(), 3208);
//! ```
//!
//! # Conventions
//!
//! Bit-compatible with cryoDRGN unless stated; module docs link here instead of restating these.
//!
//! **Array order.** Row-major, last axis fastest: images `[y][x]` (`img[y * D + x]`), volumes `[z][y][x]`,
//! batches `(B, D, D)` as one contiguous buffer. Storage is f32; rotations are f64 [`rotation::Mat3`].
//!
//! **Centre.** For a D-pixel box (D even) the origin is index `D/2` on every axis, in real space and in
//! frequency space (`fftshift(fft(fftshift(x)))`, see [`fft`]).
//!
//! **Hartley transform.** `H = Re F − Im F` of the centred FFT `F` ([`hartley::HartleyPlan::ht2_center`]),
//! i.e. `H(k) = Σ_x x(x)·cas(2π (k − c)·(x − c)/D)`. Forward transforms are unnormalised; inverses divide by
//! `D²` (2D) or `D³` (3D), so `iht2_center(ht2_center(x)) = x` and the transform is its own inverse up to
//! that factor. The centred complex FFTs scale the same way.
//!
//! **Symmetrized lattice.** A `D × D` Hartley image becomes `(D+1) × (D+1)` by appending a copy of row 0
//! as row D and of column 0 as column D ([`hartley::symmetrize_ht`]): the −Nyquist row/column is duplicated
//! as +Nyquist so the grid is symmetric about its centre `(D/2, D/2)`, and the value at −k is at flat index
//! `(D+1)² − 1 − i`. Worked example, D = 4 (entries are the flat indices of the 4×4 input):
//!
//! ```text
//!   4×4 HT            5×5 symmetrized        lattice coordinate (extent 0.5) of each column/row
//!   0  1  2  3        0  1  2  3  0          x: −0.5  −0.25  0  0.25  0.5
//!   4  5  6  7        4  5  6  7  4          centre (DC) = row 2, column 2 = flat index 12 = 25/2
//!   8  9 10 11   →    8  9 10 11  8          flat i ↔ 24 − i is the k ↔ −k pair, e.g. 6 (x −0.25, y −0.25)
//!  12 13 14 15       12 13 14 15 12                               ↔ 18 (x 0.25, y 0.25)
//!                     0  1  2  3  0
//! ```
//!
//! **Lattice and frequency units.** [`lattice::Lattice`]`(D+1, extent)` has coordinates
//! `linspace(−extent, extent, D+1)` in x (columns, fast) and y (rows), z = 0; the decoder uses extent 0.5.
//! `freqs2d = coords / extent / 2` are in **cycles per pixel** of the D-pixel image (±0.5 = Nyquist, step
//! 1/D); divide by the pixel size (Å/px) for 1/Å, as the CTF does ([`ctf`]).
//!
//! **Poses.** A pose `(R, t)`: the image's Fourier slice is the volume's transform at `Rᵀ·(kx, ky, 0)` (in
//! cryoDRGN code, row vectors `coords @ R`). `t = (tx, ty)` in pixels is the shift that **centres** the
//! observed image: translating the observed image by `+t` ([`translate::translate_ht`], which produces
//! `img(x − t)`) gives the centred projection. RELION Euler angles map to `R` with RELION's own ZYZ matrix
//! ([`rotation::relion`]); cryoSPARC axis-angle `v` to `R = exp([v]×)ᵀ` ([`rotation::cryosparc`]).
//!
//! **Translations in pose.pkl.** cryoDRGN stores `t` as a fraction of the box and multiplies by `D + 1`
//! when loading (and divides by `D + 1` when saving) instead of `D`, an ≈0.8% scale error at D = 128. This
//! crate takes translations **in pixels** everywhere; converting from a file is the caller's choice at
//! the boundary: `t_px = t_frac · D` is the physically right factor, `t_frac · (D + 1)` reproduces
//! cryoDRGN bit for bit. drgnfly reads and writes cryoDRGN's files either way; its default is `D`
//! (DESIGN.md: do the right thing where cryoDRGN is wrong, and say so).

pub mod backproject;
pub mod cpu;
pub mod ctf;
pub mod density;
pub mod downsample;
pub mod error;
pub mod fft;
pub mod filter;
pub mod fsc;
pub mod grid;
pub mod hartley;
pub mod lattice;
pub mod mask;
pub mod phantom;
pub mod pose;
pub mod preprocess;
pub mod project;
pub mod rotation;
pub mod search;
pub mod simulate;
pub mod translate;
pub mod window;

#[cfg(test)]
mod testdata;

pub use error::{Error, Result};
