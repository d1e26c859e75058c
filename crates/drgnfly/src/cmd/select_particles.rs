//! `select-particles`: the non-interactive `cryodrgn filter`. Choose particles of an analysed epoch by
//! k-means cluster, by a box in PC1–PC2, or by a polygon in the UMAP plane, and write an index .pkl
//! plus, optionally, its complement and the selected rows of the original .star or .cs.
//!
//! Index spaces: z rows are the particles the model was trained on. When training used `--ind` (the
//! config's `dataset_args.ind`), every output is mapped through it, so the .pkl indexes the original
//! particle stack (use it with `--ind` on the original files) and the .star/.cs rows are the original
//! rows. `--inverse` holds the trained particles that were not selected.
//!
//! Example usage:
//!   drgnfly select-particles out 50 --kmeans 20 --clusters 0 3 -o good.pkl --inverse bad.pkl
//!   drgnfly select-particles out 50 --pc-box -1 2 -3 0.5 -o box.pkl --star particles.star --o-star box.star
//!   drgnfly select-particles out 50 --umap-polygon 0 0 5 0 5 5 -o sel.pkl --cs particles.cs --o-cs sel.cs

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::select;
use drgnfly_analysis::Latents;
use drgnfly_io::cs::CsFile;
use drgnfly_io::relion::RelionParticles;
use drgnfly_io::selection::write_selection;
use drgnfly_io::star::write_star;

use super::analysis_common::{load_labels, to_original, Workdir};

/// Select particles from analysis results; export .pkl, .star, .cs.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly select-particles out 50 --kmeans 20 --clusters 0 3 -o good.pkl --inverse bad.pkl\n  drgnfly select-particles out 50 --pc-box -1 2 -3 0.5 -o box.pkl --star particles.star --o-star box.star\n  drgnfly select-particles out 50 --umap-polygon 0 0 5 0 5 5 -o sel.pkl --cs particles.cs --o-cs sel.cs"
)]
#[command(group = clap::ArgGroup::new("how").required(true).args(["kmeans", "pc_box", "umap_polygon"]))]
pub struct Args {
    /// Training output directory.
    pub workdir: PathBuf,
    /// Epoch (1-based; −1 for the latest).
    #[arg(allow_negative_numbers = true)]
    pub epoch: i64,
    /// Use analyze.EPOCH/kmeansK/labels.pkl …
    #[arg(long, value_name = "K", requires = "clusters")]
    pub kmeans: Option<usize>,
    /// … and keep these clusters (0-based).
    #[arg(long, num_args = 1.., value_name = "C")]
    pub clusters: Vec<u32>,
    /// Keep particles with PC1 in [LO1, HI1] and PC2 in [LO2, HI2].
    #[arg(long, num_args = 4, value_names = ["PC1LO", "PC1HI", "PC2LO", "PC2HI"], allow_negative_numbers = true)]
    pub pc_box: Option<Vec<f32>>,
    /// Keep particles inside this polygon of the UMAP plane (x1 y1 x2 y2 …, ≥ 3 vertices; needs
    /// analyze.EPOCH/umap.pkl).
    #[arg(long, num_args = 6.., value_name = "XY", allow_negative_numbers = true)]
    pub umap_polygon: Option<Vec<f32>>,
    /// The analyze directory (default: WORKDIR/analyze.EPOCH).
    #[arg(long)]
    pub analyze_dir: Option<PathBuf>,
    /// Output index .pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Also write the trained particles not selected.
    #[arg(long, value_name = "PKL")]
    pub inverse: Option<PathBuf>,
    /// Original RELION .star to subset …
    #[arg(long, requires = "o_star")]
    pub star: Option<PathBuf>,
    /// … written here.
    #[arg(long = "o-star", requires = "star")]
    pub o_star: Option<PathBuf>,
    /// Original cryoSPARC .cs to subset …
    #[arg(long, requires = "o_cs")]
    pub cs: Option<PathBuf>,
    /// … written here.
    #[arg(long = "o-cs", requires = "cs")]
    pub o_cs: Option<PathBuf>,
}

