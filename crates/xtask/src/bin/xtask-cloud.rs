//! `xtask-cloud`: every task, with the AWS SDKs only `package`, `deploy`, `verify`, `destroy`,
//! `rotate-secret`, `reconcile` and `redrive` need. `cargo xtask <task>` runs it for those.

fn main() -> std::process::ExitCode {
    xtask::main()
}
