//! One module per subcommand. Each has `Args` (parsing and validation only) and `run(args)`.

pub mod abinit;
pub mod abinit_amortized;
pub mod abinit_het;
pub mod abinit_homo;
pub mod add_psize;
pub mod analysis_common;
pub mod analyze;
pub mod analyze_convergence;
pub mod backproject;
pub mod compat;
pub mod concat_pkls;
pub mod direct_traversal;
pub mod downsample;
pub mod eval_images;
pub mod eval_poses;
pub mod eval_simulation;
pub mod eval_vol;
pub mod export;
pub mod export_weights;
pub mod filter_cs;
pub mod filter_mrcs;
pub mod filter_pkl;
pub mod filter_star;
pub mod flip_hand;
pub mod fsc;
pub mod gen_mask;
pub mod graph_traversal;
pub mod invert_contrast;
pub mod maps;
pub mod parse_ctf_csparc;
pub mod parse_ctf_star;
pub mod parse_pose_csparc;
pub mod parse_pose_star;
pub mod parse_star;
pub mod particles;
pub mod pc_traversal;
pub mod phase_flip;
pub mod pkl_rows;
pub mod select_clusters;
pub mod select_particles;
pub mod select_random;
pub mod simulate;
pub mod train_common;
pub mod train_nn;
pub mod train_vae;
pub mod view_header;
pub mod write_cs;
pub mod write_star;

/// A particle table without rows is an error rather than an empty .pkl: the file is probably not the one
/// meant (a RELION job's other table, a cryoSPARC passthrough file).
pub fn require_rows(rows: usize, path: &std::path::Path) -> anyhow::Result<()> {
    if rows == 0 {
        anyhow::bail!(
            "{}: holds no particles (the particle table has no rows); give the .star/.cs of the particles to parse",
            path.display()
        );
    }
    Ok(())
}
