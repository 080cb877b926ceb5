//! # opskit: what `cargo xtask`'s deploy path and the test kit share
//!
//! Dev-only, like `testkit`, but on the other side of a line: `xtask-cloud` (the build that
//! deploys, verifies and rotates) links this crate and never `testkit`, and `testkit` uses the
//! pieces here rather than keeping its own. One copy of each:
//!
//! - [`cmd`]: running external commands visibly (each echoed before it runs), and where the
//!   project's tool environments lie;
//! - [`aws`]: one way to give an AWS SDK error its context (`.aws("what was attempted")`);
//! - [`process`]: a child process with its output in a log file, killed when dropped, and the
//!   process-group rule for a process that outlives interrupts;
//! - [`runtime_api`]: a local AWS Lambda Runtime API, so a real function binary runs here as it
//!   runs in Lambda (`reconcile` and `rotate-secret` against a local AWS, and the tests);
//! - [`build`]: the dev build's arguments, one set for `up`, the local function runs and tests;
//! - [`locate`]: where the machine's PostgreSQL and arm64 C library lie;
//! - [`moto`]: the run-time configuration a moto_server needs to play the stack's AWS;
//! - [`bootstrap`]: `infra/bootstrap` applied to a local AWS, as an administrator applies it;
//! - [`state`]: reading a `terraform show -json` state.

pub mod aws;
pub mod bootstrap;
pub mod build;
pub mod cmd;
pub mod locate;
pub mod moto;
pub mod process;
pub mod runtime_api;
pub mod state;
