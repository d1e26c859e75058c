//! Shortest paths through the data (cryoDRGN `graph_traversal`): a path between anchor particles that
//! stays on populated regions of latent space instead of cutting straight through empty space.
//!
//! Graph: each particle is joined to its `max_neighbors` nearest particles (Euclidean); of these
//! N·max_neighbors directed edges only the N·`avg_neighbors` shortest are kept (all edges with length
//! ≤ that rank's length, so ties are kept together), then edges are made undirected with their
//! Euclidean length as weight. Paths between consecutive anchors come from Dijkstra and are
//! concatenated (each intermediate anchor appears once).
//!
//! Neighbours are exact (brute force) up to [`EXACT_KNN_MAX`] particles and from NN-descent (seed 0)
//! above, where brute force would be O(N²).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::knn::{knn_exact, knn_nn_descent, Knn, NnDescentParams};
use crate::latents::Latents;

/// Largest N for which the neighbour graph is computed exactly.
pub const EXACT_KNN_MAX: usize = 20_000;

/// Graph settings; `Default` is cryoDRGN's (`--max-neighbors 10 --avg-neighbors 5`).
#[derive(Clone, Debug)]
pub struct GraphTraversalParams {
    /// Neighbours considered per particle (`--max-neighbors`).
    pub max_neighbors: usize,
    /// Edges kept per particle on average (`--avg-neighbors`).
    pub avg_neighbors: f64,
}

impl Default for GraphTraversalParams {
    fn default() -> Self {
        Self { max_neighbors: 10, avg_neighbors: 5.0 }
    }
}

/// An undirected weighted graph over particles, in CSR form.
#[derive(Clone, Debug)]
pub struct LatentGraph {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    weights: Vec<f32>,
}

impl LatentGraph {
    /// Build the pruned neighbour graph of the latents (see the module doc).
    pub fn build(z: Latents<'_>, params: &GraphTraversalParams) -> Result<Self> {
        if params.avg_neighbors.is_nan() || params.avg_neighbors <= 0.0 {
            return Err(Error::Param {
                name: "--avg-neighbors",
                value: params.avg_neighbors.to_string(),
                why: "must be positive".into(),
            });
        }
        let k = params.max_neighbors.min(z.len().saturating_sub(1));
        if k == 0 {
            return Err(Error::TooFew {
                what: "graph traversal".into(),
                needed: 2,
                got: z.len(),
                hint: "Check --max-neighbors and the latent file",
            });
        }
        let knn: Knn = if z.len() <= EXACT_KNN_MAX {
            knn_exact(z, k)?
        } else {
            knn_nn_descent(z, &NnDescentParams::new(k, z.len(), 0))?
        };
        let total = knn.dists.len();
        let keep = ((z.len() as f64 * params.avg_neighbors).round() as usize).clamp(1, total);
        let mut sorted = knn.dists.clone();
        let (_, &mut threshold, _) = sorted.select_nth_unstable_by(keep - 1, f32::total_cmp);
        let edges: Vec<(usize, usize, f32)> = (0..z.len())
            .flat_map(|i| {
                let (nb, d) = knn.neighbors(i);
                nb.iter()
                    .zip(d)
                    .filter(|(_, &dd)| dd <= threshold)
                    .map(move |(&j, &dd)| (i, j as usize, dd))
                    .collect::<Vec<_>>()
            })
            .collect();
        Ok(Self::from_edges(z.len(), &edges))
    }

    /// An undirected graph on `n` nodes from `(a, b, length)` edges; duplicate edges keep the shortest.
    ///
    /// # Panics
    /// If an endpoint is ≥ n (a programmer error).
    pub fn from_edges(n: usize, edges: &[(usize, usize, f32)]) -> Self {
        let mut both: Vec<(u32, u32, f32)> = Vec::with_capacity(2 * edges.len());
        for &(a, b, w) in edges {
            assert!(a < n && b < n, "LatentGraph::from_edges: node out of range");
            if a != b {
                both.push((a as u32, b as u32, w));
                both.push((b as u32, a as u32, w));
            }
        }
        both.sort_by(|x, y| (x.0, x.1).cmp(&(y.0, y.1)).then(x.2.total_cmp(&y.2)));
        both.dedup_by(|later, first| later.0 == first.0 && later.1 == first.1);
        let mut indptr = vec![0usize; n + 1];
        for &(a, _, _) in &both {
            indptr[a as usize + 1] += 1;
        }
        for i in 0..n {
            indptr[i + 1] += indptr[i];
        }
        Self {
            indptr,
            indices: both.iter().map(|e| e.1).collect(),
            weights: both.iter().map(|e| e.2).collect(),
        }
    }

