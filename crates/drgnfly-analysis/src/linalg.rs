//! Small dense helpers: symmetric eigendecomposition (cyclic Jacobi) and order statistics.
//!
//! The matrices here are zdim×zdim covariances (zdim ≤ ~128), so an O(n³)-per-sweep Jacobi in f64 is
//! both fast enough (< 10 ms at n = 128) and accurate to machine precision; a LAPACK dependency would cost
//! more than it saves.

/// Eigendecomposition of a symmetric n×n matrix `a` (row-major, f64) by cyclic Jacobi rotations.
///
/// Returns `(eigenvalues, eigenvectors)` sorted by decreasing eigenvalue; eigenvector `k` is row `k`
/// of the returned row-major n×n matrix (`vecs[k*n..(k+1)*n]`), unit norm. Only the upper triangle of
/// `a` is trusted to be symmetric with the lower one; off-diagonal mass is driven below
/// `1e-15 · ‖A‖_F` or 100 sweeps, whichever comes first.
///
/// # Panics
/// If `a.len() != n*n` (a programmer error).
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "symmetric_eigen: matrix is not n×n");
    let mut m = a.to_vec();
    // v holds eigenvectors as columns while iterating.
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let norm: f64 = m.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 =
            (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).map(|(i, j)| m[i * n + j].powi(2)).sum();
        if off.sqrt() <= 1e-15 * norm || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // Rotation angle that zeroes a_pq: tan(2θ) = 2 a_pq / (a_qq − a_pp), stable form.
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| m[j * n + j].total_cmp(&m[i * n + i]));
    let values = order.iter().map(|&i| m[i * n + i]).collect();
    let mut vecs = vec![0.0; n * n];
    for (row, &col) in order.iter().enumerate() {
        for k in 0..n {
            vecs[row * n + k] = v[k * n + col];
        }
    }
    (values, vecs)
}

/// Percentile `p` (0–100) of `values` with numpy's default linear interpolation: the value at
/// fractional rank `p/100 · (n−1)` of the sorted data. `None` for an empty slice.
pub fn percentile(values: &[f32], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    percentile_sorted(&sorted, p)
}

/// [`percentile`] of already sorted data.
pub fn percentile_sorted(sorted: &[f32], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = rank - lo as f64;
    Some(sorted[lo] as f64 + frac * (sorted[hi] as f64 - sorted[lo] as f64))
}

/// Median (the 50th [`percentile`]: the mean of the two middle values for even n). `None` if empty.
pub fn median(values: &[f32]) -> Option<f64> {
    percentile(values, 50.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_reconstructs_a_symmetric_matrix() {
        let n = 5;
        // A = Bᵀ B + diag, symmetric positive definite with distinct eigenvalues.
        let b: Vec<f64> = (0..n * n).map(|i| ((i * 7 + 3) % 11) as f64 / 5.0 - 1.0).collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[k * n + i] * b[k * n + j]).sum::<f64>()
                    + if i == j { i as f64 } else { 0.0 };
            }
        }
        let (vals, vecs) = symmetric_eigen(&a, n);
        assert!(vals.windows(2).all(|w| w[0] >= w[1]));
        let mut max_err: f64 = 0.0;
        for i in 0..n {
            for j in 0..n {
                let r: f64 = (0..n).map(|k| vals[k] * vecs[k * n + i] * vecs[k * n + j]).sum();
                max_err = max_err.max((r - a[i * n + j]).abs());
            }
        }
        assert!(max_err < 1e-12 * 8.0 * n as f64, "max |Δ| = {max_err}");
        // Orthonormal rows.
        for k in 0..n {
            for l in 0..n {
                let d: f64 = (0..n).map(|i| vecs[k * n + i] * vecs[l * n + i]).sum();
                assert!((d - if k == l { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // np.percentile([1, 2, 3, 4], 5) = 1.15; 95 → 3.85; median 2.5.
        let v = [4.0, 1.0, 3.0, 2.0];
        assert!((percentile(&v, 5.0).unwrap() - 1.15).abs() < 1e-6);
        assert!((percentile(&v, 95.0).unwrap() - 3.85).abs() < 1e-6);
        assert_eq!(median(&v), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
