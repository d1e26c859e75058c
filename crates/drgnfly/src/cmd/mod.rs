//! One module per subcommand. Each has `Args` (parsing and validation only) and `run(args)`.

pub mod add_psize;
pub mod concat_pkls;
pub mod export;
pub mod filter_cs;
pub mod filter_mrcs;
pub mod filter_pkl;
pub mod filter_star;
pub mod parse_ctf_csparc;
pub mod parse_ctf_star;
pub mod parse_pose_csparc;
pub mod parse_pose_star;
pub mod parse_star;
pub mod pkl_rows;
pub mod select_random;
pub mod view_header;
pub mod write_cs;
pub mod write_star;
