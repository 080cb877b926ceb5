//! xtask's integration tests, as one test binary: each file beside this one is a module of it. A
//! binary per file linked the whole dependency tree once per file (about 50 MB and a link apiece);
//! tidy's `each_crate_has_one_test_binary` keeps it one. One file's tests: `cargo test -p xtask
//! --test integration tidy::`.

mod deploy;
mod image;
mod isolation;
mod lambda_watch;
mod least_privilege;
mod reconcile;
mod rotate_local;
mod supplied_values;
mod terraform;
mod tidy;
mod up;
mod workflows;
