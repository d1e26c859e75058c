//! Ground-truth metrics for simulated data: clustering accuracy under the best label matching,
//! Pearson and Spearman correlation, the HetACUMN entanglement score, and per-state latent medians.
//!
//! Labels are `u32` class ids (k-means labels, ground-truth state ids); they need not be contiguous.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::latents::Latents;
use crate::linalg::median;

/// Accuracy of a clustering under the best one-to-one matching of predicted to true labels.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MatchedAccuracy {
    /// Fraction of particles whose matched predicted label equals the true label, in [0, 1].
    pub accuracy: f64,
    /// `(predicted, true)` label pairs of the matching (unmatched labels are absent).
    pub mapping: Vec<(u32, u32)>,
}

/// Classification accuracy with the optimal label permutation (Hungarian algorithm on the contingency
/// table): `max_π Σ_i [π(pred_i) = true_i] / N`. Works for different numbers of predicted and true
/// classes (extra classes stay unmatched and count as errors).
pub fn best_match_accuracy(pred: &[u32], truth: &[u32]) -> Result<MatchedAccuracy> {
    check_same_len("predicted labels", pred.len(), truth.len())?;
    if pred.is_empty() {
        return Err(Error::Degenerate { what: "accuracy", why: "no particles".into() });
    }
    let (pl, pi) = relabel(pred);
    let (tl, ti) = relabel(truth);
    let (np, nt) = (pl.len(), tl.len());
    let mut counts = vec![0.0f64; np * nt];
    for (&p, &t) in pi.iter().zip(&ti) {
        counts[p * nt + t] += 1.0;
    }
    // Minimise −count; the solver wants rows ≤ cols.
    let pairs: Vec<(usize, usize)> = if np <= nt {
        let cost: Vec<f64> = counts.iter().map(|c| -c).collect();
        hungarian(&cost, np, nt).into_iter().enumerate().collect()
    } else {
        let cost: Vec<f64> = (0..nt * np).map(|x| -counts[(x % np) * nt + x / np]).collect();
        hungarian(&cost, nt, np).into_iter().enumerate().map(|(t, p)| (p, t)).collect()
    };
    let correct: f64 = pairs.iter().map(|&(p, t)| counts[p * nt + t]).sum();
    let mut mapping: Vec<(u32, u32)> = pairs.iter().map(|&(p, t)| (pl[p], tl[t])).collect();
    mapping.sort_unstable();
    Ok(MatchedAccuracy { accuracy: correct / pred.len() as f64, mapping })
}

