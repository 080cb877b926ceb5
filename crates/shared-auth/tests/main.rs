//! The contract crate's integration tests, as one test binary: each file beside this one is a
//! module of it (tidy's `each_crate_has_one_test_binary`). One file's tests: `cargo test -p
//! shared-auth --test integration interop::`.

mod interop;
mod settings;
