//! `analyze`: PCA, UMAP and k-means of one epoch's latents, volumes at the k-means centres and along
//! the principal components, plots, and a self-contained `report.html`, in cryoDRGN's layout
//! (`WORKDIR/analyze.EPOCH/`, reference §5).
//!
//! Differences from cryoDRGN, on purpose:
//! - k-means classes are numbered as cryoDRGN numbers them: by the leaf order of the average-linkage
//!   dendrogram of the snapped centres (seaborn's `clustermap`, reproduced in
//!   `drgnfly_analysis::hierarchy`), so similar classes get neighbouring numbers; the centre of class k
//!   is `vol_{k+1:03}.mrc`.
//! - With fewer particles than `--ksample`, K drops to the number of particles, with a warning.
//! - A zdim-1 latent also gets k-means (cryoDRGN only writes the percentile series).
//! - NaN losses in `run.log` are left out of the learning curve instead of crashing (#346).
//! - Volumes that cannot be generated (no checkpoint, a decoder error) are reported and the rest of
//!   the analysis is still written.
//! - The notebooks are replaced by `report.html` (no network access needed).
//!
//! Example usage:
//!   drgnfly analyze out 50
//!   drgnfly analyze out 50 --ksample 10 --pc 3 --Apix 1.7 -d 128 --skip-umap
//!   drgnfly analyze out 50 --low-pass 8 --crop 96

mod outputs;
mod plots;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::kmeans::{kmeans, nearest_particle, KMeans, KMeansParams};
use drgnfly_analysis::linalg::percentile;
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::plot::{palette, Axes};
use drgnfly_analysis::report::{InteractiveScatter, Item, Report, Section};
use drgnfly_analysis::traversal::{format_z_text, pc_traversal, PcSpacing};
use drgnfly_analysis::umap::{umap, UmapParams};
use drgnfly_analysis::Latents;
use drgnfly_io::pickle::{self, ArrayData, NdArray};
use drgnfly_nn::volume::VolumeRequest;

use self::outputs::Outputs;
use super::analysis_common::{format_indices, volume_sheets, write_labels, Steps, VolumeMaker, Workdir};
use super::compat::{log_notes, DeviceCompat};

/// Analyse the latent space of a trained model.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly analyze out 50\n  drgnfly analyze out 50 --ksample 10 --pc 3 --Apix 1.7 -d 128 --skip-umap\n  drgnfly analyze out 50 --low-pass 8 --crop 96"
)]
pub struct Args {
    /// Training output directory (holds z.EPOCH.pkl, weights.EPOCH.*, config.yaml, run.log).
    pub workdir: PathBuf,
    /// Epoch to analyse (1-based; −1 for the latest).
    #[arg(allow_negative_numbers = true)]
    pub epoch: i64,
    /// Output directory (default: WORKDIR/analyze.EPOCH).
    #[arg(short = 'o', long = "outdir")]
    pub outdir: Option<PathBuf>,
    /// Do not generate volumes.
    #[arg(long)]
    pub skip_vol: bool,
    /// Do not run UMAP.
    #[arg(long)]
    pub skip_umap: bool,
    /// Number of principal components to traverse.
    #[arg(long, default_value_t = 2)]
    pub pc: usize,
    /// Volumes per principal component (and percentiles of a zdim-1 latent).
    #[arg(long, default_value_t = 10)]
    pub n_per_pc: usize,
    /// Number of k-means classes.
    #[arg(long, default_value_t = 20)]
    pub ksample: usize,
    /// Pixel size of the volumes in Å (default: from the ctf.pkl of the config, else 1).
    #[arg(long = "Apix", value_name = "A")]
    pub apix: Option<f32>,
    /// Reverse the handedness of the volumes.
    #[arg(long)]
    pub flip: bool,
    /// Invert the contrast of the volumes.
    #[arg(long)]
    pub invert: bool,
    /// Generate volumes at this (even) box size.
    #[arg(short = 'd', long = "downsample", value_name = "D")]
    pub downsample: Option<usize>,
    /// Low-pass filter the volumes to this resolution (Å), as eval-vol.
    #[arg(long, value_name = "A")]
    pub low_pass: Option<f32>,
    /// Crop the centre box of the volumes to this size (pixels), as eval-vol.
    #[arg(long, value_name = "N")]
    pub crop: Option<usize>,
    /// Seed of k-means and UMAP.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of the first volume (cryoDRGN's --vol-start-index); drgnfly numbers them from 1, cryoDRGN's
    /// default, and supports only that.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub vol_start_index: usize,
    #[command(flatten)]
    pub device: DeviceCompat,
}

