//! One module per subcommand. Each has `Args` (parsing and validation only) and `run(args)`.

pub mod add_psize;
pub mod view_header;