/// Minimum-cost assignment of each of `rows` rows to a distinct column (`rows ≤ cols`), O(rows²·cols)
/// (shortest augmenting paths with potentials). Returns the column of each row.
///
/// # Panics
/// If `rows > cols` or `cost.len() != rows*cols` (programmer errors).
pub fn hungarian(cost: &[f64], rows: usize, cols: usize) -> Vec<usize> {
    assert!(rows <= cols && cost.len() == rows * cols, "hungarian: need rows ≤ cols and a rows×cols matrix");
    // 1-based potentials u (rows), v (cols); p[j] = row matched to column j (0 = none).
    let mut u = vec![0.0f64; rows + 1];
    let mut v = vec![0.0f64; cols + 1];
    let mut p = vec![0usize; cols + 1];
    let mut way = vec![0usize; cols + 1];
    for i in 1..=rows {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; cols + 1];
        let mut used = vec![false; cols + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0;
            for j in 1..=cols {
                if !used[j] {
                    let cur = cost[(i0 - 1) * cols + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=cols {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        // Augment along the alternating path.
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![0usize; rows];
    for j in 1..=cols {
        if p[j] != 0 {
            assignment[p[j] - 1] = j - 1;
        }
    }
    assignment
}

/// Pearson correlation `Σ (aᵢ − ā)(bᵢ − b̄) / √(Σ (aᵢ − ā)² · Σ (bᵢ − b̄)²)`, accumulated in f64; 0 when
/// either input is constant or empty (a map-to-map CC of a blank volume is "no agreement", not an error).
///
/// ```
/// use drgnfly_analysis::metrics::pearson;
/// assert!((pearson(&[1.0, 2.0, 4.0], &[2.0, 4.0, 8.0]).unwrap() - 1.0).abs() < 1e-12);
/// ```
///
/// Errors: [`Error::Shape`] when the lengths differ.
pub fn pearson(a: &[f32], b: &[f32]) -> Result<f64> {
    if a.len() != b.len() {
        return Err(Error::Shape {
            what: "pearson",
            expected: format!("two inputs of the same length ({} values)", a.len()),
            got: format!("{} values in the second", b.len()),
        });
    }
    let n = a.len().max(1) as f64;
    let mean = |x: &[f32]| x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    Ok(if saa > 0.0 && sbb > 0.0 { sab / (saa * sbb).sqrt() } else { 0.0 })
}

/// Spearman rank correlation ρ: the Pearson correlation of the ranks, ties given their average rank
/// (as `scipy.stats.spearmanr`).
///
/// Errors: [`Error::Shape`] on different lengths; [`Error::Degenerate`] when N < 2, either input is
/// constant, or holds NaN.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_same_len("spearman y", x.len(), y.len())?;
    if x.len() < 2 {
        return Err(Error::Degenerate {
            what: "Spearman correlation",
            why: "needs at least 2 values".into(),
        });
    }
    if x.iter().chain(y).any(|v| v.is_nan()) {
        return Err(Error::Degenerate { what: "Spearman correlation", why: "input holds NaN".into() });
    }
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    if vx == 0.0 || vy == 0.0 {
        return Err(Error::Degenerate { what: "Spearman correlation", why: "an input is constant".into() });
    }
    Ok(cov / (vx * vy).sqrt())
}

/// 1-based ranks with ties averaged.
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut s = 0;
    while s < order.len() {
        let mut e = s + 1;
        while e < order.len() && x[order[e]] == x[order[s]] {
            e += 1;
        }
        // Positions s..e (0-based) share the average rank ((s+1) + e) / 2.
        let avg = (s + 1 + e) as f64 / 2.0;
        order[s..e].iter().for_each(|&i| r[i] = avg);
        s = e;
    }
    r
}

/// The conformation term of the HetACUMN entanglement score (Eq. 11):
///
/// E_z = (1/N_pair) Σ_{i<j} exp(−‖μ_i − μ_j‖² / (σ_i σ_j))
///
/// over the N_pair = C(M, 2) pairs of the M ground-truth classes, where μ_i is the mean latent of
/// class i and σ_i its standard deviation (population, ddof = 0). The paper states it for a scalar
/// latent; for zdim > 1 we use the squared Euclidean distance of the means and σ_i = √(mean over
/// dimensions of the per-dimension variance), which reduces to Eq. 11 at zdim = 1. Lower is better
/// (well separated, tight classes → 0; identical classes → 1). A pair with σ_iσ_j = 0 contributes 1
/// if the means coincide and 0 otherwise.
///
/// Errors: fewer than 2 classes; label count ≠ N.
pub fn entanglement_z(z: Latents<'_>, labels: &[u32]) -> Result<f64> {
    check_same_len("class labels", z.len(), labels.len())?;
    let d = z.zdim();
    let mut classes: BTreeMap<u32, (f64, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        let e = classes.entry(l).or_insert_with(|| (0.0, vec![0.0; d], vec![0.0; d]));
        e.0 += 1.0;
        for (j, &x) in z.row(i).iter().enumerate() {
            e.1[j] += x as f64;
            e.2[j] += (x as f64).powi(2);
        }
    }
    if classes.len() < 2 {
        return Err(Error::Degenerate { what: "entanglement E_z", why: "needs at least 2 classes".into() });
    }
    let stats: Vec<(Vec<f64>, f64)> = classes
        .values()
        .map(|(n, s, s2)| {
            let mu: Vec<f64> = s.iter().map(|v| v / n).collect();
            let var = s2.iter().zip(&mu).map(|(q, m)| (q / n - m * m).max(0.0)).sum::<f64>() / d as f64;
            (mu, var.sqrt())
        })
        .collect();
    let mut total = 0.0;
    let mut pairs = 0usize;
    for i in 0..stats.len() {
        for j in i + 1..stats.len() {
            let dist2: f64 = stats[i].0.iter().zip(&stats[j].0).map(|(a, b)| (a - b).powi(2)).sum();
            let ss = stats[i].1 * stats[j].1;
            total += if ss > 0.0 {
                (-dist2 / ss).exp()
            } else if dist2 == 0.0 {
                1.0
            } else {
                0.0
            };
            pairs += 1;
        }
    }
    Ok(total / pairs as f64)
}

/// The full HetACUMN entanglement E_entangle = E_rot + E_trans + E_z (Section 4.4). The pose terms come
/// from `drgnfly_em::rotation::accuracy::PoseAccuracy` (E_rot: median ‖ΔR‖²_F after global alignment;
/// E_trans: median squared shift error in box fractions, the unit that makes the paper's Table 3 the sum of
/// its Tables 1–2).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Entanglement {
    /// Rotation error E_rot.
    pub e_rot: f64,
    /// Translation error E_trans.
    pub e_trans: f64,
    /// Conformation error E_z ([`entanglement_z`]).
    pub e_z: f64,
}

impl Entanglement {
    /// E_entangle = E_pose + E_z with E_pose = E_rot + E_trans.
    pub fn total(&self) -> f64 {
        self.e_rot + self.e_trans + self.e_z
    }
}

/// The per-dimension median latent of the particles of one ground-truth state.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StateMedian {
    /// Ground-truth state id.
    pub state: u32,
    /// Particles in the state.
    pub count: usize,
    /// Component-wise median z (length zdim).
    pub median: Vec<f32>,
}

/// Median z per ground-truth state (states sorted by id; only states that occur are listed). Use it to
/// generate one volume per state and compare it with that state's ground-truth map.
pub fn median_z_per_state(z: Latents<'_>, states: &[u32]) -> Result<Vec<StateMedian>> {
    check_same_len("state labels", z.len(), states.len())?;
    let mut members: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &s) in states.iter().enumerate() {
        members.entry(s).or_default().push(i);
    }
    Ok(members
        .into_iter()
        .map(|(state, rows)| {
            let median = (0..z.zdim())
                .map(|j| {
                    let col: Vec<f32> = rows.iter().map(|&i| z.row(i)[j]).collect();
                    median(&col).unwrap_or(0.0) as f32
                })
                .collect();
            StateMedian { state, count: rows.len(), median }
        })
        .collect())
}

