//! `simulate`: a synthetic particle dataset with its ground truth, from maps, atomic models, or the built-in
//! hinge phantom ([`drgnfly_em::simulate`] does the physics).
//!
//! Sources (exactly one):
//! - `--vol a.mrc b.mrc …`: discrete states, drawn with `--weights` (default equal);
//! - `--pdb model.pdb|.cif`: every model of the file is a state (`-D`, `--Apix` set the grid);
//! - `--traj frames.npy` (F, N, 3) Å: every frame is a state along a continuous motion, drawn uniformly
//!   (`--elements` gives the atoms' elements, else all carbon);
//! - `--phantom hinge`: `--states K` evenly spaced openings (default 2), or `--continuous` with
//!   `--frames F` openings (labels are then the frame index along the motion).
//!
//! Atoms are rendered with Peng (1996) scattering factors ([`drgnfly_em::density`]), all frames about the
//! centre of the first one so the motion is kept.
//!
//! Conventions (the files round-trip with `backproject` and training):
//! - `particles.mrcs`: raw contrast, `−(projection ⊛ CTF)` (dark particles, inverted by default on
//!   reading), float32, the pixel size in the header;
//! - `pose.pkl`: `(rot (N,3,3), trans (N,2))`, `trans` = the shift that centres the image in pixels
//!   divided by **D** (see the `drgnfly-em` crate docs on D vs D + 1);
//! - `ctf.pkl` (unless `--no-ctf`), `particles.star` (RELION 3.1, same poses and CTF, origins in Å);
//! - `labels.pkl`: int64 state (or frame) index per particle, 0-based; `gt_volumes/vol_XXX.mrc` is the
//!   map of state XXX (the same 0-based index);
//! - `simulate.json`: every parameter and the noise level used.
//!
//! With `--poses`, rotations (and translations, if the file has them) come from the file instead of
//! being drawn; `-n` must then match its length (or be left out).
//!
//! Example usage:
//!   drgnfly simulate --phantom hinge --states 2 -D 64 -n 5000 --snr 0.3 -o sim/
//!   drgnfly simulate --vol open.mrc closed.mrc --weights 0.25 0.75 -n 10000 --max-shift 4 -o sim/
//!   drgnfly simulate --traj adk.npy --elements adk_atoms.tsv -D 64 --Apix 1.5 -n 20000 -o sim/

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args as ClapArgs, ValueEnum};
use drgnfly_em::ctf::CtfParams;
use drgnfly_em::density::{atom_extent, render_atoms, scattering_center, DensityParams, Scattering};
use drgnfly_em::phantom::HingePhantom;
use drgnfly_em::pose::{fraction_to_px, px_to_fraction};
use drgnfly_em::project::Projector;
use drgnfly_em::rotation::relion::euler_from_matrix;
use drgnfly_em::rotation::{from_f32, to_f32};
use drgnfly_em::simulate::{
    mixture_weights, simulate, CtfDistribution, CtfSource, ImageStore, ParticleTruth, SimConfig, States,
};
use drgnfly_em::translate::ImageShifter;
use drgnfly_io::atomic::write_atomic;
use drgnfly_io::atoms::{read_element_list, read_npy_trajectory, AtomicModel};
use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
use drgnfly_io::pickle::{self, ArrayData, NdArray, Poses};
use drgnfly_io::relion::{format_image_name, write_relion, ParticleRecords, RelionVersion};

use super::maps::{read_cubic, write_map};
use crate::progress::Progress;

/// Fourier oversampling of the projectors (trilinear interpolation error ≤ 5% inside the usual mask).
const OVERSAMPLING: usize = 2;
/// Most bytes of projector tables held at once (also at most a quarter of the memory available); beyond it
/// the states are built on demand, a group at a time.
const PROJECTOR_BUDGET: u64 = 2 << 30;
/// Bytes of images simulated per chunk.
const CHUNK_BYTES: usize = 128 << 20;

/// Built-in phantoms.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PhantomKind {
    /// Two domains of Gaussian blobs; one rotates about a hinge.
    Hinge,
}

