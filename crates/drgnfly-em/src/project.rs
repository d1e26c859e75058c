//! Fourier-slice projection: `D³` volume → `D × D` images at poses `R`.
//!
//! The central-slice theorem: the 2D transform of the projection along z of `V(Rᵀ r)` is the 3D transform
//! of `V` on the plane `k₃ = Rᵀ·(kx, ky, 0)` (cryoDRGN's `coords @ R`, see
//! [the crate conventions](crate#conventions)). In real space a feature of the volume at `c` lands in
//! the image at `(R·c)_{x,y}`.
//!
//! A [`Projector`] holds the centred 3D **Hartley** transform of the volume, zero-padded to `P = s·D`
//! (`s` = oversampling, 1 or more): the slice theorem holds for the Hartley transform too (`H = Re F −
//! Im F` pointwise, and interpolation is linear), so a real table of `P³` floats serves both the Hartley
//! slices training compares to and the images. The slice value at lattice point `(kx, ky)` (integers
//! `−D/2 … D/2 − 1`, units `1/D` cycles/px) is the trilinear interpolation of the table at
//! `P/2 + s·Rᵀ(kx, ky, 0)`; points outside the table are 0. The result is the unnormalised centred 2D
//! Hartley transform of the projection (zero-padding does not change the DFT sums), so
//! `iht2_center` of it is the image. Trilinear interpolation multiplies the image by the squared sinc of
//! the interpolation kernel, `sinc²(x/P)` per axis; oversampling `s = 2` makes that ≤ 19% at the box edge
//! and ≤ 5% inside the usual mask radius; `s = 1` matches projectors of pre-compensated volumes (cisTEM).
//!
//! Images are `[y][x]`, centre at `(D/2, D/2)`, same as the volume's `[z][y][x]`.

use rayon::prelude::*;

use crate::hartley::{symmetrize_ht, HartleyPlan, HartleyScratch};
use crate::rotation::Mat3;
use crate::{Error, Result};

/// A volume prepared for projection: its padded centred 3D Hartley transform. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Projector {
    d: usize,
    oversampling: usize,
    p: usize,
    table: Vec<f32>,
    plan: HartleyPlan,
}

impl Projector {
    /// Bytes of the table a projector of side `d` with oversampling `s` keeps: `4·(s·D)³`.
    pub fn table_bytes(d: usize, oversampling: usize) -> usize {
        (oversampling * d).pow(3) * std::mem::size_of::<f32>()
    }

    /// Prepares `volume` (`D³`, `[z][y][x]`, `D` even) with oversampling `s ≥ 1` (the transform is of
    /// size `(s·D)³`; memory `4·(s·D)³` bytes kept, twice that transiently).
    pub fn new(volume: &[f32], d: usize, oversampling: usize) -> Result<Self> {
        let plan = HartleyPlan::new(d)?;
        if volume.len() != d * d * d {
            return Err(Error::Shape {
                op: "Projector::new",
                expected: format!("({d}, {d}, {d}) volume"),
                got: format!("{} values", volume.len()),
            });
        }
        if !(1..=4).contains(&oversampling) {
            return Err(Error::Param {
                name: "oversampling",
                value: oversampling.to_string(),
                why: "must be 1, 2, 3 or 4".into(),
            });
        }
        let p = oversampling * d;
        let mut table = vec![0.0f32; p * p * p];
        // Centre the D³ box in the P³ box: index D/2 → P/2.
        let off = p / 2 - d / 2;
        for z in 0..d {
            for y in 0..d {
                let src = &volume[(z * d + y) * d..(z * d + y + 1) * d];
                let at = ((z + off) * p + y + off) * p + off;
                table[at..at + d].copy_from_slice(src);
            }
        }
        HartleyPlan::new(p)?.ht3_center(&mut table)?;
        Ok(Self { d, oversampling, p, table, plan })
    }

    /// Image side `D`.
    pub fn size(&self) -> usize {
        self.d
    }

    /// Oversampling factor `s`.
    pub fn oversampling(&self) -> usize {
        self.oversampling
    }