/// A 2D embedding for plots: the UMAP when there is one, else PC1/PC2, else (particle, z).
struct Embedding {
    xy: Vec<f32>,
    axes: Axes,
    stem: &'static str,
}

/// Run the analysis.
pub fn run(args: Args) -> Result<()> {
    if args.vol_start_index != 1 {
        bail!(
            "--vol-start-index {}: drgnfly numbers analyze's volumes from 1 (vol_001.mrc), as cryoDRGN does by \
             default; drop the flag",
            args.vol_start_index
        );
    }
    log_notes(args.device.note());
    let steps = Steps::new("analyze");
    let wd = Workdir::open(&args.workdir, args.epoch)?;
    let epoch = wd.epoch;
    let dir = args.outdir.clone().unwrap_or_else(|| wd.dir.join(format!("analyze.{epoch}")));
    let mut o = Outputs::create(dir)?;
    let (z, zdim) = wd.load_z(epoch)?;
    let lat = Latents::new(&z, zdim).with_context(|| format!("latents of {}", wd.z_path(epoch).display()))?;
    let n = lat.len();
    if n < 2 {
        anyhow::bail!("{}: {n} particle(s); analysis needs at least 2", wd.z_path(epoch).display());
    }
    steps.note(&format!("{}: {n} particles, zdim {zdim} → {}", wd.z_path(epoch).display(), o.dir.display()));
    let request = VolumeRequest {
        apix: wd.apix(args.apix)?,
        flip: args.flip,
        invert: args.invert,
        downsample: args.downsample,
        low_pass_a: args.low_pass,
        crop: args.crop,
    };
    let apix_text = request.apix.map_or("1 (unknown)".to_string(), |a| format!("{a}"));
    let mut vols = VolumeMaker::new(&wd, epoch, request, args.skip_vol);
    let curve = steps.run("plots: learning curve", || plots::learning_curve(&mut o, &wd))?;
    // Poses the run refined or inferred (--do-pose-sgd, ab initio) are worth a look: where are the views?
    let pose_file = wd.dir.join(format!("pose.{epoch}.pkl"));
    let views = if pose_file.is_file() {
        steps.run("plots: viewing directions", || plots::viewing_directions(&mut o, &pose_file))?
    } else {
        Vec::new()
    };

    // Latent space: PCA and UMAP (zdim ≥ 2), or the 1D plots.
    let mut latent_items = Vec::new();
    let (pca, pcs) = if zdim >= 2 {
        let pca = steps.run("PCA", || Ok(Pca::fit(lat)?))?;
        let pcs = pca.transform(lat, 2)?;
        let evr: Vec<String> =
            pca.explained_variance_ratio.iter().take(5).map(|r| format!("{:.1}%", 100.0 * r)).collect();
        latent_items
            .push(Item::Text(format!("Explained variance of the first components: {}.", evr.join(", "))));
        let axes = Axes::new("PCA", "PC1", "PC2");
        latent_items.extend(steps.run("plots: PCA", || plots::embedding(&mut o, &pcs, "z_pca", &axes))?);
        (Some(pca), Some(pcs))
    } else {
        latent_items.extend(steps.run("plots: z", || plots::latent_1d(&mut o, &z))?);
        (None, None)
    };
    let umap_xy = if zdim > 2 && !args.skip_umap {
        let xy = steps.run("UMAP", || umap_cached(&mut o, lat, args.seed))?;
        let axes = Axes::new("UMAP", "UMAP1", "UMAP2");
        latent_items.extend(steps.run("plots: UMAP", || plots::embedding(&mut o, &xy, "umap", &axes))?);
        Some(xy)
    } else {
        None
    };
    let embeddings: Vec<Embedding> = [
        pcs.as_ref().map(|p| Embedding { xy: p.clone(), axes: Axes::new("", "PC1", "PC2"), stem: "z_pca" }),
        umap_xy.as_ref().map(|u| Embedding {
            xy: u.clone(),
            axes: Axes::new("", "UMAP1", "UMAP2"),
            stem: "umap",
        }),
    ]
    .into_iter()
    .flatten()
    .collect();

    // k-means.
    let k = if n < args.ksample {
        o.note(format!("--ksample {} is more than the {n} particles; using K = {n}", args.ksample));
        n
    } else {
        args.ksample
    };
    if k > drgnfly_analysis::hierarchy::MAX_POINTS {
        o.note(format!(
            "K = {k}: classes keep k-means order (the dendrogram order is computed for K ≤ {})",
            drgnfly_analysis::hierarchy::MAX_POINTS
        ));
    }
    let km = steps.run(&format!("k-means (K = {k})"), || {
        Ok(kmeans(lat, &KMeansParams { k, seed: args.seed, ..KMeansParams::default() })?.dendrogram_ordered())
    })?;
    let labels16: Vec<u16> = km.labels.iter().map(|&l| l.min(u16::MAX as u32) as u16).collect();
    let mut kitems =
        steps.run("plots: k-means classes", || kmeans_outputs(&mut o, &km, &embeddings, &labels16, zdim))?;
    kitems.extend(volume_items(&mut o, &mut vols, &km.centers, zdim, &format!("kmeans{k}"), true, &steps)?);

    // Traversals: along PCs, or percentiles of a 1D latent.
    let mut traversal_items = Vec::new();
    if let Some(pca) = &pca {
        for pc in 1..=args.pc.min(zdim) {
            traversal_items.extend(pc_outputs(
                &mut o,
                &mut vols,
                pca,
                lat,
                pc,
                args.n_per_pc,
                &embeddings,
                &steps,
            )?);
        }
    } else {
        let zs = percentile_series(&z, args.n_per_pc);
        o.text("z_values.txt", &format_z_text(&zs, 1))?;
        traversal_items.push(Item::Text(format!(
            "{} z values at evenly spaced percentiles (5th to 95th): z_values.txt.",
            zs.len()
        )));
        traversal_items.extend(volume_items(&mut o, &mut vols, &zs, 1, "", false, &steps)?);
    }

    // Interactive scatter and report.
    let (sx, sy, title, xl, yl) = match (&umap_xy, &pcs) {
        (Some(u), _) => split("UMAP", "UMAP1", "UMAP2", u),
        (None, Some(p)) => split("PCA", "PC1", "PC2", p),
        _ => ((0..n).map(|i| i as f32).collect(), z.clone(), "Latent", "particle", "z"),
    };
    let scatter = InteractiveScatter {
        title: format!("{title} coloured by k-means class"),
        x_label: xl.into(),
        y_label: yl.into(),
        x: sx,
        y: sy,
        labels: labels16,
        class_names: (0..k).map(|c| format!("class {c} (vol_{:03})", c + 1)).collect(),
    };
    let params = parameters(&args, &wd, n, zdim, k, &apix_text, umap_xy.is_some(), &vols);
    let mut sections =
        vec![Section::new("Parameters", vec![params]), Section::new("Explore", vec![Item::Scatter(scatter)])];
    if !curve.is_empty() {
        sections.push(Section::new("Learning curve", curve));
    }
    sections.push(Section::new("Latent space", latent_items));
    if !views.is_empty() {
        sections.push(Section::new("Poses", views));
    }
    sections.push(Section::new(format!("k-means, K = {k}"), kitems));
    sections.push(Section::new("Traversals", traversal_items));
    if !o.notes.is_empty() {
        sections.push(Section::new("Notes", vec![Item::Text(o.notes.join("\n\n"))]));
    }
    o.files.push("report.html".into());
    sections.push(Section::new("Files written", vec![Item::Files(o.files.clone())]));
    let report = Report { title: format!("drgnfly analyze: {} epoch {epoch}", wd.dir.display()), sections };
    steps.run("report", || Ok(report.write(o.dir.join("report.html"))?))?;

    say!(
        "analyze: {} files in {} ({:.1} s); K = {k}; UMAP {}; volumes {}",
        o.files.len(),
        o.dir.display(),
        steps.elapsed_s(),
        if umap_xy.is_some() { "yes" } else { "no" },
        vols.skipped.as_deref().map_or("written".to_string(), |why| format!("not written ({why})"))
    );
    for note in &o.notes {
        say!("  note: {note}");
    }
    say!("  report: {}", o.dir.join("report.html").display());
    if vols.failed {
        // Everything else is written; the exit status still says that part of the job failed.
        bail!(
            "{}; the plots and report are written without volumes (fix the cause and rerun, or pass --skip-vol)",
            vols.skipped.as_deref().unwrap_or("volume generation failed")
        );
    }
    Ok(())
}

