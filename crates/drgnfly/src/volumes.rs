//! Volumes from a trained model: the one path shared by `eval-vol`, `analyze`, `train-nn` and
//! `analyze-convergence`.

use std::path::{Path, PathBuf};

/// Post-processing of generated volumes (cryoDRGN's eval_vol flags).
#[derive(Clone, Debug, Default)]
pub struct VolumeRequest {
    /// Pixel size written into the headers (Å/px) of the full-size volume; scaled by D/d when downsampled.
    pub apix: Option<f32>,
    /// Reverse the z axis (`--flip`).
    pub flip: bool,
    /// Multiply by −1 (`--invert`).
    pub invert: bool,
    /// Evaluate only the lowest frequencies, giving a d³ volume (`-d`).
    pub downsample: Option<usize>,
    /// Low-pass filter to this resolution in Å (`--low-pass`).
    pub low_pass_a: Option<f32>,
    /// Crop the centre to this box (`--crop`).
    pub crop: Option<usize>,
}

/// Decode one volume per row of `z` (N × zdim; empty with zdim 0 for homogeneous models) from the checkpoint
/// `weights` and its `config`, writing `out_dir/{prefix}{i:03}.mrc` with i from 1. Returns the paths written.
pub fn generate_volumes(
    weights: &Path,
    config: &Path,
    z: &[f32],
    zdim: usize,
    out_dir: &Path,
    prefix: &str,
    request: &VolumeRequest,
) -> anyhow::Result<Vec<PathBuf>> {
    let _ = (weights, config, z, zdim, out_dir, prefix, request);
    anyhow::bail!("volume generation is being implemented (see eval-vol)")
}
