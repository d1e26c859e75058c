//! The marching-cubes case table, generated rather than transcribed: for each of the 256 inside/outside
//! patterns of a cube's corners, the triangles (as cube-edge indices) of the surface inside the cube.
//!
//! Generation: on each face, the corners' signs give 0, 1 or 2 segments between crossed edges. A face
//! with diagonal inside corners (the ambiguous case) is always resolved the same way, *inside corners
//! separated*, and that choice depends only on the face, so neighbouring cubes agree and the surface
//! has no holes. Each segment is oriented with the inside on its left seen from outside the cube; the
//! segments then chain into closed loops (the boundary of the inside region on the cube's surface), and
//! each loop is fanned into triangles wound counter-clockwise seen from outside the object, so
//! triangle normals (b − a) × (c − a) point towards lower density.

use std::sync::OnceLock;

/// Corner `c` of the unit cube sits at (c & 1, (c >> 1) & 1, (c >> 2) & 1) = (dx, dy, dz).
pub(crate) fn corner(c: usize) -> [i32; 3] {
    [(c & 1) as i32, ((c >> 1) & 1) as i32, ((c >> 2) & 1) as i32]
}

/// Edge `e` joins corners `EDGES[e]`: 0–3 run along x, 4–7 along y, 8–11 along z; the first corner is
/// the lower one.
pub(crate) const EDGES: [[usize; 2]; 12] =
    [[0, 1], [2, 3], [4, 5], [6, 7], [0, 2], [1, 3], [4, 6], [5, 7], [0, 4], [1, 5], [2, 6], [3, 7]];

/// The six faces: corners in cyclic order and the outward normal.
const FACES: [([usize; 4], [i32; 3]); 6] = [
    ([0, 2, 6, 4], [-1, 0, 0]),
    ([1, 3, 7, 5], [1, 0, 0]),
    ([0, 1, 5, 4], [0, -1, 0]),
    ([2, 3, 7, 6], [0, 1, 0]),
    ([0, 1, 3, 2], [0, 0, -1]),
    ([4, 5, 7, 6], [0, 0, 1]),
];

/// The edge joining corners `a` and `b`.
fn edge_between(a: usize, b: usize) -> usize {
    EDGES.iter().position(|e| (e[0] == a && e[1] == b) || (e[0] == b && e[1] == a)).unwrap_or(usize::MAX)
}

