//! Real-space volume masks: soft spheres, and threshold → dilate → cosine edge (cryoDRGN `gen_mask`,
//! `masking.py::cosine_dilation_mask`).
//!
//! Volumes are `[z][y][x]`, x fastest, with shape `[nz, ny, nx]` (masks work on non-cubic maps). Distances
//! are in voxels; [`CosineDilationMask::from_angstrom`] converts cryoDRGN's Å options.

use std::collections::VecDeque;

use crate::window::{check_radius, cosine_edge};
use crate::{Error, Result};

/// `numpy.percentile(values, q)` with its default linear interpolation: the value at fractional rank
/// `q/100·(n − 1)` of the sorted values. NaNs are rejected.
pub fn percentile(values: &[f32], q: f64) -> Result<f64> {
    if values.is_empty() || !(0.0..=100.0).contains(&q) {
        return Err(Error::Param {
            name: "percentile",
            value: format!("q = {q} over {} values", values.len()),
            why: "need 0 ≤ q ≤ 100 and at least one value".into(),
        });
    }
    if values.iter().any(|v| v.is_nan()) {
        return Err(Error::Param {
            name: "volume",
            value: "NaN".into(),
            why: "the map contains NaN values".into(),
        });
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f32::total_cmp);
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = rank - lo as f64;
    Ok(sorted[lo] as f64 + frac * (sorted[hi] as f64 - sorted[lo] as f64))
}

/// cryoDRGN's default mask threshold: half the 99.99th percentile of the densities.
pub fn default_mask_threshold(vol: &[f32]) -> Result<f32> {
    Ok((percentile(vol, 99.99)? / 2.0) as f32)
}

/// Threshold → binary dilation → cosine soft edge, as `cryodrgn_utils gen_mask`:
/// 1. `inside = vol ≥ threshold` (default [`default_mask_threshold`]);
/// 2. `dilate_px` rounds of binary dilation with the 6-neighbour cross, i.e. every voxel within city-block
///    distance `dilate_px` of `inside` (scipy `binary_dilation(iterations=n)`);
/// 3. with `d` the Euclidean distance to the dilated mask (scipy `distance_transform_edt`), the mask is
///    `cos(π·min(d, edge_px) / edge_px / 2)`, rounded to 6 decimals; `edge_px = 0` keeps the binary mask.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineDilationMask {
    /// Density threshold; `None` uses [`default_mask_threshold`]. (cryoDRGN treats an explicit 0 as "use
    /// the default" through Python's `or`; here 0 means 0.)
    pub threshold: Option<f32>,
    /// Dilation in voxels.
    pub dilate_px: usize,
    /// Width of the cosine edge in voxels.
    pub edge_px: f32,
}

impl CosineDilationMask {
    /// From cryoDRGN's options in Å (`--dilate`, `--dist`, `--Apix`): `dilate_px = ⌊dilate_a / apix⌋`,
    /// `edge_px = edge_a / apix`.
    pub fn from_angstrom(threshold: Option<f32>, dilate_a: f32, edge_a: f32, apix: f32) -> Result<Self> {
        if !(apix.is_finite() && apix > 0.0) {
            return Err(Error::Param { name: "--Apix", value: apix.to_string(), why: "must be > 0".into() });
        }
        if !(dilate_a.is_finite() && dilate_a >= 0.0 && edge_a.is_finite() && edge_a >= 0.0) {
            return Err(Error::Param {
                name: "--dilate/--dist",
                value: format!("{dilate_a}/{edge_a}"),
                why: "must be finite and ≥ 0 (Å)".into(),
            });
        }
        Ok(Self {
            threshold,
            dilate_px: (dilate_a as f64 / apix as f64).floor() as usize,
            edge_px: edge_a / apix,
        })
    }

    /// The threshold actually used for `vol`.
    pub fn threshold_for(&self, vol: &[f32]) -> Result<f32> {
        match self.threshold {
            Some(t) => Ok(t),
            None => default_mask_threshold(vol),
        }
    }

