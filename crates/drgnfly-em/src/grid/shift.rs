//! cryoDRGN2's translation search grid (`cryodrgn/shift_grid.py`) and its refinement in
//! `pose_search.PoseSearch.opt_theta_trans`.
//!
//! All arithmetic is f32 in numpy's order (`arange(float32)·dt + dt/2 − extent + shift`, each step
//! rounded), so the grids equal cryoDRGN's bit for bit. Shifts are in pixels.

/// Largest supported level ℓ (`n·2^ℓ` points per axis).
pub const MAX_LEVEL: u32 = 16;

/// A shift `(x, y)` in pixels.
pub type Shift = [f32; 2];

fn check_level(level: u32) {
    assert!(level <= MAX_LEVEL, "shift grid level {level} > {MAX_LEVEL}");
}

/// The `ngrid·2^level` points of one axis, centred cells of width `dt = 2·extent/(ngrid·2^level)` over
/// `[−extent, extent]`, offset by `shift`: `i·dt + dt/2 − extent + shift` (cryoDRGN `shift_grid.grid_1d`).
///
/// # Panics
/// If `level > MAX_LEVEL`.
pub fn grid_1d(level: u32, extent: f64, ngrid: usize, shift: f64) -> Vec<f32> {
    check_level(level);
    let npix = ngrid << level;
    let dt = 2.0 * extent / npix as f64;
    let (dt32, half, ext, sh) = (dt as f32, (dt / 2.0) as f32, extent as f32, shift as f32);
    (0..npix).map(|i| i as f32 * dt32 + half - ext + sh).collect()
}

/// The 2D grid with x fastest: point `y_i·n + x_i` is `(x[x_i], y[y_i])` (cryoDRGN `grid_2d` and
/// `base_shift_grid`). The search's base grid is level `base_healpy − 1`: with extent 10, n 7 and
/// base 2 that is 14 × 14 shifts 1.43 px apart, ±9.3 px.
///
/// # Panics
/// If `level > MAX_LEVEL`.
pub fn base_shift_grid(level: u32, extent: f64, ngrid: usize, xshift: f64, yshift: f64) -> Vec<Shift> {
    let x = grid_1d(level, extent, ngrid, xshift);
    let y = grid_1d(level, extent, ngrid, yshift);
    y.iter().flat_map(|&yv| x.iter().map(move |&xv| [xv, yv])).collect()
}

/// The candidates of refinement iteration `iteration ≥ 1` around a kept shift: the whole base grid scaled
/// by `2^−iteration` and added to `center` (`opt_theta_trans`: `shifts /= 2; trans + shifts`, in f32; the
/// halving is exact). Same order as `base`.
pub fn refined_shifts(center: Shift, base: &[Shift], iteration: u32) -> Vec<Shift> {
    let scale = 0.5f32.powi(iteration as i32);
    base.iter().map(|&[x, y]| [center[0] + x * scale, center[1] + y * scale]).collect()
}

/// The `(2k + 1)²` offsets `(i·step, j·step)`, `i, j ∈ −k…k`, x fastest: drgnfly's refinement candidates
/// around a kept shift (`step` = the base spacing halved per iteration). After a step of spacing `2·step`
/// the best shift is within `step` of the kept one per axis, so `k = 1` covers it and `k = 2` leaves a
/// margin, at `25` candidates instead of the whole base grid's (196 with cryoDRGN's defaults).
pub fn local_offsets(step: f32, k: usize) -> Vec<Shift> {
    let r = k as i32;
    (-r..=r).flat_map(|j| (-r..=r).map(move |i| [i as f32 * step, j as f32 * step])).collect()
}

/// The 4 points of the level-`level + 1` grid inside cell `(xi, yi)` of level `level`: per axis
/// `2·i, 2·i + 1`, x fastest, with their `(x, y)` indices (cryoDRGN `shift_grid.get_neighbor`). As in
/// cryoDRGN, the grid's `xshift`/`yshift` offsets are not applied here. `opt_theta_trans` does not use
/// this (it refines with [`refined_shifts`]); it is kept for completeness.
///
/// # Panics
/// If `level + 1 > MAX_LEVEL`.
pub fn get_neighbor(xi: usize, yi: usize, level: u32, extent: f64, ngrid: usize) -> [(Shift, [usize; 2]); 4] {
    check_level(level + 1);
    let npix = ngrid << (level + 1);
    let dt = 2.0 * extent / npix as f64;
    let (dt32, half, ext) = (dt as f32, (dt / 2.0) as f32, extent as f32);
    let at = |i: usize| dt32 * i as f32 + half - ext;
    std::array::from_fn(|k| {
        let (x, y) = (2 * xi + k % 2, 2 * yi + k / 2);
        ([at(x), at(y)], [x, y])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_base_grid() {
        let g = base_shift_grid(1, 10.0, 7, 0.0, 0.0);
        assert_eq!(g.len(), 196);
        let dt = 20.0 / 14.0;
        assert!((g[0][0] - (-10.0 + dt / 2.0) as f32).abs() < 1e-6);
        assert_eq!(g[1][1], g[0][1]); // x fastest
        assert!((g[195][0] - (10.0 - dt / 2.0) as f32).abs() < 1e-6);
        // Symmetric about 0.
        for (a, b) in g.iter().zip(g.iter().rev()) {
            assert!((a[0] + b[0]).abs() < 1e-5 && (a[1] + b[1]).abs() < 1e-5);
        }
        let r = refined_shifts([1.0, -2.0], &g, 2);
        assert_eq!(r[5], [1.0 + g[5][0] / 4.0, -2.0 + g[5][1] / 4.0]);
    }
}