/// Twice the midpoint of edge `e` (integer coordinates).
fn edge_mid2(e: usize) -> [i32; 3] {
    let (a, b) = (corner(EDGES[e][0]), corner(EDGES[e][1]));
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// The two faces (axis, side) containing edge `e`.
fn faces_of(e: usize) -> [(usize, i32); 2] {
    let axis = e / 4;
    let a = corner(EDGES[e][0]);
    let (b, c) = ((axis + 1) % 3, (axis + 2) % 3);
    [(b, a[b]), (c, a[c])]
}

/// Whether two distinct cube edges lie on a common face.
fn share_face(e: usize, f: usize) -> bool {
    e != f && faces_of(e).iter().any(|x| faces_of(f).contains(x))
}

/// Triangles for the corner pattern `case` (bit c set = corner c inside).
fn triangulate(case: usize) -> Vec<[u8; 3]> {
    let inside = |c: usize| (case >> c) & 1 == 1;
    let mut next = [usize::MAX; 12];
    for (corners, normal) in FACES {
        let edge = |k: usize| edge_between(corners[k % 4], corners[(k + 1) % 4]);
        let crossed: Vec<usize> =
            (0..4).filter(|&k| inside(corners[k]) != inside(corners[(k + 1) % 4])).collect();
        let mut segments = Vec::new();
        match crossed.len() {
            2 => {
                let reference = corners.iter().copied().find(|&c| inside(c)).unwrap_or(corners[0]);
                segments.push((edge(crossed[0]), edge(crossed[1]), reference));
            }
            4 => {
                // Diagonal pattern: cut off each inside corner separately.
                for k in (0..4).filter(|&k| inside(corners[k])) {
                    segments.push((edge(k + 3), edge(k), corners[k]));
                }
            }
            _ => {}
        }
        for (p, q, reference) in segments {
            // Orient p → q so that `reference` (inside) is on the left seen from outside (+normal).
            let (mp, mq, r) = (edge_mid2(p), edge_mid2(q), corner(reference).map(|v| 2 * v));
            let d = [mq[0] - mp[0], mq[1] - mp[1], mq[2] - mp[2]];
            let e = [r[0] - mp[0], r[1] - mp[1], r[2] - mp[2]];
            let cross = [d[1] * e[2] - d[2] * e[1], d[2] * e[0] - d[0] * e[2], d[0] * e[1] - d[1] * e[0]];
            let left = cross[0] * normal[0] + cross[1] * normal[1] + cross[2] * normal[2] > 0;
            let (from, to) = if left { (p, q) } else { (q, p) };
            next[from] = to;
        }
    }
    let mut triangles = Vec::new();
    let mut used = [false; 12];
    for start in 0..12 {
        if next[start] == usize::MAX || used[start] {
            continue;
        }
        let mut ring = Vec::new();
        let mut e = start;
        while !used[e] && e != usize::MAX {
            used[e] = true;
            ring.push(e as u8);
            e = next[e];
        }
        // Fan from an apex whose chords cross the cube's interior: a chord between two edges of one
        // face (possible on ambiguous faces) would lie in that face, where the neighbouring cube may
        // draw the same chord, and the edge would be shared by four triangles.
        let k = ring.len();
        if let Some(apex) =
            (0..k).find(|&a| (2..k - 1).all(|i| !share_face(ring[a] as usize, ring[(a + i) % k] as usize)))
        {
            ring.rotate_left(apex);
        }
        // The loop runs counter-clockwise around the inside region seen from outside the cube, i.e.
        // seen from the object's inside; reverse the fan so triangles face the outside.
        for i in 1..ring.len().saturating_sub(1) {
            triangles.push([ring[0], ring[i + 1], ring[i]]);
        }
    }
    triangles
}

/// The 256-case table, built on first use.
pub(crate) fn table() -> &'static [Vec<[u8; 3]>] {
    static TABLE: OnceLock<Vec<Vec<[u8; 3]>>> = OnceLock::new();
    TABLE.get_or_init(|| (0..256).map(triangulate).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_known_case_sizes() {
        let t = table();
        assert!(t[0].is_empty() && t[255].is_empty());
        // One corner: one triangle; two corners sharing an edge: a quad; all corners of a face: a quad.
        assert_eq!(t[0b0000_0001].len(), 1);
        assert_eq!(t[0b0000_0011].len(), 2);
        assert_eq!(t[0b0000_1111].len(), 2);
        // Two opposite corners: two separate triangles; four pairwise non-adjacent corners: four.
        assert_eq!(t[0b1000_0001].len(), 2);
        assert_eq!(t[0b1001_0110].len(), 4);
        // Only corners 0 and 7 outside: each is cut off by its own triangle.
        assert_eq!(t[0b0111_1110].len(), 2);
        assert!(t.iter().all(|tris| tris.len() <= 12));
        // No fan chord lies in a face: every triangle side joining two edges of one face is a face
        // segment, i.e. used by exactly one triangle of the case.
        for (case, tris) in t.iter().enumerate() {
            let mut uses = std::collections::HashMap::new();
            for tri in tris {
                for k in 0..3 {
                    let (a, b) = (tri[k].min(tri[(k + 1) % 3]), tri[k].max(tri[(k + 1) % 3]));
                    *uses.entry((a, b)).or_insert(0) += 1;
                }
            }
            for (&(a, b), &n) in &uses {
                assert!(
                    !share_face(a as usize, b as usize) || n == 1,
                    "case {case:#010b}: chord {a}-{b} in a face"
                );
            }
        }
        // Every crossed edge is used: the edges in a case's triangles are exactly its crossed edges.
        for (case, tris) in t.iter().enumerate() {
            let crossed: Vec<usize> =
                (0..12).filter(|&e| ((case >> EDGES[e][0]) & 1) != ((case >> EDGES[e][1]) & 1)).collect();
            let mut used: Vec<usize> = tris.iter().flatten().map(|&e| e as usize).collect();
            used.sort_unstable();
            used.dedup();
            assert_eq!(used, crossed, "case {case:#010b}");
        }
    }
}
