//! `drgnfly`: heterogeneous cryo-EM reconstruction with neural networks.
//!
//! This file only parses the command line and dispatches; each subcommand lives in `cmd/<name>.rs`
//! with its arguments (`Args`) and a `run` function.

mod cmd;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// mimalloc: 1.6× on training steps against the system allocator (DESIGN.md, "Chosen dependencies").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Reconstruct continuous and discrete conformational heterogeneity from cryo-EM particle images.
///
/// drgnfly reads the files you already have (RELION .star, cryoSPARC .cs, .mrcs stacks, cryoDRGN .pkl)
/// and writes files cryoDRGN's tools understand. Run `drgnfly <command> --help` for details and examples.
#[derive(Parser)]
#[command(name = "drgnfly", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  drgnfly parse-pose-star particles.star -o pose.pkl\n  drgnfly view-header map.mrc\n\nUnderscore spellings of commands (train_vae, parse_pose_star) are accepted, as in cryoDRGN."
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Worker threads (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // Each entry: the kebab-case name (from the variant) and cryoDRGN's underscore spelling as alias.
    /// Print the header of an MRC/MRCS map or stack.
    #[command(alias = "view_header")]
    ViewHeader(cmd::view_header::Args),
    /// Write the pixel size (Å/px) into an MRC header.
    #[command(alias = "add_psize")]
    AddPsize(cmd::add_psize::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            eprintln!("error: could not set up {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (e.g. `drgnfly view-header x | head`) is not a failure.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::ViewHeader(a) => cmd::view_header::run(a),
        Command::AddPsize(a) => cmd::add_psize::run(a),
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("drgnfly={level},drgnfly_io={level},drgnfly_em={level},drgnfly_nn={level},drgnfly_analysis={level}")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}
