//! `graph-traversal`: the shortest path through the particles' neighbour graph between anchor
//! particles, so that the path stays where the data are. Writes the z values along the path (numpy
//! `loadtxt` format, ready for `eval-vol --zfile`) and the particle indices.
//!
//! Example usage:
//!   drgnfly graph-traversal out/z.50.pkl --anchors 12 4051 -o z-path.txt --outind z-path-indices.txt

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::traversal::{format_z_text, graph_traversal, GraphTraversalParams};
use drgnfly_analysis::Latents;

use super::analysis_common::{format_indices, load_zfile, write_text};

/// Shortest path through the data between anchor particles.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly graph-traversal out/z.50.pkl --anchors 12 4051 -o z-path.txt --outind z-path-indices.txt"
)]
pub struct Args {
    /// Latents: z.N.pkl or a z-values text file.
    pub zfile: PathBuf,
    /// Particle indices (0-based rows of zfile) to visit, in order.
    #[arg(long, num_args = 2.., required = true, value_name = "I")]
    pub anchors: Vec<usize>,
    /// Neighbours considered per particle.
    #[arg(long, default_value_t = 10)]
    pub max_neighbors: usize,
    /// Edges kept per particle on average (the shortest of all candidate edges).
    #[arg(long, default_value_t = 5.0)]
    pub avg_neighbors: f64,
    /// Output z values along the path.
    #[arg(short = 'o', long = "output", default_value = "z-path.txt")]
    pub output: PathBuf,
    /// Output particle indices along the path.
    #[arg(long, default_value = "z-path-indices.txt")]
    pub outind: PathBuf,
}

/// Build the graph, find the path, write it.
pub fn run(args: Args) -> Result<()> {
    let (z, zdim) = load_zfile(&args.zfile)?;
    let lat = Latents::new(&z, zdim).with_context(|| format!("latents of {}", args.zfile.display()))?;
    let params =
        GraphTraversalParams { max_neighbors: args.max_neighbors, avg_neighbors: args.avg_neighbors };
    let path = graph_traversal(lat, &args.anchors, &params)?;
    write_text(&args.output, &format_z_text(&path.z, zdim))?;
    write_text(&args.outind, &format_indices(&path.indices))?;
    let lengths: Vec<String> = path.segment_lengths.iter().map(|l| format!("{l:.4}")).collect();
    say!(
        "{}, {}: {} particles on the path; segment lengths {}",
        args.output.display(),
        args.outind.display(),
        path.indices.len(),
        lengths.join(", ")
    );
    Ok(())
}
