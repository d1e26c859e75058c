//! `analyze-convergence`: has training converged? Follows the latents across epochs (cryoDRGN
//! `analyze_convergence`, Zhong et al.'s heuristics) and prints one verdict line.
//!
//! For the epochs `--epoch-interval`, 2·interval, … and EPOCH itself, on the same random subset of
//! `--subset` particles:
//! - encoder: the median particle displacement between analysed epochs and whether successive
//!   displacements point the same way (drift) or not (jitter);
//! - latent density: local maxima of the 2D density of each epoch's UMAP (PCA with `--skip-umap`; z
//!   itself when zdim = 2), matched across epochs by the particles in their basins;
//! - decoder: volumes at the final epoch's maxima particles, decoded with every analysed epoch's
//!   checkpoint, and their masked correlation and FSC between successive epochs (unless `--skip-vol`
//!   or volume generation is unavailable).
//!
//! Writes `WORKDIR/convergence.EPOCH/plots/` (cryoDRGN's names where they apply:
//! `00_total_loss.png`, `01_encoder_umaps.png`, `02_encoder_latent_vector_shifts.png`,
//! `03_decoder_UMAP-sketching.png`, `04_decoder_maxima-sketch-consistency.png`, `05_decoder_CC.png`,
//! `06_decoder_FSC.png`, `07_decoder_FSC-nyquist.png`), `convergence.json`, `vols.E/` and
//! `verdict.txt`; the verdict line also goes to stdout.
//!
//! Example usage:
//!   drgnfly analyze-convergence out 50
//!   drgnfly analyze-convergence out 50 --epoch-interval 2 --subset 20000 --skip-vol

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::convergence::{
    latent_spread, match_maxima, take_rows, verdict, ConvergenceEvidence, Embedding2d, LatentShift,
    LatentShiftTracker, LatentView, MaximaMatch, MaximaParams, VerdictRule, VolumeConsistency,
};
use drgnfly_analysis::learning_curve::parse_learning_curve;
use drgnfly_analysis::plot::{self, Axes, Marker, Overlay, RgbImage, Series};
use drgnfly_analysis::render::{contact_sheet, Tile};
use drgnfly_analysis::Latents;
use drgnfly_em::mask::CosineDilationMask;
use drgnfly_io::selection::select_random;
use drgnfly_nn::volume::VolumeRequest;

use super::analysis_common::{write_text, Steps, VolumeMaker, Workdir};

/// Convergence diagnostics across epochs.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly analyze-convergence out 50\n  drgnfly analyze-convergence out 50 --epoch-interval 2 --subset 20000 --skip-vol"
)]
pub struct Args {
    /// Training output directory.
    pub workdir: PathBuf,
    /// Last epoch to analyse (1-based; −1 for the latest).
    #[arg(allow_negative_numbers = true)]
    pub epoch: i64,
    /// Analyse every this many epochs (plus EPOCH).
    #[arg(long, default_value_t = 5)]
    pub epoch_interval: usize,
    /// Particles followed (a random subset, the same in every epoch).
    #[arg(long, default_value_t = 50_000)]
    pub subset: usize,
    /// Do not generate and compare volumes.
    #[arg(long)]
    pub skip_vol: bool,
    /// Find density maxima on PC1/PC2 instead of UMAP (faster).
    #[arg(long)]
    pub skip_umap: bool,
    /// Histogram bins per axis of the 2D density.
    #[arg(long, default_value_t = 30)]
    pub n_bins: usize,
    /// Minimum distance between maxima, in bins.
    #[arg(long, default_value_t = 5.0)]
    pub radius: f64,
    /// Maxima kept after pruning.
    #[arg(long, default_value_t = 12)]
    pub pruned_maxima: usize,
    /// Maxima finally followed.
    #[arg(long, default_value_t = 10)]
    pub final_maxima: usize,
    /// Pixel size of the volumes in Å (default: from the config's ctf.pkl, else 1).
    #[arg(long = "Apix", value_name = "A")]
    pub apix: Option<f32>,
    /// Generate volumes at this (even) box size.
    #[arg(short = 'd', long = "downsample", value_name = "D")]
    pub downsample: Option<usize>,
    /// Mask threshold (default: half the 99.99th percentile of the later volume).
    #[arg(long)]
    pub thresh: Option<f32>,
    /// Mask dilation in Å.
    #[arg(long, default_value_t = 3.0)]
    pub dilate: f32,
    /// Width of the mask's soft edge in Å.
    #[arg(long, default_value_t = 10.0)]
    pub dist: f32,
    /// Seed of the subset and the UMAPs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (default: WORKDIR/convergence.EPOCH).
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
}

/// One analysed epoch.
struct EpochView {
    epoch: usize,
    /// Subset latents, subset×zdim.
    z: Vec<f32>,
    /// 2D embedding of the subset (none for zdim 1) and its density maxima.
    view: LatentView,
}

