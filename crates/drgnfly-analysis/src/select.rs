//! Particle selection from analysis results (cryoDRGN `filter` and the dashboard): by k-means cluster,
//! by region of a 2D plot (polygon lasso) or a box in any coordinates. Selections are sorted 0-based
//! particle indices, saved by the binary as an int64 `.pkl` usable with `--ind`, together with the
//! complement (`<name>_inverse.pkl`).

use crate::error::{Error, Result};

/// Particles whose label is one of `clusters` (`filter -k`).
///
/// Errors: a cluster id that no particle has (a typo would otherwise give an empty selection).
pub fn select_clusters(labels: &[u32], clusters: &[u32]) -> Result<Vec<usize>> {
    for &c in clusters {
        if !labels.contains(&c) {
            let max = labels.iter().max().map_or("none".to_string(), |m| format!("0..={m}"));
            return Err(Error::Param {
                name: "--cluster",
                value: c.to_string(),
                why: format!("no particle has this label (labels: {max})"),
            });
        }
    }
    Ok(labels.iter().enumerate().filter(|(_, l)| clusters.contains(l)).map(|(i, _)| i).collect())
}

/// Particles whose 2D point (`points`: N×2 row-major) lies inside `polygon` (even–odd rule; the
/// polygon closes itself; points exactly on an edge may fall either way).
pub fn select_in_polygon(points: &[f32], polygon: &[[f32; 2]]) -> Result<Vec<usize>> {
    if polygon.len() < 3 {
        return Err(Error::Param {
            name: "polygon",
            value: format!("{} vertices", polygon.len()),
            why: "needs at least 3 vertices".into(),
        });
    }
    check_rows(points, 2)?;
    Ok(points
        .chunks_exact(2)
        .enumerate()
        .filter(|(_, p)| inside(p[0], p[1], polygon))
        .map(|(i, _)| i)
        .collect())
}

/// Ray casting: count crossings of a horizontal ray from (x, y) to +∞.
fn inside(x: f32, y: f32, poly: &[[f32; 2]]) -> bool {
    let mut c = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

/// Particles whose coordinates (`points`: N×dims row-major, e.g. PCA projections) lie in the box
/// `lo ≤ p ≤ hi` in every dimension.
pub fn select_in_box(points: &[f32], dims: usize, lo: &[f32], hi: &[f32]) -> Result<Vec<usize>> {
    if dims == 0 || lo.len() != dims || hi.len() != dims {
        return Err(Error::Shape {
            what: "selection box",
            expected: format!("{dims} lower and {dims} upper bounds"),
            got: format!("{} and {}", lo.len(), hi.len()),
        });
    }
    check_rows(points, dims)?;
    Ok(points
        .chunks_exact(dims)
        .enumerate()
        .filter(|(_, p)| p.iter().zip(lo.iter().zip(hi)).all(|(v, (l, h))| v >= l && v <= h))
        .map(|(i, _)| i)
        .collect())
}

/// The particles of `0..n` not in `selected` (sorted), for `<name>_inverse.pkl`.
///
/// Errors: an index ≥ n.
pub fn complement(selected: &[usize], n: usize) -> Result<Vec<usize>> {
    let mut keep = vec![true; n];
    for &i in selected {
        match keep.get_mut(i) {
            Some(k) => *k = false,
            None => {
                return Err(Error::Param {
                    name: "selection",
                    value: i.to_string(),
                    why: format!("index out of range for {n} particles"),
                })
            }
        }
    }
    Ok(keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i).collect())
}

fn check_rows(points: &[f32], dims: usize) -> Result<()> {
    if !points.len().is_multiple_of(dims) {
        return Err(Error::Shape {
            what: "points",
            expected: format!("a multiple of {dims} values"),
            got: points.len().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_cluster_and_complement() {
        let labels = [0, 2, 1, 2, 0];
        assert_eq!(select_clusters(&labels, &[2, 0]).unwrap(), vec![0, 1, 3, 4]);
        assert!(matches!(select_clusters(&labels, &[5]), Err(Error::Param { .. })));
        assert_eq!(complement(&[0, 3], 5).unwrap(), vec![1, 2, 4]);
        assert!(matches!(complement(&[5], 5), Err(Error::Param { .. })));
    }

    #[test]
    fn by_region() {
        // Unit square and an L-shaped polygon whose notch excludes (1.5, 1.5).
        let pts = [0.5, 0.5, 1.5, 1.5, 1.5, 0.5, -1.0, 0.0];
        let square = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        assert_eq!(select_in_polygon(&pts, &square).unwrap(), vec![0]);
        let ell = [[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0], [0.0, 2.0]];
        assert_eq!(select_in_polygon(&pts, &ell).unwrap(), vec![0, 2]);
        assert_eq!(select_in_box(&pts, 2, &[0.0, 0.0], &[2.0, 1.0]).unwrap(), vec![0, 2]);
        assert!(matches!(select_in_polygon(&pts, &square[..2]), Err(Error::Param { .. })));
    }
}
