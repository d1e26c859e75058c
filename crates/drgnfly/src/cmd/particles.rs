//! Opening the particle input of the physics commands (`backproject`, `phase-flip`, `downsample`): the file,
//! `--datadir`, an `--ind` selection and `--first N`, with the metadata files checked against it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{ParticleSource, SourceOptions};

/// Particle-input flags shared by the physics commands.
pub struct ParticleInput<'a> {
    /// .mrcs, .txt, .star or .cs.
    pub path: &'a Path,
    /// Where the stacks of a listing file live.
    pub datadir: Option<&'a PathBuf>,
    /// Index selection (.pkl or .txt), applied before `first`.
    pub ind: Option<&'a PathBuf>,
    /// Keep only the first N selected particles.
    pub first: Option<usize>,
}

/// An opened input: the source (positions after `--ind`/`--first`) and the number of rows of the file,
/// which per-particle metadata (ctf.pkl, pose.pkl) must match.
pub struct Particles {
    /// The images, positions `0..len()`.
    pub source: Arc<ParticleSource>,
    /// Rows of the input file before any selection.
    pub n_rows: usize,
}

/// Open the input with its selection (the file is parsed once; the selection is applied to it).
pub fn open(inp: &ParticleInput<'_>) -> Result<Particles> {
    let all = ParticleSource::open(inp.path, &SourceOptions { datadir: inp.datadir.cloned(), ind: None })?;
    let n_rows = all.n_rows();
    if inp.ind.is_none() && inp.first.is_none() {
        return Ok(Particles { source: Arc::new(all), n_rows });
    }
    let mut rows: Vec<usize> = match inp.ind {
        Some(p) => Selection::load(p)?.resolve(n_rows)?,
        None => (0..n_rows).collect(),
    };
    if let Some(n) = inp.first {
        if n == 0 {
            bail!("--first 0 selects no particles; give N ≥ 1");
        }
        rows.truncate(n);
    }
    Ok(Particles { source: Arc::new(all.select(rows)?), n_rows })
}

/// Fails unless a metadata file with `count` rows describes every row of the input.
pub fn check_rows(meta: &Path, what: &str, count: usize, input: &Path, n_rows: usize) -> Result<()> {
    if count != n_rows {
        bail!(
            "{}: has {what} for {count} particles but {} has {n_rows}; the file must describe every particle of the input, in order (--ind selects from both)",
            meta.display(),
            input.display()
        );
    }
    Ok(())
}

/// Fails on the first NaN/Inf pixel of a batch (`images`, `d × d` each, of dataset `positions`), naming the
/// image and pixel: one bad pixel would otherwise spread through the Fourier transform into a whole NaN
/// image that is written out without complaint.
pub fn check_finite_pixels(images: &[f32], positions: &[usize], d: usize, input: &Path) -> Result<()> {
    if let Some(bad) = images.iter().position(|v| !v.is_finite()) {
        let (k, pixel) = (bad / (d * d), bad % (d * d));
        bail!(
            "{}: image {} has a non-finite pixel ({} at row {}, column {}); the stack is damaged — remove \
             the image with --ind or regenerate the stack",
            input.display(),
            positions.get(k).copied().unwrap_or(k),
            images[bad],
            pixel / d,
            pixel % d
        );
    }
    Ok(())
}