/// Simulate particles with ground truth.
#[derive(ClapArgs, Debug)]
#[command(group(ArgGroup::new("source").required(true).args(["vol", "pdb", "traj", "phantom"])))]
#[command(
    after_help = "Examples:\n  drgnfly simulate --phantom hinge --states 2 -D 64 -n 5000 --snr 0.3 -o sim/\n  drgnfly simulate --phantom hinge --continuous --frames 50 -D 64 -n 20000 -o sim/\n  drgnfly simulate --vol open.mrc closed.mrc --weights 0.25 0.75 -n 10000 --max-shift 4 -o sim/\n  drgnfly simulate --pdb ensemble.pdb -D 64 --Apix 1.5 -n 10000 --snr inf --no-ctf -o sim/\n  drgnfly simulate --traj adk.npy --elements adk_atoms.tsv -D 64 --Apix 1.5 -n 20000 -o sim/\n\nWrites particles.mrcs, pose.pkl, ctf.pkl, particles.star, labels.pkl, gt_volumes/vol_XXX.mrc and simulate.json."
)]
pub struct Args {
    /// Maps of the states (.mrc), all the same cubic box.
    #[arg(long, num_args = 1.., value_name = "MRC")]
    pub vol: Vec<PathBuf>,
    /// Atomic model (.pdb/.cif); each model of the file is a state.
    #[arg(long)]
    pub pdb: Option<PathBuf>,
    /// Trajectory (.npy, frames × atoms × 3, Å); each frame is a state.
    #[arg(long)]
    pub traj: Option<PathBuf>,
    /// Built-in phantom.
    #[arg(long, value_enum)]
    pub phantom: Option<PhantomKind>,
    /// Mixture weights of the states (--vol, --pdb models, --phantom --states); default equal.
    #[arg(long, num_args = 1..)]
    pub weights: Vec<f64>,
    /// Elements of the trajectory's atoms (a table with an `element` column, or one symbol per line).
    #[arg(long, requires = "traj")]
    pub elements: Option<PathBuf>,
    /// Discrete phantom states (evenly spaced hinge openings).
    #[arg(long, default_value_t = 2)]
    pub states: usize,
    /// Continuous phantom motion, sampled at --frames openings.
    #[arg(long, requires = "phantom")]
    pub continuous: bool,
    /// Openings along the continuous phantom motion.
    #[arg(long, default_value_t = 50)]
    pub frames: usize,
    /// Box size in pixels (atoms, phantom; default 64 for the phantom; a --vol sets its own).
    #[arg(short = 'D')]
    pub d: Option<usize>,
    /// Pixel size in Å (default: the --vol header, else 1; 3 for the phantom; 1 for atoms).
    #[arg(long = "Apix", value_name = "Å")]
    pub apix: Option<f32>,
    /// Number of particles (default: the number of --poses, else 1000).
    #[arg(short = 'n', long = "num-particles")]
    pub n: Option<usize>,
    /// Signal-to-noise ratio (variance of the clean images over that of the noise); `inf` for none.
    #[arg(long, default_value = "0.1", allow_negative_numbers = true)]
    pub snr: String,
    /// Smallest defocus (Å).
    #[arg(long, default_value_t = 10_000.0, value_name = "Å")]
    pub defocus_min: f32,
    /// Largest defocus (Å).
    #[arg(long, default_value_t = 25_000.0, value_name = "Å")]
    pub defocus_max: f32,
    /// Largest astigmatism, defocus U − V (Å).
    #[arg(long, default_value_t = 500.0, value_name = "Å")]
    pub astigmatism: f32,
    /// Voltage (kV).
    #[arg(long, default_value_t = 300.0)]
    pub kv: f32,
    /// Spherical aberration (mm).
    #[arg(long, default_value_t = 2.7)]
    pub cs: f32,
    /// Amplitude contrast.
    #[arg(short = 'w', long = "amp-contrast", default_value_t = 0.1)]
    pub w: f32,
    /// Phase shift (degrees).
    #[arg(long = "ps", default_value_t = 0.0)]
    pub phase_shift: f32,
    /// Simulate without CTF.
    #[arg(long, conflicts_with = "ctf")]
    pub no_ctf: bool,
    /// Take each particle's defocus, astigmatism, kV, Cs, w and phase shift from a real dataset's ctf.pkl
    /// instead of --defocus-min/max and friends: row i for particle i when it has one row per particle,
    /// otherwise a row drawn at random for each particle. The pixel size stays the simulation's.
    #[arg(long, value_name = "PKL")]
    pub ctf: Option<PathBuf>,
    /// Shifts are uniform in [−m, m]² pixels.
    #[arg(long, default_value_t = 0.0, value_name = "PX")]
    pub max_shift: f32,
    /// Use these poses (pose.pkl) instead of random ones.
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory.
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
}

