//! The api's integration tests, as one test binary: each file beside this one is a module of it. A
//! binary per file linked the whole dependency tree once per file (about 50 MB and a link apiece);
//! tidy's `each_crate_has_one_test_binary` keeps it one. One file's tests: `cargo test -p api
//! --test integration guard::`.

mod common;

mod adversarial;
mod alb_keep_alive;
mod audit_log;
mod bounded;
mod database;
mod guard;
mod hardening;
mod heartbeat;
mod interop;
mod openapi_conformance;
mod operations;
mod refusal_flood;
mod registration;
mod router;
mod users_me;