/// Analyse and judge.
pub fn run(args: Args) -> Result<()> {
    let steps = Steps::new("analyze-convergence");
    if args.epoch_interval == 0 {
        bail!("--epoch-interval must be at least 1");
    }
    let wd = Workdir::open(&args.workdir, args.epoch)?;
    let last = wd.epoch;
    let epochs: Vec<usize> = wd
        .epochs()?
        .into_iter()
        .filter(|&e| e <= last && (e % args.epoch_interval == 0 || e == last))
        .collect();
    let out = args.outdir.clone().unwrap_or_else(|| wd.dir.join(format!("convergence.{last}")));
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).with_context(|| format!("creating {}", plots_dir.display()))?;
    steps.note(&format!("epochs {epochs:?} → {}", out.display()));

    let (z_last, zdim) = wd.load_z(last)?;
    let n = z_last.len() / zdim;
    drop(z_last);
    let subset: Vec<usize> = if n > args.subset {
        select_random(n, args.subset, args.seed)?.into_iter().map(|i| i as usize).collect()
    } else {
        (0..n).collect()
    };
    let params = MaximaParams {
        n_bins: args.n_bins,
        radius: args.radius,
        pruned_maxima: args.pruned_maxima,
        final_maxima: args.final_maxima,
    };

    // Encoder: shifts and per-epoch density maxima.
    let mut tracker = LatentShiftTracker::new();
    let mut shifts: Vec<LatentShift> = Vec::new();
    let mut matches: Vec<MaximaMatch> = Vec::new();
    let mut views: Vec<EpochView> = Vec::new();
    for &e in &epochs {
        let view =
            steps.run(&format!("epoch {e}"), || epoch_view(&wd, e, zdim, n, &subset, &args, &params))?;
        let lat = Latents::new(&view.z, zdim)?;
        shifts.extend(tracker.push(e, lat)?);
        if let Some(prev) = views.last() {
            if view.view.xy.is_some() {
                matches.push(match_maxima(e, &prev.view.maxima, &view.view.maxima));
            }
        }
        views.push(view);
    }
    let Some(final_view) = views.last() else { bail!("no epoch to analyse") };
    let spread = latent_spread(Latents::new(&final_view.z, zdim)?);

    // Decoder: volumes at the final maxima particles, per epoch.
    let mut notes = Vec::new();
    let volumes = if zdim == 1 || final_view.view.maxima.is_empty() {
        notes.push("no density maxima (zdim 1 or too few particles): volumes not compared".to_string());
        Vec::new()
    } else {
        compare_volumes(&wd, &views, zdim, &args, &out, &steps, &mut notes)?
    };

    let evidence = ConvergenceEvidence { shifts: &shifts, spread, maxima: &matches, volumes: &volumes };
    let (settled, line) = verdict(&evidence, &VerdictRule::default());
    steps.run("plots", || write_plots(&wd, &views, &shifts, spread, &matches, &volumes, &plots_dir))?;
    let json = serde_json::json!({
        "epochs": epochs,
        "particles": n,
        "subset": subset.len(),
        "latent_spread": spread,
        "shifts": shifts,
        "maxima": views.iter().map(|v| serde_json::json!({"epoch": v.epoch, "maxima": v.view.maxima.iter().map(|m| serde_json::json!({"center": m.center, "count": m.count, "representative": subset[m.representative]})).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "maxima_matches": matches,
        "volumes": volumes,
        "notes": notes,
        "settled": settled,
        "verdict": line,
    });
    write_text(&out.join("convergence.json"), &format!("{}\n", serde_json::to_string_pretty(&json)?))?;
    write_text(&out.join("verdict.txt"), &format!("{line}\n"))?;
    for note in &notes {
        say!("  note: {note}");
    }
    say!("analyze-convergence: {} ({:.1} s)", out.display(), steps.elapsed_s());
    writeln!(std::io::stdout().lock(), "{line}")?;
    Ok(())
}

/// Load one epoch, take the subset, embed it in 2D and find the density maxima.
fn epoch_view(
    wd: &Workdir,
    e: usize,
    zdim: usize,
    n: usize,
    subset: &[usize],
    args: &Args,
    params: &MaximaParams,
) -> Result<EpochView> {
    let (z, d) = wd.load_z(e)?;
    if d != zdim || z.len() != n * zdim {
        bail!(
            "{}: {} × {d} latents, but epoch {} has {n} × {zdim}; all epochs must come from one run",
            wd.z_path(e).display(),
            z.len() / d.max(1),
            wd.epoch
        );
    }
    let zs = take_rows(&z, zdim, subset)?;
    let lat = Latents::new(&zs, zdim).with_context(|| format!("latents of {}", wd.z_path(e).display()))?;
    let method = if args.skip_umap { Embedding2d::Pca } else { Embedding2d::Umap { seed: args.seed } };
    let view = LatentView::compute(lat, method, params)?;
    Ok(EpochView { epoch: e, z: zs, view })
}

/// Volumes at the final epoch's maxima particles for every analysed epoch, compared between
/// successive epochs. Empty (with a note) when volumes are skipped or cannot be generated.
fn compare_volumes(
    wd: &Workdir,
    views: &[EpochView],
    zdim: usize,
    args: &Args,
    out: &Path,
    steps: &Steps,
    notes: &mut Vec<String>,
) -> Result<Vec<VolumeConsistency>> {
    let Some(final_view) = views.last() else { return Ok(Vec::new()) };
    let reps: Vec<usize> = final_view.view.maxima.iter().map(|m| m.representative).collect();
    let apix = wd.apix(args.apix)?;
    let request = VolumeRequest { apix, downsample: args.downsample, ..VolumeRequest::default() };
    let mut maker = VolumeMaker::new(wd, wd.epoch, request, args.skip_vol);
    let mut per_epoch: Vec<(usize, Vec<PathBuf>)> = Vec::new();
    for v in views {
        maker.set_epoch(wd, v.epoch);
        let z = take_rows(&v.z, zdim, &reps)?;
        let dir = out.join(format!("vols.{}", v.epoch));
        let made = steps.run(&format!("{} volumes for epoch {}", reps.len(), v.epoch), || {
            Ok(maker.make(&z, zdim, &dir))
        })?;
        match made {
            Some(paths) => per_epoch.push((v.epoch, paths)),
            None if maker.skipped.is_some() => break,
            None => {}
        }
    }
    if let Some(why) = &maker.skipped {
        notes.push(format!("volumes not compared: {why}"));
        return Ok(Vec::new());
    }
    let mask_rule =
        CosineDilationMask::from_angstrom(args.thresh, args.dilate, args.dist, apix.unwrap_or(1.0))?;
    let mut scores = Vec::new();
    for pair in per_epoch.windows(2) {
        let ((e0, a), (e1, b)) = (&pair[0], &pair[1]);
        for (m, (pa, pb)) in a.iter().zip(b).enumerate() {
            scores.push(volume_consistency(pa, pb, &mask_rule, apix, (*e0, *e1, m))?);
        }
    }
    Ok(scores)
}

/// Reads the two volumes of one maximum and compares them ([`VolumeConsistency::measure`]: the mask
/// from the later one).
fn volume_consistency(
    a: &Path,
    b: &Path,
    mask_rule: &CosineDilationMask,
    apix: Option<f32>,
    ids: (usize, usize, usize),
) -> Result<VolumeConsistency> {
    let va = drgnfly_io::mrc::read_volume(a)?;
    let vb = drgnfly_io::mrc::read_volume(b)?;
    if va.shape != vb.shape || va.shape[0] != va.shape[1] || va.shape[1] != va.shape[2] {
        bail!(
            "{} and {}: volumes of shapes {:?} and {:?} cannot be compared",
            a.display(),
            b.display(),
            va.shape,
            vb.shape
        );
    }
    Ok(VolumeConsistency::measure(&va.data, &vb.data, vb.shape, mask_rule, apix, ids)?)
}

/// The plots of `plots/`.
fn write_plots(
    wd: &Workdir,
    views: &[EpochView],
    shifts: &[LatentShift],
    spread: f64,
    matches: &[MaximaMatch],
    volumes: &[VolumeConsistency],
    dir: &Path,
) -> Result<()> {
    let save = |img: RgbImage, name: &str| -> Result<()> {
        img.write_png(dir.join(name))?;
        Ok(())
    };
    if let Ok(text) = std::fs::read(wd.run_log()) {
        let curve = parse_learning_curve(&String::from_utf8_lossy(&text));
        if !curve.epochs.is_empty() {
            let e: Vec<f64> = curve.epochs.iter().map(|e| e.epoch as f64).collect();
            let t: Vec<f64> = curve.epochs.iter().map(|e| e.total_loss).collect();
            save(
                plot::line_plot(
                    &[Series::new("total loss", e, t)],
                    &[],
                    None,
                    &Axes::new("Total loss", "epoch", "loss"),
                )?,
                "00_total_loss.png",
            )?;
        }
    }
    let embedded: Vec<&EpochView> = views.iter().filter(|v| v.view.xy.is_some()).collect();
    if !embedded.is_empty() {
        let tiles = |with_maxima: bool| -> Result<Vec<Tile>> {
            embedded
                .iter()
                .map(|v| {
                    let xy = v.view.xy.as_deref().unwrap_or_default();
                    let (x, y): (Vec<f32>, Vec<f32>) = xy.chunks_exact(2).map(|r| (r[0], r[1])).unzip();
                    let overlay = if with_maxima {
                        let markers = v
                            .view
                            .maxima
                            .iter()
                            .enumerate()
                            .map(|(k, m)| Marker {
                                x: m.center[0],
                                y: m.center[1],
                                label: k.to_string(),
                                color: plot::palette::chimerax(k),
                            })
                            .collect();
                        Overlay { markers, paths: Vec::new() }
                    } else {
                        Overlay::default()
                    };
                    let img = plot::scatter(
                        &x,
                        &y,
                        None,
                        &overlay,
                        &Axes::new(format!("epoch {}", v.epoch), "", ""),
                    )?;
                    Ok(Tile { image: img.downsample(2), caption: format!("epoch {}", v.epoch) })
                })
                .collect()
        };
        let cols = (embedded.len() as f64).sqrt().ceil() as usize;
        save(
            contact_sheet(&tiles(false)?, cols, Some("Latent embeddings by epoch"))?,
            "01_encoder_umaps.png",
        )?;
        save(
            contact_sheet(&tiles(true)?, cols, Some("Density maxima by epoch"))?,
            "03_decoder_UMAP-sketching.png",
        )?;
    }
    if !shifts.is_empty() {
        let e: Vec<f64> = shifts.iter().map(|s| s.epoch as f64).collect();
        let pct: Vec<f64> = shifts
            .iter()
            .map(|s| if spread > 0.0 { 100.0 * s.median_magnitude / spread } else { f64::NAN })
            .collect();
        let cos: Vec<f64> = shifts.iter().map(|s| s.median_cosine.unwrap_or(f64::NAN)).collect();
        let top = plot::line_plot(
            &[Series::new("median ‖Δz‖ (% of spread)", e.clone(), pct)],
            &[],
            None,
            &Axes::new("Encoder latent vector shifts", "epoch", "% of latent spread"),
        )?;
        let bottom = plot::line_plot(
            &[Series::new("median cos(Δz, previous Δz)", e, cos)],
            &[],
            Some(-1.05..1.05),
            &Axes::new("", "epoch", "cosine"),
        )?;
        let mut img =
            RgbImage::new(top.width().max(bottom.width()), top.height() + bottom.height(), [255; 3]);
        img.blit(&top, 0, 0);
        img.blit(&bottom, 0, top.height() as i64);
        save(img, "02_encoder_latent_vector_shifts.png")?;
    }
    if !matches.is_empty() {
        let e: Vec<f64> = matches.iter().map(|m| m.epoch as f64).collect();
        let j: Vec<f64> = matches.iter().map(|m| m.mean_jaccard).collect();
        save(
            plot::line_plot(
                &[Series::new("mean basin Jaccard", e, j)],
                &[],
                Some(0.0..1.05),
                &Axes::new("Maxima consistency with the previous epoch", "epoch", "Jaccard"),
            )?,
            "04_decoder_maxima-sketch-consistency.png",
        )?;
    }
    if !volumes.is_empty() {
        let maxima = volumes.iter().map(|v| v.maximum).max().unwrap_or(0) + 1;
        let per_max = |f: &dyn Fn(&VolumeConsistency) -> f64| -> Vec<Series> {
            (0..maxima)
                .map(|m| {
                    let pts: Vec<&VolumeConsistency> = volumes.iter().filter(|v| v.maximum == m).collect();
                    Series::new(
                        format!("maximum {m}"),
                        pts.iter().map(|v| v.epoch as f64).collect(),
                        pts.iter().map(|v| f(v)).collect(),
                    )
                })
                .collect()
        };
        save(
            plot::line_plot(
                &per_max(&|v| v.cc_masked),
                &[],
                None,
                &Axes::new("Masked CC with the previous epoch", "epoch", "CC"),
            )?,
            "05_decoder_CC.png",
        )?;
        let last_epoch = volumes.iter().map(|v| v.epoch).max().unwrap_or(0);
        let curves: Vec<Series> = volumes
            .iter()
            .filter(|v| v.epoch == last_epoch)
            .map(|v| Series::new(format!("maximum {}", v.maximum), v.fsc_freq.clone(), v.fsc.clone()))
            .collect();
        save(
            plot::fsc_plot(
                &curves,
                &Axes::new(format!("FSC, epoch {last_epoch} vs previous"), "frequency", "FSC"),
            )?,
            "06_decoder_FSC.png",
        )?;
        save(
            plot::line_plot(
                &per_max(&|v| v.fsc_at_nyquist().unwrap_or(f64::NAN)),
                &[],
                None,
                &Axes::new("FSC at Nyquist with the previous epoch", "epoch", "FSC"),
            )?,
            "07_decoder_FSC-nyquist.png",
        )?;
    }
    Ok(())
}
