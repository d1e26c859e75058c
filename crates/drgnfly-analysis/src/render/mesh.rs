//! [`Mesh`]: an indexed triangle surface in voxel coordinates, with the measures the tests (and users)
//! check it by: area, enclosed volume, closedness, connected components.

use std::collections::HashMap;

/// A triangle mesh. Coordinates are voxel units `[x, y, z]` (x = column index of the map); triangles are
/// wound counter-clockwise seen from outside, and `normals` (unit, per vertex) point outwards, towards
/// lower density.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// Vertex positions.
    pub vertices: Vec<[f32; 3]>,
    /// Unit outward normal of each vertex.
    pub normals: Vec<[f32; 3]>,
    /// Vertex indices of each triangle.
    pub triangles: Vec<[u32; 3]>,
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f64; 3] {
    [(a[0] - b[0]) as f64, (a[1] - b[1]) as f64, (a[2] - b[2]) as f64]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

impl Mesh {
    fn corners(&self, t: &[u32; 3]) -> [[f32; 3]; 3] {
        t.map(|i| self.vertices[i as usize])
    }

    /// Surface area in voxel² (Σ |(b − a) × (c − a)| / 2).
    pub fn area(&self) -> f64 {
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = self.corners(t);
                let n = cross(sub(b, a), sub(c, a));
                0.5 * (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt()
            })
            .sum()
    }

    /// Enclosed volume in voxel³ by the divergence theorem, V = Σ a · (b × c) / 6; positive when the
    /// triangles face outwards. Meaningful for closed meshes.
    pub fn enclosed_volume(&self) -> f64 {
        self.triangles
            .iter()
            .map(|t| {
                let [a, b, c] = self.corners(t).map(|p| p.map(|v| v as f64));
                let n = cross(b, c);
                (a[0] * n[0] + a[1] * n[1] + a[2] * n[2]) / 6.0
            })
            .sum()
    }

    /// Whether the surface is closed and consistently oriented: every directed edge a → b of a triangle
    /// occurs exactly once and its reverse b → a exactly once.
    pub fn is_closed(&self) -> bool {
        let mut count: HashMap<(u32, u32), i32> = HashMap::with_capacity(self.triangles.len() * 3);
        for t in &self.triangles {
            for k in 0..3 {
                *count.entry((t[k], t[(k + 1) % 3])).or_insert(0) += 1;
            }
        }
        count.iter().all(|(&(a, b), &n)| n == 1 && count.get(&(b, a)) == Some(&1))
    }

    /// Number of connected pieces (vertices joined by triangle edges; unused vertices ignored).
    pub fn components(&self) -> usize {
        let mut parent: Vec<u32> = (0..self.vertices.len() as u32).collect();
        fn find(p: &mut [u32], mut i: u32) -> u32 {
            while p[i as usize] != i {
                p[i as usize] = p[p[i as usize] as usize];
                i = p[i as usize];
            }
            i
        }
        let mut used = vec![false; self.vertices.len()];
        for t in &self.triangles {
            for k in 0..3 {
                used[t[k] as usize] = true;
                let (a, b) = (find(&mut parent, t[k]), find(&mut parent, t[(k + 1) % 3]));
                parent[a as usize] = b;
            }
        }
        (0..self.vertices.len() as u32).filter(|&i| used[i as usize] && find(&mut parent, i) == i).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit tetrahedron with outward faces.
    fn tetra() -> Mesh {
        Mesh {
            vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            normals: vec![[0.0, 0.0, 1.0]; 4],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        }
    }

    #[test]
    fn tetrahedron_measures() {
        let m = tetra();
        assert!((m.enclosed_volume() - 1.0 / 6.0).abs() < 1e-12);
        assert!((m.area() - (1.5 + 3f64.sqrt() / 2.0)).abs() < 1e-6);
        assert!(m.is_closed());
        assert_eq!(m.components(), 1);
        let mut open = m.clone();
        open.triangles.pop();
        assert!(!open.is_closed());
        let mut flipped = m;
        flipped.triangles[0].swap(1, 2);
        assert!(!flipped.is_closed());
    }
}