/// Columns of an N×2 embedding with its labels.
fn split(
    title: &'static str,
    xl: &'static str,
    yl: &'static str,
    xy: &[f32],
) -> (Vec<f32>, Vec<f32>, &'static str, &'static str, &'static str) {
    let (x, y) = plots::columns(xy);
    (x, y, title, xl, yl)
}

/// UMAP, reusing `umap.pkl` when it exists with one row per particle (as cryoDRGN does).
fn umap_cached(o: &mut Outputs, lat: Latents<'_>, seed: u64) -> Result<Vec<f32>> {
    let path = o.dir.join("umap.pkl");
    if path.is_file() {
        if let Ok(a) = pickle::load_array(&path) {
            if a.shape == [lat.len(), 2] {
                say!("[analyze] reusing {}", path.display());
                o.record(&path);
                return Ok(a.as_f32_vec());
            }
        }
    }
    let xy = umap(lat, &UmapParams { seed, ..UmapParams::default() })?;
    pickle::write_array(&path, &NdArray::new(vec![lat.len(), 2], ArrayData::F32(xy.clone())))?;
    o.record(&path);
    Ok(xy)
}

/// `kmeansK/labels.pkl`, `centers.txt`, `centers_ind.txt`, `z_values.txt`, and the class plots.
fn kmeans_outputs(
    o: &mut Outputs,
    km: &KMeans,
    embeddings: &[Embedding],
    labels16: &[u16],
    zdim: usize,
) -> Result<Vec<Item>> {
    let k = km.center_indices.len();
    let rel = format!("kmeans{k}");
    let kdir = o.subdir(&rel)?;
    write_labels(&kdir.join("labels.pkl"), &km.labels)?;
    o.record(&kdir.join("labels.pkl"));
    let centers = format_z_text(&km.centers, zdim);
    o.text(&format!("{rel}/centers.txt"), &centers)?;
    o.text(&format!("{rel}/z_values.txt"), &centers)?;
    o.text(&format!("{rel}/centers_ind.txt"), &format_indices(&km.center_indices))?;
    let mut counts = vec![0usize; k];
    for &l in &km.labels {
        if let Some(c) = counts.get_mut(l as usize) {
            *c += 1;
        }
    }
    let rows = (0..k)
        .map(|c| {
            vec![
                c.to_string(),
                format!("vol_{:03}", c + 1),
                counts[c].to_string(),
                km.center_indices[c].to_string(),
            ]
        })
        .collect();
    let mut items = vec![Item::Table {
        header: vec!["class".into(), "volume".into(), "particles".into(), "centre particle".into()],
        rows,
    }];
    for e in embeddings {
        let centres: Vec<[f32; 2]> =
            km.center_indices.iter().map(|&i| [e.xy[2 * i], e.xy[2 * i + 1]]).collect();
        let axes = Axes {
            title: format!("k-means classes on {}", if e.stem == "umap" { "UMAP" } else { "PCA" }),
            ..e.axes.clone()
        };
        items.extend(plots::kmeans_on(o, &e.xy, labels16, &centres, &format!("{rel}/{}", e.stem), &axes)?);
    }
    Ok(items)
}

