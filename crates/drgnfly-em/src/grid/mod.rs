//! cryoDRGN2's pose-search grids, index for index: the Hopf SO(3) grid and its subdivision ([`so3`], over
//! HEALPix NESTED pixel centres from [`healpix`]) and the translation grid ([`shift`]).
//!
//! A pose index (flat SO(3) index `s2·n_psi + s1`, shift index `y·n + x`) names the same pose here as in
//! cryoDRGN 4.3.1's `so3_grid.py`/`shift_grid.py`, so search tables can be compared and exchanged.
//! Resolutions are programmer inputs: out-of-range values panic, as documented on each function.

pub mod healpix;
pub mod shift;
pub mod so3;

#[cfg(test)]
mod golden;

pub use so3::{get_neighbor, Neighbor, So3Grid};