fn check_same_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: format!("{expected} values (one per particle)"),
            got: format!("{got}"),
        })
    }
}

/// Distinct labels (sorted) and each element's position among them.
fn relabel(labels: &[u32]) -> (Vec<u32>, Vec<usize>) {
    let mut distinct = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let pos = labels.iter().map(|l| distinct.binary_search(l).unwrap_or(0)).collect();
    (distinct, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_itself_its_negation_and_a_constant() {
        let a: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 - 3.5).collect();
        let neg: Vec<f32> = a.iter().map(|v| -2.0 * v + 1.0).collect();
        assert!((pearson(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &neg).unwrap() + 1.0).abs() < 1e-12);
        // Orthogonal centred sequences correlate 0.
        let (x, y) = ([1.0f32, -1.0, 1.0, -1.0], [1.0f32, 1.0, -1.0, -1.0]);
        assert!(pearson(&x, &y).unwrap().abs() < 1e-12);
        assert_eq!(pearson(&a, &vec![3.0; a.len()]).unwrap(), 0.0);
        assert_eq!(pearson(&[], &[]).unwrap(), 0.0);
        assert!(matches!(pearson(&a, &a[1..]), Err(Error::Shape { .. })));
    }

    #[test]
    fn hungarian_on_a_hand_matrix() {
        // Optimal: row0→col1 (1), row1→col0 (2), row2→col2 (2): total 5.
        let cost = [4.0, 1.0, 3.0, 2.0, 0.0, 5.0, 3.0, 2.0, 2.0];
        assert_eq!(hungarian(&cost, 3, 3), vec![1, 0, 2]);
        // Rectangular 2×3: row0→col2 (1), row1→col0 (1).
        let cost = [5.0, 9.0, 1.0, 1.0, 8.0, 2.0];
        assert_eq!(hungarian(&cost, 2, 3), vec![2, 0]);
    }

    #[test]
    fn accuracy_with_permuted_labels() {
        let truth = [0, 0, 0, 1, 1, 1, 2, 2];
        let pred = [7, 7, 5, 5, 5, 5, 9, 9];
        // Best matching 7→0, 5→1, 9→2: 2 + 3 + 2 = 7 of 8.
        let acc = best_match_accuracy(&pred, &truth).unwrap();
        assert_eq!(acc.accuracy, 7.0 / 8.0);
        assert_eq!(acc.mapping, vec![(5, 1), (7, 0), (9, 2)]);
        // More predicted clusters than classes: 4 predicted, 2 true.
        let acc = best_match_accuracy(&[0, 1, 2, 3], &[0, 0, 1, 1]).unwrap();
        assert_eq!(acc.accuracy, 0.5);
        assert!(matches!(best_match_accuracy(&[0], &[0, 1]), Err(Error::Shape { .. })));
    }

    #[test]
    fn spearman_with_ties() {
        // x ranks [1, 2.5, 2.5, 4], y ranks [1, 2, 3, 4]: ρ = 4.5 / √(4.5·5) = 0.948683.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[10.0, 20.0, 30.0, 40.0]).unwrap();
        assert!((r - 4.5 / (22.5f64).sqrt()).abs() < 1e-12, "{r}");
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert!(matches!(spearman(&[1.0, 1.0], &[1.0, 2.0]), Err(Error::Degenerate { .. })));
    }

    #[test]
    fn entanglement_eq11_by_hand() {
        // 1D: class 0 = {0, 2} (μ=1, σ=1), class 1 = {3, 5} (μ=4, σ=1): exp(−9) over one pair.
        let z = [0.0, 2.0, 3.0, 5.0];
        let e = entanglement_z(Latents::new(&z, 1).unwrap(), &[0, 0, 1, 1]).unwrap();
        assert!((e - (-9.0f64).exp()).abs() < 1e-12);
        // Three classes: add class 2 = {1, 1} (μ=1, σ=0, equal mean to class 0) → pairs exp(−9), 1, 0.
        let z = [0.0, 2.0, 3.0, 5.0, 1.0, 1.0];
        let e = entanglement_z(Latents::new(&z, 1).unwrap(), &[0, 0, 1, 1, 2, 2]).unwrap();
        assert!((e - ((-9.0f64).exp() + 1.0) / 3.0).abs() < 1e-12);
        let total = Entanglement { e_rot: 0.5, e_trans: 0.25, e_z: e }.total();
        assert!((total - 0.75 - e).abs() < 1e-15);
    }

    #[test]
    fn median_per_state() {
        let z = [0.0, 10.0, 1.0, 20.0, 5.0, 30.0, 7.0, 0.0];
        let m = median_z_per_state(Latents::new(&z, 2).unwrap(), &[3, 3, 3, 1]).unwrap();
        assert_eq!(m[0], StateMedian { state: 1, count: 1, median: vec![7.0, 0.0] });
        assert_eq!(m[1], StateMedian { state: 3, count: 3, median: vec![1.0, 20.0] });
    }
}
