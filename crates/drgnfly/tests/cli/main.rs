//! End-to-end tests of the metadata subcommands: the built `drgnfly` binary run in temporary
//! directories on the shared fixtures (cryoDRGN's golden parser outputs) and on generated files.

mod abinit;
mod analysis;
mod bad_input;
mod compat;
mod digest;
mod filters;
mod help;
mod heterogeneity;
mod interop;
mod mpi;
mod parse_golden;
mod physics;
mod poses;
mod refine;
mod round_trips;
mod train;
mod util;
