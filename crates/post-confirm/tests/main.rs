//! The sign-up function's integration tests, as one test binary: each file beside this one is a
//! module of it. A binary per file linked the whole dependency tree once per file (about 50 MB and
//! a link apiece); tidy's `each_crate_has_one_test_binary` keeps it one. One file's tests: `cargo
//! test -p post-confirm --test integration delivery::`.

mod bootstrap;
mod delivery;
mod durable;
mod events;
mod heartbeat;