/// Volumes for the rows of `zs` in `rel` (the output directory itself when empty), with their
/// contact sheets; a note when volumes are skipped.
fn volume_items(
    o: &mut Outputs,
    vols: &mut VolumeMaker,
    zs: &[f32],
    zdim: usize,
    rel: &str,
    class_colors: bool,
    steps: &Steps,
) -> Result<Vec<Item>> {
    let dir = if rel.is_empty() { o.dir.clone() } else { o.subdir(rel)? };
    let count = zs.len() / zdim;
    let made = if vols.skipped.is_some() {
        None
    } else {
        steps.run(&format!("{count} volumes in {}", dir.display()), || Ok(vols.make(zs, zdim, &dir)))?
    };
    let Some(paths) = made else {
        let why = vols.skipped.clone().unwrap_or_default();
        return Ok(vec![Item::Text(format!("Volumes not generated: {why}."))]);
    };
    paths.iter().for_each(|p| o.record(p));
    let colors: Vec<[u8; 3]> = (0..paths.len()).map(palette::chimerax).collect();
    let prefix = if rel.is_empty() { String::new() } else { format!("{rel}/") };
    let title = if rel.is_empty() { "volumes".to_string() } else { rel.to_string() };
    steps.run(&format!("plots: contact sheets of {title}"), || {
        let (renders, slices) = volume_sheets(&paths, class_colors.then_some(&colors[..]), &title)?;
        Ok(vec![
            o.png(&renders, &format!("{prefix}vol_renders.png"), &format!("{title}: isosurfaces"))?,
            o.png(
                &slices,
                &format!("{prefix}vol_slices.png"),
                &format!("{title}: central slices and projections"),
            )?,
        ])
    })
}

