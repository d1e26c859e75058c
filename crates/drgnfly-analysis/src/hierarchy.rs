//! Agglomerative (hierarchical) clustering with average linkage, and the leaf order of its dendrogram.
//!
//! cryoDRGN numbers its k-means classes by the row dendrogram of `seaborn.clustermap(centers)`, so that
//! similar classes get neighbouring numbers. That dendrogram is scipy's
//! `linkage(centers, method='average', metric='euclidean')` read left to right (`leaves_list`). This
//! module reproduces it, ties included:
//!
//! - Distances: Euclidean, in f64 (f32 inputs widened first, as scipy's `pdist`).
//! - Average linkage (UPGMA): after merging clusters x and y, the distance to any other cluster i is
//!   `d(x∪y, i) = (|x|·d(x, i) + |y|·d(y, i)) / (|x| + |y|)`.
//! - Merges are found with the nearest-neighbour chain algorithm (Murtagh 1983), scanning candidates
//!   in index order and preferring the previous chain element on ties, as scipy does; a merge keeps
//!   the higher index (x < y: x is dropped, y becomes x∪y).
//! - The merges are then stably sorted by height and relabelled: leaves are 0…n−1, the cluster made
//!   by merge i is n+i, and each merge lists its lower label first (scipy's linkage matrix `Z`).
//! - Leaf order: depth-first, lower label (left child) first (`leaves_list`, equal to
//!   `dendrogram(Z)['leaves']` without distance or count sorting, which is what seaborn uses).

/// Most points [`average_linkage`] takes: it keeps the n×n distance matrix (8·n² bytes, 32 MB here);
/// the nearest-neighbour chain makes the time O(n²).
pub const MAX_POINTS: usize = 2000;

/// One row of scipy's linkage matrix: clusters `a < b` merged at `height` into a cluster of `size`
/// points, labelled `n + row`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Merge {
    /// Lower label of the two merged clusters.
    pub a: usize,
    /// Higher label.
    pub b: usize,
    /// Average-linkage distance between them.
    pub height: f64,
    /// Points in the merged cluster.
    pub size: usize,
}

/// Average-linkage clustering of the rows of `points` (n×dim, row-major): n−1 merges in scipy's
/// linkage-matrix form (module docs). Fewer than two points, more than [`MAX_POINTS`], or `dim == 0`
/// give no merges.
pub fn average_linkage(points: &[f32], dim: usize) -> Vec<Merge> {
    let n = points.len().checked_div(dim).unwrap_or(0);
    if !(2..=MAX_POINTS).contains(&n) {
        return Vec::new();
    }
    let rows: Vec<&[f32]> = points.chunks_exact(dim).collect();
    let mut dist = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i + 1..n {
            let s: f64 =
                rows[i].iter().zip(rows[j]).map(|(&u, &v)| (f64::from(u) - f64::from(v)).powi(2)).sum();
            dist[i * n + j] = s.sqrt();
            dist[j * n + i] = s.sqrt();
        }
    }
    let mut size = vec![1usize; n];
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut merges = Vec::with_capacity(n - 1);
    for _ in 0..n - 1 {
        if chain.is_empty() {
            // Start a chain at the first live cluster (one always exists before the last merge).
            chain.push(size.iter().position(|&s| s > 0).unwrap_or(0));
        }
        // Follow nearest neighbours until two clusters are each other's nearest.
        let (x, y, height) = loop {
            let x = chain[chain.len() - 1];
            let prev = chain.len().checked_sub(2).map(|i| chain[i]);
            // Without a previous element the first live cluster is the first candidate, so that
            // NaN distances (never produced from finite input) still end the chain.
            let (mut y, mut best) = match prev {
                Some(p) => (p, dist[x * n + p]),
                None => (usize::MAX, f64::INFINITY),
            };
            for i in 0..n {
                if size[i] > 0 && i != x && (y == usize::MAX || dist[x * n + i] < best) {
                    best = dist[x * n + i];
                    y = i;
                }
            }
            if prev == Some(y) {
                break (x, y, best);
            }
            chain.push(y);
        };
        chain.truncate(chain.len() - 2);
        let (x, y) = (x.min(y), x.max(y));
        let (nx, ny) = (size[x], size[y]);
        merges.push(Merge { a: x, b: y, height, size: nx + ny });
        size[x] = 0;
        size[y] = nx + ny;
        for i in 0..n {
            if size[i] == 0 || i == y {
                continue;
            }
            let d = (nx as f64 * dist[i * n + x] + ny as f64 * dist[i * n + y]) / (nx + ny) as f64;
            dist[i * n + y] = d;
            dist[y * n + i] = d;
        }
    }
    merges.sort_by(|p, q| p.height.total_cmp(&q.height));
    relabel(&mut merges, n);
    merges
}