    /// The centred Hartley slice (`D × D`, unnormalised) at pose `rot`: the HT of the projection.
    pub fn ht_slice(&self, rot: &Mat3, out: &mut [f32]) -> Result<()> {
        let d = self.d;
        if out.len() != d * d {
            return Err(Error::Shape {
                op: "Projector::ht_slice",
                expected: format!("({d}, {d})"),
                got: format!("{} values", out.len()),
            });
        }
        let (p, s) = (self.p, self.oversampling as f64);
        let c = (p / 2) as f64;
        let h = (d / 2) as f64;
        // Rows of Rᵀ applied to (kx, ky, 0): k₃_j = R[0][j]·kx + R[1][j]·ky.
        let (ex, ey) = ([rot[0][0], rot[0][1], rot[0][2]], [rot[1][0], rot[1][1], rot[1][2]]);
        let t = &self.table;
        let lim = (p - 1) as f64;
        for (iy, row) in out.chunks_exact_mut(d).enumerate() {
            let ky = iy as f64 - h;
            for (ix, o) in row.iter_mut().enumerate() {
                let kx = ix as f64 - h;
                let g = [0, 1, 2].map(|j| c + s * (ex[j] * kx + ey[j] * ky));
                // Outside the table (beyond its Nyquist corner) the transform is taken as 0.
                if g.iter().any(|&v| !(0.0..lim).contains(&v)) {
                    *o = 0.0;
                    continue;
                }
                let (x0, y0, z0) = (g[0].floor(), g[1].floor(), g[2].floor());
                let (fx, fy, fz) = ((g[0] - x0) as f32, (g[1] - y0) as f32, (g[2] - z0) as f32);
                let base = (z0 as usize * p + y0 as usize) * p + x0 as usize;
                let lerp = |i: usize| t[i] + fx * (t[i + 1] - t[i]);
                let a = lerp(base) + fy * (lerp(base + p) - lerp(base));
                let b = lerp(base + p * p) + fy * (lerp(base + p * p + p) - lerp(base + p * p));
                *o = a + fz * (b - a);
            }
        }
        Ok(())
    }

    fn check_batch(&self, rots: &[Mat3], out_len: usize, side: usize, op: &'static str) -> Result<()> {
        if out_len != rots.len() * side * side {
            return Err(Error::Shape {
                op,
                expected: format!("({}, {side}, {side}) for {} poses", rots.len(), rots.len()),
                got: format!("{out_len} values"),
            });
        }
        Ok(())
    }

    /// Symmetrized Hartley slices `(B, D+1, D+1)`, the layout training compares to (exactly
    /// `symmetrize_ht(ht2_center(image))` of the images [`Self::project`] returns). Parallel over poses.
    pub fn project_ht_sym(&self, rots: &[Mat3], out: &mut [f32]) -> Result<()> {
        let (d, e) = (self.d, self.d + 1);
        self.check_batch(rots, out.len(), e, "Projector::project_ht_sym")?;
        out.par_chunks_mut(e * e).zip(rots.par_iter()).try_for_each_init(
            || vec![0.0f32; d * d],
            |buf, (o, r)| {
                self.ht_slice(r, buf)?;
                symmetrize_ht(buf, d, o)
            },
        )
    }

    /// Real-space projections `(B, D, D)` at poses `rots`, parallel over poses.
    pub fn project(&self, rots: &[Mat3], out: &mut [f32]) -> Result<()> {
        let d = self.d;
        self.check_batch(rots, out.len(), d, "Projector::project")?;
        out.par_chunks_mut(d * d).zip(rots.par_iter()).try_for_each_init(
            || self.plan.make_scratch(),
            |s: &mut HartleyScratch, (o, r)| self.project_one(r, o, s),
        )
    }

    /// One real-space projection with caller-owned scratch (from [`Self::make_scratch`]).
    pub fn project_one(&self, rot: &Mat3, out: &mut [f32], scratch: &mut HartleyScratch) -> Result<()> {
        self.ht_slice(rot, out)?;
        self.plan.iht2_center(out, scratch)
    }

    /// Scratch for [`Self::project_one`].
    pub fn make_scratch(&self) -> HartleyScratch {
        self.plan.make_scratch()
    }

    /// The planned 2D transform of side `D`, shared with callers that post-process slices.
    pub fn plan(&self) -> &HartleyPlan {
        &self.plan
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::density::{render_blobs, GaussianBlob};
    use crate::rotation::random::random_rotations;
    use crate::rotation::relion::matrix_from_euler;
    use crate::rotation::transpose;
    use crate::testdata::read_npz;

    pub(crate) fn ncc(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len() as f64;
        let (ma, mb) =
            (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
        let mut s = [0.0; 3];
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64 - ma, y as f64 - mb);
            s[0] += x * y;
            s[1] += x * x;
            s[2] += y * y;
        }
        s[0] / (s[1] * s[2]).sqrt()
    }

    fn blobs() -> Vec<GaussianBlob> {
        [
            ([3.0, -2.0, 1.0], 1.6, 5.0),
            ([-5.0, 4.0, -2.0], 2.0, 8.0),
            ([0.5, 6.0, 4.0], 1.4, 3.0),
            ([-2.0, -6.0, 5.0], 1.8, 6.0),
        ]
        .iter()
        .map(|&(center, sigma, amplitude)| GaussianBlob { center, sigma, amplitude })
        .collect()
    }