    /// Computes the mask (values in `[0, 1]`) of a volume of shape `[nz, ny, nx]`.
    pub fn compute(&self, vol: &[f32], shape: [usize; 3]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        if n == 0 || vol.len() != n {
            return Err(Error::Shape {
                op: "cosine_dilation_mask",
                expected: format!("{shape:?} = {n} values (non-empty)"),
                got: vol.len().to_string(),
            });
        }
        if !(self.edge_px.is_finite() && self.edge_px >= 0.0) {
            return Err(Error::Param {
                name: "edge",
                value: self.edge_px.to_string(),
                why: "must be ≥ 0".into(),
            });
        }
        let t = self.threshold_for(vol)?;
        let mut inside: Vec<bool> = vol.iter().map(|&v| v >= t).collect();
        if self.dilate_px > 0 {
            inside = dilate_city_block(&inside, shape, self.dilate_px);
        }
        if self.edge_px == 0.0 {
            return Ok(inside.iter().map(|&b| f32::from(b)).collect());
        }
        let edge = self.edge_px as f64;
        Ok(squared_distance_to(&inside, shape)
            .iter()
            .map(|&d2| {
                let d = d2.sqrt().min(edge);
                let z = (std::f64::consts::PI * d / edge / 2.0).cos();
                ((z * 1e6).round() / 1e6) as f32
            })
            .collect())
    }
}

/// A soft sphere of radius `radius_px` voxels around the centre `(D/2, D/2, D/2)` of a `D³` box, with a
/// raised-cosine edge of `edge_px` voxels (see [`crate::window::soft_circular_mask`]).
pub fn soft_spherical_mask(d: usize, radius_px: f32, edge_px: f32) -> Result<Vec<f32>> {
    check_radius(d, radius_px, edge_px)?;
    let c = (d / 2) as f32;
    let mut m = Vec::with_capacity(d * d * d);
    for z in 0..d {
        for y in 0..d {
            for x in 0..d {
                let r = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2) + (z as f32 - c).powi(2)).sqrt();
                m.push(cosine_edge(r, radius_px, edge_px));
            }
        }
    }
    Ok(m)
}

fn neighbours(i: usize, [nz, ny, nx]: [usize; 3]) -> impl Iterator<Item = usize> {
    let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
    let cand = [
        (z > 0).then(|| i - ny * nx),
        (z + 1 < nz).then(|| i + ny * nx),
        (y > 0).then(|| i - nx),
        (y + 1 < ny).then(|| i + nx),
        (x > 0).then(|| i - 1),
        (x + 1 < nx).then(|| i + 1),
    ];
    cand.into_iter().flatten()
}

/// Every voxel within city-block distance `steps` of a `true` voxel: `steps` rounds of 6-neighbour
/// dilation, done as one breadth-first search (O(N) instead of O(N·steps)).
fn dilate_city_block(mask: &[bool], shape: [usize; 3], steps: usize) -> Vec<bool> {
    let mut depth: Vec<usize> = mask.iter().map(|&b| if b { 0 } else { usize::MAX }).collect();
    let mut queue: VecDeque<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
    while let Some(i) = queue.pop_front() {
        if depth[i] == steps {
            continue;
        }
        for j in neighbours(i, shape) {
            if depth[j] == usize::MAX {
                depth[j] = depth[i] + 1;
                queue.push_back(j);
            }
        }
    }
    depth.iter().map(|&d| d != usize::MAX).collect()
}

