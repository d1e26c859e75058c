//! Marks the tests that need the shared test data as ignored when it is absent.
include!("../../build-support/shared_data.rs");

fn main() {
    shared_data_cfg();
}