    /// The exact projection of `blobs` at pose `r`: 2D Gaussians at `(R·c)_{x,y}`.
    fn analytic(bs: &[GaussianBlob], r: &Mat3, d: usize) -> Vec<f32> {
        let mut img = vec![0.0f32; d * d];
        for b in bs {
            let c = [0, 1].map(|i| r[i][0] * b.center[0] + r[i][1] * b.center[1] + r[i][2] * b.center[2]);
            let norm = b.amplitude / (2.0 * std::f64::consts::PI * b.sigma * b.sigma);
            for (i, v) in img.iter_mut().enumerate() {
                let (x, y) = ((i % d) as f64 - (d / 2) as f64, (i / d) as f64 - (d / 2) as f64);
                let r2 = (x - c[0]).powi(2) + (y - c[1]).powi(2);
                *v += (norm * (-r2 / (2.0 * b.sigma * b.sigma)).exp()) as f32;
            }
        }
        img
    }

    #[test]
    fn gaussian_blobs_project_to_their_analytic_images() {
        let d = 32;
        let bs = blobs();
        let vol = render_blobs(&bs, d, 1.0).unwrap();
        let proj = Projector::new(&vol, d, 2).unwrap();
        let rots = random_rotations(8, 11);
        let mut imgs = vec![0.0f32; 8 * d * d];
        proj.project(&rots, &mut imgs).unwrap();
        for (i, r) in rots.iter().enumerate() {
            let want = analytic(&bs, r, d);
            let c = ncc(&imgs[i * d * d..(i + 1) * d * d], &want);
            assert!(c >= 0.99, "pose {i}: correlation {c}");
            // The pose convention, not just the shapes: the transposed pose gives another image.
            let wrong = ncc(&imgs[i * d * d..(i + 1) * d * d], &analytic(&bs, &transpose(r), d));
            assert!(wrong < 0.9, "pose {i}: Rᵀ correlates {wrong}");
        }
        // Mass: the projection integrates the volume (DC term exact).
        let total: f64 = vol.iter().map(|&v| v as f64).sum();
        let img_sum: f64 = imgs[..d * d].iter().map(|&v| v as f64).sum();
        assert!((img_sum - total).abs() < 1e-3 * total, "{img_sum} vs {total}");
    }

    #[test]
    fn ht_sym_slices_are_the_symmetrized_transforms_of_the_images() {
        let d = 16;
        let vol = render_blobs(&blobs(), d, 0.7).unwrap();
        let proj = Projector::new(&vol, d, 1).unwrap();
        let rots = random_rotations(3, 5);
        let mut imgs = vec![0.0f32; 3 * d * d];
        let mut sym = vec![0.0f32; 3 * (d + 1) * (d + 1)];
        proj.project(&rots, &mut imgs).unwrap();
        proj.project_ht_sym(&rots, &mut sym).unwrap();
        let mut ht = imgs.clone();
        proj.plan().ht2_center_batch(&mut ht).unwrap();
        let mut want = vec![0.0f32; sym.len()];
        symmetrize_ht(&ht, d, &mut want).unwrap();
        let worst = sym.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4 * scale, "max |Δ| {worst} (scale {scale})");
        assert!(matches!(proj.project(&rots, &mut imgs[1..]), Err(Error::Shape { .. })));
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn cistem_reference_projections() {
        let p = drgnfly_io::fixture_or_skip!("cryojax/cistem_projection.npz");
        let (vol, angles, projs) =
            (read_npz(&p, "volume"), read_npz(&p, "angles").data, read_npz(&p, "projections"));
        let (vshape, pshape, vol, projs) = (vol.shape, projs.shape, vol.data, projs.data);
        let d = vshape[0];
        assert_eq!((vshape.len(), pshape[0], pshape[1]), (3, 12, d));
        let vol: Vec<f32> = vol.iter().map(|&v| v as f32).collect();
        let proj = Projector::new(&vol, d, 1).unwrap();
        let mut s = proj.make_scratch();
        let mut img = vec![0.0f32; d * d];
        let (mut worst, mut worst_transposed) = (1.0f64, 1.0f64);
        for (i, a) in angles.chunks_exact(3).enumerate() {
            let want: Vec<f32> = projs[i * d * d..(i + 1) * d * d].iter().map(|&v| v as f32).collect();
            // cisTEM's (φ, θ, ψ) are RELION's (rot, tilt, psi): its matrix Rz(φ)Ry(θ)Rz(ψ) is RELION's Aᵀ.
            proj.project_one(&matrix_from_euler([a[0], a[1], a[2]]), &mut img, &mut s).unwrap();
            let c = ncc(&img, &want);
            assert!(c >= 0.99, "angles {a:?}: correlation {c}");
            worst = worst.min(c);
            // The other reading of the angles (cisTEM's matrix taken as the pose) does not fit.
            proj.project_one(&transpose(&matrix_from_euler([a[0], a[1], a[2]])), &mut img, &mut s).unwrap();
            worst_transposed = worst_transposed.min(ncc(&img, &want));
        }
        eprintln!("cisTEM: worst correlation {worst:.5}; transposed convention {worst_transposed:.3}");
        assert!(worst_transposed < 0.9);
    }
}
