//! One image's pose, and the conversion of pose.pkl translations between box fractions and pixels.
//!
//! Everything in drgnfly works in pixels; pose.pkl stores the translation as a fraction of the box. The
//! conversion lives here and nowhere else. Its factor is **D** (cryoDRGN uses D + 1, an ≈0.8% scale error at
//! D = 128; see [the crate conventions](crate#conventions)).

use crate::rotation::{from_f32, to_f32, Mat3, IDENTITY};

/// The pose of one image: rotation (the slice is the volume's transform at `Rᵀ(kx, ky, 0)`) and the shift
/// `t` in pixels that centres the observed image (translating it by `+t`, see [`crate::translate`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    /// Rotation matrix, row-major.
    pub rot: Mat3,
    /// Shift (x, y) in pixels of the D-pixel image.
    pub shift_px: [f32; 2],
}

impl Pose {
    /// No rotation, no shift.
    pub const IDENTITY: Pose = Pose { rot: IDENTITY, shift_px: [0.0, 0.0] };

    /// A pose.pkl row: the f32 rotation and the translation as a fraction of the `d`-pixel box (none when
    /// the file holds rotations only).
    pub fn from_pkl(rot: &[[f32; 3]; 3], trans: Option<[f32; 2]>, d: usize) -> Self {
        Self { rot: from_f32(rot), shift_px: trans.map_or([0.0; 2], |t| t.map(|f| fraction_to_px(f, d))) }
    }

    /// The rotation as pose.pkl stores it (f32).
    pub fn pkl_rot(&self) -> [[f32; 3]; 3] {
        to_f32(&self.rot)
    }

    /// The translation as pose.pkl stores it: a fraction of the `d`-pixel box.
    pub fn pkl_trans(&self, d: usize) -> [f32; 2] {
        self.shift_px.map(|p| px_to_fraction(f64::from(p), d as f64) as f32)
    }
}

/// A pose.pkl translation (fraction of the `d`-pixel box) in pixels: `t · D`, rounded once to f32.
pub fn fraction_to_px(fraction: f32, d: usize) -> f32 {
    (f64::from(fraction) * d as f64) as f32
}

/// A shift in pixels as pose.pkl stores it: `t / D`, in f64 (the parsers of RELION and cryoSPARC shifts keep
/// f64; rounding the quotient to f32 once gives the same bits as f32 division).
pub fn px_to_fraction(px: f64, box_px: f64) -> f64 {
    px / box_px
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkl_round_trip_is_exact_and_uses_d() {
        let rot = [[0.0f32, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        let p = Pose::from_pkl(&rot, Some([0.125, -0.03125]), 64);
        assert_eq!(p.shift_px, [8.0, -2.0]);
        assert_eq!(p.pkl_rot(), rot);
        assert_eq!(p.pkl_trans(64), [0.125, -0.03125]);
        assert_eq!(Pose::from_pkl(&rot, None, 64).shift_px, [0.0, 0.0]);
        // Rounding once in f64 is the correctly rounded f32 product/quotient: the same bits as f32 arithmetic.
        for (f, d) in [(0.1f32, 128usize), (-0.0371f32, 90), (0.3333f32, 257)] {
            assert_eq!(fraction_to_px(f, d), f * d as f32);
            let px = f * d as f32;
            assert_eq!(px_to_fraction(f64::from(px), d as f64) as f32, px / d as f32);
        }
    }
}
