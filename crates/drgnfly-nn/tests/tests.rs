//! The crate's single integration-test binary (one link on 2 cores); modules by topic.

mod golden_cryodrgn;
mod mutations;
