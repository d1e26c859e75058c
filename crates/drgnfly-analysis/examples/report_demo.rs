//! Builds a demo analysis report from synthetic data: 10⁵ particles in 3 clusters, a learning curve,
//! latent plots, volume pictures and a traversal contact sheet; with `--screenshot` also takes a
//! headless-Chromium screenshot of it (how `docs/report-screenshot.png` was made).
//!
//! ```text
//! cargo run --release -p drgnfly-analysis --example report_demo -- OUT_DIR [--points N] [--screenshot PNG]
//! ```

use std::path::PathBuf;
use std::process::Command;

use drgnfly_analysis::plot::{self, Axes, Overlay, Series};
use drgnfly_analysis::render::{self, RenderOptions, View, VolumeRef};
use drgnfly_analysis::report::{ImageSource, InteractiveScatter, Item, Report, Section};
use drgnfly_analysis::VizError;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out = PathBuf::from("report-demo");
    let (mut n, mut screenshot) = (100_000usize, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--points" => n = args.next().and_then(|v| v.parse().ok()).ok_or("--points needs a number")?,
            "--screenshot" => {
                screenshot = Some(PathBuf::from(args.next().ok_or("--screenshot needs a path")?))
            }
            _ => out = PathBuf::from(a),
        }
    }
    for sub in ["kmeans20", "pc1"] {
        std::fs::create_dir_all(out.join(sub))?;
    }
    let html = out.join("report.html");
    build(n, &out)?.write(&html)?;
    eprintln!("wrote {}", html.display());
    if let Some(png) = screenshot {
        let png = std::path::absolute(png)?;
        let status = Command::new("/usr/bin/chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
            .args([
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", out.join("chromium-profile").display()))
            .arg(format!("--screenshot={}", png.display()))
            .arg("--window-size=1200,2000")
            .arg(format!("file://{}", std::path::absolute(&html)?.display()))
            .status()?;
        eprintln!("chromium: {status}; screenshot {}", png.display());
    }
    Ok(())
}

/// Deterministic standard normal numbers (LCG + Box–Muller).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Two Gaussian blobs `sep` voxels apart along x, plus a small third one on top: a toy "state".
fn two_blob_map(d: usize, sep: f32) -> Vec<f32> {
    let c = d as f32 / 2.0;
    let blob = |x: f32, y: f32, z: f32, cx: f32, cy: f32, cz: f32, s: f32| {
        (-((x - cx).powi(2) + (y - cy).powi(2) + (z - cz).powi(2)) / (2.0 * s * s)).exp()
    };
    (0..d * d * d)
        .map(|i| {
            let (z, y, x) = ((i / (d * d)) as f32, ((i / d) % d) as f32, (i % d) as f32);
            blob(x, y, z, c - sep / 2.0, c, c, 4.0)
                + blob(x, y, z, c + sep / 2.0, c, c, 3.2)
                + 0.8 * blob(x, y, z, c, c + 7.0, c + 2.0, 2.5)
        })
        .collect()
}

fn build(n: usize, out: &std::path::Path) -> Result<Report, VizError> {
    // Latent: 3 clusters in 2-D.
    let mut rng = Normal(7);
    let centres = [(-2.0, -1.0), (2.0, -1.2), (0.2, 2.0)];
    let (mut x, mut y, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let k = i % 3;
        x.push((centres[k].0 + 0.6 * rng.next()) as f32);
        y.push((centres[k].1 + 0.6 * (1.0 + 0.4 * k as f64) * rng.next()) as f32);
        labels.push(k as u16);
    }
    let centre_pts: Vec<[f32; 2]> = centres.iter().map(|c| [c.0 as f32, c.1 as f32]).collect();
    let traversal: Vec<[f32; 2]> =
        (0..10).map(|i| [-2.0 + 0.45 * i as f32, -1.0 + 0.3 * (i as f32 * 0.6).sin()]).collect();

    // Learning curve.
    let epochs: Vec<f64> = (1..=50).map(f64::from).collect();
    let gen: Vec<f64> = epochs.iter().map(|e| 0.9 + 0.4 * (-e / 8.0).exp()).collect();
    let kld: Vec<f64> = epochs.iter().map(|e| 2.0 + 1.5 * (1.0 - (-e / 5.0).exp())).collect();
    let total: Vec<f64> = gen.iter().zip(&kld).map(|(g, k)| g + 0.01 * k).collect();
    let fsc_x: Vec<f64> = (0..=32).map(|i| i as f64 / 64.0).collect();
    let fsc = |r: f64| fsc_x.iter().map(|f| 1.0 / (1.0 + (f / r).powi(6))).collect::<Vec<_>>();

    let png = |img: plot::RgbImage, name: &str| -> Result<Item, VizError> {
        img.write_png(out.join(name))?;
        Ok(Item::Image { caption: name.into(), source: ImageSource::Png(img.encode_png()?) })
    };
    let mut files = Vec::new();
    let mut pics = |img, name: &str| {
        files.push(name.to_string());
        png(img, name)
    };
    let curve = pics(plot::learning_curve(&epochs, &gen, &kld, &total)?, "learning_curve_epoch50.png")?;
    let fsc_png = pics(
        plot::fsc_plot(
            &[
                Series::new("state 1", fsc_x.clone(), fsc(0.2)),
                Series::new("state 2", fsc_x.clone(), fsc(0.13)),
            ],
            &Axes::new("FSC vs ground truth", "spatial frequency (1/px)", "FSC"),
        )?,
        "fsc.png",
    )?;
    let pca_axes = Axes::new("PCA of z", "PC1", "PC2");
    let km = pics(
        plot::scatter(&x, &y, Some(&labels), &Overlay::centers(&centre_pts), &pca_axes)?,
        "kmeans20/z_pca.png",
    )?;
    let hex = pics(plot::hexbin(&x, &y, &Overlay::path(traversal), &pca_axes)?, "pc1/pca_traversal_hex.png")?;
    let marg = pics(plot::scatter_with_marginals(&x, &y, &pca_axes)?, "z_pca_marginals.png")?;
    let counts: Vec<f64> = (0..3).map(|k| labels.iter().filter(|&&l| l == k).count() as f64).collect();
    let names: Vec<String> = (0..3).map(|k| k.to_string()).collect();
    let bars = pics(
        plot::bar_plot(&names, &counts, &Axes::new("Particles per class", "class", "particles"))?,
        "class_counts.png",
    )?;

    // Volumes: a traversal from blobs 6 to 16 voxels apart.
    let d = 48;
    let maps: Vec<Vec<f32>> = (0..6).map(|i| two_blob_map(d, 6.0 + 2.0 * i as f32)).collect();
    let vols = maps.iter().map(|m| VolumeRef::cube(m, d)).collect::<Result<Vec<_>, _>>()?;
    let slices = pics(render::slices_and_projections(&vols[3])?, "vol_004_slices.png")?;
    let views = RenderOptions {
        size: 200,
        views: vec![View::Front, View::Side, View::Top, View::ThreeQuarter],
        ..Default::default()
    };
    let three = pics(render::render_isosurface(&vols[3], &views)?, "vol_004_views.png")?;
    let captions: Vec<String> = (1..=6).map(|k| format!("vol_{k:03}")).collect();
    let colors: Vec<[u8; 3]> = (0..6).map(plot::palette::chimerax).collect();
    let tiles = render::render_tiles(
        &vols,
        &captions,
        Some(&colors),
        &RenderOptions { size: 160, ..Default::default() },
    )?;
    let sheet = pics(render::contact_sheet(&tiles, 6, Some("PC1 traversal"))?, "pc1/traversal_sheet.png")?;

    let scatter = InteractiveScatter {
        title: "PCA of z, coloured by k-means class".into(),
        x_label: "PC1".into(),
        y_label: "PC2".into(),
        x,
        y,
        labels,
        class_names: vec!["class 0".into(), "class 1".into(), "class 2".into()],
    };
    let row = |k: &str, v: &str| vec![k.to_string(), v.to_string()];
    Ok(Report {
        title: "drgnfly analyze — demo (synthetic data)".into(),
        sections: vec![
            Section::new(
                "Parameters",
                vec![Item::Table {
                    header: vec!["parameter".into(), "value".into()],
                    rows: vec![
                        row("workdir", "demo/"),
                        row("epoch", "50"),
                        row("particles", &n.to_string()),
                        row("zdim", "2"),
                        row("k-means classes", "3"),
                    ],
                }],
            ),
            Section::new("Latent space", vec![Item::Scatter(scatter), km, hex, marg, bars]),
            Section::new("Learning curve", vec![curve, fsc_png]),
            Section::new("Volumes", vec![slices, three]),
            Section::new("Traversal", vec![sheet]),
            Section::new("Files written", vec![Item::Files(files)]),
        ],
    })
}