/// The states to simulate: how many, how often each is drawn, and the map of each.
struct Prepared {
    n_states: usize,
    /// Mixture weights, one per state (equal for frames of a motion).
    weights: Vec<f64>,
    /// Renders (or reads) the `D³` map of state `k`.
    map: Box<dyn Fn(usize) -> drgnfly_em::Result<Vec<f32>> + Sync>,
    d: usize,
    apix: f32,
    describe: String,
}
/// Simulate and write everything.
pub fn run(args: Args) -> Result<()> {
    let snr = parse_snr(&args.snr)?;
    let given = match &args.poses {
        Some(p) => Some(pickle::load_poses(p)?),
        None => None,
    };
    let n = match (&given, args.n) {
        (Some(g), Some(n)) if g.len() != n => bail!(
            "{}: has {} poses but -n asks for {n} particles; give one pose per particle (or leave out -n)",
            args.poses.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default(),
            g.len()
        ),
        (Some(g), _) => g.len(),
        (None, Some(n)) => n,
        (None, None) => 1000,
    };
    if n == 0 {
        bail!("-n 0: nothing to simulate; give at least one particle");
    }
    check_memory(n, args.d)?;
    let given_shifts = given.as_ref().and_then(|g| g.trans.clone());
    if given_shifts.is_some() && args.max_shift > 0.0 {
        bail!(
            "--max-shift draws random shifts, but {} has translations; use one or the other",
            path_str(&args.poses)
        );
    }
    std::fs::create_dir_all(args.outdir.join("gt_volumes"))
        .with_context(|| format!("creating {}", args.outdir.join("gt_volumes").display()))?;
    let prep = prepare(&args)?;
    let (d, apix) = (prep.d, prep.apix);

    let cfg = SimConfig {
        snr,
        ctf: ctf_source(&args)?,
        max_shift_px: args.max_shift,
        rotations: given.as_ref().map(|g| g.rot.iter().map(from_f32).collect()),
        chunk: (CHUNK_BYTES / (d * d * 4)).clamp(1, n),
        seed: args.seed,
        ..SimConfig::new(n, apix)
    };
    // Every state's ground-truth map is written now; their projectors are kept when they all fit in the
    // budget, else built again a group at a time while simulating.
    let group = projector_group(d);
    let hold = prep.n_states <= group;
    let mut projectors = Vec::with_capacity(if hold { prep.n_states } else { 0 });
    for k in 0..prep.n_states {
        let map = (prep.map)(k)?;
        write_map(&args.outdir.join("gt_volumes").join(format!("vol_{k:03}.mrc")), &map, d, apix)?;
        if hold {
            projectors.push(Projector::new(&map, d, OVERSAMPLING)?);
        }
    }
    let make_projector = |k: usize| Projector::new(&(prep.map)(k)?, d, OVERSAMPLING);
    let store;
    let states = if hold {
        States::Projectors { projectors: &projectors, weights: prep.weights.clone() }
    } else {
        tracing::info!(
            "{} states do not fit in memory together: building {group} at a time, the clean images waiting in a scratch file",
            prep.n_states
        );
        store = ScratchStore::create(&args.outdir, d)?;
        States::OnDemand { d, weights: prep.weights.clone(), make: &make_projector, group, store: &store }
    };

    let stack_path = args.outdir.join("particles.mrcs");
    let mut writer = MrcStackWriter::create(&stack_path, d, d, apix, MrcDtype::F32)?;
    let mut truth: Vec<ParticleTruth> = Vec::with_capacity(n);
    let mut shifter = match &given_shifts {
        Some(_) => {
            let s = ImageShifter::new(d)?;
            let scratch = s.make_scratch();
            Some((s, scratch))
        }
        None => None,
    };
    let mut progress = Progress::new("simulate", n as u64, "images");
    let summary = simulate::<anyhow::Error>(&cfg, &states, |chunk| {
        let mut chunk_truth = chunk.truth.to_vec();
        match (&mut shifter, &given_shifts) {
            (Some((s, scratch)), Some(t)) => {
                let mut images = chunk.images.to_vec();
                for (j, (img, tr)) in images.chunks_exact_mut(d * d).zip(&mut chunk_truth).enumerate() {
                    let f = t[chunk.start + j];
                    tr.shift_px = f.map(|v| fraction_to_px(v, d));
                    // The simulated image is the centred one moved by −t.
                    s.shift_image_with_scratch(img, [-tr.shift_px[0], -tr.shift_px[1]], scratch)?;
                }
                writer.push_many(&images)?;
            }
            _ => writer.push_many(chunk.images)?,
        }
        truth.extend(chunk_truth);
        progress.inc(chunk.truth.len() as u64);
        Ok(())
    })?;
    writer.finish()?;
    let secs = progress.finish().as_secs_f64();

    write_metadata(&args.outdir, &truth, d, apix)?;
    let n_states = prep.n_states;
    let mut counts = vec![0usize; n_states];
    truth.iter().for_each(|t| counts[t.state] += 1);
    let json = serde_json::json!({
        "source": prep.describe,
        "n": n,
        "D": d,
        "Apix": apix,
        "states": n_states,
        "state_counts": counts,
        "weights": prep.weights,
        "snr": snr.map_or_else(|| serde_json::Value::from("inf"), serde_json::Value::from),
        "signal_variance": snr.map(|_| summary.signal_variance),
        "noise_sigma": summary.noise_sigma,
        "ctf": match &cfg.ctf {
            Some(CtfSource::Random(c)) => serde_json::json!({
                "defocus_min_A": c.defocus_min_a, "defocus_max_A": c.defocus_max_a, "astigmatism_A": c.astigmatism_a,
                "kV": c.voltage_kv, "Cs_mm": c.cs_mm, "amp_contrast": c.amp_contrast,
                "phase_shift_deg": c.phase_shift_deg,
            }),
            Some(CtfSource::Rows(rows)) => serde_json::json!({
                "from": path_str(&args.ctf), "rows": rows.len(),
                "drawn": if rows.len() == n { "row i for particle i" } else { "uniformly at random" },
            }),
            None => serde_json::Value::Null,
        },
        "max_shift_px": args.max_shift,
        "poses": args.poses.as_ref().map(|p| p.display().to_string()),
        "seed": args.seed,
        "translation_scale": "pose.pkl trans = shift_px / D",
        "contrast": "particles are -(projection * CTF): inverted, as raw cryo-EM particles",
    });
    let text = serde_json::to_string_pretty(&json).context("formatting simulate.json")?;
    write_atomic(args.outdir.join("simulate.json"), format!("{text}\n").as_bytes())?;

    let per_state = if n_states <= 10 {
        format!("{counts:?}")
    } else {
        let (lo, hi) = (counts.iter().min().unwrap_or(&0), counts.iter().max().unwrap_or(&0));
        format!("({lo}–{hi} particles each)")
    };
    say!(
        "{}: {n} particles ({d}×{d}, {apix} Å/px) from {} in {secs:.1} s; SNR {}, noise σ {:.4}; {n_states} states {per_state}",
        args.outdir.display(),
        prep.describe,
        snr.map_or("inf".to_string(), |s| s.to_string()),
        summary.noise_sigma,
    );
    say!(
        "wrote particles.mrcs, pose.pkl, {}particles.star, labels.pkl, gt_volumes/, simulate.json",
        if cfg.ctf.is_some() { "ctf.pkl, " } else { "" }
    );
    Ok(())
}