/// Select, map through the training --ind, write.
pub fn run(args: Args) -> Result<()> {
    let wd = Workdir::open(&args.workdir, args.epoch)?;
    let (z, zdim) = wd.load_z(wd.epoch)?;
    let n = z.len() / zdim;
    let adir = args.analyze_dir.clone().unwrap_or_else(|| wd.dir.join(format!("analyze.{}", wd.epoch)));
    let rows = if let Some(k) = args.kmeans {
        let path = adir.join(format!("kmeans{k}")).join("labels.pkl");
        if !path.is_file() {
            bail!(
                "{}: not found; run `drgnfly analyze {} {} --ksample {k}` first",
                path.display(),
                wd.dir.display(),
                wd.epoch
            );
        }
        let labels = load_labels(&path)?;
        check_rows(&path, labels.len(), n)?;
        select::select_clusters(&labels, &args.clusters)?
    } else if let Some(b) = &args.pc_box {
        if zdim < 2 {
            bail!("--pc-box needs zdim ≥ 2 (this model has zdim {zdim})");
        }
        let lat = Latents::new(&z, zdim)?;
        let pcs = Pca::fit(lat)?.transform(lat, 2)?;
        select::select_in_box(&pcs, 2, &[b[0], b[2]], &[b[1], b[3]])?
    } else if let Some(p) = &args.umap_polygon {
        if p.len() % 2 != 0 {
            bail!("--umap-polygon takes x y pairs; got {} numbers", p.len());
        }
        let path = adir.join("umap.pkl");
        if !path.is_file() {
            bail!(
                "{}: not found; run `drgnfly analyze {} {}` (without --skip-umap) first",
                path.display(),
                wd.dir.display(),
                wd.epoch
            );
        }
        let umap = drgnfly_io::pickle::load_array(&path)?;
        if umap.shape != [n, 2] {
            bail!("{}: shape {:?}, expected ({n}, 2) for z.{}.pkl", path.display(), umap.shape, wd.epoch);
        }
        let poly: Vec<[f32; 2]> = p.chunks_exact(2).map(|c| [c[0], c[1]]).collect();
        select::select_in_polygon(&umap.as_f32_vec(), &poly)?
    } else {
        bail!("choose particles with --kmeans, --pc-box or --umap-polygon");
    };
    if rows.is_empty() {
        bail!("the selection is empty; nothing written");
    }
    let ind = wd.dataset_ind(n)?;
    let selected = to_original(&rows, ind.as_deref())?;
    write_selection(&args.output, &as_i64(&selected))?;
    let mapped = if ind.is_some() { " (mapped through the training --ind)" } else { "" };
    say!("{}: {} of {n} particles{mapped}", args.output.display(), selected.len());
    if let Some(inv) = &args.inverse {
        let rest = to_original(&select::complement(&rows, n)?, ind.as_deref())?;
        write_selection(inv, &as_i64(&rest))?;
        say!("{}: the other {} particles", inv.display(), rest.len());
    }
    let n_orig_min = ind.as_ref().map_or(n, |i| i.iter().max().map_or(0, |m| m + 1));
    if let (Some(star_path), Some(out)) = (&args.star, &args.o_star) {
        let star = RelionParticles::open(star_path)?;
        check_original(star_path, star.len(), n, n_orig_min, ind.is_some())?;
        write_star(out, &star.filter_particles(&selected)?)?;
        say!("{}: {} of {} rows of {}", out.display(), selected.len(), star.len(), star_path.display());
    }
    if let (Some(cs_path), Some(out)) = (&args.cs, &args.o_cs) {
        let cs = CsFile::open(cs_path)?;
        check_original(cs_path, cs.len(), n, n_orig_min, ind.is_some())?;
        cs.filter_rows(&selected, out)?;
        say!("{}: {} of {} rows of {}", out.display(), selected.len(), cs.len(), cs_path.display());
    }
    Ok(())
}

fn as_i64(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&i| i as i64).collect()
}

/// A per-particle file of the analysis must have one row per z row.
fn check_rows(path: &std::path::Path, got: usize, n: usize) -> Result<()> {
    if got != n {
        bail!(
            "{}: {got} rows but the latents hold {n} particles; was it made for another epoch or run?",
            path.display()
        );
    }
    Ok(())
}

/// The original .star/.cs must cover every trained particle: as many rows as z without a training
/// `--ind`, at least max(ind)+1 with one.
fn check_original(path: &std::path::Path, rows: usize, n: usize, n_min: usize, has_ind: bool) -> Result<()> {
    let ok = if has_ind { rows >= n_min } else { rows == n };
    if !ok {
        let want = if has_ind {
            format!("at least {n_min} (the training --ind reaches row {})", n_min - 1)
        } else {
            format!("{n}")
        };
        return Err(anyhow::anyhow!(
            "{}: {rows} particles, but the model was trained on {n}; expected {want} rows. Pass the file training read",
            path.display()
        ))
        .context("checking the particle file against the latents");
    }
    Ok(())
}
