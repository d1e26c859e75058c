//! The latent-space pictures of `analyze`, named as cryoDRGN names them (reference §5).

use std::path::Path;

use anyhow::{Context, Result};
use drgnfly_analysis::learning_curve::parse_learning_curve;
use drgnfly_analysis::plot::{self, Axes, Marker, Overlay, Series};
use drgnfly_analysis::report::Item;

use super::outputs::Outputs;
use crate::cmd::analysis_common::Workdir;

/// Columns of an N×2 row-major array.
pub fn columns(xy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    xy.chunks_exact(2).map(|r| (r[0], r[1])).unzip()
}

/// Plain scatter, hexbin density and scatter with marginals of a 2D embedding: `{stem}.png`,
/// `{stem}_hexbin.png`, `{stem}_marginals.png`.
pub fn embedding(o: &mut Outputs, xy: &[f32], stem: &str, axes: &Axes) -> Result<Vec<Item>> {
    let (x, y) = columns(xy);
    let none = Overlay::default();
    Ok(vec![
        o.png(&plot::scatter(&x, &y, None, &none, axes)?, &format!("{stem}.png"), &axes.title)?,
        o.png(
            &plot::hexbin(&x, &y, &none, axes)?,
            &format!("{stem}_hexbin.png"),
            &format!("{} (density)", axes.title),
        )?,
        o.png(
            &plot::scatter_with_marginals(&x, &y, axes)?,
            &format!("{stem}_marginals.png"),
            &format!("{} with marginals", axes.title),
        )?,
    ])
}

/// A 1D latent: z against particle index (`z.png`) and its histogram (`z_hist.png`).
pub fn latent_1d(o: &mut Outputs, z: &[f32]) -> Result<Vec<Item>> {
    let idx: Vec<f32> = (0..z.len()).map(|i| i as f32).collect();
    let scatter = plot::scatter(&idx, z, None, &Overlay::default(), &Axes::new("Latent", "particle", "z"))?;
    let (lo, hi) = z.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    // A constant latent still gets a (one-bar) histogram of non-zero width.
    let (lo, hi) = if hi > lo { (lo as f64, hi as f64) } else { (lo as f64 - 0.5, lo as f64 + 0.5) };
    let bins = 50;
    let counts = plot::histogram(z, lo..hi, bins);
    let width = (hi - lo) / bins as f64;
    let centres: Vec<f64> = (0..bins).map(|b| lo + (b as f64 + 0.5) * width).collect();
    let counts: Vec<f64> = counts.iter().map(|&c| f64::from(c)).collect();
    let hist = plot::line_plot(
        &[Series::new("particles", centres, counts)],
        &[],
        None,
        &Axes::new("Latent distribution", "z", "particles per bin"),
    )?;
    Ok(vec![o.png(&scatter, "z.png", "Latent by particle")?, o.png(&hist, "z_hist.png", "Latent histogram")?])
}

/// k-means classes on an embedding with the centres marked: `{rel_stem}.png` (coloured by class) and
/// `{rel_stem}_hex.png`.
pub fn kmeans_on(
    o: &mut Outputs,
    xy: &[f32],
    labels: &[u16],
    centres: &[[f32; 2]],
    rel_stem: &str,
    axes: &Axes,
) -> Result<Vec<Item>> {
    let (x, y) = columns(xy);
    let overlay = Overlay::centers(centres);
    Ok(vec![
        o.png(
            &plot::scatter(&x, &y, Some(labels), &overlay, axes)?,
            &format!("{rel_stem}.png"),
            &axes.title,
        )?,
        o.png(
            &plot::hexbin(&x, &y, &overlay, axes)?,
            &format!("{rel_stem}_hex.png"),
            &format!("{} (density)", axes.title),
        )?,
    ])
}

/// A traversal drawn over an embedding: as a connected path (`connected`) or as numbered markers.
pub fn traversal_on(
    o: &mut Outputs,
    xy: &[f32],
    path: &[[f32; 2]],
    connected: bool,
    rel: &str,
    axes: &Axes,
) -> Result<Item> {
    let (x, y) = columns(xy);
    let overlay = if connected {
        Overlay::path(path.to_vec())
    } else {
        let markers = path
            .iter()
            .enumerate()
            .map(|(i, p)| Marker {
                x: p[0],
                y: p[1],
                label: (i + 1).to_string(),
                color: plot::palette::viridis(i as f64 / (path.len().max(2) - 1) as f64),
            })
            .collect();
        Overlay { markers, paths: Vec::new() }
    };
    o.png(&plot::scatter(&x, &y, None, &overlay, axes)?, rel, &axes.title)
}

/// `learning_curve_epochE.png` from `run.log`, tolerant of NaN/Inf losses (they are left out of the
/// plot and listed in the notes).
pub fn learning_curve(o: &mut Outputs, wd: &Workdir) -> Result<Vec<Item>> {
    let log = wd.run_log();
    if !log.is_file() {
        o.note(format!("{}: not found; no learning curve", log.display()));
        return Ok(Vec::new());
    }
    let text = std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
    let curve = parse_learning_curve(&String::from_utf8_lossy(&text));
    let epochs: Vec<_> = curve.epochs.iter().filter(|e| e.epoch <= wd.epoch).collect();
    if epochs.is_empty() {
        o.note(format!("{}: no epoch summary lines; no learning curve", log.display()));
        return Ok(Vec::new());
    }
    let bad = curve.non_finite_epochs();
    if !bad.is_empty() {
        o.note(format!(
            "{}: non-finite total loss at epoch(s) {bad:?} (left out of the plot)",
            log.display()
        ));
    }
    if !curve.skipped_lines.is_empty() {
        o.note(format!("{}: unreadable epoch line(s) {:?} skipped", log.display(), curve.skipped_lines));
    }
    let e: Vec<f64> = epochs.iter().map(|e| e.epoch as f64).collect();
    let gen: Vec<f64> = epochs.iter().map(|e| e.gen_loss.unwrap_or(f64::NAN)).collect();
    let kld: Vec<f64> = epochs.iter().map(|e| e.kld.unwrap_or(f64::NAN)).collect();
    let total: Vec<f64> = epochs.iter().map(|e| e.total_loss).collect();
    let img = plot::learning_curve(&e, &gen, &kld, &total)?;
    Ok(vec![o.png(&img, &format!("learning_curve_epoch{}.png", wd.epoch), "Learning curve")?])
}

/// Where the particles were seen from, when the run refined or inferred poses (its pose.E.pkl): hexbin
/// density of the viewing direction (the third row of each rotation, normal to the slice) over azimuth and
/// its z component. The map is equal-area, so uniform coverage looks uniform and missing views show as
/// holes: `viewing_directions.png`.
pub fn viewing_directions(o: &mut Outputs, poses: &Path) -> Result<Vec<Item>> {
    let p = drgnfly_io::pickle::load_poses(poses)?;
    let (az, z): (Vec<f32>, Vec<f32>) = p
        .rot
        .iter()
        .map(|r| {
            let [x, y, z] = r[2];
            (y.atan2(x).to_degrees(), z.clamp(-1.0, 1.0))
        })
        .unzip();
    let axes = Axes::new(
        format!("Viewing directions ({} particles)", az.len()),
        "azimuth (degrees)",
        "z of the viewing direction (equal-area)",
    );
    let img = plot::hexbin(&az, &z, &Overlay::default(), &axes)?;
    Ok(vec![o.png(&img, "viewing_directions.png", "Viewing directions of the refined or inferred poses")?])
}