/// The CTF of the simulation: none, the rows of `--ctf`, or the `--defocus-*` distribution.
fn ctf_source(args: &Args) -> Result<Option<CtfSource>> {
    if args.no_ctf {
        return Ok(None);
    }
    let Some(path) = &args.ctf else {
        return Ok(Some(CtfSource::Random(CtfDistribution {
            defocus_min_a: args.defocus_min,
            defocus_max_a: args.defocus_max,
            astigmatism_a: args.astigmatism,
            voltage_kv: args.kv,
            cs_mm: args.cs,
            amp_contrast: args.w,
            phase_shift_deg: args.phase_shift,
        })));
    };
    let rows = pickle::load_ctf(path)?;
    if rows.is_empty() {
        bail!("{}: has no CTF rows; give a ctf.pkl with at least one particle", path.display());
    }
    // The rows' own box and pixel size do not matter: the simulation's pixel size replaces them.
    let params = rows
        .iter()
        .enumerate()
        .map(|(i, &r)| CtfParams::from_pkl_row(r, 1, i))
        .collect::<drgnfly_em::Result<Vec<_>>>()
        .with_context(|| format!("reading the CTF rows of {}", path.display()))?;
    Ok(Some(CtfSource::Rows(params)))
}

/// `--snr`: a positive number, or `inf`/`none` for noiseless images (`None`).
fn parse_snr(s: &str) -> Result<Option<f64>> {
    let t = s.trim().to_ascii_lowercase();
    if matches!(t.as_str(), "inf" | "infinity" | "none") {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_infinite() && v > 0.0 => Ok(None),
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        _ => bail!("--snr {s}: the signal-to-noise ratio must be a number > 0 (use `--snr inf` for noiseless images)"),
    }
}

