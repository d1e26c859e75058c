//! `eval-vol`: maps from a trained model at chosen latents (cryoDRGN `eval_vol`).
//!
//! Latents: `-z` (one point), `--z-start/--z-end/-n` (n evenly spaced points, ends included), or
//! `--zfile` (text, one latent per row, or a z.pkl). A homogeneous model needs none. Output: `-o vol.mrc`
//! for a single map, otherwise `-o dir/` with `{prefix}{i:03}.mrc` from `--vol-start-index`. Pixel size and
//! post-processing: see [`drgnfly_nn::volume`]; a missing ctf.pkl is warned about here.
//!
//! Example usage:
//!   drgnfly eval-vol out/weights.25.safetensors -c out/config.yaml --zfile z_values.txt -o vols/

use super::compat::{log_notes, DeviceCompat};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_nn::volume::{VolumeDecoder, VolumeRequest};

use crate::progress::Progress;

/// Generate volumes from a trained model.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly eval-vol out/weights.25.safetensors -c out/config.yaml -z 0.1 -0.5 -o vol.mrc\n  \
                  drgnfly eval-vol out/weights.25.safetensors -c out/config.yaml --zfile z.txt -o vols/ --Apix 1.3"
)]
pub struct Args {
    /// Model weights (weights.N.safetensors, or cryoDRGN's weights.N.pkl).
    pub weights: PathBuf,
    /// The run's config.yaml.
    #[arg(short = 'c', long)]
    pub config: PathBuf,
    /// Output: a .mrc file for one volume, else a directory.
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// File name prefix of volumes in a directory.
    #[arg(long, default_value = "vol_")]
    pub prefix: String,
    /// One latent (zdim values).
    #[arg(short = 'z', num_args = 1.., allow_negative_numbers = true, conflicts_with_all = ["z_start", "zfile"])]
    pub z: Option<Vec<f32>>,
    /// First latent of a straight path.
    #[arg(long, num_args = 1.., allow_negative_numbers = true, requires = "z_end", conflicts_with = "zfile")]
    pub z_start: Option<Vec<f32>>,
    /// Last latent of the path.
    #[arg(long, num_args = 1.., allow_negative_numbers = true, requires = "z_start")]
    pub z_end: Option<Vec<f32>>,
    /// Number of volumes along the path.
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// Latents, one per row (text, whitespace-separated; or a z.pkl).
    #[arg(long)]
    pub zfile: Option<PathBuf>,
    /// Pixel size in Å (default: from the run's ctf.pkl, else 1).
    #[arg(long = "Apix")]
    pub apix: Option<f32>,
    /// Flip handedness (reverse the z axis).
    #[arg(long)]
    pub flip: bool,
    /// Invert contrast.
    #[arg(long)]
    pub invert: bool,
    /// Box size of downsampled volumes (even, ≤ D).
    #[arg(short = 'd', long)]
    pub downsample: Option<usize>,
    /// Low-pass filter to this resolution (Å).
    #[arg(long)]
    pub low_pass: Option<f32>,
    /// Crop the centre box to this size (pixels).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Number of the first volume in a directory.
    #[arg(long, default_value_t = 1)]
    pub vol_start_index: usize,
    #[command(flatten)]
    pub device: DeviceCompat,
}

/// Generate.
pub fn run(args: Args) -> Result<()> {
    log_notes(args.device.note());
    let model = VolumeDecoder::load(&args.weights, &args.config)?;
    if let Some(warning) = model.pixel_size_source().warning() {
        tracing::warn!("{warning}");
    }
    let zdim = model.zdim();
    let zs = latents(&args, zdim)?;
    let request = VolumeRequest {
        apix: args.apix,
        flip: args.flip,
        invert: args.invert,
        downsample: args.downsample,
        low_pass_a: args.low_pass,
        crop: args.crop,
    };
    let single_file = args.output.extension().is_some_and(|e| e.eq_ignore_ascii_case("mrc"));
    if single_file && zs.len() == 1 {
        let vol = model.volume(&zs[0], &request)?;
        vol.write(&args.output)?;
        say!("{}: {}³ map, {} Å/px", args.output.display(), vol.d, vol.apix);
        return Ok(());
    }
    if single_file {
        bail!("-o {}: {} volumes need an output directory, not a .mrc file", args.output.display(), zs.len());
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut progress = Progress::new("eval-vol", zs.len() as u64, "volumes");
    for (i, z) in zs.iter().enumerate() {
        let path = args.output.join(format!("{}{:03}.mrc", args.prefix, i + args.vol_start_index));
        model.volume(z, &request)?.write(&path)?;
        progress.inc(1);
    }
    progress.finish();
    say!("{}: {} volumes", args.output.display(), zs.len());
    Ok(())
}

/// The latents asked for, each of length zdim (one empty latent for a homogeneous model).
fn latents(args: &Args, zdim: usize) -> Result<Vec<Vec<f32>>> {
    let given = args.z.is_some() || args.z_start.is_some() || args.zfile.is_some();
    if zdim == 0 {
        if given {
            bail!("the model is homogeneous (no latent): drop -z/--z-start/--zfile");
        }
        return Ok(vec![Vec::new()]);
    }
    let check = |what: &str, v: &[f32]| -> Result<()> {
        if v.len() != zdim {
            bail!("{what} has {} values but the model's zdim is {zdim}", v.len());
        }
        if v.iter().any(|x| !x.is_finite()) {
            bail!("{what} holds a NaN or infinite value");
        }
        Ok(())
    };
    if let Some(z) = &args.z {
        check("-z", z)?;
        return Ok(vec![z.clone()]);
    }
    if let (Some(a), Some(b)) = (&args.z_start, &args.z_end) {
        check("--z-start", a)?;
        check("--z-end", b)?;
        if args.n == 0 {
            bail!("-n must be at least 1");
        }
        let steps = (args.n.max(2) - 1) as f32;
        return Ok((0..args.n)
            .map(|i| a.iter().zip(b).map(|(&s, &e)| s + (e - s) * i as f32 / steps).collect())
            .collect());
    }
    if let Some(path) = &args.zfile {
        return read_zfile(path, zdim);
    }
    bail!("the model has zdim {zdim}: give -z, --z-start/--z-end or --zfile")
}

/// A z file: a z.pkl (z_mu), or text with one latent per row (`np.loadtxt`; `#` comments).
fn read_zfile(path: &Path, zdim: usize) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<Vec<f32>> = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("pkl")) {
        let (z, k, _) = drgnfly_io::pickle::load_latents(path)?;
        z.chunks_exact(k).map(<[f32]>::to_vec).collect()
    } else {
        let text = drgnfly_io::input::read_text(path, "z values (.txt)")?;
        let mut rows = Vec::new();
        for (ln, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let row = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<f32>())
                .collect::<Result<Vec<f32>, _>>()
                .with_context(|| format!("{} line {}: not a row of numbers", path.display(), ln + 1))?;
            rows.push(row);
        }
        rows
    };
    if rows.is_empty() {
        bail!("{}: no latents", path.display());
    }
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != zdim) {
        bail!("{} row {}: {} values, but the model's zdim is {zdim}", path.display(), i + 1, r.len());
    }
    if let Some(i) = rows.iter().position(|r| r.iter().any(|x| !x.is_finite())) {
        bail!("{} row {}: NaN or infinite value", path.display(), i + 1);
    }
    Ok(rows)
}
