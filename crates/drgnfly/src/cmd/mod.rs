//! One module per subcommand. Each has `Args` (parsing and validation only) and `run(args)`.
