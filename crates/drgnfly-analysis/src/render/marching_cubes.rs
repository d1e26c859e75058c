//! Marching cubes: the isosurface `ρ = level` of a map as a closed triangle [`Mesh`].
//!
//! Grid points are voxel centres at integer (x, y, z). The map is surrounded by one layer of virtual
//! voxels below any level, so density touching the box edge is capped and the mesh is always closed.
//! Vertices sit on cube edges by linear interpolation, t = (level − ρ_a)/(ρ_b − ρ_a), and are shared
//! between the cubes that meet at an edge. Normals are −∇ρ (central differences, clamped at the
//! border), interpolated the same way: they point out of the object.

use std::collections::HashMap;

use super::mc_table::{self, corner, EDGES};
use super::mesh::Mesh;
use super::volume::VolumeRef;

/// Value of the virtual voxels around the map: below any level, and far from f32 overflow when
/// subtracted.
const OUTSIDE: f32 = f32::MIN / 4.0;

/// The surface enclosing the voxels with `ρ ≥ level`.
pub fn marching_cubes(vol: &VolumeRef, level: f32) -> Mesh {
    let [nz, ny, nx] = vol.shape().map(|s| s as i64);
    let sample = |x: i64, y: i64, z: i64| -> f32 {
        if x < 0 || y < 0 || z < 0 || x >= nx || y >= ny || z >= nz {
            OUTSIDE
        } else {
            vol.at(x as usize, y as usize, z as usize)
        }
    };
    let clamped = |x: i64, y: i64, z: i64| {
        vol.at(x.clamp(0, nx - 1) as usize, y.clamp(0, ny - 1) as usize, z.clamp(0, nz - 1) as usize)
    };
    let gradient = |x: i64, y: i64, z: i64| -> [f32; 3] {
        [
            (clamped(x + 1, y, z) - clamped(x - 1, y, z)) * 0.5,
            (clamped(x, y + 1, z) - clamped(x, y - 1, z)) * 0.5,
            (clamped(x, y, z + 1) - clamped(x, y, z - 1)) * 0.5,
        ]
    };
    let table = mc_table::table();
    let mut mesh = Mesh::default();
    // Vertex of each crossed grid edge, keyed by (lower grid point, axis).
    let mut vertex_of: HashMap<(i64, i64, i64, u8), u32> = HashMap::new();
    let mut values = [0f32; 8];
    for z in -1..nz {
        for y in -1..ny {
            for x in -1..nx {
                let mut case = 0usize;
                for (c, v) in values.iter_mut().enumerate() {
                    let o = corner(c);
                    *v = sample(x + o[0] as i64, y + o[1] as i64, z + o[2] as i64);
                    if *v >= level {
                        case |= 1 << c;
                    }
                }
                let tris = &table[case];
                if tris.is_empty() {
                    continue;
                }
                for tri in tris {
                    let idx = tri.map(|e| {
                        let [a, b] = EDGES[e as usize];
                        let (pa, pb) = (corner(a), corner(b));
                        let axis = e / 4;
                        let key = (x + pa[0] as i64, y + pa[1] as i64, z + pa[2] as i64, axis);
                        *vertex_of.entry(key).or_insert_with(|| {
                            let (va, vb) = (values[a], values[b]);
                            let t = ((level - va) / (vb - va)).clamp(0.0, 1.0);
                            let ga = gradient(key.0, key.1, key.2);
                            let gb = gradient(x + pb[0] as i64, y + pb[1] as i64, z + pb[2] as i64);
                            let pos = std::array::from_fn(|k| {
                                let base = [key.0, key.1, key.2][k] as f32;
                                base + t * (pb[k] - pa[k]) as f32
                            });
                            let g: [f32; 3] = std::array::from_fn(|k| -(ga[k] + t * (gb[k] - ga[k])));
                            let len = (g[0] * g[0] + g[1] * g[1] + g[2] * g[2]).sqrt();
                            let normal = if len > 0.0 { g.map(|v| v / len) } else { [0.0, 0.0, 1.0] };
                            mesh.vertices.push(pos);
                            mesh.normals.push(normal);
                            (mesh.vertices.len() - 1) as u32
                        })
                    });
                    mesh.triangles.push(idx);
                }
            }
        }
    }
    mesh
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// ρ = r0 − |p − c|: positive inside a sphere of radius r0 centred at c.
    fn sphere(d: usize, c: [f32; 3], r0: f32) -> Vec<f32> {
        let mut v = Vec::with_capacity(d * d * d);
        for z in 0..d {
            for y in 0..d {
                for x in 0..d {
                    let r =
                        ((x as f32 - c[0]).powi(2) + (y as f32 - c[1]).powi(2) + (z as f32 - c[2]).powi(2))
                            .sqrt();
                    v.push(r0 - r);
                }
            }
        }
        v
    }

    #[test]
    fn sphere_mesh_is_closed_with_analytic_area_and_volume() {
        let (d, r) = (40, 12.0f32);
        let data = sphere(d, [19.3, 20.0, 20.6], r);
        let mesh = marching_cubes(&VolumeRef::cube(&data, d).unwrap(), 0.0);
        assert!(mesh.is_closed(), "sphere mesh has holes or flipped triangles");
        assert_eq!(mesh.components(), 1);
        let (area, vol) = (mesh.area(), mesh.enclosed_volume());
        let (area0, vol0) = (4.0 * PI * (r as f64).powi(2), 4.0 / 3.0 * PI * (r as f64).powi(3));
        assert!((area / area0 - 1.0).abs() < 0.03, "area {area} vs {area0}");
        assert!((vol / vol0 - 1.0).abs() < 0.03, "volume {vol} vs {vol0}");
        // Normals point away from the centre.
        let outward = mesh
            .vertices
            .iter()
            .zip(&mesh.normals)
            .filter(|(p, n)| (p[0] - 19.3) * n[0] + (p[1] - 20.0) * n[1] + (p[2] - 20.6) * n[2] > 0.0);
        assert_eq!(outward.count(), mesh.vertices.len());
    }

    #[test]
    fn density_touching_the_box_is_capped_and_two_blobs_are_two_pieces() {
        // Sphere cut by the box faces at x = 0: still closed.
        let d = 24;
        let data = sphere(d, [0.0, 12.0, 12.0], 8.0);
        let mesh = marching_cubes(&VolumeRef::cube(&data, d).unwrap(), 0.0);
        assert!(mesh.is_closed());
        // Half a sphere (the cap lies on the plane x = 0): volume ≈ 2/3 π r³.
        let half = 2.0 / 3.0 * PI * 512.0;
        assert!((mesh.enclosed_volume() / half - 1.0).abs() < 0.05, "{}", mesh.enclosed_volume());
        // Two blobs.
        let a = sphere(d, [7.0, 12.0, 12.0], 4.0);
        let b = sphere(d, [17.0, 12.0, 12.0], 4.0);
        let two: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect();
        let mesh = marching_cubes(&VolumeRef::cube(&two, d).unwrap(), 0.0);
        assert!(mesh.is_closed());
        assert_eq!(mesh.components(), 2);
    }

    #[test]
    fn every_corner_pattern_tiles_closed() {
        // A random ±1 field exercises all 256 cases, including ambiguous faces: still closed.
        let d = 14;
        let mut s = 7u32;
        let data: Vec<f32> = (0..d * d * d)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                if s >> 31 == 1 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let mesh = marching_cubes(&VolumeRef::cube(&data, d).unwrap(), 0.0);
        assert!(mesh.triangles.len() > 1000);
        assert!(mesh.is_closed());
        assert!(mesh.enclosed_volume() > 0.0);
    }
}