/// Exact squared Euclidean distance from every voxel to the nearest `true` voxel (0 inside), by the
/// separable lower-envelope algorithm of Felzenszwalb & Huttenlocher (2012), one pass per axis. Infinite
/// when the mask is empty.
fn squared_distance_to(mask: &[bool], [nz, ny, nx]: [usize; 3]) -> Vec<f64> {
    let mut f: Vec<f64> = mask.iter().map(|&b| if b { 0.0 } else { f64::INFINITY }).collect();
    let longest = nz.max(ny).max(nx);
    let (mut line, mut out) = (vec![0.0; longest], vec![0.0; longest]);
    let (mut v, mut zb) = (vec![0usize; longest], vec![0.0; longest + 1]);
    for (len, stride, count) in [(nx, 1, nz * ny), (ny, nx, nz), (nz, ny * nx, 1)] {
        // Lines along this axis start at every index whose coordinate on the axis is 0.
        let starts: Vec<usize> = match stride {
            1 => (0..count).map(|r| r * nx).collect(),
            s if s == nx => (0..nz).flat_map(|z| (0..nx).map(move |x| z * ny * nx + x)).collect(),
            _ => (0..ny * nx).collect(),
        };
        for s in starts {
            for k in 0..len {
                line[k] = f[s + k * stride];
            }
            edt_1d(&line[..len], &mut out[..len], &mut v, &mut zb);
            for k in 0..len {
                f[s + k * stride] = out[k];
            }
        }
    }
    f
}

/// Abscissa where the parabolas rooted at `q` and `p` (`p < q`) intersect.
fn intersection(f: &[f64], q: usize, p: usize) -> f64 {
    ((f[q] + (q * q) as f64) - (f[p] + (p * p) as f64)) / (2.0 * (q as f64 - p as f64))
}