fn path_str(p: &Option<PathBuf>) -> String {
    p.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
}

/// Per particle, the ground truth kept until the metadata is written: `ParticleTruth` plus its pose.pkl,
/// ctf.pkl, labels and STAR rows (an upper bound).
const TRUTH_BYTES_PER_PARTICLE: u64 = 512;

/// Refuse sizes that cannot fit before anything is allocated: the per-particle ground truth, and one state's
/// map with its 2× oversampled complex projector (8 × 8 bytes per voxel) when `-D` is given.
fn check_memory(n: usize, d: Option<usize>) -> Result<()> {
    drgnfly_io::memory::check_fits(
        format!("the ground truth of {n} particles"),
        (n as u64).saturating_mul(TRUTH_BYTES_PER_PARTICLE),
        "lower -n; for a larger dataset simulate several runs with different --seed and join them \
         (concat-pkls, a .txt list of the stacks)",
    )?;
    if let Some(d) = d {
        let voxels = drgnfly_io::memory::f32_bytes(&[d, d, d]) / 4;
        drgnfly_io::memory::check_fits(
            format!("a {d}³ map and its projector (-D {d})"),
            voxels.saturating_mul(4 + 64),
            "lower -D (cryo-EM boxes are 64–512 px; downsample later with drgnfly downsample)",
        )?;
    }
    Ok(())
}