/// `pcK/z_values.txt`, the traversal plots and volumes of one principal component.
#[allow(clippy::too_many_arguments)]
fn pc_outputs(
    o: &mut Outputs,
    vols: &mut VolumeMaker,
    pca: &Pca,
    lat: Latents<'_>,
    pc: usize,
    n_per_pc: usize,
    embeddings: &[Embedding],
    steps: &Steps,
) -> Result<Vec<Item>> {
    let zdim = lat.zdim();
    let tr = pc_traversal(pca, lat, pc, n_per_pc, PcSpacing::Percentile5To95)?;
    let rel = format!("pc{pc}");
    o.subdir(&rel)?;
    o.text(&format!("{rel}/z_values.txt"), &format_z_text(&tr.z, zdim))?;
    let ev = pca.explained_variance_ratio.get(pc - 1).copied().unwrap_or(0.0);
    let mut items = vec![Item::Text(format!(
        "PC{pc} ({:.1}% of the variance): {} points from {:.3} to {:.3} (5th to 95th percentile).",
        100.0 * ev,
        tr.coords.len(),
        tr.coords.first().copied().unwrap_or(0.0),
        tr.coords.last().copied().unwrap_or(0.0)
    ))];
    let tz = Latents::new(&tr.z, zdim)?;
    items.extend(
        steps.run(&format!("plots: PC{pc} traversal"), || pc_plots(o, pca, lat, tz, pc, embeddings))?,
    );
    items.extend(volume_items(o, vols, &tr.z, zdim, &rel, false, steps)?);
    Ok(items)
}

/// The traversal of PC `pc` (latents `tz`) drawn on each embedding, as points and as a path.
fn pc_plots(
    o: &mut Outputs,
    pca: &Pca,
    lat: Latents<'_>,
    tz: Latents<'_>,
    pc: usize,
    embeddings: &[Embedding],
) -> Result<Vec<Item>> {
    let zdim = lat.zdim();
    let rel = format!("pc{pc}");
    let mut items = Vec::new();
    for e in embeddings {
        let path: Vec<[f32; 2]> = if e.stem == "z_pca" {
            let p = pca.transform(tz, 2)?;
            p.chunks_exact(2).map(|r| [r[0], r[1]]).collect()
        } else {
            // No inverse UMAP: place each point at its nearest particle.
            tz.as_slice()
                .chunks_exact(zdim)
                .map(|row| {
                    let q: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                    let i = nearest_particle(lat, &q);
                    [e.xy[2 * i], e.xy[2 * i + 1]]
                })
                .collect()
        };
        let name = if e.stem == "z_pca" { "pca" } else { "umap" };
        let axes = Axes { title: format!("PC{pc} traversal"), ..e.axes.clone() };
        items.push(plots::traversal_on(
            o,
            &e.xy,
            &path,
            false,
            &format!("{rel}/{name}_traversal.png"),
            &axes,
        )?);
        items.push(plots::traversal_on(
            o,
            &e.xy,
            &path,
            true,
            &format!("{rel}/{name}_traversal_connected.png"),
            &axes,
        )?);
    }
    Ok(items)
}

/// `n` values of a 1D latent at the 5th…95th percentiles, evenly spaced in percentile.
fn percentile_series(z: &[f32], n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let p = if n == 1 { 50.0 } else { 5.0 + 90.0 * i as f64 / (n - 1) as f64 };
            percentile(z, p).unwrap_or(0.0) as f32
        })
        .collect()
}

/// The parameter table of the report.
#[allow(clippy::too_many_arguments)]
fn parameters(
    args: &Args,
    wd: &Workdir,
    n: usize,
    zdim: usize,
    k: usize,
    apix: &str,
    umap: bool,
    vols: &VolumeMaker,
) -> Item {
    let row = |a: &str, b: String| vec![a.to_string(), b];
    let path = |p: &Path| p.display().to_string();
    Item::Table {
        header: vec!["parameter".into(), "value".into()],
        rows: vec![
            row("workdir", path(&wd.dir)),
            row("epoch", wd.epoch.to_string()),
            row("particles", n.to_string()),
            row("zdim", zdim.to_string()),
            row("k-means classes (--ksample)", format!("{k} (asked {})", args.ksample)),
            row("principal components traversed (--pc)", args.pc.min(zdim).to_string()),
            row("points per PC (--n-per-pc)", args.n_per_pc.to_string()),
            row("UMAP", if umap { "yes".into() } else { "no".into() }),
            row("volumes", vols.skipped.as_deref().map_or("yes".into(), |w| format!("no: {w}"))),
            row("Å/px", apix.to_string()),
            row("--flip / --invert", format!("{} / {}", args.flip, args.invert)),
            row("-d", args.downsample.map_or("full size".into(), |d| d.to_string())),
            row("--low-pass (Å)", args.low_pass.map_or("none".into(), |a| a.to_string())),
            row("--crop", args.crop.map_or("none".into(), |c| c.to_string())),
            row("seed", args.seed.to_string()),
            row("drgnfly", env!("CARGO_PKG_VERSION").to_string()),
        ],
    }
}
