//! Report tests that need no browser.

use base64::Engine;

use super::*;
use crate::plot::RgbImage;
use crate::VizError;

/// Three Gaussian-ish clusters from a fixed LCG (no rand dependency needed here).
pub(crate) fn three_clusters(n: usize) -> InteractiveScatter {
    let mut s = 0x2545_f491u64;
    let mut uniform = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let centres = [(-2.0, -1.0), (2.0, -1.2), (0.2, 2.0)];
    let (mut x, mut y, mut labels) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let k = i % 3;
        // Box–Muller.
        let (u, v) = (uniform(), uniform());
        let r = (-2.0 * u.ln()).sqrt() * 0.6;
        let t = 2.0 * std::f64::consts::PI * v;
        x.push((centres[k].0 + r * t.cos()) as f32);
        y.push((centres[k].1 + r * t.sin() * (1.0 + 0.5 * k as f64)) as f32);
        labels.push(k as u16);
    }
    InteractiveScatter {
        title: "UMAP of z, coloured by k-means class".into(),
        x_label: "UMAP1".into(),
        y_label: "UMAP2".into(),
        x,
        y,
        labels,
        class_names: vec![
            "class 0 (open)".into(),
            "class 1 (closed)".into(),
            "class 2 <intermediate>".into(),
        ],
    }
}

/// The text between `start` and the next `</script>`.
fn block<'a>(html: &'a str, start: &str) -> &'a str {
    let i = html.find(start).map(|i| i + start.len()).unwrap_or_else(|| panic!("{start} missing"));
    let j = html[i..].find("</script>").map(|j| i + j).unwrap_or(html.len());
    &html[i..j]
}

fn sample_report(scatter: InteractiveScatter) -> Report {
    let png = RgbImage::new(3, 2, [200, 10, 10]).encode_png().unwrap();
    Report {
        title: "analyze <epoch 50>".into(),
        sections: vec![
            Section::new(
                "Parameters",
                vec![Item::Table {
                    header: vec!["parameter".into(), "value".into()],
                    rows: vec![vec!["zdim".into(), "8".into()], vec!["note".into(), "a & b".into()]],
                }],
            ),
            Section::new(
                "Latent",
                vec![
                    Item::Text("First paragraph.\n\nSecond.".into()),
                    Item::Image { caption: "tiny".into(), source: ImageSource::Png(png) },
                    Item::Scatter(scatter),
                ],
            ),
            Section::new(
                "Files written",
                vec![Item::Files(vec!["z_pca.png".into(), "kmeans20/labels.pkl".into()])],
            ),
        ],
    }
}

#[test]
fn html_is_self_contained_and_data_round_trip() {
    let sc = three_clusters(3000);
    let html = sample_report(sc.clone()).to_html().unwrap();
    assert!(!html.to_ascii_lowercase().contains("http"), "the report must not reference the network");
    assert!(!html.contains("src=\"//") && !html.contains("url("));
    // Coordinates: interleaved little-endian f32.
    let b64 = base64::engine::general_purpose::STANDARD;
    let xy = b64.decode(block(&html, "id=\"dfs0-xy\">").trim()).unwrap();
    assert_eq!(xy.len(), 8 * sc.x.len());
    for (i, pair) in xy.chunks_exact(8).enumerate() {
        let x = f32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
        let y = f32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
        assert_eq!((x.to_bits(), y.to_bits()), (sc.x[i].to_bits(), sc.y[i].to_bits()), "point {i}");
    }
    let labels = b64.decode(block(&html, "id=\"dfs0-labels\">").trim()).unwrap();
    let back: Vec<u16> = labels.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(back, sc.labels);
    // The picture is a data URI that decodes to the same PNG.
    let img = block(&html, "src=\"data:image/png;base64,");
    let img = &img[..img.find('"').unwrap()];
    assert_eq!(RgbImage::decode_png(&b64.decode(img).unwrap()).unwrap().pixel(2, 1), Some([200, 10, 10]));
}

#[test]
fn text_is_escaped_everywhere() {
    let html = sample_report(three_clusters(30)).to_html().unwrap();
    assert!(html.contains("<title>analyze &lt;epoch 50&gt;</title>"));
    assert!(html.contains("<td>a &amp; b</td>"));
    assert!(html.contains("<p>First paragraph.</p>\n<p>Second.</p>"));
    // Class names live in JSON inside <script>: '<' must not appear raw there.
    let meta = block(&html, "id=\"dfs0-meta\">");
    assert!(meta.contains("class 2 \\u003cintermediate>") && !meta.contains('<'));
}

#[test]
fn bad_inputs_are_errors() {
    let mut sc = three_clusters(10);
    sc.labels.pop();
    assert!(matches!(sample_report(sc).to_html(), Err(VizError::Shape { .. })));
    let missing = Report {
        title: "t".into(),
        sections: vec![Section::new(
            "s",
            vec![Item::Image { caption: "c".into(), source: ImageSource::Path("/nonexistent/z.png".into()) }],
        )],
    };
    let e = missing.to_html().unwrap_err();
    assert!(matches!(e, VizError::Io(_)) && e.to_string().contains("/nonexistent/z.png"), "{e}");
}
