//! Straight-line traversal between anchor particles (cryoDRGN `direct_traversal`).

use crate::error::{Error, Result};
use crate::latents::Latents;

/// Linear interpolation between the latents of consecutive anchors.
///
/// Each segment a→b contributes `n` points `z_a + t (z_b − z_a)` for t = 0, 1/n, …, (n−1)/n, and the
/// last anchor closes the path, so the result holds `segments·n + 1` rows (M×zdim). With `closed`
/// (`--loop`) a final segment returns from the last anchor to the first.
///
/// Errors: fewer than 2 anchors, `n == 0`, or an anchor index out of range.
pub fn direct_traversal(z: Latents<'_>, anchors: &[usize], n: usize, closed: bool) -> Result<Vec<f32>> {
    if anchors.len() < 2 {
        return Err(Error::Param {
            name: "--anchors",
            value: format!("{anchors:?}"),
            why: "give at least two particle indices".into(),
        });
    }
    if n == 0 {
        return Err(Error::Param { name: "-n", value: "0".into(), why: "must be at least 1".into() });
    }
    for &a in anchors {
        z.check_index("--anchors", a)?;
    }
    let mut stops = anchors.to_vec();
    if closed {
        stops.push(anchors[0]);
    }
    let mut out = Vec::with_capacity(((stops.len() - 1) * n + 1) * z.zdim());
    for pair in stops.windows(2) {
        let (za, zb) = (z.row(pair[0]), z.row(pair[1]));
        for s in 0..n {
            let t = s as f32 / n as f32;
            out.extend(za.iter().zip(zb).map(|(a, b)| a + t * (b - a)));
        }
    }
    out.extend_from_slice(z.row(stops[stops.len() - 1]));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_and_loops() {
        let z = [0.0f32, 0.0, 4.0, 0.0, 4.0, 8.0];
        let l = Latents::new(&z, 2).unwrap();
        let path = direct_traversal(l, &[0, 1, 2], 2, false).unwrap();
        assert_eq!(path, vec![0.0, 0.0, 2.0, 0.0, 4.0, 0.0, 4.0, 4.0, 4.0, 8.0]);
        let looped = direct_traversal(l, &[0, 1], 4, true).unwrap();
        assert_eq!(looped.len(), (2 * 4 + 1) * 2);
        assert_eq!(&looped[looped.len() - 2..], &[0.0, 0.0]);
        assert_eq!(&looped[8..10], &[4.0, 0.0]);
        assert!(matches!(direct_traversal(l, &[0, 3], 2, false), Err(Error::Param { .. })));
        assert!(matches!(direct_traversal(l, &[0], 2, false), Err(Error::Param { .. })));
    }
}
