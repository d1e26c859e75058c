//! File formats for cryo-EM, read strictly and written atomically.
//!
//! The tour:
//! - [`mrc`]: MRC2014 maps and image stacks; stacks are memory-mapped and read image by image.
//! - [`star`]: the STAR grammar; [`relion`]: RELION particle tables with optics-group joins.
//! - [`npy`]: numpy `.npy` arrays, including the structured arrays of cryoSPARC [`cs`] files.
//! - [`pickle`]: numpy-array pickles as cryoDRGN writes them (ctf.pkl, pose.pkl, z.N.pkl, index .pkl);
//!   parsed, never executed.
//! - [`selection`]: `--ind` particle selections (.pkl or .txt), checked against the dataset size.
//! - [`source`]: `ParticleSource`, one random-access and streaming interface over all particle files.
//! - [`atomic`]: write-then-rename output files; [`input`]: whole-file reads (text checked, streams bounded).
//!
//! Every error is an [`Error`] naming the file, the record and what to do.

pub mod atomic;
pub mod atoms;
pub mod cs;
pub mod error;
#[doc(hidden)]
pub mod fixtures;
pub mod input;
pub mod memory;
pub mod mrc;
pub mod npy;
pub mod pickle;
pub mod relion;
pub mod selection;
pub mod source;
pub mod star;
mod stream;

pub use error::{Error, Result};