/// 1D squared distance transform `out[q] = min_p (q − p)² + f[p]`.
fn edt_1d(f: &[f64], out: &mut [f64], v: &mut [usize], z: &mut [f64]) {
    let n = f.len();
    // Parabolas only from finite samples; with none, everything stays infinite.
    let Some(first) = (0..n).find(|&p| f[p].is_finite()) else {
        out.iter_mut().for_each(|o| *o = f64::INFINITY);
        return;
    };
    let mut k = 0;
    v[0] = first;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in first + 1..n {
        if !f[q].is_finite() {
            continue;
        }
        // Drop parabolas hidden by the new one; z[0] = −∞ stops the loop at k = 0.
        let mut s = intersection(f, q, v[k]);
        while s <= z[k] {
            k -= 1;
            s = intersection(f, q, v[k]);
        }
        k += 1;
        v[k] = q;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0;
    for (q, o) in out.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let p = v[k];
        *o = (q as f64 - p as f64).powi(2) + f[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_distance(mask: &[bool], [nz, ny, nx]: [usize; 3]) -> Vec<f64> {
        let pts: Vec<(f64, f64, f64)> = (0..mask.len())
            .filter(|&i| mask[i])
            .map(|i| ((i / (ny * nx)) as f64, ((i / nx) % ny) as f64, (i % nx) as f64))
            .collect();
        (0..nz * ny * nx)
            .map(|i| {
                let (z, y, x) = ((i / (ny * nx)) as f64, ((i / nx) % ny) as f64, (i % nx) as f64);
                pts.iter()
                    .map(|p| (p.0 - z).powi(2) + (p.1 - y).powi(2) + (p.2 - x).powi(2))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        let v: Vec<f32> = (1..=5).map(|x| x as f32).collect();
        assert_eq!(percentile(&v, 50.0).unwrap(), 3.0);
        assert_eq!(percentile(&v, 90.0).unwrap(), 4.6); // rank 3.6
        assert_eq!(percentile(&v, 100.0).unwrap(), 5.0);
        assert!(matches!(percentile(&v, 101.0), Err(Error::Param { .. })));
        assert!(matches!(percentile(&[f32::NAN], 50.0), Err(Error::Param { .. })));
    }

    #[test]
    fn distance_transform_matches_brute_force() {
        let shape = [5, 6, 7];
        let n = 5 * 6 * 7;
        // A few scattered seeds, deterministic.
        let mask: Vec<bool> = (0..n).map(|i| (i * 37) % 53 == 0).collect();
        let fast = squared_distance_to(&mask, shape);
        let slow = brute_distance(&mask, shape);
        for i in 0..n {
            assert!((fast[i] - slow[i]).abs() < 1e-9, "voxel {i}: {} vs {}", fast[i], slow[i]);
        }
        assert!(squared_distance_to(&[false; 8], [2, 2, 2]).iter().all(|d| d.is_infinite()));
    }

    #[test]
    fn dilation_is_a_city_block_ball() {
        let shape = [9, 9, 9];
        let mut mask = vec![false; 729];
        mask[4 * 81 + 4 * 9 + 4] = true;
        let dil = dilate_city_block(&mask, shape, 2);
        for (i, &inside) in dil.iter().enumerate() {
            let (z, y, x): (usize, usize, usize) = (i / 81, (i / 9) % 9, i % 9);
            let l1 = z.abs_diff(4) + y.abs_diff(4) + x.abs_diff(4);
            assert_eq!(inside, l1 <= 2, "voxel {i}");
        }
    }

    #[test]
    fn cosine_dilation_mask_profile() {
        // A single bright voxel in a 1×1×21 line: threshold, dilate 2, cosine edge of 4.
        let mut vol = vec![0.0f32; 21];
        vol[10] = 10.0;
        let m = CosineDilationMask { threshold: None, dilate_px: 2, edge_px: 4.0 };
        // Rank 0.9999·20 = 19.998 lies between 0 and 10: 9.98, halved.
        assert!((m.threshold_for(&vol).unwrap() - 4.99).abs() < 1e-6);
        let mask = m.compute(&vol, [1, 1, 21]).unwrap();
        for (i, &v) in mask.iter().enumerate() {
            let d = (i.abs_diff(10) as f64 - 2.0).clamp(0.0, 4.0);
            let want = ((std::f64::consts::PI * d / 8.0).cos() * 1e6).round() / 1e6;
            assert!((v as f64 - want).abs() < 1e-7, "voxel {i}: {v} vs {want}");
        }
        let a = CosineDilationMask::from_angstrom(Some(1.0), 7.0, 5.0, 2.79).unwrap();
        assert_eq!((a.dilate_px, a.edge_px), (2, 5.0 / 2.79));
    }

    #[test]
    fn soft_sphere_is_radial() {
        let m = soft_spherical_mask(16, 4.0, 2.0).unwrap();
        assert_eq!(m[8 * 256 + 8 * 16 + 8], 1.0);
        assert!((m[8 * 256 + 8 * 16 + 13] - 0.5).abs() < 1e-6);
        assert_eq!(m[0], 0.0);
    }

    /// cryoDRGN's `tests/test_masks.py` thresholds (printed with `{:.5g}`, compared rounded to 4 decimals):
    /// 50S-vol.mrc → 1.2661, spike-vol.mrc → 12.472 (non-cubic 32×32×128 and 16×16×128 maps).
    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn golden_default_thresholds_from_cryodrgn() {
        for (file, want, shape) in [
            ("cryodrgn/50S-vol.mrc", 1.2661, [128, 32, 32]),
            ("cryodrgn/spike-vol.mrc", 12.472, [128, 16, 16]),
        ] {
            let path = drgnfly_io::fixture_or_skip!(file);
            let vol = drgnfly_io::mrc::read_volume(&path).unwrap();
            assert_eq!(vol.shape, shape);
            let t = default_mask_threshold(&vol.data).unwrap() as f64;
            let printed: f64 =
                format!("{:.*}", 4 - (t.abs().log10().floor() as usize).min(4), t).parse().unwrap();
            assert!(
                ((printed * 1e4).round() - want * 1e4).abs() < 0.5,
                "{file}: threshold {t} prints as {printed}"
            );
            // The mask runs on the non-cubic map and stays in [0, 1], 1 above the threshold.
            let m = CosineDilationMask { threshold: None, dilate_px: 3, edge_px: 2.0 }
                .compute(&vol.data, shape)
                .unwrap();
            assert!(m.iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(vol.data.iter().zip(&m).all(|(&v, &mv)| v < t as f32 || mv == 1.0));
        }
    }
}
