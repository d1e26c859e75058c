//! The training dataset: particles, with optional poses and CTF parameters, and a selection (`--ind`),
//! opened and checked once.
//!
//! Poses and CTF rows are indexed like the particle file's rows (before `--ind`), as in cryoDRGN, so one
//! pose.pkl/ctf.pkl serves every selection; the dataset keeps only the selected rows, by **position**
//! (0..len, in selection order). Translations are converted from pose.pkl's box fractions to pixels by
//! [`drgnfly_em::pose::Pose::from_pkl`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use drgnfly_em::ctf::{CtfParams, PixelSizeFrom};
use drgnfly_em::pose::Pose;
use drgnfly_em::preprocess::{estimate_norm, Normalization};
use drgnfly_io::pickle::{load_ctf, load_poses, load_poses_split};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{ParticleSource, SourceOptions};

use crate::train::{TrainError, TrainResult};

/// Where a dataset's files are.
#[derive(Clone, Debug, Default)]
pub struct DatasetFiles {
    /// Particle images: .mrcs stack, .star, .cs or .txt list of stacks.
    pub particles: PathBuf,
    /// pose.pkl, or rot.pkl and trans.pkl; empty when poses are not known (ab initio).
    pub poses: Vec<PathBuf>,
    /// ctf.pkl.
    pub ctf: Option<PathBuf>,
    /// Selected rows (0-based indices, .pkl or .txt).
    pub ind: Option<PathBuf>,
    /// Directory of the stacks a .star/.cs/.txt refers to.
    pub datadir: Option<PathBuf>,
}

/// Particles with (optionally) one pose and one CTF per dataset position.
#[derive(Debug)]
pub struct Dataset {
    source: Arc<ParticleSource>,
    poses: Option<Vec<Pose>>,
    ctf: Option<Vec<CtfParams>>,
    ctf_apix: Option<f32>,
}