/// The states of the source, with their weights checked (their maps are made later, on demand).
fn prepare(args: &Args) -> Result<Prepared> {
    if !args.vol.is_empty() {
        let first = read_cubic(&args.vol[0], "volume")?;
        let d = first.d;
        if let Some(want) = args.d.filter(|&w| w != d) {
            bail!("-D {want}: {} is {d}³; a --vol sets the box (downsample it first with `drgnfly downsample --is-vol`)", args.vol[0].display());
        }
        let apix = pick_apix(args.apix, first.apix, 1.0, &args.vol[0]);
        let paths = args.vol.clone();
        let first_path = args.vol[0].clone();
        let map = move |k: usize| -> drgnfly_em::Result<Vec<f32>> {
            let path = &paths[k];
            let m = read_cubic(path, "volume").map_err(|e| drgnfly_em::Error::Io {
                path: path.clone(),
                source: std::io::Error::other(format!("{:#}", e.root_cause())),
            })?;
            if m.d != d {
                return Err(drgnfly_em::Error::Param {
                    name: "--vol",
                    value: path.display().to_string(),
                    why: format!(
                        "it is {}³ but {} is {d}³; all --vol maps need the same box",
                        m.d,
                        first_path.display()
                    ),
                });
            }
            if let Some(i) = m.data.iter().position(|v| !v.is_finite()) {
                return Err(drgnfly_em::Error::Param {
                    name: "--vol",
                    value: path.display().to_string(),
                    why: format!("voxel {i} is NaN or infinite; fix the map"),
                });
            }
            Ok(m.data)
        };
        let n_states = args.vol.len();
        return Ok(Prepared {
            n_states,
            weights: mixture_weights(&args.weights, n_states)?,
            map: Box::new(map),
            d,
            apix,
            describe: format!("{n_states} map(s)"),
        });
    }
    if let Some(PhantomKind::Hinge) = args.phantom {
        let d = args.d.unwrap_or(64);
        check_box(d)?;
        let apix = args.apix.unwrap_or(3.0);
        let ph = HingePhantom::new(d)?;
        if args.continuous {
            if args.frames < 2 {
                bail!("--frames {}: the continuous motion needs at least 2 frames", args.frames);
            }
            if !args.weights.is_empty() {
                bail!("--weights applies to discrete states; continuous frames are drawn uniformly");
            }
            let f = args.frames;
            // Frame k of F opens the hinge by k/(F − 1), as discrete state k of F would.
            return Ok(Prepared {
                n_states: f,
                weights: vec![1.0; f],
                map: Box::new(move |k: usize| ph.volume(ph.state(k, f)?)),
                d,
                apix,
                describe: format!("hinge phantom, continuous ({f} frames)"),
            });
        }
        let k_states = args.states;
        if k_states == 0 {
            bail!("--states 0: the phantom needs at least one state");
        }
        let map = move |k: usize| ph.volume(if k_states == 1 { 0.0 } else { ph.state(k, k_states)? });
        return Ok(Prepared {
            n_states: k_states,
            weights: mixture_weights(&args.weights, k_states)?,
            map: Box::new(map),
            d,
            apix,
            describe: format!("hinge phantom, {k_states} discrete state(s)"),
        });
    }
    // Atoms: --pdb (models) or --traj (frames).
    let (path, model) = match (&args.pdb, &args.traj) {
        (Some(p), _) => (p, AtomicModel::read(p)?),
        (None, Some(t)) => {
            let m = read_npy_trajectory(t)?;
            let m = match &args.elements {
                Some(e) => m.with_elements(read_element_list(e)?, e)?,
                None => {
                    tracing::warn!("{}: no --elements; every atom is rendered as carbon", t.display());
                    m
                }
            };
            (t, m)
        }
        (None, None) => bail!("give one source: --vol, --pdb, --traj or --phantom"),
    };
    let Some(d) = args.d else {
        bail!("{}: give the box size -D (pixels) to render the atoms on", path.display());
    };
    check_box(d)?;
    let apix = args.apix.unwrap_or(1.0);
    if !(apix.is_finite() && apix > 0.0) {
        bail!("--Apix {apix}: the pixel size must be a positive number of Å");
    }
    let n_models = model.n_models();
    let Some(first) = model.models.first() else {
        bail!("{}: the file holds no atoms", path.display());
    };
    let mut params = DensityParams::new(d, f64::from(apix));
    // One centre for every frame, so the motion between frames is kept.
    params.center = Some(scattering_center(&model.elements, first, Scattering::Peng)?);
    check_fits(&model, params.center.unwrap_or_default(), d, apix, path);
    let describe = format!("{} ({} atoms, {n_models} model(s))", path.display(), model.n_atoms());
    let weights = if args.traj.is_some() {
        if !args.weights.is_empty() {
            bail!("--weights applies to discrete states; trajectory frames are drawn uniformly");
        }
        vec![1.0; n_models]
    } else {
        mixture_weights(&args.weights, n_models)?
    };
    let render = move |k: usize| render_atoms(&model.elements, &model.models[k], &model.b_factors, &params);
    Ok(Prepared { n_states: n_models, weights, map: Box::new(render), d, apix, describe })
}

/// How many projectors of side `d` may be held at once: [`PROJECTOR_BUDGET`], or a quarter of the memory
/// available when that is less; at least one.
fn projector_group(d: usize) -> usize {
    let budget =
        drgnfly_io::memory::available_bytes().map_or(PROJECTOR_BUDGET, |a| (a / 4).min(PROJECTOR_BUDGET));
    // A projector is built with a transient table as large again.
    let each = 2 * Projector::table_bytes(d, OVERSAMPLING) as u64;
    usize::try_from(budget / each.max(1)).unwrap_or(usize::MAX).max(1)
}

/// The clean images of a state-by-state simulation, in an unnamed scratch file of the output directory
/// (the system removes it when the process ends, however it ends).
struct ScratchStore {
    file: std::fs::File,
    dir: PathBuf,
    image_len: usize,
}

impl ScratchStore {
    fn create(dir: &Path, d: usize) -> Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut open = std::fs::OpenOptions::new();
        open.read(true).write(true).mode(0o600);
        // An unnamed file where the file system allows it; else a named one, unlinked at once.
        let file = match open.clone().custom_flags(libc::O_TMPFILE).open(dir) {
            Ok(f) => f,
            Err(_) => {
                let path = dir.join(format!(".simulate-scratch-{}", std::process::id()));
                let f = open.create_new(true).open(&path).with_context(|| {
                    format!("{}: creating a scratch file for the clean images", dir.display())
                })?;
                let _ = std::fs::remove_file(&path);
                f
            }
        };
        Ok(Self { file, dir: dir.to_path_buf(), image_len: d * d })
    }

    fn io_error(&self, source: std::io::Error) -> drgnfly_em::Error {
        let source =
            std::io::Error::new(source.kind(), format!("scratch file of the clean images: {source}"));
        drgnfly_em::Error::Io { path: self.dir.clone(), source }
    }
}