/// Replace the chain algorithm's slot numbers by cluster labels (leaves 0…n−1, merge i → n+i), lower
/// label first, with a union-find over the height-sorted merges.
fn relabel(merges: &mut [Merge], n: usize) {
    // parent[c] for every label 0…2n−2; a root is its own parent.
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    let find = |parent: &mut Vec<usize>, mut c: usize| {
        let mut root = c;
        while parent[root] != root {
            root = parent[root];
        }
        while parent[c] != root {
            let next = parent[c];
            parent[c] = root;
            c = next;
        }
        root
    };
    for (i, m) in merges.iter_mut().enumerate() {
        let (ra, rb) = (find(&mut parent, m.a), find(&mut parent, m.b));
        let label = n + i;
        parent[ra] = label;
        parent[rb] = label;
        (m.a, m.b) = (ra.min(rb), ra.max(rb));
    }
}

/// Leaves of the dendrogram of `merges` (over `n` points) from left to right (scipy `leaves_list`).
/// Without merges the order is 0…n−1.
pub fn leaves_order(merges: &[Merge], n: usize) -> Vec<usize> {
    let Some(root) = merges.len().checked_sub(1) else { return (0..n).collect() };
    let mut order = Vec::with_capacity(n);
    let mut stack = vec![n + root];
    while let Some(c) = stack.pop() {
        match c.checked_sub(n).and_then(|i| merges.get(i)) {
            // Right child pushed first so the left child is visited first.
            Some(m) => stack.extend([m.b, m.a]),
            None => order.push(c),
        }
    }
    order
}

/// The dendrogram leaf order of the rows of `points` (n×dim) under average linkage: cryoDRGN's
/// (seaborn clustermap's) order of k-means centres.
pub fn dendrogram_order(points: &[f32], dim: usize) -> Vec<usize> {
    let n = points.len().checked_div(dim).unwrap_or(0);
    leaves_order(&average_linkage(points, dim), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the scipy reference below (8 points in 3D, float32).
    const CENTERS: [f32; 24] = [
        0.0, 0.0, 0.0, //
        5.0, 5.1, 0.2, //
        0.3, 0.1, -0.2, //
        9.0, -1.0, 2.0, //
        5.2, 4.8, 0.0, //
        -3.0, 2.0, 1.0, //
        8.7, -0.6, 2.4, //
        0.1, 0.5, 0.1,
    ];

    /// Expected values from scipy 1.17.1 (seaborn 0.13.2 gives the same leaf order):
    /// ```python
    /// import numpy as np
    /// from scipy.cluster.hierarchy import linkage, leaves_list
    /// c = np.array(CENTERS, dtype=np.float32).reshape(8, 3)
    /// Z = linkage(c, 'average'); print(Z.tolist(), leaves_list(Z).tolist())
    /// # seaborn.clustermap(c).dendrogram_row.reordered_ind == leaves_list(Z)
    /// ```
    #[test]
    fn matches_scipy_linkage_and_leaves() {
        let z = average_linkage(&CENTERS, 3);
        let expected = [
            (0, 2, 0.37416575022665244, 2),
            (1, 4, 0.4123102633174305, 2),
            (7, 8, 0.5290658644075521, 3),
            (3, 6, 0.6403125577883219, 2),
            (5, 10, 3.7645482331272557, 4),
            (9, 11, 7.185209919654653, 4),
            (12, 13, 8.591934739997921, 8),
        ];
        assert_eq!(z.len(), expected.len());
        for (m, &(a, b, h, s)) in z.iter().zip(&expected) {
            assert_eq!((m.a, m.b, m.size), (a, b, s));
            assert!((m.height - h).abs() < 1e-12, "height {} vs scipy {h}", m.height);
        }
        assert_eq!(leaves_order(&z, 8), [5, 7, 0, 2, 1, 4, 3, 6]);
    }

    /// Ties (all points equal) are broken as scipy breaks them:
    /// `Z = linkage(np.zeros((5, 2)), 'average')` →
    /// `[[0,1,0,2],[2,5,0,3],[3,6,0,4],[4,7,0,5]]`, `leaves_list(Z)` → `[4, 3, 2, 0, 1]`.
    #[test]
    fn ties_follow_scipy() {
        let z = average_linkage(&[0.0; 10], 2);
        let ab: Vec<(usize, usize, usize)> = z.iter().map(|m| (m.a, m.b, m.size)).collect();
        assert_eq!(ab, [(0, 1, 2), (2, 5, 3), (3, 6, 4), (4, 7, 5)]);
        assert!(z.iter().all(|m| m.height == 0.0));
        assert_eq!(dendrogram_order(&[0.0; 10], 2), [4, 3, 2, 0, 1]);
    }

    #[test]
    fn small_inputs() {
        assert_eq!(dendrogram_order(&[], 3), Vec::<usize>::new());
        assert_eq!(dendrogram_order(&[1.0, 2.0], 2), [0]);
        assert_eq!(dendrogram_order(&[1.0, 2.0], 0), Vec::<usize>::new());
        // Two points: one merge, lower label on the left.
        assert_eq!(dendrogram_order(&[3.0, 1.0], 1), [0, 1]);
    }
}