impl Dataset {
    /// Open the particles once, apply the selection, and load poses and CTF for the selected rows, checking
    /// that every file describes the same particles.
    pub fn open(files: &DatasetFiles) -> TrainResult<Self> {
        let particles = files.particles.as_path();
        let opts = SourceOptions { datadir: files.datadir.clone(), ind: None };
        let mut source = ParticleSource::open(particles, &opts)?;
        let n_rows = source.n_rows();
        if let Some(ind) = &files.ind {
            source = source.select(Selection::load(ind)?.resolve(n_rows)?)?;
        }
        if source.is_empty() {
            return Err(input(particles, "no particles to train on (is the --ind selection empty?)"));
        }
        let d = source.box_size();
        if d % 2 != 0 || d < 4 {
            return Err(input(
                particles,
                format!("box size {d} must be even and at least 4 (crop or pad the images)"),
            ));
        }
        let rows: Vec<usize> = (0..source.len()).map(|p| source.row_of(p).unwrap_or(p)).collect();
        let poses = match files.poses.as_slice() {
            [] => None,
            paths => {
                let table = match paths {
                    [one] => load_poses(one)?,
                    [rot, trans] => load_poses_split(rot, trans)?,
                    _ => return Err(input(&paths[0], "poses are pose.pkl, or rot.pkl and trans.pkl")),
                };
                let name = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" + ");
                check_count(&name, "poses", table.len(), particles, n_rows)?;
                let trans = table.trans.as_deref();
                Some(rows.iter().map(|&r| Pose::from_pkl(&table.rot[r], trans.map(|t| t[r]), d)).collect())
            }
        };
        let (ctf, ctf_apix) = match &files.ctf {
            None => (None, None),
            Some(path) => {
                let table = load_ctf(path)?;
                check_count(&path.display().to_string(), "CTF rows", table.len(), particles, n_rows)?;
                let params = CtfParams::from_pkl_rows(&table, d, PixelSizeFrom::FirstRow)
                    .map_err(|e| input(path, format!("invalid CTF parameters: {e}")))?;
                let apix = params.first().map(|p| p.angpix);
                (Some(rows.iter().map(|&r| params[r]).collect()), apix)
            }
        };
        Ok(Self { source: Arc::new(source), poses, ctf, ctf_apix })
    }

    /// The images (positions `0..len()`).
    pub fn source(&self) -> &Arc<ParticleSource> {
        &self.source
    }

    /// Box size D.
    pub fn image_size(&self) -> usize {
        self.source.box_size()
    }

    /// Number of particles (after the selection).
    pub fn len(&self) -> usize {
        self.source.len()
    }

    /// Whether the dataset is empty (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
    }

    /// Pose of every position, when poses were given.
    pub fn poses(&self) -> Option<&[Pose]> {
        self.poses.as_deref()
    }

    /// CTF of every position, when given.
    pub fn ctf(&self) -> Option<&[CtfParams]> {
        self.ctf.as_deref()
    }

    /// Poses of the given positions (identity poses when none were given).
    pub fn batch_poses(&self, positions: &[usize]) -> Vec<Pose> {
        match &self.poses {
            Some(p) => positions.iter().map(|&i| p[i]).collect(),
            None => vec![Pose::IDENTITY; positions.len()],
        }
    }

    /// CTFs of the given positions.
    pub fn batch_ctf(&self, positions: &[usize]) -> Option<Vec<CtfParams>> {
        self.ctf.as_ref().map(|c| positions.iter().map(|&p| c[p]).collect())
    }

    /// Pixel size of the training images: from ctf.pkl (D₀·Apix₀/D), else the stack header; `None` when
    /// neither says (the caller decides whether to warn or fail).
    pub fn apix(&self) -> Option<f32> {
        self.ctf_apix.or_else(|| self.source.header_apix())
    }

    /// `norm` if given, else cryoDRGN's estimate (mean 0, std of the Hartley transforms of up to ~2000
    /// evenly spaced images, without the window). A NaN/Inf pixel is reported with its particle.
    pub fn normalization(&self, norm: Option<Normalization>) -> TrainResult<Normalization> {
        if let Some(n) = norm {
            return Ok(n);
        }
        let source = &self.source;
        estimate_norm(self.len(), self.image_size(), |i| -> TrainResult<Vec<f32>> {
            let img = source.read(i)?;
            match img.iter().position(|v| !v.is_finite()) {
                Some(px) => Err(TrainError::Input { message: bad_pixel_message(source, i, px, img[px]) }),
                None => Ok(img),
            }
        })
    }

    /// Where a failing batch was: the stage (`epoch 3`, `encoding`), the 1-based batch number, the particles
    /// it held, and the particle with a NaN/Inf pixel when there is one.
    pub fn batch_context(&self, stage: &str, batch: usize, positions: &[usize]) -> String {
        let shown: Vec<String> = positions.iter().take(4).map(|p| p.to_string()).collect();
        let more = if positions.len() > 4 { ", …" } else { "" };
        let culprit = positions.iter().find_map(|&p| {
            let img = self.source.read(p).ok()?;
            let px = img.iter().position(|v| !v.is_finite())?;
            Some(format!("; {}", bad_pixel_message(&self.source, p, px, img[px])))
        });
        format!(
            "{stage}, batch {batch} (particles {}{more}){}",
            shown.join(", "),
            culprit.unwrap_or_default()
        )
    }
}

fn bad_pixel_message(source: &ParticleSource, pos: usize, px: usize, v: f32) -> String {
    let d = source.box_size();
    let row = source.row_of(pos).unwrap_or(pos);
    format!(
        "{}: particle {pos} (row {row} of the file) has pixel (x {}, y {}) = {v}; remove it with --ind or \
         fix the stack",
        source.path().display(),
        px % d,
        px / d
    )
}

fn input(path: &Path, problem: impl std::fmt::Display) -> TrainError {
    TrainError::Input { message: format!("{}: {problem}", path.display()) }
}

fn check_count(file: &str, what: &str, count: usize, particles: &Path, n_rows: usize) -> TrainResult<()> {
    if count != n_rows {
        return Err(TrainError::Input {
            message: format!(
                "{file} has {count} {what} but {} has {n_rows} particles; they must describe the same \
                 particles in the same order (one row per particle of the file, before --ind)",
                particles.display()
            ),
        });
    }
    Ok(())
}
