//! What the map commands (`fsc`, `backproject`, `simulate`, `gen-mask`, …) share: reading cubic volumes
//! with their pixel size, writing maps, and writing and reporting FSC curves.
//!
//! Conventions: volumes are `[z][y][x]`, x fastest; pixel sizes are Å/px; an MRC header whose cell is 0
//! has no pixel size (`None`), and callers fall back to 1 Å/px with a note, as cryoDRGN does.

use std::path::Path;

use anyhow::{bail, Context, Result};
use drgnfly_analysis::plot::{fsc_plot, Axes, Series};
use drgnfly_em::fsc::FscCurve;
use drgnfly_io::atomic::write_atomic;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype};

/// A cubic map read from an MRC file.
pub struct CubicMap {
    /// Densities `[z][y][x]`, `D³` values.
    pub data: Vec<f32>,
    /// Box side D.
    pub d: usize,
    /// Pixel size from the header, when it records one.
    pub apix: Option<f32>,
}

/// Read a map and check that it is a cube (`what` names its role in messages, e.g. "first volume").
pub fn read_cubic(path: &Path, what: &str) -> Result<CubicMap> {
    let vol = read_volume(path)?;
    let [nz, ny, nx] = vol.shape;
    if !(nz == ny && ny == nx) {
        bail!(
            "{}: the {what} is {nx}×{ny}×{nz} voxels (x×y×z), not a cube; this command needs a cubic map (pad or crop it to D×D×D first)",
            path.display()
        );
    }
    let apix = vol.header.known_apix();
    Ok(CubicMap { data: vol.data, d: nx, apix })
}

/// Write a `D³` map (float32) with pixel size `apix` Å.
pub fn write_map(path: &Path, data: &[f32], d: usize, apix: f32) -> Result<()> {
    write_volume(path, data, [d, d, d], apix, [0.0; 3], MrcDtype::F32)?;
    Ok(())
}

/// The resolutions at FSC 0.5 and 0.143 as a one-line report, in Å (and px).
pub fn resolution_line(curve: &FscCurve, apix: f64) -> String {
    let part = |t: f64| {
        let f = curve.crossing(t);
        if f > 0.0 {
            format!("FSC={t}: {:.2} Å ({:.2} px)", apix / f, 1.0 / f)
        } else {
            format!("FSC={t}: below the threshold from the first shell")
        }
    };
    format!("{}; {}; AUC {:.4}", part(0.5), part(0.143), curve.auc())
}

/// Write cryoDRGN's `fsc-vals.txt` layout to `txt` and, when given, the curve as a PNG.
pub fn write_fsc(
    curve: &FscCurve,
    txt: Option<&Path>,
    png: Option<&Path>,
    title: &str,
    apix: f64,
) -> Result<()> {
    if let Some(p) = txt {
        write_atomic(p, curve.to_text().as_bytes())?;
    }
    if let Some(p) = png {
        // Plotted against 1/Å like cryoDRGN's plot_fsc when the pixel size is known.
        let x: Vec<f64> = curve.freq.iter().map(|f| f / apix).collect();
        let series = [Series::new(title, x, curve.fsc.clone())];
        fsc_plot(&series, &Axes::new(title, "spatial frequency (1/Å)", "FSC"))
            .and_then(|img| img.write_png(p))
            .with_context(|| format!("writing the FSC plot {}", p.display()))?;
    }
    Ok(())
}