impl ImageStore for ScratchStore {
    fn put(&self, index: usize, image: &[f32]) -> drgnfly_em::Result<()> {
        use std::os::unix::fs::FileExt;
        let bytes: Vec<u8> = image.iter().flat_map(|v| v.to_le_bytes()).collect();
        let at = (index * self.image_len * 4) as u64;
        self.file.write_all_at(&bytes, at).map_err(|e| self.io_error(e))
    }

    fn get(&self, start: usize, images: &mut [f32]) -> drgnfly_em::Result<()> {
        use std::os::unix::fs::FileExt;
        let mut bytes = vec![0u8; images.len() * 4];
        let at = (start * self.image_len * 4) as u64;
        self.file.read_exact_at(&mut bytes, at).map_err(|e| self.io_error(e))?;
        for (v, b) in images.iter_mut().zip(bytes.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}

fn pick_apix(given: Option<f32>, header: Option<f32>, fallback: f32, path: &Path) -> f32 {
    match (given, header) {
        (Some(g), Some(h)) if (g - h).abs() > 1e-3 * h => {
            tracing::warn!("--Apix {g} overrides the {h} Å/px in the header of {}", path.display());
            g
        }
        (Some(g), _) => g,
        (None, Some(h)) => h,
        (None, None) => {
            tracing::warn!(
                "{}: no pixel size in the header; using {fallback} Å/px (pass --Apix)",
                path.display()
            );
            fallback
        }
    }
}

fn check_box(d: usize) -> Result<()> {
    if d < 8 || !d.is_multiple_of(2) {
        bail!("-D {d}: the box size must be even and at least 8 pixels");
    }
    Ok(())
}

/// Warns when atoms reach outside the box (their density would be cut off).
fn check_fits(model: &AtomicModel, center: [f64; 3], d: usize, apix: f32, path: &Path) {
    let reach = model.models.iter().map(|m| atom_extent(m, center)).fold(0.0, f64::max);
    let half = d as f64 / 2.0 * f64::from(apix);
    if reach > half {
        tracing::warn!(
            "{}: atoms reach {reach:.1} Å from the centre but the box half-width is {half:.1} Å; increase -D or --Apix",
            path.display()
        );
    }
}

/// pose.pkl, ctf.pkl, particles.star and labels.pkl for the simulated particles.
fn write_metadata(outdir: &Path, truth: &[ParticleTruth], d: usize, apix: f32) -> Result<()> {
    let poses = Poses {
        rot: truth.iter().map(|t| to_f32(&t.rot)).collect(),
        trans: Some(
            truth.iter().map(|t| t.shift_px.map(|p| px_to_fraction(f64::from(p), d as f64) as f32)).collect(),
        ),
    };
    pickle::write_poses(outdir.join("pose.pkl"), &poses)?;
    let ctf: Option<Vec<[f32; 9]>> = truth.iter().map(|t| t.ctf_row(d)).collect();
    if let Some(c) = &ctf {
        pickle::write_ctf(outdir.join("ctf.pkl"), c)?;
    }
    let labels: Vec<i64> = truth.iter().map(|t| t.state as i64).collect();
    pickle::write_array(
        outdir.join("labels.pkl"),
        &NdArray::new(vec![labels.len()], ArrayData::I64(labels)),
    )?;
    let rec = ParticleRecords {
        image_names: (0..truth.len() as u64).map(|i| format_image_name(i, "particles.mrcs")).collect(),
        ctf: ctf.map(|c| c.iter().map(|r| r.map(f64::from)).collect()),
        euler_deg: Some(truth.iter().map(|t| euler_from_matrix(&t.rot)).collect()),
        origin_px: Some(truth.iter().map(|t| t.shift_px.map(f64::from)).collect()),
        image_size: Some(d as f64),
        apix: Some(f64::from(apix)),
    };
    write_relion(outdir.join("particles.star"), &rec, RelionVersion::Relion31)?;
    Ok(())
}
