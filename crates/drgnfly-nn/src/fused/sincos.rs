//! sin and cos of a whole row at once, for the positional encoding.
//!
//! The encoding takes ≈ 100 sines and cosines per point; through libm (`f32::sin_cos`, one call each) they
//! were 6% of a mixed-precision training step. [`sin_cos_in_place`] is branch-free (selects, no calls), so
//! the compiler vectorises the loop. Method (as Cephes `sinf`/`cosf`): x = q·π/2 + r with q the nearest
//! integer to x·2/π and r ∈ [−π/4, π/4] found with π/2 split in three parts (Cody–Waite, exact products
//! for |q| < 2¹³), degree-7 and degree-8 polynomials for sin r and cos r, and the quadrant q mod 4 choosing
//! which of them, with which sign, is sin x and cos x. Absolute error ≈ 1e-7 for |x| up to 1.2·10⁴ rad
//! (tested: 3e-7 up to 8·10³; the gaussian encoding's arguments reach a few thousand at D = 256).

use std::f32::consts::FRAC_2_PI;

/// π/2 = PIO2_HI + PIO2_MID + PIO2_LO, the first two of 8 and 11 significant bits, so q·part is exact
/// for |q| < 2¹³.
const PIO2_HI: f32 = 1.570_312_5;
const PIO2_MID: f32 = 4.837_513e-4;
const PIO2_LO: f32 = 7.549_79e-8;

/// Adding and subtracting 1.5·2²³ rounds an f32 below 2²² in magnitude to the nearest integer (ties to
/// even): a vectorisable round, unlike `round_ties_even` on baseline x86-64.
const ROUND: f32 = 12_582_912.0;

/// sin r ≈ r + r³(S1 + r²(S2 + r² S3)) on [−π/4, π/4] (Cephes sinf).
const S1: f32 = -1.666_665_5e-1;
const S2: f32 = 8.332_161e-3;
const S3: f32 = -1.951_529_6e-4;
/// cos r ≈ 1 − r²/2 + r⁴(C1 + r²(C2 + r² C3)) on [−π/4, π/4] (Cephes cosf).
const C1: f32 = 4.166_664_6e-2;
const C2: f32 = -1.388_731_6e-3;
const C3: f32 = 2.443_315_7e-5;

/// (sin x, cos x).
#[inline(always)]
fn sin_cos(x: f32) -> (f32, f32) {
    let q = (x * FRAC_2_PI + ROUND) - ROUND;
    let r = ((x - q * PIO2_HI) - q * PIO2_MID) - q * PIO2_LO;
    let r2 = r * r;
    let s = r + r * r2 * (S1 + r2 * (S2 + r2 * S3));
    let c = 1.0 - 0.5 * r2 + r2 * r2 * (C1 + r2 * (C2 + r2 * C3));
    // x = q·π/2 + r: quadrant 0 gives (s, c), 1 gives (c, −s), 2 gives (−s, −c), 3 gives (−c, s).
    let q = q as i32;
    let (sv, cv) = if q & 1 != 0 { (c, s) } else { (s, c) };
    let sin = if q & 2 != 0 { -sv } else { sv };
    let cos = if (q + 1) & 2 != 0 { -cv } else { cv };
    (sin, cos)
}

/// `sin[j], cos[j] ← sin(sin[j]), cos(sin[j])`: the arguments come in `sin`, whose length `cos` shares.
pub(crate) fn sin_cos_in_place(sin: &mut [f32], cos: &mut [f32]) {
    for (s, c) in sin.iter_mut().zip(cos.iter_mut()) {
        (*s, *c) = sin_cos(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_sin_and_cos() {
        // Every quadrant, both signs, the quadrant boundaries and a few thousand radians.
        let mut xs: Vec<f32> = (-80_000..=80_000).map(|i| i as f32 * 0.1 + 0.013).collect();
        xs.extend((-16..=16).map(|q| q as f32 * std::f32::consts::FRAC_PI_4));
        xs.extend([0.0, -0.0, 1e-30, 1e-6]);
        let mut sin = xs.clone();
        let mut cos = vec![0f32; xs.len()];
        sin_cos_in_place(&mut sin, &mut cos);
        for ((&x, &s), &c) in xs.iter().zip(&sin).zip(&cos) {
            let (es, ec) = (x as f64).sin_cos();
            assert!(
                (s as f64 - es).abs() < 3e-7 && (c as f64 - ec).abs() < 3e-7,
                "x = {x}: ({s}, {c}) vs ({es}, {ec})"
            );
        }
    }
}
