//! Image-formation physics and classical reconstruction.
//!
//! # Conventions
//! (Filled in as the modules land; see DESIGN.md.)

pub mod error;

pub use error::{Error, Result};