    /// Number of nodes.
    pub fn n(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of undirected edges.
    pub fn n_edges(&self) -> usize {
        self.indices.len() / 2
    }

    /// Dijkstra shortest path `from → to`: the node sequence (both ends included) and its length.
    ///
    /// Errors: [`Error::NoPath`] when `to` is unreachable; [`Error::Param`] for nodes out of range.
    pub fn shortest_path(&self, from: usize, to: usize) -> Result<(Vec<usize>, f64)> {
        for v in [from, to] {
            if v >= self.n() {
                return Err(Error::Param {
                    name: "--anchors",
                    value: v.to_string(),
                    why: format!("particle index out of range: the graph has {} particles", self.n()),
                });
            }
        }
        let mut dist = vec![f64::INFINITY; self.n()];
        let mut prev = vec![usize::MAX; self.n()];
        // Non-negative f64 order equals the order of their bit patterns, which are Ord.
        let mut heap = BinaryHeap::new();
        dist[from] = 0.0;
        heap.push(Reverse((0f64.to_bits(), from)));
        while let Some(Reverse((bits, u))) = heap.pop() {
            let du = f64::from_bits(bits);
            if du > dist[u] {
                continue;
            }
            if u == to {
                break;
            }
            for e in self.indptr[u]..self.indptr[u + 1] {
                let v = self.indices[e] as usize;
                let dv = du + self.weights[e] as f64;
                if dv < dist[v] {
                    dist[v] = dv;
                    prev[v] = u;
                    heap.push(Reverse((dv.to_bits(), v)));
                }
            }
        }
        if !dist[to].is_finite() {
            return Err(Error::NoPath { from, to });
        }
        let mut path = vec![to];
        while let Some(&last) = path.last() {
            if last == from {
                break;
            }
            path.push(prev[last]);
        }
        path.reverse();
        Ok((path, dist[to]))
    }
}

/// A traversal path through particles.
#[derive(Clone, Debug)]
pub struct GraphPath {
    /// Particle indices along the path (`z-path-indices.txt`).
    pub indices: Vec<usize>,
    /// Their latents, M×zdim row-major (`z-path.txt`).
    pub z: Vec<f32>,
    /// Graph length of each anchor-to-anchor segment.
    pub segment_lengths: Vec<f64>,
}

/// Shortest path through the data visiting `anchors` in order (cryoDRGN `graph_traversal`).
///
/// Errors: fewer than 2 anchors or an anchor out of range ([`Error::Param`]); a disconnected pair
/// ([`Error::NoPath`], which says to raise `--avg-neighbors`/`--max-neighbors`).
pub fn graph_traversal(
    z: Latents<'_>,
    anchors: &[usize],
    params: &GraphTraversalParams,
) -> Result<GraphPath> {
    if anchors.len() < 2 {
        return Err(Error::Param {
            name: "--anchors",
            value: format!("{anchors:?}"),
            why: "give at least two particle indices".into(),
        });
    }
    for &a in anchors {
        z.check_index("--anchors", a)?;
    }
    let graph = LatentGraph::build(z, params)?;
    let mut indices = vec![anchors[0]];
    let mut segment_lengths = Vec::new();
    for pair in anchors.windows(2) {
        let (path, len) = graph.shortest_path(pair[0], pair[1])?;
        indices.extend_from_slice(&path[1..]);
        segment_lengths.push(len);
    }
    let zs = indices.iter().flat_map(|&i| z.row(i).iter().copied()).collect();
    Ok(GraphPath { indices, z: zs, segment_lengths })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dijkstra_on_a_hand_built_graph() {
        // 0–1 (1), 1–2 (1), 0–2 (3), 2–3 (1), 1–3 (5), 4 isolated. Shortest 0→3 is 0-1-2-3 (3).
        let g =
            LatentGraph::from_edges(5, &[(0, 1, 1.0), (1, 2, 1.0), (0, 2, 3.0), (2, 3, 1.0), (1, 3, 5.0)]);
        assert_eq!(g.n_edges(), 5);
        let (path, len) = g.shortest_path(0, 3).unwrap();
        assert_eq!(path, vec![0, 1, 2, 3]);
        assert_eq!(len, 3.0);
        assert_eq!(g.shortest_path(3, 0).unwrap().0, vec![3, 2, 1, 0]);
        assert_eq!(g.shortest_path(2, 2).unwrap(), (vec![2], 0.0));
        assert!(matches!(g.shortest_path(0, 4), Err(Error::NoPath { from: 0, to: 4 })));
    }

    #[test]
    fn path_goes_around_an_empty_gap() {
        // Points on a U: down x=0, across y=0, up x=10. Anchors at the two tips: the path follows the U.
        let mut z = Vec::new();
        for i in 0..=10 {
            z.extend([0.0f32, 10.0 - i as f32]);
        }
        for i in 1..10 {
            z.extend([i as f32, 0.0]);
        }
        for i in 0..=10 {
            z.extend([10.0f32, i as f32]);
        }
        let l = Latents::new(&z, 2).unwrap();
        let p = GraphTraversalParams { max_neighbors: 2, avg_neighbors: 2.0 };
        let path = graph_traversal(l, &[0, 30], &p).unwrap();
        // Length 30 along the U (the straight line is 10), moving forward along it at every step.
        assert!((path.segment_lengths[0] - 30.0).abs() < 1e-9);
        assert!(path.indices.windows(2).all(|w| w[0] < w[1]), "{:?}", path.indices);
        assert_eq!((path.indices[0], path.indices[path.indices.len() - 1]), (0, 30));
    }

    #[test]
    fn disconnected_clusters_give_no_path() {
        let z = [0.0f32, 0.1, 0.2, 100.0, 100.1, 100.2];
        let l = Latents::new(&z, 1).unwrap();
        let p = GraphTraversalParams { max_neighbors: 2, avg_neighbors: 2.0 };
        assert!(matches!(graph_traversal(l, &[0, 5], &p), Err(Error::NoPath { .. })));
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn cryodrgn_het_latents_path_is_connected() {
        let path = drgnfly_io::fixture_or_skip!("cryodrgn/zvals_het-2_1k.pkl");
        let (z, zdim, _) = drgnfly_io::pickle::load_latents(&path).unwrap();
        let l = Latents::new(&z, zdim).unwrap();
        let anchors = [0, 500, 999];
        let params = GraphTraversalParams::default();
        let res = graph_traversal(l, &anchors, &params).unwrap();
        assert_eq!(res.indices.first(), Some(&0));
        assert_eq!(res.indices.last(), Some(&999));
        assert!(res.indices.contains(&500));
        assert_eq!(res.z.len(), res.indices.len() * zdim);
        // Connected: every consecutive pair is an edge of the pruned graph, and the segment lengths
        // are the sums of the Euclidean steps.
        let graph = LatentGraph::build(l, &params).unwrap();
        let mut total = 0.0;
        for w in res.indices.windows(2) {
            let e = graph.indptr[w[0]]..graph.indptr[w[0] + 1];
            assert!(graph.indices[e].contains(&(w[1] as u32)), "{} → {} is not an edge", w[0], w[1]);
            total += crate::latents::sq_dist(l.row(w[0]), l.row(w[1])).sqrt() as f64;
        }
        let sum: f64 = res.segment_lengths.iter().sum();
        assert!((total - sum).abs() < 1e-4 * sum, "{total} vs {sum}");
        // A path through the data is never shorter than the straight line between its ends.
        let straight = crate::latents::sq_dist(l.row(0), l.row(500)).sqrt() as f64;
        assert!(res.segment_lengths[0] >= straight - 1e-6);
    }
}
