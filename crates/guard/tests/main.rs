//! The guard layer's integration tests, as one test binary: each file beside this one is a
//! module of it. One file's tests: `cargo test -p tollgate-guard --test integration example::`.

mod example;
mod layer;
