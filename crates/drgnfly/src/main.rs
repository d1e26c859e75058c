//! `drgnfly`: heterogeneous cryo-EM reconstruction with neural networks.
//!
//! This file only parses the command line and dispatches; each subcommand lives in `cmd/<name>.rs`
//! with its arguments (`Args`) and a `run` function.

/// `eprintln!` that ignores a closed stderr (`drgnfly analyze … 2>&1 | head`): messages are best effort,
/// and `eprintln!`'s panic there would turn a finished job into a crash (exit 101).
/// On more than one process, only rank 0 talks (`cluster`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if $crate::cluster::is_root() {
            let _ = writeln!(std::io::stderr(), $($arg)*);
        }
    }};
}

mod cluster;
mod cmd;
mod interrupt;
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
    /// RELION .star poses → pose.pkl (rotations, translations as fractions of the box).
    #[command(alias = "parse_pose_star")]
    ParsePoseStar(cmd::parse_pose_star::Args),
    /// RELION .star CTF parameters → ctf.pkl.
    #[command(alias = "parse_ctf_star")]
    ParseCtfStar(cmd::parse_ctf_star::Args),
    /// RELION .star → ctf.pkl and pose.pkl in one pass.
    #[command(alias = "parse_star")]
    ParseStar(cmd::parse_star::Args),
    /// cryoSPARC .cs poses → pose.pkl.
    #[command(alias = "parse_pose_csparc")]
    ParsePoseCsparc(cmd::parse_pose_csparc::Args),
    /// cryoSPARC .cs CTF parameters → ctf.pkl.
    #[command(alias = "parse_ctf_csparc")]
    ParseCtfCsparc(cmd::parse_ctf_csparc::Args),
    /// Particle stack + ctf.pkl (+ pose.pkl) → RELION .star; or a subset of a .star.
    #[command(alias = "write_star")]
    WriteStar(cmd::write_star::Args),
    /// Particle stack + ctf.pkl (+ pose.pkl) → cryoSPARC .cs.
    #[command(alias = "write_cs")]
    WriteCs(cmd::write_cs::Args),
    /// Keep the selected particles of a .star file (and the optics groups they use).
    #[command(alias = "filter_star")]
    FilterStar(cmd::filter_star::Args),
    /// Keep the selected rows of a cryoSPARC .cs file.
    #[command(alias = "filter_cs")]
    FilterCs(cmd::filter_cs::Args),
    /// Copy the selected images of a stack into a new .mrcs.
    #[command(alias = "filter_mrcs")]
    FilterMrcs(cmd::filter_mrcs::Args),
    /// Keep the selected rows of a .pkl (ctf, poses, z, any array or tuple of arrays).
    #[command(alias = "filter_pkl")]
    FilterPkl(cmd::filter_pkl::Args),
    /// Random subset of particle indices (and its complement).
    #[command(alias = "select_random")]
    SelectRandom(cmd::select_random::Args),
    /// Concatenate the arrays of several .pkl files along the first axis.
    #[command(alias = "concat_pkls")]
    ConcatPkls(cmd::concat_pkls::Args),
    /// Train a heterogeneous VAE on particles with known poses.
    #[command(alias = "train_vae")]
    TrainVae(Box<cmd::train_vae::Args>),
    /// Train a homogeneous decoder on particles with known poses.
    #[command(alias = "train_nn")]
    TrainNn(Box<cmd::train_nn::Args>),
    /// drgnfly checkpoints → cryoDRGN weights.N.pkl (PyTorch), for cryoDRGN's eval_vol, analyze and notebooks.
    #[command(alias = "export_weights")]
    ExportWeights(cmd::export_weights::Args),
    /// Generate volumes from a trained model at given latents.
    #[command(alias = "eval_vol")]
    EvalVol(cmd::eval_vol::Args),
    /// Encode particles with a trained VAE (latents, losses) or amortized run (poses, latents).
    #[command(alias = "eval_images")]
    EvalImages(cmd::eval_images::Args),
    /// PCA, UMAP, k-means, volumes and an HTML report for one epoch of a training run.
    Analyze(cmd::analyze::Args),
    /// z values along principal components of the latents (for eval-vol --zfile).
    #[command(alias = "pc_traversal")]
    PcTraversal(cmd::pc_traversal::Args),
    /// Shortest path through the data between anchor particles (for eval-vol --zfile).
    #[command(alias = "graph_traversal")]
    GraphTraversal(cmd::graph_traversal::Args),
    /// Straight lines in latent space between anchor particles (for eval-vol --zfile).
    #[command(alias = "direct_traversal")]
    DirectTraversal(cmd::direct_traversal::Args),
    /// Has training converged? Latent shifts, density maxima and volumes across epochs.
    #[command(alias = "analyze_convergence")]
    AnalyzeConvergence(cmd::analyze_convergence::Args),
    /// Particle indices of chosen k-means clusters.
    #[command(alias = "select_clusters")]
    SelectClusters(cmd::select_clusters::Args),
    /// Select particles by cluster, PC box or UMAP polygon; export .pkl, .star, .cs (cryoDRGN filter).
    #[command(alias = "select_particles", alias = "filter")]
    SelectParticles(cmd::select_particles::Args),
    /// Latent quality against simulation ground truth (accuracy, Spearman, entanglement).
    #[command(alias = "eval_simulation")]
    EvalSimulation(cmd::eval_simulation::Args),
    /// Homogeneous ab initio reconstruction: poses found by hierarchical pose search (cryoDRGN2).
    #[command(alias = "abinit_homo", alias = "abinit-homo-old", alias = "abinit_homo_old")]
    AbinitHomo(cmd::abinit_homo::Args),
    /// Heterogeneous ab initio reconstruction: a VAE with poses found by pose search (cryoDRGN2).
    #[command(alias = "abinit_het", alias = "abinit-het-old", alias = "abinit_het_old")]
    AbinitHet(cmd::abinit_het::Args),
    /// Ab initio reconstruction as cryoDRGN-AI: a short pose search, then SGD of pose and conformation tables.
    Abinit(cmd::abinit::Args),
    /// Ab initio with a CNN encoder that predicts poses (cryoAI) and conformations (HetACUMN, --zdim); experimental: converges slowly.
    #[command(alias = "abinit_amortized")]
    AbinitAmortized(cmd::abinit_amortized::Args),
    /// Pose accuracy against simulation ground truth (‖ΔR‖²_F after alignment, both hands; shifts; aligned map).
    #[command(alias = "eval_poses")]
    EvalPoses(cmd::eval_poses::Args),
    /// Simulate particles (CTF, noise, shifts) from maps, atomic models or a phantom, with ground truth.
    Simulate(cmd::simulate::Args),
    /// Reconstruct a map from particles with known poses (and CTF), with half maps and FSC.
    #[command(alias = "backproject_voxel")]
    Backproject(cmd::backproject::Args),
    /// Fourier shell correlation between two maps; resolution at 0.5 and 0.143.
    Fsc(cmd::fsc::Args),
    /// Soft solvent mask from a map: threshold, dilate, cosine edge.
    #[command(alias = "gen_mask")]
    GenMask(cmd::gen_mask::Args),
    /// Multiply each image's Fourier transform by the sign of its CTF.
    #[command(alias = "phase_flip")]
    PhaseFlip(cmd::phase_flip::Args),
    /// Downsample particles or a map by Fourier cropping (.mrcs, .txt, .star outputs).
    Downsample(cmd::downsample::Args),
    /// Multiply a map by −1.
    #[command(alias = "invert_contrast")]
    InvertContrast(cmd::invert_contrast::Args),
    /// Mirror a map (reverse its z axis).
    #[command(alias = "flip_hand")]
    FlipHand(cmd::flip_hand::Args),
}

