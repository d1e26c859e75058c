//! A small software rasteriser for isosurface pictures: orthographic camera, z-buffer, per-pixel
//! Lambert + ambient shading of interpolated normals, 2× supersampling for smooth edges.
//!
//! # Camera
//! The front view is ChimeraX's default: x to the right, y up, looking down −z (the viewer is at +z).
//! Other views rotate the map, not the light: `R = Rx(pitch) · Ry(yaw)` maps map coordinates (about the
//! box centre, index n/2 on each axis) to camera coordinates (u right, v up, w towards the viewer).
//! Scale: the longest box side spans 95% of the picture, the same for every map of that box so a
//! contact sheet compares sizes truthfully; density outside the box's inscribed sphere may be cut at
//! the picture's edge in rotated views.

use super::mesh::Mesh;
use crate::plot::RgbImage;

/// A fixed viewing direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// ChimeraX's default: x right, y up, viewer at +z.
    Front,
    /// Viewer at +x: −z right, y up (the front view turned 90° about y).
    Side,
    /// Viewer at +y: x right, −z up (looking down on the map).
    Top,
    /// A three-quarter view: turned 30° about y (showing the +x side) and tilted 20° (showing the top).
    ThreeQuarter,
}

impl View {
    /// Yaw about y, then pitch about x, in degrees.
    fn angles_deg(self) -> (f64, f64) {
        match self {
            View::Front => (0.0, 0.0),
            View::Side => (-90.0, 0.0),
            View::Top => (0.0, 90.0),
            View::ThreeQuarter => (-30.0, 20.0),
        }
    }

    /// The rotation from map to camera coordinates, `Rx(pitch) · Ry(yaw)`, row-major.
    pub fn rotation(self) -> [[f64; 3]; 3] {
        let (yaw, pitch) = self.angles_deg();
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sp, cp) = pitch.to_radians().sin_cos();
        let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
        let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| rx[i][k] * ry[k][j]).sum()))
    }

    /// A short name for captions.
    pub fn name(self) -> &'static str {
        match self {
            View::Front => "front",
            View::Side => "side",
            View::Top => "top",
            View::ThreeQuarter => "3/4",
        }
    }
}

/// Direction towards the light in camera coordinates: from the upper left, in front.
const LIGHT: [f64; 3] = [-0.35, 0.55, 0.76];
/// Ambient and diffuse weights.
const AMBIENT: f64 = 0.28;
const DIFFUSE: f64 = 0.72;
/// Supersampling factor per axis.
const SUPERSAMPLE: u32 = 2;
/// Background colour.
pub(crate) const BACKGROUND: [u8; 3] = [255, 255, 255];

/// Render `mesh` (voxel coordinates of a map of shape `[nz, ny, nx]`) as a `size × size` picture seen
/// from `view`, surface colour `color`.
pub fn render_mesh(mesh: &Mesh, shape: [usize; 3], view: View, size: u32, color: [u8; 3]) -> RgbImage {
    let big = size.max(1) * SUPERSAMPLE;
    let (w, h) = (big as usize, big as usize);
    let r = view.rotation();
    let centre = [shape[2] as f64 / 2.0, shape[1] as f64 / 2.0, shape[0] as f64 / 2.0];
    let longest = shape.iter().copied().max().unwrap_or(1).max(1) as f64;
    let scale = 0.95 * big as f64 / longest;
    let rot = |v: [f64; 3]| -> [f64; 3] {
        std::array::from_fn(|i| r[i][0] * v[0] + r[i][1] * v[1] + r[i][2] * v[2])
    };
    // Screen position (column, row, depth w) of each vertex.
    let screen: Vec<[f64; 3]> = mesh
        .vertices
        .iter()
        .map(|p| {
            let c = rot([p[0] as f64 - centre[0], p[1] as f64 - centre[1], p[2] as f64 - centre[2]]);
            [w as f64 / 2.0 + scale * c[0], h as f64 / 2.0 - scale * c[1], c[2]]
        })
        .collect();
    let normals: Vec<[f64; 3]> = mesh.normals.iter().map(|n| rot(n.map(|v| v as f64))).collect();
    let light = {
        let l = (LIGHT[0] * LIGHT[0] + LIGHT[1] * LIGHT[1] + LIGHT[2] * LIGHT[2]).sqrt();
        LIGHT.map(|v| v / l)
    };
    let mut depth = vec![f64::NEG_INFINITY; w * h];
    let mut img = RgbImage::new(big, big, BACKGROUND);
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| screen[i as usize]);
        let area = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]);
        if area.abs() < 1e-12 {
            continue;
        }
        let xmin = a[0].min(b[0]).min(c[0]).floor().max(0.0) as usize;
        let xmax = (a[0].max(b[0]).max(c[0]).ceil() as i64).min(w as i64 - 1);
        let ymin = a[1].min(b[1]).min(c[1]).floor().max(0.0) as usize;
        let ymax = (a[1].max(b[1]).max(c[1]).ceil() as i64).min(h as i64 - 1);
        if xmax < 0 || ymax < 0 {
            continue;
        }
        let [na, nb, nc] = t.map(|i| normals[i as usize]);
        for py in ymin..=ymax as usize {
            for px in xmin..=xmax as usize {
                // Barycentric weights of the pixel centre.
                let (x, y) = (px as f64 + 0.5, py as f64 + 0.5);
                let wa = ((b[0] - x) * (c[1] - y) - (b[1] - y) * (c[0] - x)) / area;
                let wb = ((c[0] - x) * (a[1] - y) - (c[1] - y) * (a[0] - x)) / area;
                let wc = 1.0 - wa - wb;
                if wa < 0.0 || wb < 0.0 || wc < 0.0 {
                    continue;
                }
                let z = wa * a[2] + wb * b[2] + wc * c[2];
                let i = py * w + px;
                if z <= depth[i] {
                    continue;
                }
                depth[i] = z;
                let mut n: [f64; 3] = std::array::from_fn(|k| wa * na[k] + wb * nb[k] + wc * nc[k]);
                // Two-sided: surfaces cut open by the box or seen from inside are lit from the front.
                if n[2] < 0.0 {
                    n = n.map(|v| -v);
                }
                let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt().max(1e-12);
                let lambert = ((n[0] * light[0] + n[1] * light[1] + n[2] * light[2]) / len).max(0.0);
                let shade = AMBIENT + DIFFUSE * lambert;
                img.put(px as i64, py as i64, color.map(|c| (c as f64 * shade).round().min(255.0) as u8));
            }
        }
    }
    img.downsample(SUPERSAMPLE)
}
