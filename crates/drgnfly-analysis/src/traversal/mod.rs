//! Latent-space traversals: paths of z values to generate volume series from (cryoDRGN's
//! `pc_traversal`, `direct_traversal`, `graph_traversal`, and the `pcK/` series of `analyze`).
//!
//! Every traversal returns an M×zdim row-major `Vec<f32>` of z values; [`format_z_text`] writes it in
//! the text format `eval_vol --zfile` reads (numpy `loadtxt`: one row per line, zdim numbers separated
//! by spaces) and [`parse_z_text`] reads such a file back.

mod direct;
mod graph;
mod pc;
mod ztext;

pub use direct::direct_traversal;
pub use graph::{graph_traversal, GraphPath, GraphTraversalParams, LatentGraph, EXACT_KNN_MAX};
pub use pc::{pc_traversal, PcSpacing, PcTraversal};
pub use ztext::{format_z_text, parse_z_text};