fn main() -> ExitCode {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // candle's CPU workers spin for ~0.5 ms after each of its ops before sleeping, on a core that the
        // next fused op (on rayon's threads) needs: the 1024-wide encoder's backward took 9.6 ms instead of
        // 5.6, and paired train-vae epochs were 0–10% longer, never shorter (BENCHMARKS.md, issue 17).
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
    let cli = Cli::parse();
    if let Err(e) = cluster::join() {
        say!("error: {e:#}");
        return ExitCode::from(2);
    }
    // Other ranks log errors only: rank 0 speaks for the run.
    init_logging(cli.verbose, cli.quiet || !cluster::is_root());
    if let Some(n) = cli.threads {
        // candle's CPU backend sizes its own worker pool from this variable (read once, on first use);
        // its workers spin while waiting, so more of them than cores costs far more than it gains.
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
        if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(n).build_global() {
            say!("error: could not set up {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    let result = run(cli.command);
    let code = exit_code(&result);
    if let Err(err) = &result {
        if !cluster::is_root() {
            // say! is quiet off rank 0, but this rank's failure ends the run: name it.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "error on rank {}: {err:#}", cluster::rank());
        }
    }
    cluster::leave(result.is_err(), i32::from(code));
    ExitCode::from(code)
}

/// The exit status of a command's result.
fn exit_code(result: &anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(err) => {
            // A closed pipe (e.g. `drgnfly view-header x | head`) is not a failure.
            if err.chain().any(|c| {
                c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return 0;
            }
            say!("error: {err:#}");
            // An interrupted run exits as the shell expects of the signal (130 for Ctrl-C, 143 for SIGTERM).
            match interrupt::requested() {
                Some(sig) => (128 + sig).clamp(0, 255) as u8,
                None => 1,
            }
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    if !matches!(
        command,
        Command::TrainVae(_)
            | Command::TrainNn(_)
            | Command::AbinitHomo(_)
            | Command::AbinitHet(_)
            | Command::Abinit(_)
    ) {
        cluster::single_process_only("this command")?;
    }
    match command {
        Command::ViewHeader(a) => cmd::view_header::run(a),
        Command::AddPsize(a) => cmd::add_psize::run(a),
        Command::ParsePoseStar(a) => cmd::parse_pose_star::run(a),
        Command::ParseCtfStar(a) => cmd::parse_ctf_star::run(a),
        Command::ParseStar(a) => cmd::parse_star::run(a),
        Command::ParsePoseCsparc(a) => cmd::parse_pose_csparc::run(a),
        Command::ParseCtfCsparc(a) => cmd::parse_ctf_csparc::run(a),
        Command::WriteStar(a) => cmd::write_star::run(a),
        Command::WriteCs(a) => cmd::write_cs::run(a),
        Command::FilterStar(a) => cmd::filter_star::run(a),
        Command::FilterCs(a) => cmd::filter_cs::run(a),
        Command::FilterMrcs(a) => cmd::filter_mrcs::run(a),
        Command::FilterPkl(a) => cmd::filter_pkl::run(a),
        Command::SelectRandom(a) => cmd::select_random::run(a),
        Command::ConcatPkls(a) => cmd::concat_pkls::run(a),
        Command::TrainVae(a) => cmd::train_vae::run(*a),
        Command::TrainNn(a) => cmd::train_nn::run(*a),
        Command::ExportWeights(a) => cmd::export_weights::run(a),
        Command::EvalVol(a) => cmd::eval_vol::run(a),
        Command::EvalImages(a) => cmd::eval_images::run(a),
        Command::Analyze(a) => cmd::analyze::run(a),
        Command::PcTraversal(a) => cmd::pc_traversal::run(a),
        Command::GraphTraversal(a) => cmd::graph_traversal::run(a),
        Command::DirectTraversal(a) => cmd::direct_traversal::run(a),
        Command::AnalyzeConvergence(a) => cmd::analyze_convergence::run(a),
        Command::SelectClusters(a) => cmd::select_clusters::run(a),
        Command::SelectParticles(a) => cmd::select_particles::run(a),
        Command::EvalSimulation(a) => cmd::eval_simulation::run(a),
        Command::AbinitHomo(a) => cmd::abinit_homo::run(a),
        Command::AbinitHet(a) => cmd::abinit_het::run(a),
        Command::Abinit(a) => cmd::abinit::run(a),
        Command::AbinitAmortized(a) => cmd::abinit_amortized::run(a),
        Command::EvalPoses(a) => cmd::eval_poses::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Backproject(a) => cmd::backproject::run(a),
        Command::Fsc(a) => cmd::fsc::run(a),
        Command::GenMask(a) => cmd::gen_mask::run(a),
        Command::PhaseFlip(a) => cmd::phase_flip::run(a),
        Command::Downsample(a) => cmd::downsample::run(a),
        Command::InvertContrast(a) => cmd::invert_contrast::run(a),
        Command::FlipHand(a) => cmd::flip_hand::run(a),
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
